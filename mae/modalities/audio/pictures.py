"""Reconstruction pictures of modality=audio (`pictures: {_target_: mae.modalities.audio.pictures.SpectrogramPictures}`)."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

from mae.core.interfaces import EvalData, Pictures
from mae.core.pictures import save_figure
from mae.core.tokens import Tokens
from mae.modalities.audio.tokenizer import SpectrogramTokenizer


class SpectrogramPictures(Pictures):
    """The reconstruction panels of modality=audio (see `draw`)."""

    def __init__(self, *, display_range: tuple[float, float] = (-2.5, 2.5)) -> None:
        self.display_range = tuple(float(v) for v in display_range)  # normalised log-mel drawn black to white

    def draw(self, panels: dict[str, Tensor], tokens: Tokens, note: str, path: Path, *, tokenizer: SpectrogramTokenizer,
             data: EvalData) -> Figure:
        """Spectrogram panels (original / masked / reconstruction ...), time left->right, low frequencies at
        the bottom; hidden patches grey. Values are normalised log-mel drawn over `display_range`."""
        names = list(panels)
        specs = {k: tokenizer.unpatchify(v.float())[:, 0].cpu().numpy() for k, v in panels.items()}  # (B, T, F)
        b = next(iter(specs.values())).shape[0]
        lo, hi = self.display_range
        fig = Figure(figsize=(3.0 * len(names), 1.4 * b + 0.6))
        axes = fig.subplots(b, len(names), squeeze=False)
        cmap = matplotlib.colormaps["magma"].with_extremes(bad="0.6")
        for col, name in enumerate(names):
            for row in range(b):
                ax = axes[row, col]
                ax.imshow(np.ma.masked_invalid(specs[name][row].T), origin="lower", aspect="auto",
                          cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
                ax.set_xticks([]), ax.set_yticks([])
                if row == 0:
                    ax.set_title(name, fontsize=9)
        return save_figure(fig, path, title=f"{note}; x = time, y = mel bin", top=0.95)
