"""Positional embeddings computed from token coordinates.

`SinCosPosEmbed` is the fixed sin-cos embedding of MAE, generalised from 2-D grids to any number of
coordinate axes: the width is split evenly across axes, the *last* axis first (for an image (row, col)
this is exactly MAE's `get_2d_sincos_pos_embed` layout: first half from the column, second from the row).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def sincos_1d(pos: Tensor, dim: int, *, temperature: float = 10000.0) -> Tensor:
    """pos: (...,) -> (..., dim) as [sin(pos * w), cos(pos * w)], w_i = 1 / T^(i / (dim/2))."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding width must be even, got {dim}")
    omega = torch.arange(dim // 2, device=pos.device, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / temperature**omega  # (dim/2,)
    angles = pos.to(torch.float64)[..., None] * omega  # (..., dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=-1).float()


def sincos_embed(pos: Tensor, dim: int) -> Tensor:
    """pos: (B, N, P) coordinates -> (B, N, dim). Zero-pads when dim is not a multiple of 2P."""
    p = pos.shape[-1]
    per_axis = (dim // p) // 2 * 2
    parts = [sincos_1d(pos[..., axis], per_axis) for axis in reversed(range(p))]
    out = torch.cat(parts, dim=-1)  # (B, N, p * per_axis)
    if out.shape[-1] < dim:
        out = nn.functional.pad(out, (0, dim - out.shape[-1]))
    return out


class SinCosPosEmbed(nn.Module):
    """Fixed (not learned) sin-cos embedding of grid coordinates: (B, N, P) -> (B, N, dim)."""

    def __init__(self, *, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, pos: Tensor) -> Tensor:
        return sincos_embed(pos, self.dim)


class MLPPosEmbed(nn.Module):
    """Learned embedding of continuous coordinates (point-cloud centres): Linear -> GELU -> Linear, as
    Point-MAE's `pos_embed` (3 -> 128 -> dim). (B, N, in_dim) -> (B, N, dim)."""

    def __init__(self, *, dim: int, in_dim: int = 3, hidden: int = 128) -> None:
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, pos: Tensor) -> Tensor:
        return self.mlp(pos.float())
