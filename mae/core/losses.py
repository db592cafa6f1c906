"""Reconstruction losses on the hidden tokens only. pred/target: (B, M, C); weight: (B, M) or None."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def weighted_token_mean(per_token: Tensor, weight: Tensor | None) -> Tensor:
    """(B, M) per-token losses -> scalar; weight 0 drops a token (padding)."""
    if weight is None:
        return per_token.mean()
    return (per_token * weight).sum() / weight.sum().clamp_min(1.0)


def masked_mse(pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """MAE's loss: mean squared error per token, averaged over hidden tokens. Without weights every token
    has C values, so the mean of the per-token means is F.mse_loss's mean: one fused kernel each way."""
    if weight is None:
        return F.mse_loss(pred.float(), target.float())
    return weighted_token_mean(F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=-1), weight)


def masked_l1(pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """Mean absolute error per token, averaged over hidden tokens (fused F.l1_loss as above)."""
    if weight is None:
        return F.l1_loss(pred.float(), target.float())
    return weighted_token_mean(F.l1_loss(pred.float(), target.float(), reduction="none").mean(dim=-1), weight)


