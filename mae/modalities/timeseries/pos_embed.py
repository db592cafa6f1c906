"""PatchTST's learned positional embedding (experiment=patchtst_etth1)."""
from __future__ import annotations

import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402


class LearnedPosEmbed(nn.Module):
    """PatchTST's learned positional embedding W_pos (max_len, dim), uniform(-0.02, 0.02), looked up by the
    patch index in pos (B or 1, N, 1) -> (B or 1, N, dim)."""

    def __init__(self, *, dim: int, max_len: int = 128) -> None:
        super().__init__()
        self.dim, self.max_len = dim, max_len
        self.weight = nn.Parameter(torch.empty(max_len, dim).uniform_(-0.02, 0.02))

    def forward(self, pos: Tensor) -> Tensor:
        index = pos[..., 0].long()  # (B or 1, N)
        if int(index.max()) >= self.max_len:
            raise ValueError(f"patch index {int(index.max())} >= pos_embed.max_len={self.max_len}: raise it")
        return self.weight[index]
