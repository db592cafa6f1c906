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
from omegaconf import DictConfig, OmegaConf, open_dict

from datamodules.base import SplitDataModule
from mae.core.module import MAEModule
from mae.eval import format_summary
from mae.eval.protocol import EvalProtocol
from mae.train.checkpoints import check_checkpoint, find_resume_checkpoint, resume_candidates
from mae.train.config_check import validate
from mae.train.distributed import count_devices, describe, lr_rule, resolve_batch
from mae.train.preemption import Preempted, PreemptionCheckpoint
from mae.train.rundir import (
    RunDirLock,
    drop_rows_from_step,
    recent_run_dirs,
    save_run_config,
    set_aside_previous_logs,
    timestamped_run_dir_for_auto_resume,
)
from mae.train.skips import skipped_files_metrics
from mae.train.sweep import check_sweeper_direction

log = logging.getLogger(__name__)


def write_json_atomic(obj: dict, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    os.replace(tmp, path)


def build(cfg: DictConfig, datamodule: SplitDataModule) -> tuple[MAEModule, L.Trainer, EvalProtocol]:
    """Instantiate module, trainer (with callbacks and loggers) and evaluation protocol from the config; the protocol
    checks at once that it can evaluate this data."""
    module: MAEModule = instantiate(cfg.module)
    evaluation: EvalProtocol = instantiate(cfg.eval)
    evaluation.check(datamodule, objective=cfg.objective)
    return module, build_trainer(cfg), evaluation


def build_trainer(cfg: DictConfig) -> L.Trainer:
    """The Lightning trainer of cfg.trainer with the configured callbacks, loggers and plugins (SLURM ranks)."""
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    plugins = [instantiate(p) for p in (cfg.trainer.get("plugins") or [])]
    if SLURMEnvironment.detect():
        # Ranks from SLURM (one task per GPU); requeue is done by mae.train.preemption.PreemptionCheckpoint, which saves
        # between steps, instead of Lightning's handler, which saves from inside the signal handler.
        plugins.append(SLURMEnvironment(auto_requeue=False))
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=plugins or None)


def adapt_to_data(cfg: DictConfig, datamodule: SplitDataModule, run_dir: Path) -> None:
    """What only the data can say, written into cfg.data before the model and the optimisation are resolved: options
    the data decides (the graph feature width) and, when the train split holds less than one batch per rank, a
    lowered data.batch_size (printed; the lr then follows the rule from the new effective batch)."""
    changed = dict(datamodule.inferred_options())
    world = count_devices(cfg.trainer.get("devices", "auto"), cfg.trainer.get("accelerator", "auto")) * int(
        cfg.trainer.get("num_nodes", 1))
    asked = int(cfg.data.batch_size)
    batch = datamodule.fit_batch_to_split(world)
    if batch != asked:
        if cfg.optim.get("effective_batch_size") is not None:
            raise ValueError(f"the train split holds {datamodule.num_train} {datamodule.unit} ({world} rank(s)): fewer "
                             f"than one data.batch_size={asked} per rank, and optim.effective_batch_size="
                             f"{cfg.optim.effective_batch_size} is fixed; lower both")
        changed["batch_size"] = batch
        if rank_zero_only.rank == 0:
            rule = "optim.lr (absolute)" if cfg.optim.get("lr") is not None else lr_rule(
                cfg.optim.get("lr_batch_divisor", 1))
            print(f"note: data.batch_size {asked} -> {batch}: the train split holds {datamodule.num_train} "
                  f"{datamodule.unit} ({world} rank(s)), fewer than one batch per rank; the lr follows {rule}",
                  flush=True)
    if not changed:
        return
    with open_dict(cfg.data):
        for key, value in changed.items():
            cfg.data[key] = value
    if rank_zero_only.rank == 0:
        save_run_config(cfg, run_dir)  # load_run_module rebuilds the model from it


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
        if found is None and timestamped_run_dir_for_auto_resume():
            recent = "; ".join(str(p) for p in recent_run_dirs(Path("outputs"))) or "none under outputs/"
            raise ValueError(f"resume=auto needs the directory of the run to continue: without hydra.run.dir each call "
                             f"gets a new timestamped directory ({cfg.run_dir}), which holds nothing to resume. Add "
                             f"hydra.run.dir=DIR (recent run directories with checkpoints: {recent})")
        log.info("resume=auto: %s", f"resuming from {found}" if found else "no checkpoint yet, starting fresh")
        return None if found is None else str(found)
    return ckpt_path


