"""RankMe (Garrido et al., 2023): the effective rank of an embedding matrix, a label-free quality signal."""
from __future__ import annotations

import torch
from torch import Tensor

from mae.eval.features import check_features


def rankme(x: Tensor, *, eps: float = 1e-7) -> float:
    """exp(entropy) of the normalised singular values of the (N, D) matrix `x`.

    s = singular values of x (computed in float64), p = s / sum(s) + eps, rank = exp(-sum p log p).
    The features are not centred (as in the paper). The result lies in [1, min(N, D)]; a zero matrix
    (fully collapsed) gives 1.
    """
    check_features(x, name="x")
    s = torch.linalg.svdvals(x.detach().double())  # (min(N, D),)
    total = s.sum()
    if total <= 0:
        return 1.0
    p = s / total + eps  # (min(N, D),)
    rank = torch.exp(-(p * p.log()).sum()).item()
    return float(min(max(rank, 1.0), float(s.numel())))
