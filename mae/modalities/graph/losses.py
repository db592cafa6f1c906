"""GraphMAE's scaled cosine error (`loss=sce`)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from mae.core.losses import weighted_token_mean


def sce_loss(pred: Tensor, target: Tensor, weight: Tensor | None = None, *, alpha: float = 3.0) -> Tensor:
    """GraphMAE's scaled cosine error: mean over hidden tokens of (1 - cos(pred, target))^alpha, alpha >= 1.

    pred/target: (B, M, C); both are L2-normalised per token (eps 1e-12, as F.normalize) before the dot product.
    """
    if alpha < 1:
        raise ValueError(f"loss.alpha must be >= 1 (GraphMAE uses 1-3), got {alpha}")
    cos = (F.normalize(pred.float(), dim=-1) * F.normalize(target.float(), dim=-1)).sum(dim=-1)  # (B, M)
    return weighted_token_mean((1.0 - cos).pow(alpha), weight)
