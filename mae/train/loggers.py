"""Logger factories that need a decision at run time."""
from __future__ import annotations

import csv
import os
import secrets
import string
from pathlib import Path

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


def wandb_has_credentials() -> bool:
    """True if an API key is in the environment or ~/.netrc holds one for api.wandb.ai."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path.home() / ".netrc"
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def wandb_run_id(save_dir: str | Path) -> str:
    """The wandb run id of this run directory: read from save_dir/wandb/run_id.txt, created on first use, so a
    resumed or requeued run continues the same wandb run."""
    path = Path(save_dir) / "wandb" / "run_id.txt"
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    alphabet = string.ascii_lowercase + string.digits  # wandb's id format, without its private helper
    run_id = "".join(secrets.choice(alphabet) for _ in range(8))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".run_id.txt.tmp-{os.getpid()}")
    tmp.write_text(run_id + "\n")
    os.replace(tmp, path)
    return run_id


def wandb_logger(*, save_dir: str, project: str, name: str | None = None, offline: bool | None = None) -> WandbLogger:
    """WandbLogger that runs offline automatically without credentials (sync later with `wandb sync`); its run id
    is kept in the run directory (`wandb_run_id`) and the run resumed (`resume="allow"`) when it already exists."""
    if offline is None:
        offline = not wandb_has_credentials() or os.environ.get("WANDB_MODE") == "offline"
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    return WandbLogger(save_dir=save_dir, project=project, name=name, offline=offline, id=wandb_run_id(save_dir),
                       resume="allow")


class AppendingExperimentWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing metrics.csv; on resume we append to it instead."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                header = next(csv.reader(file), [])
            self.metrics_keys = sorted(header)


class ResumableCSVLogger(CSVLogger):
    """CSVLogger whose metrics.csv survives a resumed run (rows of the new run are appended; where a
    step was logged twice, the later row is the resumed run's)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AppendingExperimentWriter(log_dir=self.log_dir)
        return self._experiment
