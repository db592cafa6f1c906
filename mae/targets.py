"""What the decoder must predict, computed per token from the tokenizer's raw values.

Every target maps `Tokens` -> (B, N, C') and says how wide it is; `invert` maps predictions back to
token-value space for pictures, using the *true* statistics of each hidden token (None if impossible).
A target whose value for a token depends on that token's values alone also defines `of_values(values)`
((B, M, C) -> (B, M, C')): `MAEModule` then computes it for the predicted tokens only, after the gather.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mae.tokenizers.image import unpatchify
from mae.types import Tokens


class PixelTarget(nn.Module):
    """Raw token values (pixels, tubelets, points, ...)."""

    inverse_note = "target=pixels: reconstruction drawn as predicted"

    def out_dim(self, token_dim: int) -> int:
        return token_dim

    def forward(self, tokens: Tokens) -> Tensor:
        return self.of_values(tokens.values)

    def of_values(self, values: Tensor) -> Tensor:
        return values

    def invert(self, pred: Tensor, true_values: Tensor) -> Tensor | None:
        return pred


def patch_stats(values: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """(B, N, C) -> per-token mean and std (B, N, 1); unbiased variance + eps as in MAE's norm_pix_loss."""
    mean = values.mean(dim=-1, keepdim=True)
    std = (values.var(dim=-1, keepdim=True) + eps).sqrt()
    return mean, std


class NormPixTarget(nn.Module):
    """MAE's norm_pix: every token normalised by its own mean and variance."""

    inverse_note = "target=norm_pix: reconstruction un-normalised with each hidden patch's TRUE mean/std"

    def __init__(self, *, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps

    def out_dim(self, token_dim: int) -> int:
        return token_dim

    def forward(self, tokens: Tokens) -> Tensor:
        return self.of_values(tokens.values)

    def of_values(self, values: Tensor) -> Tensor:
        mean, std = patch_stats(values.float(), self.eps)
        return (values - mean) / std

    def invert(self, pred: Tensor, true_values: Tensor) -> Tensor | None:
        """Undo the normalisation with the true statistics of the same tokens (B, M, C)."""
        mean, std = patch_stats(true_values.float(), self.eps)
        return pred * std + mean


def gaussian_kernel(size: int, std: float) -> Tensor:
    """(size, size) 2-D Gaussian window normalised to sum 1."""
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-0.5 * (x / std) ** 2)
    k = torch.outer(g, g)
    return k / k.sum()


class HOGTarget(nn.Module):
    """MaskFeat's HOG target: per-channel Sobel gradients, `bins` unsigned orientation bins per
    `cell_size` x `cell_size` cell, L2-normalised per cell, all cells of a patch concatenated.

    Written by hand (after MaskFeat's HOGLayerC) because skimage's HOG runs in numpy per image; this
    one is batched on the tensor's device. Token values must be image patches in (C, p, p) order.
    """

    inverse_note = "target=HOG: a histogram has no pixel inverse, no reconstruction drawn"

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
