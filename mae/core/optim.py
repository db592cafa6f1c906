"""Optimisation recipe of MAE: param groups without decay on norms/biases/embeddings, lr scaled by
the effective batch, linear warmup then half-cycle cosine, all per optimiser step."""
from __future__ import annotations

import math
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from mae.core.interfaces import MAEDecoder, MAEEncoder


def param_groups(module: nn.Module, *, weight_decay: float, decay_tokens: bool = False) -> list[dict]:
    """Two groups: decayed weights, and no decay for 1-D params and biases (norms, biases) and, unless
    `decay_tokens`, the tokens/embeddings named by an encoder's / decoder's `no_weight_decay()` (cls/mask tokens).

    decay_tokens=True is MAE's pre-training rule: main_pretrain.py `optim_factory.add_weight_decay(model_without_ddp,
    args.weight_decay)` (timm 0.3.2; `param_groups_weight_decay` in later timm) with no skip list, i.e. no decay on
    `param.ndim <= 1 or name.endswith(".bias")` only, so cls_token and mask_token ARE decayed (MAE's pos_embed is
    a fixed buffer, requires_grad=False). False (the default) exempts the `no_weight_decay()` names as well, as
    VideoMAE's modeling_pretrain.py `no_weight_decay()` {'pos_embed', 'cls_token', 'mask_token'} does."""
    skip: set[str] = set()
    for prefix, sub in module.named_modules():
        if isinstance(sub, (MAEEncoder, MAEDecoder)) and not decay_tokens:
            skip |= {f"{prefix}.{name}" if prefix else name for name in sub.no_weight_decay()}
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 or name.endswith(".bias") or name in skip else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def resolve_lr(*, blr: float, lr: float | None, effective_batch: int) -> float:
    """The peak learning rate, the one rule of every run: an absolute `lr` if given, else MAE's linear scaling
    rule lr = blr * effective_batch / 256. Raises ValueError unless the result is a finite number > 0."""
    peak = lr if lr is not None else blr * effective_batch / 256
    if isinstance(peak, bool) or not isinstance(peak, (int, float)) or not (math.isfinite(peak) and peak > 0):
        rule = f"optim.blr={blr!r} x effective batch {effective_batch} / 256"
        source = f"optim.lr={lr!r}" if lr is not None else rule
        raise ValueError(f"the peak learning rate must be a number > 0, got {peak!r} from {source}: set optim.blr > 0 "
                         "and optim.lr to null (the scaling rule) or a number > 0")
    return peak


