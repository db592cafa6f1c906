"""Reconstruction pictures of modality=video (`pictures: {_target_: mae.modalities.video.pictures.FrameStripPictures}`)."""
from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from torch import Tensor

from mae.core.interfaces import EvalData, Pictures
from mae.core.pictures import save_figure, show_image
from mae.core.tokens import Tokens
from mae.modalities.video.tokenizer import VideoTokenizer


class FrameStripPictures(Pictures):
    """The reconstruction panels of modality=video (see `draw`)."""

    def __init__(self, *, max_samples: int = 2) -> None:
        self.max_samples = max_samples  # clips drawn (a clip is len(panels) rows of frames)

    def draw(self, panels: dict[str, Tensor], tokens: Tokens, note: str, path: Path, *, tokenizer: VideoTokenizer,
             data: EvalData) -> Figure:
        """Frame strips: for each of the first `self.max_samples` clips one row per panel (original / masked /
        reconstruction ...), one column per frame; hidden tubelets grey."""
        names = list(panels)
        frames = {k: tokenizer.to_pixels(v[:self.max_samples]).cpu().numpy() for k, v in panels.items()}  # (b, T, H, W, C)
        b, t = next(iter(frames.values())).shape[:2]
        rows = b * len(names)
        fig = Figure(figsize=(0.9 * t + 1.6, 0.95 * rows + 0.6))
        axes = fig.subplots(rows, t, squeeze=False)
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
