"""Point-MAE's mini-PointNet group embedding (the encoder's `token_embed` on point groups)."""
from __future__ import annotations

from collections.abc import Sequence

import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402


class PointNetEmbed(nn.Module):
    """Point-MAE's group embedding: shared MLP 3->128->256 per point, max-pool, concat the group feature to
    every point, MLP 512->512->dim, max-pool. (B, G, k*3) -> (B, G, dim).

    widths = (first hidden, first out, second hidden): Point-MAE's (128, 256, 512) by default; the CPU demo
    uses narrower ones (the per-point MLPs are most of the compute of a small model).
    """

    def __init__(self, *, in_dim: int, dim: int, point_dim: int = 3, widths: Sequence[int] = (128, 256, 512)) -> None:
        super().__init__()
        if in_dim % point_dim:
            raise ValueError(f"token width {in_dim} is not a multiple of the point width {point_dim}: the mini-PointNet "
                             "(model.encoder.token_embed) embeds point groups, use it with modality=pointcloud")
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
