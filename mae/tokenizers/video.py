"""Video clips (B, C, T, H, W) -> t x p x p tubelets on a (T/t, H/p, W/p) grid, VideoMAE's targets, frame-strip pictures.

Tokens are flattened in (C, t, p, p) order, the layout of a Conv3d weight (VideoMAE's / HF's tubelet
embedding is a Conv3d with kernel = stride = (t, p, p)), so a Linear on them equals that convolution.
Positions are the integer (t, h, w) grid coordinates, embedded by `SinCosPosEmbed` as a 3-D sin-cos
(a third of the width per axis). VideoMAE itself uses a 1-D sin-cos table over the flattened token index.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from mae.callbacks.reconstruction import save_figure, show_image  # noqa: E402
from mae.masking import grid_coords  # noqa: E402
from mae.targets import HOGTarget  # noqa: E402
from mae.tokenizers.image import as_hw  # noqa: E402
from mae.types import Tokens  # noqa: E402


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


class VideoTokenizer(nn.Module):
    """batch["video"] (B, C, T, H, W) normalised clips -> Tokens(values (B, N, C*t*p*p), pos (1, N, 3) = (t, h, w),
    grid (T/t, H/p, W/p)). `mean`/`std`: the datamodule's per-channel normalisation, undone in pictures."""

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

    def draw_reconstruction(self, panels: dict[str, Tensor], tokens: Tokens, note: str, path: Path,
                            max_samples: int = 2) -> plt.Figure:
        """Frame strips: for each of the first `max_samples` clips one row per panel (original / masked /
        reconstruction ...), one column per frame; hidden tubelets grey."""
        names = list(panels)
        frames = {k: self.to_pixels(v[:max_samples]).cpu().numpy() for k, v in panels.items()}  # (b, T, H, W, C)
        b, t = next(iter(frames.values())).shape[:2]
        rows = b * len(names)
        fig, axes = plt.subplots(rows, t, figsize=(0.9 * t + 1.6, 0.95 * rows + 0.6), squeeze=False)
        for s in range(b):
            for j, name in enumerate(names):
                row = s * len(names) + j
                for f in range(t):
                    ax = axes[row, f]
                    show_image(ax, frames[name][s, f])
                    if f == 0:
                        ax.set_ylabel(f"{s}: {name}", fontsize=6, rotation=0, ha="right", va="center")
                    if row == 0:
                        ax.set_title(f"frame {f}", fontsize=6)
        return save_figure(fig, path, title=note, fontsize=7, top=0.96)


class TubeletNormPixTarget(nn.Module):
    """VideoMAE's target: each tubelet normalised per channel by its own mean and (unbiased) std over the
    t*p*p pixels, (x - mean) / (std + eps). VideoMAE applies it to [0, 1] pixels after undoing the ImageNet
    normalisation; per-channel normalisation removes any per-channel affine map, so ours on normalised clips
    is the same up to eps. Token values must be in (C, t, p, p) order."""

    inverse_note = "target=norm_pix (per tubelet and channel): reconstruction un-normalised with the TRUE statistics"

    def __init__(self, *, eps: float = 1e-6, channels: int = 3) -> None:
        super().__init__()
        self.eps, self.channels = eps, channels

    def out_dim(self, token_dim: int) -> int:
        return token_dim

    def stats(self, values: Tensor) -> tuple[Tensor, Tensor]:
        """(B, N, C*t*p*p) -> mean and std of shape (B, N, C, 1)."""
        x = values.float().unflatten(-1, (self.channels, -1))  # (B, N, C, t*p*p)
        return x.mean(dim=-1, keepdim=True), x.var(dim=-1, keepdim=True).sqrt()

    def forward(self, tokens: Tokens) -> Tensor:
        return self.of_values(tokens.values)

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
