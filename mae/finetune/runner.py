"""`stage=finetune|linprobe`: load the pretrained encoder, train the task head (and the encoder), test, report.

Phases: the pretrained encoder in the run directory, then, with `finetune.scratch_baseline=true`, the identical
recipe from a random initialisation in RUN/scratch/. Each phase is a fit of its own (checkpoints, CSV logs,
`resume=auto`) and writes phase_metrics.json when done; `resume=auto` skips finished phases and continues the one in
progress from its newest checkpoint. metrics.json holds `finetune/<metric>` and `finetune/<metric>_scratch`.
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from datamodules.base import Labelled, SplitDataModule
from mae.finetune.labels import apply_label_fraction, check_labels
from mae.finetune.module import FinetuneModule
from mae.finetune.report import SCRATCH_SUFFIX, format_finetune_summary
from mae.finetune.source import Pretrained, apply_architecture, build_encoder, resolve_pretrained
from mae.finetune.tasks import Classification, Task
from mae.train.preemption import Preempted, PreemptionCheckpoint
from mae.train.runner import (
    adapt_to_data,
    build_trainer,
    prepare_run_dir,
    resolve_optimisation,
    resolve_resume,
    write_json_atomic,
)
from mae.train.skips import skipped_files_metrics

log = logging.getLogger(__name__)
PHASE_METRICS = "phase_metrics.json"


class PhaseStopped(Exception):
    """A phase ended by a preemption signal (its checkpoint is saved): the stage stops there."""


def apply_linprobe(cfg: DictConfig) -> None:
    """stage=linprobe: the modality's `linprobe` block replaces the keys of its fine-tuning protocol it names (each
    whole: a head or task node is not merged into the fine-tuning one; optim key by key, its optimizer node whole)."""
    block = cfg.get("linprobe")
    if block is None:
        raise ValueError("stage=linprobe: this modality has no linear-probe protocol (conf/linprobe/<modality>.yaml)")
    with open_dict(cfg):
        for key, value in block.items():
            if key == "optim":
                for name, option in value.items():
                    cfg.finetune.optim[name] = option
            else:
                cfg.finetune[key] = value


def stage_config(cfg: DictConfig) -> None:
    """The fine-tuning options take the places the shared run machinery reads: cfg.optim (lr rule, effective
    batch), cfg.trainer.max_epochs, cfg.data.batch_size; and the checkpoint monitors the task's metric."""
    if cfg.stage == "linprobe":
        apply_linprobe(cfg)
    ft = cfg.finetune
    with open_dict(cfg):
        cfg.optim = ft.optim
        cfg.trainer.max_epochs = ft.epochs
        if ft.get("batch_size") is not None:
            cfg.data.batch_size = ft.batch_size
        for key, value in (ft.get("data") or {}).items():
            cfg.data[key] = value
        if cfg.get("callbacks") is not None and "reconstruction" in cfg.callbacks:
            cfg.callbacks.reconstruction = None  # nothing is reconstructed (debug=fast may have re-set its cadence)
        checkpoint = (cfg.get("callbacks") or {}).get("checkpoint")
        if checkpoint is not None:
            task_cls = instantiate(ft.task, _partial_=True).func
            checkpoint.monitor = f"val/{task_cls.monitor}"
            checkpoint.mode = task_cls.monitor_mode


def phase_config(cfg: DictConfig, run_dir: Path) -> DictConfig:
    """A copy of cfg whose run_dir (checkpoints, logs, figures) is `run_dir`."""
    out = cfg.copy()
    with open_dict(out):
        out.run_dir = str(run_dir)
    return out


def build_module(cfg: DictConfig, datamodule: SplitDataModule, source: Pretrained | None, run_dir: Path,
                 *, stage: str) -> FinetuneModule:
    ft = cfg.finetune
    tokenizer = instantiate(cfg.tokenizer)
    task: Task = instantiate(ft.task)
    task.setup(num_classes=datamodule.num_classes)
    if isinstance(task, Classification) and isinstance(datamodule.train_set, Labelled):
        check_labels(datamodule)
    encoder = build_encoder(cfg, tokenizer, source, drop_path=float(ft.drop_path), pos_embed=ft.pos_embed,
                            reset_norm=bool(ft.reset_norm))
    optim = cfg.optim
    return FinetuneModule(
        tokenizer=tokenizer, encoder=encoder, head_factory=instantiate(ft.head), task=task,
        optimizer=instantiate(optim.optimizer), lars=bool(ft.lars), batch_size=int(cfg.data.batch_size),
        blr=float(optim.blr), lr=optim.get("lr"), weight_decay=float(optim.weight_decay),
        layer_decay=float(ft.layer_decay), warmup_epochs=float(optim.warmup_epochs), min_lr=float(optim.min_lr),
        mixup=instantiate(ft.mixup) if ft.get("mixup") is not None else None,
        token_drop=instantiate(ft.token_drop) if ft.get("token_drop") is not None else None,
        freeze_encoder=stage == "linprobe", seed=int(cfg.seed), classes=datamodule.classes, figure_dir=run_dir,
        freeze_epochs=int(ft.freeze_epochs))


