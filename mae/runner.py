"""What `train.py` does once Hydra has composed the config: validate, build, fit, evaluate, report."""
from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from mae.config_check import validate
from mae.eval import format_summary
from mae.eval.encoders import evaluate_module

log = logging.getLogger(__name__)


def write_json_atomic(obj: dict, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    os.replace(tmp, path)


def build(cfg: DictConfig) -> tuple[L.LightningDataModule, L.LightningModule, L.Trainer]:
    """Instantiate datamodule, module and trainer (with callbacks and loggers) from the config."""
    datamodule = instantiate(cfg.data)
    module = instantiate(cfg.module)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    return datamodule, module, trainer


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
    L.seed_everything(cfg.seed, workers=True)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    datamodule, module, trainer = build(cfg)
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = scalar_metrics(trainer)
    metrics["train/epochs"] = float(trainer.current_epoch)
    metrics["train/steps"] = float(trainer.global_step)
    metrics["train/fit_seconds"] = time.perf_counter() - start
    if module.resolved_lr is not None:
        metrics["optim/lr"] = module.resolved_lr
        metrics["optim/effective_batch"] = float(module.effective_batch())
    if not trainer.is_global_zero:
        return metrics
    if cfg.eval.enabled and (getattr(datamodule, "has_labels", False) or hasattr(datamodule, "evaluate_frozen")):
        start = time.perf_counter()
        metrics |= evaluate_module(
            module, datamodule, k=cfg.eval.knn_k, temperature=cfg.eval.knn_temperature,
            random_init=cfg.eval.random_init, max_samples=cfg.eval.max_samples, seed=cfg.seed,
        )
        metrics["eval/seconds"] = time.perf_counter() - start
    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
    if bad:
        log.warning("non-finite metrics: %s", bad)
    write_json_atomic(metrics, run_dir / "metrics.json")
    print("\n" + format_summary(metrics))
    print(f"\nrun directory: {run_dir.resolve()}\n  metrics.json, checkpoints/, reconstructions/, csv/metrics.csv")
    return metrics


def objective_value(metrics: dict[str, float], objective: str) -> float:
    """The number a Hydra sweeper optimises; a clear error if the run did not produce it."""
    if objective not in metrics:
        raise KeyError(f"objective {objective!r} is not among the run's metrics: {sorted(metrics)}")
    return metrics[objective]
