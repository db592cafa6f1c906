"""Point clouds -> Point-MAE groups: FPS centres + kNN neighbourhoods, points relative to their centre.

Tokens: values (B, G, k*3) = each group's k points minus its centre, flattened (x, y, z per point);
pos (B, G, 3) = the centres; grid None (block masking then uses distances between centres).
`PointNetEmbed` is Point-MAE's mini-PointNet group embedding, plugged into the encoder's `token_embed`.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from mae.callbacks.reconstruction import save_figure  # noqa: E402
from mae.pointops import group_points  # noqa: E402
from mae.targets import PixelTarget  # noqa: E402
from mae.types import Tokens  # noqa: E402


class PointCloudTokenizer(nn.Module):
    """batch["points"] (B, N, 3) -> Tokens(values (B, G, k*3), pos (B, G, 3) centres, grid None)."""

    grid = None

    def __init__(self, *, num_groups: int = 64, group_size: int = 32, key: str = "points") -> None:
        super().__init__()
        if num_groups < 2 or group_size < 1:
            raise ValueError(f"tokenizer.num_groups must be >= 2 and group_size >= 1, got {num_groups}, {group_size}")
        self.num_groups, self.group_size, self.key = num_groups, group_size, key
        self.token_dim = 3 * group_size

    def forward(self, batch: dict[str, Tensor]) -> Tokens:
        points = batch[self.key]
        if points.ndim != 3 or points.shape[-1] != 3 or points.shape[1] < max(self.num_groups, self.group_size):
            raise ValueError(
                f"expected {self.key} batches of shape (B, N, 3) with N >= tokenizer.num_groups={self.num_groups} "
                f"and >= tokenizer.group_size={self.group_size}, got {tuple(points.shape)}: check data.num_points"
            )
        with torch.no_grad():  # grouping has no parameters; FPS/kNN indices carry no gradient anyway
            groups, centres = group_points(points.float(), self.num_groups, self.group_size)  # (B,G,k,3), (B,G,3)
        return Tokens(values=groups.flatten(2).to(points.dtype), pos=centres.to(points.dtype), grid=None)

    def draw_reconstruction(self, panels: dict[str, Tensor], tokens: Tokens, note: str, path: Path) -> plt.Figure:
        """3-D scatter per sample: input, visible groups, reconstructed hidden groups (predicted offsets +
        their TRUE centre = tokens.pos), reconstruction + visible. panels: name -> (B, G, k*3), NaN for hidden."""
        b, g, _ = next(iter(panels.values())).shape
        centres = tokens.pos.float().cpu()  # (B, G, 3)
        names = list(panels)
        fig = plt.figure(figsize=(2.6 * len(names), 2.6 * b + 0.6))
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


class PointNetEmbed(nn.Module):
    """Point-MAE's group embedding: shared MLP 3->128->256 per point, max-pool, concat the group feature to
    every point, MLP 512->512->dim, max-pool. (B, G, k*3) -> (B, G, dim).

    widths = (first hidden, first out, second hidden): Point-MAE's (128, 256, 512) by default; the CPU demo
    uses narrower ones (the per-point MLPs are most of the compute of a small model).
    """

    def __init__(self, *, in_dim: int, dim: int, point_dim: int = 3, widths: Sequence[int] = (128, 256, 512)) -> None:
        super().__init__()
        if in_dim % point_dim:
            raise ValueError(f"token width {in_dim} is not a multiple of the point width {point_dim}")
        if isinstance(widths, (str, bytes)) or len(widths) != 3 or not all(isinstance(w, int) and w > 0 for w in widths):
            raise ValueError(f"token_embed.widths must be 3 positive ints (hidden, mid, hidden2), got {widths!r}")
        h1, mid, h2 = widths
        self.point_dim = point_dim
        self.first = nn.Sequential(nn.Linear(point_dim, h1), nn.BatchNorm1d(h1), nn.ReLU(inplace=True), nn.Linear(h1, mid))
        self.second = nn.Sequential(nn.Linear(2 * mid, h2), nn.BatchNorm1d(h2), nn.ReLU(inplace=True), nn.Linear(h2, dim))

    @staticmethod
    def _pointwise(mlp: nn.Sequential, x: Tensor) -> Tensor:
        """Apply an MLP with BatchNorm1d to (L, k, C) points -> (L, k, C')."""
        lead = x.shape[:2]
        return mlp(x.reshape(-1, x.shape[-1])).reshape(*lead, -1)

    def forward(self, values: Tensor) -> Tensor:
        b, g, c = values.shape
        x = values.reshape(b * g, c // self.point_dim, self.point_dim)  # (B*G, k, 3)
        f = self._pointwise(self.first, x)  # (B*G, k, 256)
        glob = f.amax(dim=1, keepdim=True).expand_as(f)  # (B*G, k, 256)
        f = self._pointwise(self.second, torch.cat([glob, f], dim=-1))  # (B*G, k, dim)
        return f.amax(dim=1).reshape(b, g, -1)  # (B, G, dim)


class PointGroupTarget(PixelTarget):
    """Point-MAE's target: the hidden groups' points relative to their centre, as they are (no per-token
    normalisation). `eps` is accepted and unused: conf/target/norm_pix.yaml passes it when a modality
    selects this class through `default_target`."""

    inverse_note = "target=point groups: reconstruction = predicted offsets + the group's TRUE centre"

    def __init__(self, *, eps: float = 1e-6) -> None:
        super().__init__()
