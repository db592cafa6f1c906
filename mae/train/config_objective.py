"""Start-up check that the run will produce its `objective` (what train.py returns to Hydra sweepers), for every
case the config alone decides: evaluation switched off, no random-init twin, no training step, no validation.
What depends on the data (labels) is checked by the evaluation protocol once the datamodule is built
(`mae.eval.protocol.EvalProtocol.check`), still before training."""
from __future__ import annotations

from omegaconf import DictConfig

from mae.eval.report import RANDOM_INIT_SUFFIX

ALWAYS = ("train/epochs", "train/steps", "train/fit_seconds", "train/rank")
"""Keys the runner writes whether or not a training step ran."""


def no_training(trainer: DictConfig) -> str | None:
    """The trainer setting that makes fit run no training step (e.g. "trainer.max_steps=0"), or None."""
    for key in ("max_steps", "max_epochs", "limit_train_batches"):
        value = trainer.get(key)
        if value is not None and not isinstance(value, bool) and value == 0:
            return f"trainer.{key}={value}"
    return None


def objective_errors(cfg: DictConfig) -> list[str]:
    """Why `cfg.objective` would be missing from the run's metrics, each with what to set instead."""
    objective: str = cfg.objective
    errors = []
    stage = cfg.get("stage", "pretrain")
    if stage != "pretrain":
        return finetune_objective_errors(cfg, objective, stage)
    if objective.startswith("finetune/"):
        errors.append(f"objective={objective} is a fine-tuning metric, and this run pre-trains (stage=pretrain): set "
                      "stage=finetune pretrained=PATH, or an eval/ objective (eval/linear_acc)")
    if objective.startswith("eval/"):
        if not cfg.eval.get("enabled", True):
            errors.append(f"objective={objective} comes from the evaluation after fit, which eval.enabled=false "
                          "turns off: set objective=val/loss (or objective=train/loss), or eval.enabled=true")
        elif objective.endswith(RANDOM_INIT_SUFFIX) and not cfg.eval.get("random_init", True):
            errors.append(f"objective={objective} is measured on the random-init twin, which eval.random_init=false "
                          f"turns off: set objective={objective.removesuffix(RANDOM_INIT_SUFFIX)} or "
                          "eval.random_init=true")
    elif objective.startswith(("train/", "val/")) and objective not in ALWAYS:
        idle = no_training(cfg.trainer)
        if idle is not None:
            errors.append(f"objective={objective} is logged by training, and {idle} runs no training step: set an "
                          "eval/ metric as the objective (objective=eval/linear_acc scores the untrained encoder; "
                          "eval/rankme needs no labels), or train at least one step")
        elif objective.startswith("val/") and cfg.trainer.get("limit_val_batches") == 0:
            errors.append(f"objective={objective} is logged by validation, which trainer.limit_val_batches=0 turns "
                          "off: set objective=train/loss, or trainer.limit_val_batches > 0")
    return errors


def finetune_objective_errors(cfg: DictConfig, objective: str, stage: str) -> list[str]:
    """A fine-tuning stage reports finetune/<metric> (its test metrics) and val/<metric> per epoch, not eval/."""
    if objective.startswith("eval/"):
        return [f"objective={objective} comes from the frozen-feature evaluation after pre-training; stage={stage} "
                "reports finetune/<metric> (e.g. objective=finetune/top1, finetune/map, finetune/mse)"]
    if objective.startswith("finetune/") and objective.endswith("_scratch") and not (
            cfg.get("finetune") or {}).get("scratch_baseline", False):
        return [f"objective={objective} is measured on the from-scratch baseline, which is off: set "
                "finetune.scratch_baseline=true or objective=" + objective.removesuffix("_scratch")]
    return []