def warmup_cosine(step: int, *, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Multiplier of the peak lr at optimiser step `step`: linear warmup, then cosine to min_ratio."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def schedule_steps(*, warmup_epochs: float, steps_per_epoch: int | float, total_steps: int | float) -> tuple[int, int]:
    """(warm-up steps, total steps) in optimiser steps, MAE's per-iteration schedule (util/lr_sched.py, called
    with epoch = data_iter_step / len(data_loader) + epoch) on the run that really happens: warm-up lasts
    `warmup_epochs` epochs of `steps_per_epoch` optimiser steps, the cosine ends at `total_steps`, the steps the
    run will take (a `max_steps` that cuts the run short, or a step-only run with max_epochs=-1, shortens the
    cosine, never the warm-up). A warm-up as long as the run or longer ramps the lr for the whole run, as MAE's
    function would (2-epoch smoke runs with the default warm-up of 2 do this), with a warning naming the keys."""
    if not math.isfinite(total_steps):
        raise ValueError(f"the run's length in optimiser steps is {total_steps}: set trainer.max_epochs or "
                         "trainer.max_steps (the cosine schedule needs an end)")
    total = max(1, int(total_steps))  # trainer.max_steps=0 (evaluate the untrained encoder) takes no step at all
    if warmup_epochs == 0 or total_steps < 1:
        return 0, total
    if not math.isfinite(steps_per_epoch) or steps_per_epoch < 1:
        raise ValueError(f"optim.warmup_epochs={warmup_epochs} needs the length of an epoch, and the train dataloader "
                         f"has {steps_per_epoch} batches: use a sized dataset or optim.warmup_epochs=0")
    warmup = int(round(warmup_epochs * steps_per_epoch))
    if warmup >= total:
        rank_zero_warn(f"optim.warmup_epochs={warmup_epochs} is {warmup} optimiser steps ({steps_per_epoch} per epoch), "
                       f"not fewer than the run's {total} (trainer.max_epochs / trainer.max_steps): the lr ramps up "
                       "for the whole run and never reaches its peak; lower optim.warmup_epochs or lengthen the run")
    return warmup, total


SCHEDULES = ("warmup_cosine", "one_cycle")  # optim.schedule


def one_cycle(optimizer: torch.optim.Optimizer, *, total_steps: int) -> torch.optim.lr_scheduler.OneCycleLR:
    """PatchTST's schedule (PatchTST_self_supervised/src/learner.py fit_one_cycle -> src/callback/scheduler.py
    OneCycleLR: torch's OneCycleLR with pct_start 0.3, cos annealing, beta1 cycled 0.95 -> 0.85 -> 0.95, div_factor 25,
    final_div_factor 1e4), over the optimiser steps the run really takes; each group peaks at its own lr."""
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[group["lr"] for group in optimizer.param_groups], total_steps=total_steps, pct_start=0.3,
        anneal_strategy="cos", cycle_momentum=True, base_momentum=0.85, max_momentum=0.95, div_factor=25.0,
        final_div_factor=1e4)


def check_schedule(schedule: str, *, warmup_epochs: float, min_lr: float) -> None:
    """optim.schedule is one of SCHEDULES; one_cycle has its own warm-up (30 %) and end (lr / 25 / 1e4)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"optim.schedule must be one of {list(SCHEDULES)}, got {schedule!r}")
    if schedule == "one_cycle" and (warmup_epochs != 0 or min_lr != 0):
        raise ValueError("optim.schedule=one_cycle warms up over 30 % of the run and ends at lr / 25 / 1e4 by itself: "
                         f"set optim.warmup_epochs=0 and optim.min_lr=0 (got {warmup_epochs} and {min_lr})")


def warmup_cosine_schedule(optimizer: torch.optim.Optimizer, trainer: Any, *, warmup_epochs: float, peak_lr: float,
                           min_lr: float, schedule: str = "warmup_cosine") -> dict:
    """The one lr schedule of pre-training and fine-tuning: Lightning's `lr_scheduler` dict (interval "step") of
    `warmup_cosine` over the optimiser steps `trainer` will really take (`estimated_stepping_batches` accounts for
    max_steps, max_epochs, accumulate_grad_batches and DDP; an epoch is ceil(train batches / accumulation)
    steps). LambdaLR scales each group's own lr, so layer-decay `lr_scale`s are kept. schedule="one_cycle": PatchTST's
    OneCycleLR over the same steps instead (`one_cycle`)."""
    check_schedule(schedule, warmup_epochs=warmup_epochs, min_lr=min_lr)
    total = trainer.estimated_stepping_batches
    if schedule == "one_cycle":
        _, steps = schedule_steps(warmup_epochs=0, steps_per_epoch=1, total_steps=total)
        return {"scheduler": one_cycle(optimizer, total_steps=steps), "interval": "step"}
    if trainer.train_dataloader is None:  # max_epochs=-1: Lightning did not load the data to estimate
        trainer.fit_loop.setup_data()
    steps_per_epoch = math.ceil(trainer.num_training_batches / trainer.accumulate_grad_batches)
    warmup, total = schedule_steps(warmup_epochs=warmup_epochs, steps_per_epoch=steps_per_epoch, total_steps=total)
    min_ratio = min_lr / peak_lr if peak_lr > 0 else 0.0
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, warmup_steps=warmup, total_steps=total, min_ratio=min_ratio))
    return {"scheduler": schedule, "interval": "step"}
