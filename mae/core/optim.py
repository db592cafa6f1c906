"""Optimisation recipe of MAE: param groups without decay on norms/biases/embeddings, lr scaled by
the effective batch, linear warmup then half-cycle cosine, all per optimiser step."""
from __future__ import annotations

import math

from torch import nn

from mae.core.interfaces import MAEDecoder, MAEEncoder


def param_groups(module: nn.Module, *, weight_decay: float) -> list[dict]:
    """Two groups: decayed weights, and no decay for 1-D params (norms, biases) and tokens/embeddings
    named by an encoder's / decoder's `no_weight_decay()` (cls/mask tokens)."""
    skip: set[str] = set()
    for prefix, sub in module.named_modules():
        if isinstance(sub, (MAEEncoder, MAEDecoder)):
            skip |= {f"{prefix}.{name}" if prefix else name for name in sub.no_weight_decay()}
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 or name in skip else decay).append(param)
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
