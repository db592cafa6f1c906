"""Log-mel spectrograms (B, T, F) -> 16x16 patches on a (T/p, F/p) grid.

A spectrogram is a 1-channel (T, F) image, so `patchify` / `unpatchify` of the image tokenizer are reused;
the grid's first axis is time and the second frequency (the order `mask=time|freq|timefreq` relies on).
"""
from __future__ import annotations

import torch
from torch import Tensor

from mae.core.grid import (
    grid_coords,
    patchify,
    unpatchify,
)
from mae.core.interfaces import Tokenizer
from mae.core.tokens import Tokens


class SpectrogramTokenizer(Tokenizer):
    """batch["fbank"] (B, T, F) normalised log-mel -> Tokens(values (B, N, p*p), pos (1, N, 2) = (time, freq),
    grid (T/p, F/p))."""

    layout = "spectrogram patches"

    def __init__(self, *, frames: int, mel_bins: int, patch_size: int, key: str = "fbank") -> None:
        super().__init__()
        if patch_size < 1 or frames % patch_size or mel_bins % patch_size:
            raise ValueError(
                f"tokenizer.patch_size={patch_size} must divide data.frames={frames} and data.mel_bins={mel_bins}: "
                f"choose a patch size among {[p for p in range(2, min(frames, mel_bins) + 1) if frames % p == 0 and mel_bins % p == 0]}"
            )
        self.frames, self.mel_bins, self.patch_size, self.key = frames, mel_bins, patch_size, key
        self.grid = (frames // patch_size, mel_bins // patch_size)  # (time, freq)
        self.token_dim = patch_size * patch_size
        self.register_buffer("pos", grid_coords(self.grid, device=torch.device("cpu"))[None], persistent=False)

    def forward(self, batch: dict[str, Tensor]) -> Tokens:
        spec = batch[self.key]
        if spec.ndim == 4 and spec.shape[1] == 1:
            spec = spec[:, 0]
        if tuple(spec.shape[1:]) != (self.frames, self.mel_bins):
            raise ValueError(f"expected {self.key} batches of shape (B, {self.frames}, {self.mel_bins}) "
                             f"(data.frames, data.mel_bins), got {tuple(spec.shape)}")
        return Tokens(values=patchify(spec[:, None], self.patch_size), pos=self.pos, grid=self.grid)

    def unpatchify(self, values: Tensor) -> Tensor:
        """(B, N, p*p) -> (B, 1, T, F), the inverse of the tokenization."""
        return unpatchify(values, self.grid, self.patch_size)
