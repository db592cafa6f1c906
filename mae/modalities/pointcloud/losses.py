"""Point-MAE's Chamfer distance between predicted and true point groups (`loss=chamfer`)."""
from __future__ import annotations

from torch import Tensor

from mae.core.losses import weighted_token_mean


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
