"""Point-cloud operations in plain torch, batched and on the tensor's device: farthest point sampling,
k nearest neighbours, and Point-MAE grouping (FPS centres + kNN groups relative to their centre).

PyG's `fps`/`knn` need compiled extras; these need nothing. FPS is deterministic: it starts from point
0 (as pointnet2_ops' `furthest_point_sample`, which Point-MAE uses) unless a start index is given.
"""
from __future__ import annotations

import torch
from torch import Tensor


def fps(points: Tensor, num: int, *, start: Tensor | None = None) -> Tensor:
    """Farthest point sampling. points: (B, N, 3) -> (B, num) indices.

    Greedy max-min: each new index is the point farthest from all points chosen so far (ties -> lowest
    index). start: (B,) first indices, default 0. One vectorised step per sample point (num steps).
    """
    b, n, _ = points.shape
    if not 1 <= num <= n:
        raise ValueError(f"fps: cannot pick {num} points out of {n}")
    idx = torch.empty(b, num, dtype=torch.long, device=points.device)
    current = torch.zeros(b, dtype=torch.long, device=points.device) if start is None else start.long()
    dist = torch.full((b, n), float("inf"), device=points.device, dtype=points.dtype)  # (B, N)
    batch = torch.arange(b, device=points.device)
    for i in range(num):
        idx[:, i] = current
        chosen = points[batch, current].unsqueeze(1)  # (B, 1, 3)
        dist = torch.minimum(dist, (points - chosen).pow(2).sum(-1))  # (B, N) squared distance to the set
        current = dist.argmax(dim=1)  # (B,)
    return idx


def knn(query: Tensor, points: Tensor, k: int) -> Tensor:
    """k nearest neighbours. query: (B, G, 3), points: (B, N, 3) -> (B, G, k) indices into points,
    nearest first (squared Euclidean distance; a query that is a point of the cloud finds itself first)."""
    if not 1 <= k <= points.shape[1]:
        raise ValueError(f"knn: k={k} must be in [1, {points.shape[1]}]")
    d = torch.cdist(query.float(), points.float(), compute_mode="donot_use_mm_for_euclid_dist").pow(2)  # (B, G, N), exact
    return d.topk(k, dim=-1, largest=False, sorted=True).indices


def gather_points(points: Tensor, index: Tensor) -> Tensor:
    """points: (B, N, C), index: (B, ...) -> (B, ..., C)."""
    b, c = points.shape[0], points.shape[-1]
    flat = index.reshape(b, -1)  # (B, L)
    out = torch.gather(points, 1, flat.unsqueeze(-1).expand(-1, -1, c))  # (B, L, C)
    return out.reshape(*index.shape, c)


def group_points(points: Tensor, num_groups: int, group_size: int) -> tuple[Tensor, Tensor]:
    """Point-MAE grouping. points: (B, N, 3) -> (neighbourhoods (B, G, k, 3) relative to their centre,
    centres (B, G, 3)) with G = num_groups FPS centres and k = group_size nearest neighbours each."""
    centres = gather_points(points, fps(points, num_groups))  # (B, G, 3)
    neighbours = gather_points(points, knn(centres, points, group_size))  # (B, G, k, 3)
    return neighbours - centres.unsqueeze(2), centres
