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


def chamfer_distance(a: Tensor, b: Tensor, *, norm: int = 2) -> Tensor:
    """Chamfer distance between point sets a: (..., P, D) and b: (..., Q, D) -> (...,).

    norm=2 (Point-MAE's ChamferDistanceL2): mean squared distance a->b plus mean squared distance b->a.
    norm=1 (ChamferDistanceL1): the average of the two mean (unsquared) Euclidean distances.
    """
    if norm not in (1, 2):
        raise ValueError(f"chamfer norm must be 1 or 2, got {norm}")
    d = (a.float().unsqueeze(-2) - b.float().unsqueeze(-3)).pow(2).sum(-1)  # (..., P, Q) squared
    ab, ba = d.amin(dim=-1), d.amin(dim=-2)  # (..., P), (..., Q)
    if norm == 2:
        return ab.mean(-1) + ba.mean(-1)
    return (ab.clamp_min(1e-12).sqrt().mean(-1) + ba.clamp_min(1e-12).sqrt().mean(-1)) / 2


def masked_chamfer(pred: Tensor, target: Tensor, weight: Tensor | None = None, *, norm: int = 2,
                   point_dim: int = 3) -> Tensor:
    """Point-MAE's loss: Chamfer distance per hidden token between predicted and true point groups.

    pred/target: (B, M, k*point_dim) flattened groups -> scalar mean over hidden tokens (weight as above).
    """
    b, m, c = pred.shape
    per_token = chamfer_distance(pred.reshape(b, m, c // point_dim, point_dim),
                                 target.reshape(b, m, -1, point_dim), norm=norm)  # (B, M)
    return weighted_token_mean(per_token, weight)


def sce_loss(pred: Tensor, target: Tensor, weight: Tensor | None = None, *, alpha: float = 3.0) -> Tensor:
    """GraphMAE's scaled cosine error: mean over hidden tokens of (1 - cos(pred, target))^alpha, alpha >= 1.

    pred/target: (B, M, C); both are L2-normalised per token (eps 1e-12, as F.normalize) before the dot product.
    """
    if alpha < 1:
        raise ValueError(f"loss.alpha must be >= 1 (GraphMAE uses 1-3), got {alpha}")
    cos = (F.normalize(pred.float(), dim=-1) * F.normalize(target.float(), dim=-1)).sum(dim=-1)  # (B, M)
    return weighted_token_mean((1.0 - cos).pow(alpha), weight)
