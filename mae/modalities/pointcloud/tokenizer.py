"""Point clouds -> Point-MAE groups: FPS centres + kNN neighbourhoods, points relative to their centre.

Tokens: values (B, G, k*3) = each group's k points minus its centre, flattened (x, y, z per point);
pos (B, G, 3) = the centres; grid None (block masking then uses distances between centres).
`PointNetEmbed` is Point-MAE's mini-PointNet group embedding, plugged into the encoder's `token_embed`.
"""
from __future__ import annotations

import torch
from torch import Tensor

from mae.core.interfaces import Tokenizer
from mae.core.tokens import Tokens
from mae.modalities.pointcloud.ops import group_points


class PointCloudTokenizer(Tokenizer):
    """batch["points"] (B, N, 3) -> Tokens(values (B, G, k*3), pos (B, G, 3) centres, grid None)."""

    layout = "point groups"

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


