"""Checkpoints: written atomically (a kill during saving never leaves a broken file behind), never with non-finite
weights, loaded as data only (`weights_only=True`: a planted file cannot run code), and `resume=auto` picks the
valid checkpoint with the highest step (not the newest file: a copied run directory has fresh mtimes)."""
from __future__ import annotations

import errno
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import OmegaConf

from mae.core.module import MAEModule
from mae.train.legacy import upgrade_module_config

log = logging.getLogger(__name__)


def _is_disk_full(err: BaseException | None, folder: Path) -> bool:
    """ENOSPC / EDQUOT anywhere in the exception chain, or torch's own writer's short-write error ("unexpected pos")
    on a device with (almost) no space left."""
    while err is not None:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "unexpected pos" in str(err):
            return shutil.disk_usage(folder).free < 64 * 2**20
        err = err.__cause__ or err.__context__
    return False


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename over `path`. A full disk is an
    OSError(ENOSPC) naming the file and the free space; the previous file at `path` is kept either way."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:
        if not _is_disk_full(err, path.parent):
            raise
        free = shutil.disk_usage(path.parent).free
        raise OSError(errno.ENOSPC, f"no space left on the device of {path.parent} while writing checkpoint "
                                    f"{path.name} ({free / 2**20:.1f} MiB free): free space there (the previous "
                                    f"checkpoint is kept) and continue with resume=auto") from err
    finally:
        tmp.unlink(missing_ok=True)


def non_finite_tensors(tree: Any, prefix: str = "") -> list[str]:
    """Names of the floating-point tensors in a nested dict/list that hold NaN or inf (in order found)."""
    if isinstance(tree, torch.Tensor):
        return [prefix or "tensor"] if tree.is_floating_point() and not bool(torch.isfinite(tree).all()) else []
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, (list, tuple)) else ()
    return [name for key, value in items for name in non_finite_tensors(value, f"{prefix}.{key}" if prefix else str(key))]


def check_finite_state(checkpoint: dict[str, Any], path: str | Path) -> None:
    """FloatingPointError naming the first non-finite weights or optimiser state of a checkpoint about to be written
    or resumed from: a diverged state is never written nor picked."""
    bad = non_finite_tensors({"state_dict": checkpoint.get("state_dict", {}),
                              "optimizer_states": checkpoint.get("optimizer_states", [])})
    if bad:
        step = checkpoint.get("global_step", "?")
        raise FloatingPointError(
            f"checkpoint {path} at step {step}: {len(bad)} tensors hold NaN/inf (first: {bad[0]}); the run diverged "
            f"before this step: lower optim.blr, raise optim.warmup_epochs or set trainer.gradient_clip_val")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO with an atomic save and a load error that names the file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        check_finite_state(checkpoint, path)  # a diverged state is refused: the previous checkpoints stay
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path: str | Path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        if not Path(path).is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        try:
            return torch.load(path, map_location=map_location or "cpu", weights_only=True)
        except Exception as err:  # truncated or foreign file
            raise RuntimeError(f"checkpoint {path} is corrupt or not a torch checkpoint: {err}") from err


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint at `path`, memory-mapped (tensors are read only when used) and as data only: RuntimeError naming
    `path` if it is not a readable torch checkpoint (truncated, empty, foreign, or a pickle that would run code)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        raise RuntimeError(f"checkpoint {path} is corrupt or not a torch checkpoint: {err}") from err


def check_checkpoint(path: str | Path) -> int:
    """The global step of a checkpoint fit to resume from; RuntimeError naming `path` if it is unreadable or lacks
    the training state, FloatingPointError if its weights or optimiser state are not finite."""
    state = read_checkpoint(path)
    if not isinstance(state, dict) or not isinstance(state.get("global_step"), int):
        raise RuntimeError(f"checkpoint {path} holds no training state (no global_step): not a train.py checkpoint")
    check_finite_state(state, path)
    return state["global_step"]


def resume_candidates(run_dir: str | Path) -> list[Path]:
    """Checkpoints a run directory holds: checkpoints/*.ckpt (last, step-interval, best) and Lightning's SLURM
    `hpc_ckpt_*.ckpt` in the run directory, regular files only, in name order."""
    run_dir = Path(run_dir)
    found = [*(run_dir / "checkpoints").glob("*.ckpt"), *run_dir.glob("hpc_ckpt_*.ckpt")]
    return sorted(p for p in found if p.is_file())


def find_resume_checkpoint(run_dir: str | Path) -> Path | None:
    """The valid checkpoint of `run_dir` with the highest global step (on a tie last.ckpt, then the newest file), or
    None if it holds none (a fresh start).

    Every candidate is read as data (`weights_only=True`), so a planted file runs no code. A corrupt or non-finite
    file is reported (warning naming it) and skipped; if checkpoints exist but none is valid, RuntimeError naming
    them: never a silent restart from scratch.
    """
    ranked, errors = [], []
    for path in resume_candidates(run_dir):
        try:
            step = check_checkpoint(path)
        except (RuntimeError, FloatingPointError) as err:
            errors.append(str(err))
            log.warning("%s; not resuming from it", err)
            continue
        ranked.append(((step, path.name == "last.ckpt", path.stat().st_mtime_ns), path))
    if ranked:
        return max(ranked, key=lambda item: item[0])[1]
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
