"""Video clips (B, C, T, H, W) -> t x p x p tubelets on a (T/t, H/p, W/p) grid, VideoMAE's targets, frame-strip pictures.

Tokens are flattened in (C, t, p, p) order, the layout of a Conv3d weight (VideoMAE's / HF's tubelet
embedding is a Conv3d with kernel = stride = (t, p, p)), so a Linear on them equals that convolution.
Positions are the integer (t, h, w) grid coordinates, embedded by `SinCosPosEmbed` as a 3-D sin-cos
(a third of the width per axis). VideoMAE itself uses a 1-D sin-cos table over the flattened token index.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mae.core.grid import (
    as_hw,
    grid_coords,
)
from mae.core.interfaces import Tokenizer
from mae.core.tokens import Tokens


def tubeletify(video: Tensor, tubelet: int, patch: int) -> Tensor:
    """(B, C, T, H, W) -> (B, N, C*t*p*p), tokens row-major over (T/t, H/p, W/p), each in (C, t, p, p) order."""
    b, c, t, h, w = video.shape
    x = video.reshape(b, c, t // tubelet, tubelet, h // patch, patch, w // patch, patch)  # (B, C, gt, t, gh, p, gw, p)
    x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)  # (B, gt, gh, gw, C, t, p, p)
    return x.reshape(b, (t // tubelet) * (h // patch) * (w // patch), c * tubelet * patch * patch)


def untubeletify(values: Tensor, grid: tuple[int, int, int], tubelet: int, patch: int) -> Tensor:
    """(B, N, C*t*p*p) -> (B, C, T, H, W), the inverse of `tubeletify`."""
    b, n, d = values.shape
    gt, gh, gw = grid
    c = d // (tubelet * patch * patch)
    x = values.reshape(b, gt, gh, gw, c, tubelet, patch, patch)  # (B, gt, gh, gw, C, t, p, p)
    x = x.permute(0, 4, 1, 5, 2, 6, 3, 7)  # (B, C, gt, t, gh, p, gw, p)
    return x.reshape(b, c, gt * tubelet, gh * patch, gw * patch)


class VideoTokenizer(Tokenizer):
    """batch["video"] (B, C, T, H, W) normalised clips -> Tokens(values (B, N, C*t*p*p), pos (1, N, 3) = (t, h, w),
    grid (T/t, H/p, W/p)). `mean`/`std`: the datamodule's per-channel normalisation, undone in pictures."""

    layout = "video tubelets"

    def __init__(self, *, num_frames: int, image_size: int | list[int], tubelet_size: int, patch_size: int,
                 channels: int = 3, mean: Sequence[float] = (0.485, 0.456, 0.406),
                 std: Sequence[float] = (0.229, 0.224, 0.225), key: str = "video") -> None:
        super().__init__()
        h, w = as_hw(image_size)
        if tubelet_size < 1 or num_frames % tubelet_size:
            raise ValueError(f"tokenizer.tubelet_size={tubelet_size} must divide data.num_frames={num_frames}: choose "
                             f"one of {[d for d in range(1, num_frames + 1) if num_frames % d == 0]}")
        if patch_size < 1 or h % patch_size or w % patch_size:
            raise ValueError(f"tokenizer.patch_size={patch_size} must divide the crop size {h}x{w} (data.image_size): "
                             f"choose one of {[p for p in range(2, min(h, w) + 1) if h % p == 0 and w % p == 0]}")
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"data.mean / data.std need {channels} values (one per channel), got {list(mean)}, {list(std)}")
        self.num_frames, self.image_size, self.channels, self.key = num_frames, (h, w), channels, key
        self.tubelet_size, self.patch_size = tubelet_size, patch_size
        self.grid = (num_frames // tubelet_size, h // patch_size, w // patch_size)  # (T', H', W')
        self.token_dim = channels * tubelet_size * patch_size * patch_size
        self.mean, self.std = [float(v) for v in mean], [float(v) for v in std]
        self.register_buffer("pos", grid_coords(self.grid, device=torch.device("cpu"))[None], persistent=False)

    def forward(self, batch: dict[str, Tensor]) -> Tokens:
        video = batch[self.key]
        expected = (self.channels, self.num_frames, *self.image_size)
        if tuple(video.shape[1:]) != expected:
            raise ValueError(f"expected {self.key} batches of shape (B, {', '.join(map(str, expected))}) = (B, C, T, H, W) "
                             f"(data.num_frames, data.image_size), got {tuple(video.shape)}")
        return Tokens(values=tubeletify(video, self.tubelet_size, self.patch_size), pos=self.pos, grid=self.grid)

    def unpatchify(self, values: Tensor) -> Tensor:
        """(B, N, C*t*p*p) -> (B, C, T, H, W)."""
        return untubeletify(values, self.grid, self.tubelet_size, self.patch_size)

    def to_pixels(self, values: Tensor) -> Tensor:
        """(B, N, C*t*p*p) normalised token values -> (B, T, H, W, C) pixels in [0, 1] (NaN stays NaN)."""
        video = self.unpatchify(values.float())  # (B, C, T, H, W)
        mean = torch.tensor(self.mean, device=video.device).view(1, -1, 1, 1, 1)
        std = torch.tensor(self.std, device=video.device).view(1, -1, 1, 1, 1)
        return (video * std + mean).permute(0, 2, 3, 4, 1)  # (B, T, H, W, C)



