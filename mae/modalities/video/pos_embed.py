"""Video positional embeddings of the papers: MAE-ST's separable learned space + time tables (`--sep_pos_embed`,
models_mae.py) and VideoMAE's fixed 1-D sinusoid over the flattened tokens (modeling_pretrain.py
get_sinusoid_encoding_table, VideoMAE and V2). The default (conf/modality/video.yaml) is the 3-D sin-cos of
mae.core.pos_embed.SinCosPosEmbed."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mae.core.grid import as_hw
from mae.core.pos_embed import GridTablePosEmbed, sinusoid_1d_table


def token_grid(num_frames: int, image_size: int | list[int], tubelet_size: int,
               patch_size: int) -> tuple[int, int, int]:
    """(T / t, H / p, W / p), with an error naming the keys when a size does not divide."""
    h, w = as_hw(image_size)
    if num_frames % tubelet_size or h % patch_size or w % patch_size:
        raise ValueError(f"pos_embed: data.num_frames={num_frames} / tokenizer.tubelet_size={tubelet_size} and "
                         f"data.image_size={image_size} / tokenizer.patch_size={patch_size} must divide exactly")
    return num_frames // tubelet_size, h // patch_size, w // patch_size


class Sinusoid1DPosEmbed(GridTablePosEmbed):
    """VideoMAE's fixed positions: the 1-D sinusoid table of the flattened (t, h, w) token index
    (`get_sinusoid_encoding_table(num_patches, dim)`, encoder and decoder alike), looked up by grid coordinates."""

    def __init__(self, *, dim: int, num_frames: int, image_size: int | list[int], tubelet_size: int,
                 patch_size: int) -> None:
        grid = token_grid(num_frames, image_size, tubelet_size, patch_size)
        super().__init__(table=sinusoid_1d_table(grid[0] * grid[1] * grid[2], dim), grid=grid, trainable=False)


class SeparablePosEmbed(nn.Module):
    """(B|1, K, 3) integer (t, h, w) token coordinates -> (B|1, K, dim) = spatial[h * W + w] + temporal[t].

    MAE-ST's pos_embed_spatial (1, H*W, D) `.repeat(1, T, 1)` plus `repeat_interleave(pos_embed_temporal, H*W)` is
    this lookup on its row-major (t, h, w) tokens. The grid is (num_frames / tubelet_size, H / patch_size,
    W / patch_size), given by the config (data.num_frames, tokenizer.*), as MAE-ST sizes its tables at build time.
    The cls token gets no position here: MAE-ST's pos_embed_class is a second learned vector added to the learned
    cls token, the same function."""

    def __init__(self, *, dim: int, num_frames: int, image_size: int | list[int], tubelet_size: int,
                 patch_size: int, std: float = 0.02) -> None:
        super().__init__()
        self.dim, self.grid = dim, token_grid(num_frames, image_size, tubelet_size, patch_size)
        # models_mae.py initialize_weights: trunc_normal_(pos_embed_spatial / pos_embed_temporal, std=0.02)
        self.spatial = nn.Parameter(nn.init.trunc_normal_(torch.zeros(self.grid[1] * self.grid[2], dim), std=std))
        self.temporal = nn.Parameter(nn.init.trunc_normal_(torch.zeros(self.grid[0], dim), std=std))

    def forward(self, pos: Tensor) -> Tensor:
        coords = pos.round().long()  # (B|1, K, 3) = (t, h, w)
        t, h, w = coords.unbind(-1)  # the config ties the grid to the tokenizer's (no per-step check: no sync)
        return self.spatial[h * self.grid[2] + w] + self.temporal[t]  # (B|1, K, D)
