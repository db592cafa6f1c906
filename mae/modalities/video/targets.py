"""VideoMAE's per-tubelet normalised target (`target=tubelet_norm_pix`), MAE-ST's target on a subset of the frames
(`target=pred_frames`, its `--pred_t_dim`) and per-frame HOG of tubelets (`target=video_hog`)."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from mae.core.interfaces import Target
from mae.core.targets import patch_stats
from mae.core.tokens import Tokens
from mae.modalities.image.targets import HOGTarget
from mae.modalities.video.tokenizer import VideoTokenizer, tubeletify, untubeletify

NORMS = ("token", "channel", "none")


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


def pred_frame_index(num_frames: int, pred_t_dim: int) -> Tensor:
    """(pred_t_dim,) int64: the frames MAE-ST predicts, `torch.linspace(0, T - 1, pred_t_dim).long()` (models_mae.py
    forward_loss). T=16, pred_t_dim=8 gives [0, 2, 4, 6, 8, 10, 12, 15]: the first frame of each 2-frame tubelet,
    the last tubelet's second frame (truncation, not rounding)."""
    return torch.linspace(0, num_frames - 1, pred_t_dim).long()


class PredFramesTarget(Target):
    """MAE-ST's target (`target=pred_frames`): of the T clip frames only `pred_t_dim`, chosen by `pred_frame_index`,
    cut into tubelets of u = tubelet_size x pred_t_dim / T frames on the same (T/t, H/p, W/p) grid, so each token
    predicts u of its t frames (MAE-ST's `t_pred_patch_size`; ViT-L recipe: t=2, pred_t_dim=8 of 16 -> u=1) and the
    decoder's output width shrinks from C*t*p*p to C*u*p*p. pred_t_dim = T keeps every frame.

    norm: "token" (MAE-ST's --norm_pix_loss: each token normalised by the mean and unbiased variance of all its
    values, (x - mean) / sqrt(var + eps)); "channel" (VideoMAE's per-channel statistics, as target=tubelet_norm_pix);
    "none" (raw values, MAE-ST without --norm_pix_loss). Values are in our (C, u, p, p) order, a fixed permutation of
    MAE-ST's (u, p, p, C) patchify: the same loss. Computed on the whole clip (a selected frame may lie in another
    tubelet when t x pred_t_dim / T does not line up), then gathered at the predicted tokens."""

    tokenwise = False
    layouts = (VideoTokenizer.layout,)

    def __init__(self, *, num_frames: int, tubelet_size: int, pred_t_dim: int, norm: str = "token",
                 eps: float = 1e-6, channels: int = 3) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"target.norm must be one of {NORMS}, got {norm!r}")
        whole = isinstance(pred_t_dim, int) and not isinstance(pred_t_dim, bool)
        if not whole or not 1 <= pred_t_dim <= num_frames or (tubelet_size * pred_t_dim) % num_frames:
            fits = [d for d in range(1, num_frames + 1) if (tubelet_size * d) % num_frames == 0]
            raise ValueError(f"target.pred_t_dim={pred_t_dim!r}: each of the {num_frames // tubelet_size} token time "
                             f"steps must predict a whole number of frames (tokenizer.tubelet_size x pred_t_dim / "
                             f"data.num_frames = {tubelet_size} x {pred_t_dim} / {num_frames}); choose one of {fits}")
        self.num_frames, self.tubelet_size, self.pred_t_dim = num_frames, tubelet_size, pred_t_dim
        self.norm, self.eps, self.channels = norm, eps, channels
        self.pred_tubelet = tubelet_size * pred_t_dim // num_frames  # u, MAE-ST's t_pred_patch_size
        self.register_buffer("frames", pred_frame_index(num_frames, pred_t_dim), persistent=False)
        self.inverse_note = (f"target=pred_frames ({pred_t_dim} of {num_frames} frames, norm={norm}): each predicted "
                             "frame drawn over its tubelet's frames" + (", un-normalised with the tubelet's TRUE "
                                                                        "statistics" if norm != "none" else ""))

    def check_grid(self, grid: tuple[int, ...] | None) -> None:
        if grid is None or len(grid) != 3:
            raise ValueError(f"target=pred_frames needs (T, H, W) video tokens, got grid {grid}: use target=norm_pix")
        if grid[0] * self.tubelet_size != self.num_frames:
            raise ValueError(f"target=pred_frames was built for {self.num_frames} frames in tubelets of "
                             f"{self.tubelet_size}, the tokens have {grid[0]} time steps: set target.num_frames / "
                             "target.tubelet_size to data.num_frames / tokenizer.tubelet_size")

    def patch(self, token_dim: int) -> int:
        return math.isqrt(token_dim // (self.channels * self.tubelet_size))

    def out_dim(self, token_dim: int) -> int:
        return token_dim // self.tubelet_size * self.pred_tubelet  # C*u*p*p

    def normalise(self, x: Tensor) -> Tensor:
        """(B, N, C*u*p*p) -> the same, normalised as `norm` says."""
        if self.norm == "token":
            mean, std = patch_stats(x.float(), self.eps)
            return ((x.float() - mean) / std).to(x.dtype)
        if self.norm == "channel":
            return TubeletNormPixTarget(eps=self.eps, channels=self.channels).of_values(x)
        return x

    def forward(self, tokens: Tokens) -> Tensor:
        self.check_grid(tokens.grid)
        p = self.patch(tokens.values.shape[-1])
        video = untubeletify(tokens.values, tokens.grid, self.tubelet_size, p)  # (B, C, T, H, W)
        kept = video.index_select(2, self.frames.to(video.device))  # (B, C, pred_t_dim, H, W)
        return self.normalise(tubeletify(kept, self.pred_tubelet, p))  # (B, N, C*u*p*p)

    def invert(self, pred: Tensor, true_values: Tensor) -> Tensor | None:
        """(B, M, C*u*p*p) -> (B, M, C*t*p*p) for pictures: each predicted frame repeated over t/u frames (nearest,
        the exact frame depends on the token's time step), un-normalised with the whole tubelet's true statistics."""
        b, m, _ = pred.shape
        t, u, c = self.tubelet_size, self.pred_tubelet, self.channels
        x = pred.float().reshape(b, m, c, u, -1)  # (B, M, C, u, p*p)
        x = x.repeat_interleave(math.ceil(t / u), dim=3)[:, :, :, :t].reshape(b, m, -1)  # (B, M, C*t*p*p)
        if self.norm == "none":
            return x
        if self.norm == "channel":
            return TubeletNormPixTarget(eps=self.eps, channels=c).invert(x, true_values)
        mean, std = patch_stats(true_values.float(), self.eps)
        return x * std + mean


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
