"""Reconstruction pictures of modality=pointcloud (`pictures: {_target_: mae.modalities.pointcloud.pictures.PointCloudPictures}`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

from mae.core.interfaces import EvalData, Pictures
from mae.core.pictures import save_figure
from mae.core.tokens import Tokens
from mae.modalities.pointcloud.tokenizer import PointCloudTokenizer


class PointCloudPictures(Pictures):
    """The reconstruction panels of modality=pointcloud (see `draw`)."""

    def draw(self, panels: dict[str, Tensor], tokens: Tokens, note: str, path: Path, *, tokenizer: PointCloudTokenizer,
             data: EvalData) -> Figure:
        """3-D scatter per sample: input, visible groups, reconstructed hidden groups (predicted offsets +
        their TRUE centre = tokens.pos), reconstruction + visible. panels: name -> (B, G, k*3), NaN for hidden."""
        b, g, _ = next(iter(panels.values())).shape
        centres = tokens.pos.float().cpu()  # (B, G, 3)
        names = list(panels)
        fig = Figure(figsize=(2.6 * len(names), 2.6 * b + 0.6))
        for row in range(b):
            for col, name in enumerate(names):
                ax = fig.add_subplot(b, len(names), row * len(names) + col + 1, projection="3d")
                pts = panels[name][row].float().cpu().reshape(g, -1, 3) + centres[row, :, None]  # (G, k, 3)
                pts = pts.reshape(-1, 3).numpy()
                pts = pts[np.isfinite(pts).all(axis=1)]
                if len(pts):
                    ax.scatter(pts[:, 0], pts[:, 1], pts[:, 2], s=0.5, c=pts[:, 2], cmap="viridis")
                for setter in (ax.set_xlim, ax.set_ylim, ax.set_zlim):
                    setter(-1, 1)
                ax.set_axis_off()
                if row == 0:
                    ax.set_title(name, fontsize=9)
        return save_figure(fig, path, title=note + "; groups drawn at their true centres", dpi=70)
