"""What `train.py` does once Hydra has composed the config: validate, build, fit, evaluate, report."""
from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from mae.core.interfaces import EvalData
from mae.core.module import MAEModule
from mae.eval import format_summary
from mae.eval.protocol import EvalProtocol
from mae.train.checkpoints import find_resume_checkpoint
from mae.train.config_check import validate
from mae.train.distributed import describe, resolve_batch
from mae.train.preemption import PreemptionCheckpoint
from mae.train.sweep import check_sweeper_direction

log = logging.getLogger(__name__)


def write_json_atomic(obj: dict, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    os.replace(tmp, path)


def build(cfg: DictConfig) -> tuple[EvalData, MAEModule, L.Trainer, EvalProtocol]:
    """Instantiate datamodule, module, trainer (with callbacks and loggers) and evaluation protocol from the
    config; the protocol checks at once that it can evaluate this data."""
    datamodule: EvalData = instantiate(cfg.data)
    module: MAEModule = instantiate(cfg.module)
    evaluation: EvalProtocol = instantiate(cfg.eval)
    evaluation.check(datamodule)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    plugins = [instantiate(p) for p in (cfg.trainer.get("plugins") or [])]
    if SLURMEnvironment.detect():
        # Ranks from SLURM (one task per GPU); requeue is done by mae.train.preemption.PreemptionCheckpoint, which saves
        # between steps, instead of Lightning's handler, which saves from inside the signal handler.
        plugins.append(SLURMEnvironment(auto_requeue=False))
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=plugins or None)
    return datamodule, module, trainer, evaluation


def resolve_resume(cfg: DictConfig) -> str | None:
    """The checkpoint to resume from: `ckpt_path` if given, the run directory's newest valid checkpoint with
    `resume=auto` (None when it holds none yet), else None."""
    resume, ckpt_path = cfg.get("resume"), cfg.get("ckpt_path")
    if resume not in (None, "auto"):
        raise ValueError(f"resume must be null or auto, got {resume!r} (a file goes to ckpt_path=...)")
    if resume == "auto" and ckpt_path is not None:
        raise ValueError("set either resume=auto or ckpt_path=FILE, not both")
    if resume == "auto":
        found = find_resume_checkpoint(cfg.run_dir)
        log.info("resume=auto: %s", f"resuming from {found}" if found else "no checkpoint yet, starting fresh")
        return None if found is None else str(found)
    return ckpt_path


def resolve_optimisation(cfg: DictConfig, run_dir: Path) -> dict:
    """Effective batch -> accumulation (written into cfg.trainer), printed and saved as run_dir/resolved.yaml."""
    resolved = describe(resolve_batch(cfg), blr=float(cfg.optim.blr), lr=cfg.optim.get("lr"))
    if rank_zero_only.rank == 0:
        text = OmegaConf.to_yaml(OmegaConf.create({"optim": resolved}))
        tmp = run_dir / ".resolved.yaml.tmp"
        tmp.write_text(text)
        os.replace(tmp, run_dir / "resolved.yaml")
        print("resolved optimisation: " + ", ".join(f"{k}={v}" for k, v in resolved.items()), flush=True)
    return resolved


def scalar_metrics(trainer: L.Trainer) -> dict[str, float]:
    """Last epoch-level values Lightning kept, with `_epoch` suffixes dropped (train/loss_epoch -> train/loss)."""
    out = {}
    for key, value in trainer.callback_metrics.items():
        if key.endswith("_step") or key.startswith("lr-"):  # per-step values and lr live in csv/metrics.csv
            continue
        out[key.removesuffix("_epoch")] = float(value)
    return out


def run(cfg: DictConfig) -> dict[str, float]:
    """Fit and evaluate one configuration; writes <run_dir>/metrics.json and returns its content."""
    validate(cfg)
    check_sweeper_direction(cfg.objective)
    L.seed_everything(cfg.seed, workers=True)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = resolve_resume(cfg)
    resolve_optimisation(cfg, run_dir)
    datamodule, module, trainer, evaluation = build(cfg)
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics = scalar_metrics(trainer)
    metrics["train/epochs"] = float(trainer.current_epoch)
    metrics["train/steps"] = float(trainer.global_step)
    metrics["train/fit_seconds"] = time.perf_counter() - start
    metrics["train/rank"] = float(trainer.global_rank)
    if module.resolved_lr is not None:
        metrics["optim/lr"] = module.resolved_lr
        metrics["optim/effective_batch"] = float(module.effective_batch())
        metrics["optim/accumulate_grad_batches"] = float(trainer.accumulate_grad_batches)
        metrics["optim/world_size"] = float(trainer.world_size)
    preempted = [c for c in trainer.callbacks if isinstance(c, PreemptionCheckpoint) and c.stopped_at_step is not None]
    if preempted:
        metrics["train/preempted"] = 1.0
        if trainer.is_global_zero:
            print(f"\nstopped by {preempted[0].received.name} at step {preempted[0].stopped_at_step}: checkpoint "
                  f"saved; continue with the same overrides and resume=auto hydra.run.dir={run_dir}")
        return metrics
    if not trainer.is_global_zero:
        return metrics
    if evaluation.applies(datamodule):
        start = time.perf_counter()
        metrics |= evaluation(module, datamodule)
        metrics["eval/seconds"] = time.perf_counter() - start
    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
    if bad:
        log.warning("non-finite metrics: %s", bad)
    write_json_atomic(metrics, run_dir / "metrics.json")
    print("\n" + format_summary(metrics))
    print(f"\nrun directory: {run_dir.resolve()}\n  metrics.json, checkpoints/, reconstructions/, csv/metrics.csv")
    return metrics


def objective_value(metrics: dict[str, float], objective: str) -> float:
    """The number a Hydra sweeper optimises; a clear error if the run did not produce it. Ranks other than 0
    (which do not evaluate) and runs stopped by a signal return NaN."""
    if metrics.get("train/rank", 0.0) > 0 or metrics.get("train/preempted"):
        return float("nan")
    if objective not in metrics:
        raise KeyError(f"objective {objective!r} is not among the run's metrics: {sorted(metrics)}")
    return metrics[objective]
