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


class GridTablePosEmbed(nn.Module):
    """A positional table (1, N, D) laid out row-major over `grid` (N = prod(grid)), looked up by the tokens' integer
    grid coordinates: (B|1, K, G) -> (B|1, K, D). trainable: a learned embedding (MAE's fine-tuning, timm's
    `pos_embed` parameter) or a fixed one (VideoMAE's sinusoid table)."""

    def __init__(self, *, table: Tensor, grid: tuple[int, ...], trainable: bool) -> None:
        super().__init__()
        n = 1
        for size in grid:
            n *= size
        if table.ndim != 3 or table.shape[:2] != (1, n):
            raise ValueError(f"a positional table over the grid {tuple(grid)} must be (1, {n}, D), got {tuple(table.shape)}")
        self.grid, self.dim = tuple(int(s) for s in grid), table.shape[-1]
        self.table = nn.Parameter(table.detach().clone().float(), requires_grad=trainable)
        strides = [1] * len(grid)
        for axis in range(len(grid) - 2, -1, -1):
            strides[axis] = strides[axis + 1] * grid[axis + 1]
        self.register_buffer("strides", torch.tensor(strides, dtype=torch.float32), persistent=False)

    def forward(self, pos: Tensor) -> Tensor:
        index = (pos.float() * self.strides).sum(-1).round().long()  # (B|1, K) row-major flat index
        return self.table[0][index]  # (B|1, K, D)


def interpolate_grid_table(table: Tensor, old: tuple[int, ...], new: tuple[int, ...]) -> Tensor:
    """(1, prod(old), D) -> (1, prod(new), D), the identity when old == new. 1-D: linear; 2-D: bicubic with
    align_corners=False (MAE's `util/pos_embed.py` interpolate_pos_embed); 3-D (T, H, W): trilinear, which is
    VideoMAE's spatial bicubic per frame group when only H, W change up to the kernel (run_class_finetuning.py
    interpolates the spatial size of each temporal slice; a different temporal size is interpolated linearly here)."""
    old, new = tuple(old), tuple(new)
    if old == new:
        return table
    if len(old) != len(new) or len(old) not in (1, 2, 3):
        raise ValueError(f"cannot interpolate a positional table from grid {old} to grid {new}")
    d = table.shape[-1]
    x = table.reshape(1, *old, d).movedim(-1, 1).float()  # (1, D, *old)
    mode = {1: "linear", 2: "bicubic", 3: "trilinear"}[len(old)]
    x = nn.functional.interpolate(x, size=new, mode=mode, align_corners=False)  # (1, D, *new)
    return x.movedim(1, -1).reshape(1, -1, d).to(table.dtype)


def sincos_table(grid: tuple[int, ...], dim: int) -> Tensor:
    """(1, N, dim) our fixed sin-cos embedding evaluated on every cell of a row-major `grid`."""
    axes = [torch.arange(s, dtype=torch.float32) for s in grid]
    coords = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(1, -1, len(grid))  # (1, N, G)
    return sincos_embed(coords, dim)


def sinusoid_1d_table(n: int, dim: int) -> Tensor:
    """(1, n, dim) VideoMAE's `get_sinusoid_encoding_table`: angle(p, j) = p / 10000^(2 (j // 2) / dim), sin on the
    even channels and cos on the odd ones."""
    position = torch.arange(n, dtype=torch.float64)[:, None]  # (n, 1)
    j = torch.arange(dim, dtype=torch.float64)[None, :]  # (1, dim)
    angles = position / torch.pow(10000.0, 2 * torch.div(j, 2, rounding_mode="floor") / dim)  # (n, dim)
    table = torch.where(j % 2 == 0, torch.sin(angles), torch.cos(angles))
    return table[None].float()
