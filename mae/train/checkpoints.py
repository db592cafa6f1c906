"""Checkpoints written atomically: a kill during saving never leaves a broken file behind."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import OmegaConf

from mae.core.module import MAEModule
from mae.train.legacy import upgrade_module_config


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO with an atomic save and a load error that names the file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path: str | Path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        if not Path(path).is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        try:
            return torch.load(path, map_location=map_location or "cpu", weights_only=True)
        except Exception as err:  # truncated or foreign file
            raise RuntimeError(f"checkpoint {path} is corrupt or not a torch checkpoint: {err}") from err


def check_checkpoint(path: str | Path) -> None:
    """Raise RuntimeError naming `path` if it is not a readable torch checkpoint (truncated, empty, foreign).

    Memory-mapped load: only the archive's index and the small pickled part are read, not the tensors' bytes.
    """
    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        raise RuntimeError(f"checkpoint {path} is corrupt or not a torch checkpoint: {err}") from err


def resume_candidates(run_dir: str | Path) -> list[Path]:
    """Checkpoints a run directory holds, newest first: checkpoints/*.ckpt (last, step-interval, best) and
    Lightning's SLURM `hpc_ckpt_*.ckpt` in the run directory."""
    run_dir = Path(run_dir)
    found = [*(run_dir / "checkpoints").glob("*.ckpt"), *run_dir.glob("hpc_ckpt_*.ckpt")]
    return sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name == "last.ckpt"), reverse=True)


def find_resume_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest valid checkpoint of `run_dir`, or None if it holds none (a fresh start).

    A corrupt newer file is reported (warning naming it) and the previous valid one is used; if checkpoints
    exist but none is valid, RuntimeError naming them: never a silent restart from scratch.
    """
    import logging

    candidates = resume_candidates(run_dir)
    errors = []
    for path in candidates:
        try:
            check_checkpoint(path)
        except RuntimeError as err:
            errors.append(str(err))
            logging.getLogger(__name__).warning("%s; falling back to an older checkpoint", err)
            continue
        return path
    if errors:
        raise RuntimeError(f"resume=auto: no valid checkpoint in {run_dir}: " + "; ".join(errors) +
                           " (delete the run directory or set resume=null to start from scratch)")
    return None


def load_run_module(run_dir: Path, ckpt: Path | None = None) -> MAEModule:
    """Rebuild a run's MAEModule from RUN_DIR/.hydra/config.yaml and load its checkpoint weights (a run written
    before the layout change too: `mae.train.legacy`)."""
    cfg_path = run_dir / ".hydra" / "config.yaml"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path} not found: RUN_DIR must be a train.py run directory")
    cfg = OmegaConf.load(cfg_path)
    cfg.run_dir = str(run_dir)
    module = instantiate(upgrade_module_config(cfg))
    ckpt = ckpt or run_dir / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"checkpoint {ckpt} not found (pass --ckpt)")
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state)
    return module.eval()
