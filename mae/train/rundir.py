"""The run directory as one run's property: one process at a time (a lock naming its holder), logs that never mix
(a fresh start moves an earlier run's logs aside; a resume drops the rows logged after its checkpoint), and
`resume=auto` refused where it can never resume (a new timestamped directory)."""
from __future__ import annotations

import csv
import fcntl
import logging
import os
import shutil
import socket
import time
from pathlib import Path
from typing import IO

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
HYDRA_COPY = ".lock.hydra"
"""The lock holder's copy of .hydra/: Hydra writes a second run's config there before the lock can refuse it, and the
refused run puts the holder's files back."""
LOGS = ("csv", "metrics.json", "resolved.yaml", "reconstructions")
"""What a run writes besides checkpoints; moved to previous/<n>/ when a new run starts fresh in the directory."""


class RunDirInUse(RuntimeError):
    """Another process holds the run directory's lock."""


class RunDirLock:
    """An exclusive `flock` on RUN_DIR/.lock for as long as the run lasts, holding the PID and host of the holder.

    The lock dies with its process (kill -9 included), so a crashed run never blocks its resume. A second run in the
    same directory fails at start-up naming the holder, and puts back the holder's .hydra/ files (which Hydra had
    already overwritten with its own). Only rank 0 of a multi-process run takes it (the other ranks
    are the same run)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._file: IO[str] | None = None

    def __enter__(self) -> RunDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "an unknown process"
            handle.close()
            self._restore_hydra_files()
            raise RunDirInUse(f"run directory {self.path.parent} is in use by {holder}: wait for that run to end, "
                              "or give this one another hydra.run.dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"PID {os.getpid()} on {socket.gethostname()} (since {time.strftime('%Y-%m-%d %H:%M:%S')})\n")
        handle.flush()
        self._file = handle
        self._keep_hydra_files()
        return self

    def _keep_hydra_files(self) -> None:
        hydra, copy = self.path.parent / ".hydra", self.path.parent / HYDRA_COPY
        if hydra.is_dir():
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(hydra, copy)

    def _restore_hydra_files(self) -> None:
        hydra, copy = self.path.parent / ".hydra", self.path.parent / HYDRA_COPY
        if copy.is_dir():
            shutil.rmtree(hydra, ignore_errors=True)
            shutil.copytree(copy, hydra)

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def set_aside_previous_logs(run_dir: Path) -> Path | None:
    """On a fresh start in a directory that holds an earlier run's logs (its checkpoints gone): move them to
    run_dir/previous/<n>/ and return that folder (None if there was nothing), so the new logs do not mix with them."""
    found = [run_dir / name for name in LOGS if (run_dir / name).exists()]
    if not found:
        return None
    n = 1
    while (run_dir / "previous" / str(n)).exists():
        n += 1
    target = run_dir / "previous" / str(n)
    target.mkdir(parents=True)
    for path in found:
        path.rename(target / path.name)
    log.warning("%s holds the logs of an earlier run but no checkpoint to resume: starting fresh; its logs were "
                "moved to %s", run_dir, target)
    return target


def drop_rows_from_step(metrics_csv: Path, step: int) -> int:
    """Rewrite a CSVLogger metrics.csv (atomically) without the rows logged at `step` or later: a run resumed from a
    checkpoint at `step` logs them again. Returns how many rows were dropped."""
    if not metrics_csv.is_file():
        return 0
    with metrics_csv.open(newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames or [], list(reader)
    if "step" not in fields:
        return 0
    kept = [row for row in rows if not row["step"] or int(float(row["step"])) < step]
    if len(kept) == len(rows):
        return 0
    tmp = metrics_csv.with_name(f".{metrics_csv.name}.tmp-{os.getpid()}")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(kept)
    os.replace(tmp, metrics_csv)
    return len(rows) - len(kept)


def timestamped_run_dir_for_auto_resume() -> bool:
    """Whether this is a single `python train.py ... resume=auto` run whose directory is Hydra's timestamped default
    (no hydra.run.dir given): such a directory is new on every call, so resume=auto could never find a checkpoint."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return False
    hydra = HydraConfig.get()
    if hydra.mode != RunMode.RUN:
        return False  # multirun / launchers: hydra.sweep.dir + job number, stable across a requeue
    return not any(o.split("=", 1)[0].lstrip("+~") == "hydra.run.dir" for o in hydra.overrides.hydra)


def recent_run_dirs(outputs: Path, limit: int = 3) -> list[Path]:
    """The newest run directories under `outputs` (outputs/DATE/TIME) that hold checkpoints."""
    found = [p.parent.parent for p in outputs.glob("*/*/checkpoints/*.ckpt")]
    return sorted(set(found), key=lambda p: p.stat().st_mtime, reverse=True)[:limit]


def save_run_config(cfg: DictConfig, run_dir: Path) -> None:
    """Write the run's config, as changed at start-up (options the data decided), over .hydra/config.yaml (and the
    lock holder's copy), atomically; nothing when the run has no .hydra folder (runs composed in-process)."""
    for folder in (run_dir / ".hydra", run_dir / HYDRA_COPY):
        path = folder / "config.yaml"
        if path.is_file():
            tmp = folder / f".config.yaml.tmp-{os.getpid()}"
            OmegaConf.save(cfg, tmp)
            os.replace(tmp, path)