def prepare_run_dir(run_dir: Path, ckpt_path: str | None) -> None:
    """Rank 0, under the lock: a fresh start refuses a directory that holds an earlier run's checkpoints (never
    overwrite work) and moves an earlier run's logs aside; a resume drops the CSV rows logged after its checkpoint."""
    if ckpt_path is None:
        earlier = resume_candidates(run_dir)
        if earlier:
            raise ValueError(f"{run_dir} holds the checkpoints of an earlier run ({', '.join(p.name for p in earlier)}):"
                             " continue it with resume=auto, or start elsewhere with another hydra.run.dir")
        set_aside_previous_logs(run_dir)
        return
    step = check_checkpoint(ckpt_path)
    dropped = drop_rows_from_step(run_dir / "csv" / "metrics.csv", step)
    if dropped:
        log.info("resume from step %d: dropped %d csv rows logged after it (they are logged again)", step, dropped)


def resolve_optimisation(cfg: DictConfig, run_dir: Path) -> dict:
    """Effective batch -> accumulation (written into cfg.trainer), printed and saved as run_dir/resolved.yaml."""
    resolved = describe(resolve_batch(cfg), blr=float(cfg.optim.blr), lr=cfg.optim.get("lr"),
                        lr_batch_divisor=cfg.optim.get("lr_batch_divisor", 1))
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
    """Fit and evaluate one configuration; writes <run_dir>/metrics.json and returns its content. The run directory
    is locked for the whole run (rank 0; a second run there fails at once naming the holder)."""
    validate(cfg)
    check_sweeper_direction(cfg.objective)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if rank_zero_only.rank != 0:
        return fit_and_evaluate(cfg, run_dir)
    with RunDirLock(run_dir):
        return fit_and_evaluate(cfg, run_dir)


def fit_and_evaluate(cfg: DictConfig, run_dir: Path) -> dict[str, float]:
    if cfg.stage != "pretrain":
        from mae.finetune.runner import run_finetune  # stage=finetune|linprobe

        return run_finetune(cfg, run_dir)
    L.seed_everything(cfg.seed, workers=True)
    ckpt_path = resolve_resume(cfg)
    if rank_zero_only.rank == 0:
        prepare_run_dir(run_dir, ckpt_path)
    datamodule: SplitDataModule = instantiate(cfg.data)
    adapt_to_data(cfg, datamodule, run_dir)
    resolve_optimisation(cfg, run_dir)
    module, trainer, evaluation = build(cfg, datamodule)
    start = time.perf_counter()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    except Preempted:
        pass  # the checkpoint is written; reported below
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
    metrics |= skipped_files_metrics(trainer.callbacks)  # data/skipped*: every worker's and rank's skipped files
    write_json_atomic(metrics, run_dir / "metrics.json")
    print("\n" + format_summary(metrics))
    print(f"\nrun directory: {run_dir.resolve()}\n  metrics.json, checkpoints/, reconstructions/, csv/metrics.csv")
    return metrics


def objective_value(metrics: dict[str, float], objective: str) -> float:
    """The number a Hydra sweeper optimises. Ranks other than 0 (which do not evaluate) and runs stopped by a signal
    return NaN. The start-up checks (`mae.train.config_objective`, `EvalProtocol.check`) refuse every objective a
    run can be known not to produce; one still missing after the work is done gives NaN (an Optuna trial marked
    failed) and a warning naming the metrics there are, never an exit 1 after training: metrics.json is written."""
    if metrics.get("train/rank", 0.0) > 0 or metrics.get("train/preempted"):
        return float("nan")
    if objective not in metrics:
        log.warning("objective=%s is not among the run's metrics (returning NaN); metrics.json holds: %s",
                    objective, ", ".join(sorted(metrics)))
        return float("nan")
    return metrics[objective]
