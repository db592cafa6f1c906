"""Train-time augmentation of point clouds (Point-MAE's PointcloudScaleAndTranslate, plus optional rotation
about the up axis and jitter)."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


class PointAugment:
    """Train-time augmentation of a (P, 3) cloud under the torch RNG: random per-axis scale in `scale`,
    rotation about `up_axis` by a uniform angle (if rotate), translation uniform in +-translate, and
    Gaussian jitter (std `jitter`, clipped at 5x). Point-MAE pre-training uses scale [2/3, 3/2] + translate 0.2."""

    def __init__(self, *, scale: Sequence[float], translate: float, rotate: bool, jitter: float, up_axis: int) -> None:
        self.scale, self.translate, self.rotate, self.jitter, self.up_axis = scale, translate, rotate, jitter, up_axis

    def __call__(self, x: Tensor) -> Tensor:
        lo, hi = self.scale
        x = x * (lo + (hi - lo) * torch.rand(3))
        if self.rotate:
            angle = 2 * math.pi * torch.rand(()).item()
            c, s = math.cos(angle), math.sin(angle)
            a, b = [i for i in range(3) if i != self.up_axis]
            rot = torch.eye(3)
            rot[a, a], rot[a, b], rot[b, a], rot[b, b] = c, -s, s, c
            x = x @ rot.T
        x = x + (torch.rand(3) * 2 - 1) * self.translate
        if self.jitter > 0:
            x = x + (self.jitter * torch.randn_like(x)).clamp(-5 * self.jitter, 5 * self.jitter)
        return x