def run_phase(cfg: DictConfig, run_dir: Path, source: Pretrained | None, *, suffix: str) -> dict[str, float]:
    """Fit and test one phase in `run_dir`; returns its metrics (keys finetune/<m>{suffix}, ...)."""
    done = run_dir / PHASE_METRICS
    if cfg.get("resume") == "auto" and done.is_file():
        log.info("resume=auto: phase %s already finished (%s)", suffix or "pretrained", done)
        return json.loads(done.read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = phase_config(cfg, run_dir)
    L.seed_everything(cfg.seed, workers=True)
    ckpt_path = resolve_resume(cfg)
    if rank_zero_only.rank == 0:
        prepare_run_dir(run_dir, ckpt_path)
    datamodule: SplitDataModule = instantiate(cfg.data)
    label_note = apply_label_fraction(datamodule, fraction=float(cfg.finetune.label_fraction), seed=int(cfg.seed))
    adapt_to_data(cfg, datamodule, run_dir)
    resolve_optimisation(cfg, run_dir)
    module = build_module(cfg, datamodule, source, run_dir, stage=cfg.stage)
    trainer = build_trainer(cfg)
    start = time.perf_counter()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    except Preempted:
        pass
    fit_seconds = time.perf_counter() - start
    preempted = [c for c in trainer.callbacks if isinstance(c, PreemptionCheckpoint) and c.stopped_at_step is not None]
    if preempted:
        raise PhaseStopped(f"stopped by {preempted[0].received.name} at step {preempted[0].stopped_at_step}: checkpoint saved in {run_dir}; continue "
                        f"with the same overrides and resume=auto hydra.run.dir=...")
    tested = trainer.test(module, dataloaders=datamodule.test_dataloader(), verbose=False)[0]
    metrics = {f"finetune/{k.removeprefix('test/')}{suffix}": float(v) for k, v in tested.items()}
    metrics[f"finetune/fit_seconds{suffix}"] = fit_seconds
    metrics[f"finetune/epochs{suffix}"] = float(trainer.current_epoch)
    metrics[f"finetune/steps{suffix}"] = float(trainer.global_step)
    metrics[f"finetune/train_samples{suffix}"] = float(datamodule.num_train)
    if suffix == "":
        metrics["finetune/label_fraction"] = float(cfg.finetune.label_fraction)
        metrics["optim/lr"] = float(module.resolved_lr)
        metrics["optim/effective_batch"] = float(module.effective_batch())
    metrics |= skipped_files_metrics(trainer.callbacks)
    if label_note and trainer.is_global_zero:
        print(label_note, flush=True)
    if trainer.is_global_zero:
        write_json_atomic(metrics, done)
    return metrics


def run_finetune(cfg: DictConfig, run_dir: Path) -> dict[str, float]:
    """The stage's whole run (module docstring); writes RUN/metrics.json and prints the summary."""
    if cfg.stage not in ("finetune", "linprobe"):
        raise ValueError(f"stage must be pretrain, finetune or linprobe, got {cfg.stage!r}")
    if cfg.get("finetune") is None:
        raise ValueError(f"stage={cfg.stage}: this modality has no fine-tuning protocol (conf/finetune/<modality>.yaml)")
    source = resolve_pretrained(cfg.get("pretrained"))
    apply_architecture(cfg, source)
    stage_config(cfg)
    if rank_zero_only.rank == 0:
        OmegaConf.save(cfg, run_dir / "finetune_config.yaml")  # the architecture taken from the source, resolved here
        print(f"{cfg.stage}: encoder from {source.description}", flush=True)
    try:
        metrics = run_phase(cfg, run_dir, source, suffix="")
        if cfg.finetune.scratch_baseline:
            metrics |= run_phase(cfg, run_dir / "scratch", None, suffix=SCRATCH_SUFFIX)
    except PhaseStopped as stop:
        if rank_zero_only.rank == 0:
            print(f"\n{stop}", flush=True)
        return {"train/preempted": 1.0}
    metrics["train/rank"] = float(rank_zero_only.rank)
    if rank_zero_only.rank != 0:
        return metrics
    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
    if bad:
        log.warning("non-finite metrics: %s", bad)
    write_json_atomic(metrics, run_dir / "metrics.json")
    print("\n" + format_finetune_summary(metrics))
    print(f"\nrun directory: {run_dir.resolve()}\n  metrics.json, checkpoints/, the task's pictures, csv/metrics.csv"
          + (", scratch/ (the from-scratch baseline)" if cfg.finetune.scratch_baseline else ""))
    return metrics
