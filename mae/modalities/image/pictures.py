"""Reconstruction pictures of modality=image: one row per sample, one column per panel, pixels in [0, 1]."""
from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from torch import Tensor

from mae.core.interfaces import EvalData, Pictures
from mae.core.pictures import save_figure, show_image
from mae.core.tokens import Tokens
from mae.modalities.image.tokenizer import ImageTokenizer


class ImagePictures(Pictures):
    """Patches back to images (`ImageTokenizer.unpatchify`), the input normalisation undone (`data.denormalize`)."""

    def draw(self, panels: dict[str, Tensor], tokens: Tokens, note: str, path: Path, *, tokenizer: ImageTokenizer,
             data: EvalData) -> Figure:
        """panels: name -> (B, N, C*p*p); NaN (hidden) pixels grey."""
        images = {}
        for name, values in panels.items():
            x = data.denormalize(tokenizer.unpatchify(values))  # (B, C, H, W), NaN where hidden
            images[name] = x.permute(0, 2, 3, 1).float().cpu().numpy()  # (B, H, W, C)
        names = list(images)
        b = next(iter(images.values())).shape[0]
        fig = Figure(figsize=(2.0 * len(names), 2.0 * b + 0.6))
        axes = fig.subplots(b, len(names), squeeze=False)
        for col, name in enumerate(names):
            for row in range(b):
                ax = axes[row, col]
                show_image(ax, images[name][row])
                if row == 0:
                    ax.set_title(name, fontsize=9)
        return save_figure(fig, path, title=note, top=0.97)
