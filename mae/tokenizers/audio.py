"""Log-mel spectrograms (B, T, F) -> 16x16 patches on a (T/p, F/p) grid.

A spectrogram is a 1-channel (T, F) image, so `patchify` / `unpatchify` of the image tokenizer are reused;
the grid's first axis is time and the second frequency (the order `mask=time|freq|timefreq` relies on).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from mae.callbacks.reconstruction import save_figure  # noqa: E402
from mae.masking import grid_coords  # noqa: E402
from mae.tokenizers.image import patchify, unpatchify  # noqa: E402
from mae.types import Tokens  # noqa: E402


class SpectrogramTokenizer(nn.Module):
    """batch["fbank"] (B, T, F) normalised log-mel -> Tokens(values (B, N, p*p), pos (1, N, 2) = (time, freq),
    grid (T/p, F/p)). `display_range`: normalised values drawn from black to white in pictures."""

    def __init__(self, *, frames: int, mel_bins: int, patch_size: int, key: str = "fbank",
                 display_range: tuple[float, float] = (-2.5, 2.5)) -> None:
        super().__init__()
        if patch_size < 1 or frames % patch_size or mel_bins % patch_size:
            raise ValueError(
                f"tokenizer.patch_size={patch_size} must divide data.frames={frames} and data.mel_bins={mel_bins}: "
                f"choose a patch size among {[p for p in range(2, min(frames, mel_bins) + 1) if frames % p == 0 and mel_bins % p == 0]}"
            )
        self.frames, self.mel_bins, self.patch_size, self.key = frames, mel_bins, patch_size, key
        self.grid = (frames // patch_size, mel_bins // patch_size)  # (time, freq)
        self.token_dim = patch_size * patch_size
        self.display_range = tuple(float(v) for v in display_range)
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

    def draw_reconstruction(self, panels: dict[str, Tensor], tokens: Tokens, note: str, path: Path) -> plt.Figure:
        """Spectrogram panels (original / masked / reconstruction ...), time left->right, low frequencies at
        the bottom; hidden patches grey. Values are normalised log-mel drawn over `display_range`."""
        names = list(panels)
        specs = {k: self.unpatchify(v.float())[:, 0].cpu().numpy() for k, v in panels.items()}  # (B, T, F)
        b = next(iter(specs.values())).shape[0]
        lo, hi = self.display_range
        fig, axes = plt.subplots(b, len(names), figsize=(3.0 * len(names), 1.4 * b + 0.6), squeeze=False)
        cmap = plt.get_cmap("magma").with_extremes(bad="0.6")
        for col, name in enumerate(names):
            for row in range(b):
                ax = axes[row, col]
                ax.imshow(np.ma.masked_invalid(specs[name][row].T), origin="lower", aspect="auto",
                          cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
                ax.set_xticks([]), ax.set_yticks([])
                if row == 0:
                    ax.set_title(name, fontsize=9)
        return save_figure(fig, path, title=f"{note}; x = time, y = mel bin", top=0.95)
