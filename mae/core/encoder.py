"""Asymmetric MAE encoder: a ViT from timm blocks that only ever sees the visible tokens."""
from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from mae.core.interfaces import MAEEncoder
from mae.core.tokens import Mask, Tokens, gather_tokens

LayerNorm = partial(nn.LayerNorm, eps=1e-6)


def init_mae_weights(module: nn.Module) -> None:
    """MAE initialisation: xavier-uniform linears with zero bias, unit LayerNorms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def transformer_blocks(*, dim: int, depth: int, num_heads: int, mlp_ratio: float, drop_path: float = 0.0,
                       norm_eps: float = 1e-6) -> nn.ModuleList:
    """`depth` pre-norm timm blocks (fused scaled-dot-product attention where timm enables it). drop_path: the
    stochastic-depth rate of the last block, rising linearly from 0 at the first (timm's / MAE's schedule)."""
    if dim % num_heads:
        raise ValueError(f"width {dim} is not divisible by num_heads {num_heads}")
    if not 0.0 <= drop_path < 1.0:
        raise ValueError(f"drop_path must be in [0, 1), got {drop_path}")
    rates = torch.linspace(0, drop_path, depth).tolist() if depth else []
    norm = partial(nn.LayerNorm, eps=norm_eps)
    return nn.ModuleList(
        Block(dim=dim, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=True, norm_layer=norm, drop_path=rate)
        for rate in rates
    )


def padding_attn_mask(pad: Tensor | None, num_prefix: int) -> Tensor | None:
    """(B, N) padding flags -> (B, 1, 1, prefix+N) boolean mask, True = may attend."""
    if pad is None:
        return None
    allowed = torch.cat([pad.new_zeros(pad.shape[0], num_prefix), pad], dim=1).logical_not()
    return allowed[:, None, None, :]


def max_mean_pool(x: Tensor, pad: Tensor | None) -> Tensor:
    """(B, N, D) tokens -> (B, 2D) = concat(max, mean) over the tokens that are not padding."""
    if pad is None:
        return torch.cat([x.amax(dim=1), x.mean(dim=1)], dim=-1)
    keep = pad.logical_not().unsqueeze(-1)  # (B, N, 1)
    mx = x.masked_fill(~keep, float("-inf")).amax(dim=1)
    mean = (x * keep).sum(1) / keep.sum(1).clamp_min(1)
    return torch.cat([mx, mean], dim=-1)


class Encoder(MAEEncoder):
    """Token embedding + positional embedding + optional cls token + timm blocks + final norm.

    forward(tokens, mask) encodes only the visible tokens `mask.keep` (B, K); pool(tokens) embeds every
    token without masking and returns one vector per sample for evaluation and downstream use.
    """

    latents = "visible"

    def __init__(
        self,
        *,
        token_dim: int,
        dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        cls_token: bool = True,
        pool: str = "mean",
        pos_embed: Callable[..., nn.Module],
        token_embed: Callable[..., nn.Module] | None = None,
        pos_every_block: bool = False,
        drop_path: float = 0.0,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if not isinstance(pos_every_block, bool):
            raise TypeError(f"model.encoder.pos_every_block must be a bool, got {pos_every_block!r}")
        self.pos_every_block = pos_every_block  # Point-MAE: pos added before every block, not once at the input
        if pool not in ("mean", "cls", "max_mean"):
            raise ValueError(f"model.pool must be 'mean', 'cls' or 'max_mean', got {pool!r}")
        if pool == "cls" and not cls_token:
            raise ValueError("model.pool=cls needs model.cls_token=true")
        self.dim, self.pool_type = dim, pool
        self.pool_dim = 2 * dim if pool == "max_mean" else dim  # width of `pool`'s output
        self.num_prefix = 1 if cls_token else 0
        # (B, N, C) -> (B, N, D); a Linear on flattened patches equals a strided conv patch embedding.
        self.embed = token_embed(in_dim=token_dim, dim=dim) if token_embed else nn.Linear(token_dim, dim)
        self.pos_embed = pos_embed(dim=dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if cls_token else None
        self.blocks = transformer_blocks(dim=dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
                                         drop_path=drop_path, norm_eps=norm_eps)
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        init_mae_weights(self)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=0.02)

    def no_weight_decay(self) -> set[str]:
        return {"cls_token"}

    def _encode(self, tokens: Tokens, keep: Tensor | None) -> Tensor:
        """Embed and run the blocks on the selected tokens; (B, prefix+K, D), before the final norm."""
        values, pos, pad = tokens.values, tokens.pos, tokens.pad
        if keep is not None:
            values = gather_tokens(values, keep)  # (B, K, C)
            pos = gather_tokens(pos, keep)  # (B, K, P)
            pad = None if pad is None else torch.gather(pad, 1, keep)  # (B, K)
        return self.run_blocks(self.embed(values), self.pos_embed(pos).to(values.dtype), pad)

    def run_blocks(self, x: Tensor, pe: Tensor, pad: Tensor | None) -> Tensor:
        """(B, L, D) embedded tokens, (B|1, L, D) their position embedding, (B, L) padding -> (B, prefix+L, D):
        positions (once, or before every block), cls token, blocks; before the final norm."""
        x = x if self.pos_every_block else x + pe  # (B, L, D)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (B, 1+L, D)
        pe = nn.functional.pad(pe, (0, 0, self.num_prefix, 0)) if self.pos_every_block else None  # (B|1, prefix+L, D)
        attn_mask = padding_attn_mask(pad, self.num_prefix)
        for block in self.blocks:
            x = block(x if pe is None else x + pe, attn_mask=attn_mask)
        return x

    def forward(self, tokens: Tokens, mask: Mask | None = None) -> Tensor:
        """(B, prefix+K, D) normalised latents of the visible tokens `mask.keep` (all tokens if mask is None)."""
        return self.norm(self._encode(tokens, None if mask is None else mask.keep))

    def pool(self, tokens: Tokens, keep: Tensor | None = None) -> Tensor:
        """(B, pool_dim) one embedding per sample, as MAE's linear probe / fine-tuning use it: from all tokens, or
        from the tokens at `keep` (B, K) only (Audio-MAE's fine-tuning masking drops the others).

        cls: norm(x)[:, 0]. mean: norm(mean of the non-padding tokens) (MAE's global_pool / timm fc_norm).
        max_mean: concat(max, mean) of the normalised non-padding tokens, (B, 2D) (Point-MAE style).
        """
        x = self._encode(tokens, keep)  # (B, prefix+K, D)
        pad = tokens.pad if keep is None or tokens.pad is None else torch.gather(tokens.pad, 1, keep)  # (B, K)
        if self.pool_type == "cls":
            return self.norm(x)[:, 0]
        if self.pool_type == "max_mean":
            return max_mean_pool(self.norm(x[:, self.num_prefix :]), pad)
        x = x[:, self.num_prefix :]  # (B, K, D)
        if pad is None:
            return self.norm(x.mean(dim=1))
        weight = pad.logical_not().to(x.dtype).unsqueeze(-1)  # (B, K, 1)
        return self.norm((x * weight).sum(1) / weight.sum(1).clamp_min(1.0))
