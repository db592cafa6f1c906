"""VideoMAE's per-tubelet normalised target (`target=tubelet_norm_pix`) and per-frame HOG of tubelets (`target=video_hog`)."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from mae.core.interfaces import Target
from mae.core.tokens import Tokens
from mae.modalities.image.targets import HOGTarget
from mae.modalities.video.tokenizer import VideoTokenizer, untubeletify


class TubeletNormPixTarget(Target):
    """VideoMAE's target: each tubelet normalised per channel by its own mean and (unbiased) std over the
    t*p*p pixels, (x - mean) / (std + eps). VideoMAE applies it to [0, 1] pixels after undoing the ImageNet
    normalisation; per-channel normalisation removes any per-channel affine map, so ours on normalised clips
    is the same up to eps. Token values must be in (C, t, p, p) order."""

    inverse_note = "target=norm_pix (per tubelet and channel): reconstruction un-normalised with the TRUE statistics"
    layouts = (VideoTokenizer.layout,)

    def __init__(self, *, eps: float = 1e-6, channels: int = 3) -> None:
        super().__init__()
        self.eps, self.channels = eps, channels

    def stats(self, values: Tensor) -> tuple[Tensor, Tensor]:
        """(B, N, C*t*p*p) -> mean and std of shape (B, N, C, 1)."""
        x = values.float().unflatten(-1, (self.channels, -1))  # (B, N, C, t*p*p)
        return x.mean(dim=-1, keepdim=True), x.var(dim=-1, keepdim=True).sqrt()

    def of_values(self, values: Tensor) -> Tensor:
        """(B, M, C*t*p*p) -> the same shape, normalised per tubelet and channel."""
        x = values.float().unflatten(-1, (self.channels, -1))  # (B, M, C, t*p*p)
        centred = x - x.mean(dim=-1, keepdim=True)
        # unbiased std from the centred values in one reduction (aten::var makes two passes and is ~2x slower on
        # CPU); the division happens in place on `centred`: one (B, M, C*t*p*p) buffer for the whole target
        std = torch.linalg.vector_norm(centred, dim=-1, keepdim=True) / math.sqrt(x.shape[-1] - 1)  # (B, M, C, 1)
        return centred.mul_((std + self.eps).reciprocal()).flatten(-2).to(values.dtype)  # (B, M, C*t*p*p)

    def invert(self, pred: Tensor, true_values: Tensor) -> Tensor | None:
        mean, std = self.stats(true_values)
        return (pred.float().unflatten(-1, (self.channels, -1)) * (std + self.eps) + mean).flatten(-2)


class VideoHOGTarget(HOGTarget):
    """MaskFeat-style HOG for video tubelets: the HOG cells of each of the t frames of a tubelet, concatenated
    (frame-major), computed per frame with the image `HOGTarget`. Same arguments as `target=hog`; the tubelet
    length is read from the token width (C*t*p*p)."""

    inverse_note = "target=HOG: a histogram has no pixel inverse, no reconstruction drawn"
    layouts = (VideoTokenizer.layout,)

    def check_grid(self, grid: tuple[int, ...] | None) -> None:
        if grid is None or len(grid) != 3:
            raise ValueError(f"target=video_hog needs (T, H, W) video tokens, got grid {grid}: on images use target=hog")

    def frames_per_token(self, token_dim: int) -> int:
        return token_dim // (self.channels * self.patch_size**2)

    def out_dim(self, token_dim: int) -> int:
        return self.frames_per_token(token_dim) * super().out_dim(token_dim)

    def forward(self, tokens: Tokens) -> Tensor:
        if tokens.grid is None or len(tokens.grid) != 3:
            raise ValueError(f"VideoHOGTarget needs (T, H, W) video tokens, got grid {tokens.grid}")
        gt, gh, gw = tokens.grid
        t, p, k = self.frames_per_token(tokens.values.shape[-1]), self.patch_size, self.patch_size // self.cell_size
        video = untubeletify(tokens.values, tokens.grid, t, p)  # (B, C, T, H, W)
        b, c = video.shape[:2]
        frames = video.transpose(1, 2).reshape(b * gt * t, c, gh * p, gw * p)  # (B*T, C, H, W)
        hist = self.hog_cells(frames)  # (B*T, C, bins, gh*k, gw*k)
        hist = hist.reshape(b, gt, t, c, self.bins, gh, k, gw, k)
        hist = hist.permute(0, 1, 5, 7, 2, 3, 4, 6, 8)  # (B, gt, gh, gw, t, C, bins, k, k)
        return hist.reshape(b, gt * gh * gw, -1).to(tokens.values.dtype)  # (B, N, t*C*bins*k*k)
