"""Lightweight MAE decoder: puts mask tokens back in place and predicts only the hidden tokens."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from mae.encoder import LayerNorm, init_mae_weights, padding_attn_mask, transformer_blocks
from mae.types import Mask, Tokens, gather_tokens


class Decoder(nn.Module):
    """latent (B, prefix+K, D_enc) -> predictions (B, M, out_dim) at the hidden positions."""

    def __init__(
        self,
        *,
        enc_dim: int,
        num_prefix: int,
        out_dim: int,
        dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        pos_embed: Callable[..., nn.Module],
    ) -> None:
        super().__init__()
        self.num_prefix = num_prefix
        self.embed = nn.Linear(enc_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = pos_embed(dim=dim)
        self.blocks = transformer_blocks(dim=dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio)
        self.norm = LayerNorm(dim)
        self.head = nn.Linear(dim, out_dim)
        init_mae_weights(self)
        nn.init.normal_(self.mask_token, std=0.02)

    def no_weight_decay(self) -> set[str]:
        return {"mask_token"}

    def forward(self, latent: Tensor, tokens: Tokens, mask: Mask) -> Tensor:
        x = self.embed(latent)  # (B, prefix+K, Dd)
        prefix, x = x[:, : self.num_prefix], x[:, self.num_prefix :]
        b, m = mask.masked.shape
        x = torch.cat([x, self.mask_token.expand(b, m, -1).to(x.dtype)], dim=1)  # (B, N, Dd) shuffled
        x = gather_tokens(x, mask.restore)  # (B, N, Dd) original order
        x = x + self.pos_embed(tokens.pos).to(x.dtype)  # pos (B or 1, N, P)
        x = torch.cat([prefix, x], dim=1)  # (B, prefix+N, Dd)
        attn_mask = padding_attn_mask(tokens.pad, self.num_prefix)
        for block in self.blocks:
            x = block(x, attn_mask=attn_mask)
        x = self.norm(x[:, self.num_prefix :])  # (B, N, Dd)
        return self.head(gather_tokens(x, mask.masked))  # (B, M, out_dim)
