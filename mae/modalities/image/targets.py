"""MaskFeat's HOG target for image patches (`target=hog`)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from mae.core.grid import unpatchify
from mae.core.interfaces import Target
from mae.core.tokens import Tokens
from mae.modalities.image.tokenizer import ImageTokenizer


def gaussian_kernel(size: int, std: float) -> Tensor:
    """(size, size) 2-D Gaussian window normalised to sum 1."""
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-0.5 * (x / std) ** 2)
    k = torch.outer(g, g)
    return k / k.sum()


class HOGTarget(Target):
    """MaskFeat's HOG target: per-channel Sobel gradients, `bins` unsigned orientation bins per
    `cell_size` x `cell_size` cell, L2-normalised per cell, all cells of a patch concatenated.

    Written by hand (after MaskFeat's HOGLayerC) because skimage's HOG runs in numpy per image; this
    one is batched on the tensor's device. Token values must be image patches in (C, p, p) order.
    """

    tokenwise = False  # the Sobel filter reads the neighbouring patches: computed on the whole image, then gathered
    inverse_note = "target=HOG: a histogram has no pixel inverse, no reconstruction drawn"
    layouts = (ImageTokenizer.layout,)

    def __init__(self, *, channels: int, patch_size: int, cell_size: int = 8, bins: int = 9, gaussian_window: int = 0) -> None:
        super().__init__()
        if patch_size % cell_size:
            raise ValueError(f"target.cell_size={cell_size} must divide the patch size {patch_size}")
        self.channels, self.patch_size, self.cell_size, self.bins = channels, patch_size, cell_size, bins
        sobel_x = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
        self.register_buffer("weight_x", sobel_x.expand(channels, 1, 3, 3).clone(), persistent=False)
        self.register_buffer("weight_y", sobel_x.t().expand(channels, 1, 3, 3).clone(), persistent=False)
        self.gaussian_window = gaussian_window
        if gaussian_window:
            self.register_buffer("gkern", gaussian_kernel(gaussian_window, gaussian_window // 2), persistent=False)

    def check_grid(self, grid: tuple[int, ...] | None) -> None:
        if grid is None or len(grid) != 2:
            raise ValueError(f"target=hog needs image patches on a 2-D grid, got grid {grid}: on modality=video choose "
                             "target=video_hog; point clouds, graphs and series have no HOG (target=pixel / norm_pix)")

    def out_dim(self, token_dim: int) -> int:
        cells = (self.patch_size // self.cell_size) ** 2
        return self.channels * self.bins * cells

    def hog_cells(self, images: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, bins, H/cell, W/cell) cell histograms, L2-normalised over bins."""
        c = self.channels
        x = F.pad(images.float(), (1, 1, 1, 1), mode="reflect")
        gx = F.conv2d(x, self.weight_x, groups=c)  # (B, C, H, W)
        gy = F.conv2d(x, self.weight_y, groups=c)
        magnitude = torch.stack([gx, gy], dim=-1).norm(dim=-1)
        phase = torch.atan2(gx, gy) / math.pi * self.bins  # in [-bins, bins]
        if self.gaussian_window:
            reps = (magnitude.shape[-2] // self.gaussian_window, magnitude.shape[-1] // self.gaussian_window)
            magnitude = magnitude * self.gkern.repeat(reps)
        b, _, h, w = magnitude.shape
        hist = magnitude.new_zeros(b, c, self.bins, h, w)
        hist.scatter_add_(2, (phase.floor().long() % self.bins)[:, :, None], magnitude[:, :, None])
        hist = F.avg_pool2d(hist.flatten(1, 2), self.cell_size) * self.cell_size**2  # cell sums
        hist = hist.reshape(b, c, self.bins, h // self.cell_size, w // self.cell_size)
        return F.normalize(hist, p=2, dim=2)

    def forward(self, tokens: Tokens) -> Tensor:
        assert tokens.grid is not None and len(tokens.grid) == 2, "HOG needs a 2-D patch grid"
        gh, gw = tokens.grid
        images = unpatchify(tokens.values, (gh, gw), self.patch_size)  # (B, C, H, W)
        hist = self.hog_cells(images)  # (B, C, bins, gh*k, gw*k)
        k = self.patch_size // self.cell_size
        b = hist.shape[0]
        hist = hist.reshape(b, self.channels, self.bins, gh, k, gw, k)
        hist = hist.permute(0, 3, 5, 1, 2, 4, 6)  # (B, gh, gw, C, bins, k, k)
        return hist.reshape(b, gh * gw, -1).to(tokens.values.dtype)  # (B, N, C*bins*k*k)

    def invert(self, pred: Tensor, true_values: Tensor) -> Tensor | None:
        return None  # a HOG histogram has no pixel inverse
