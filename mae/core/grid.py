"""Token grids: integer coordinates, (H, W) sizes, and patch <-> image reshapes shared by every grid modality."""
from __future__ import annotations

import torch
from torch import Tensor


def grid_coords(grid: tuple[int, ...], *, device: torch.device) -> Tensor:
    """(N, G) integer coordinates of a row-major token grid of G dims."""
    axes = [torch.arange(s, device=device, dtype=torch.float32) for s in grid]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(grid))


def as_hw(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """An int or a pair -> (H, W)."""
    if isinstance(size, int):
        return size, size
    h, w = (int(v) for v in size)
    return h, w


def patchify(images: Tensor, patch: int) -> Tensor:
    """(B, C, H, W) -> (B, N, C*p*p), each token flattened in (C, p, p) order (as a conv weight)."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)  # (B, C, h, p, w, p)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, h, w, C, p, p)
    return x.reshape(b, (h // patch) * (w // patch), c * patch * patch)


def unpatchify(values: Tensor, grid: tuple[int, int], patch: int) -> Tensor:
    """(B, N, C*p*p) -> (B, C, H, W), the inverse of `patchify`."""
    b, n, d = values.shape
    gh, gw = grid
    c = d // (patch * patch)
    x = values.reshape(b, gh, gw, c, patch, patch)  # (B, h, w, C, p, p)
    x = x.permute(0, 3, 1, 4, 2, 5)  # (B, C, h, p, w, p)
    return x.reshape(b, c, gh * patch, gw * patch)
