"""Lightweight MAE decoder: puts mask tokens back in place and predicts only the hidden tokens."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from mae.core.encoder import LayerNorm, init_mae_weights, padding_attn_mask, transformer_blocks
from mae.core.interfaces import MAEDecoder
from mae.core.tokens import Mask, Tokens, gather_tokens


class Decoder(MAEDecoder):
    """latent (B, prefix+K, D_enc) -> predictions (B, M, out_dim) at the hidden positions."""

    reads = "visible"

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
        window: list[int] | None = None,
        window_shift: bool = True,
        pos_every_block: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(pos_every_block, bool):
            raise TypeError(f"model.decoder.pos_every_block must be a bool, got {pos_every_block!r}")
        self.num_prefix, self.pos_every_block = num_prefix, pos_every_block
        if window is not None:
            window = [int(w) for w in window]
            if not window or min(window) < 1:
                raise ValueError(f"model.decoder.window must be null or a list of positive ints per grid axis, got {window}")
        self.window, self.window_shift = window, bool(window_shift)
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
        """(B, M', out_dim) predictions at `mask.predicted`.

        Plain MAE (mask.decode None): visible latents and mask tokens are put back in grid order (`restore`), all
        N tokens run through the blocks, the hidden ones are read out. Dual masking (VideoMAE V2, mask.decode
        set): only the K visible latents and mask tokens at the M' `decode` positions enter, each with its
        position embedding (attention does not depend on token order, so nothing is restored); local windows
        need the full grid and refuse this case.
        """
        x = self.embed(latent)  # (B, prefix+K, Dd)
        prefix, x = x[:, : self.num_prefix], x[:, self.num_prefix :]
        pe = self.pos_embed(tokens.pos).to(x.dtype)  # pos (B or 1, N, P) -> (B|1, N, Dd)
        b = x.shape[0]
        if mask.decode is None:
            x = torch.cat([x, self.mask_token.expand(b, mask.masked.shape[1], -1).to(x.dtype)], dim=1)  # shuffled
            x = gather_tokens(x, mask.restore)  # (B, N, Dd) grid order
            pad = tokens.pad
        else:
            if self.window is not None:
                raise ValueError("model.decoder.window (local attention on the full grid) cannot be combined with "
                                 "decoder_mask (the decoder then sees a subset of the tokens): set one of them to null")
            index = torch.cat([mask.keep, mask.decode], dim=1)  # (B, K+M')
            x = torch.cat([x, self.mask_token.expand(b, mask.decode.shape[1], -1).to(x.dtype)], dim=1)  # (B, K+M', Dd)
            pe = gather_tokens(pe, index)  # (B, K+M', Dd)
            pad = None if tokens.pad is None else torch.gather(tokens.pad, 1, index)
        x = torch.cat([prefix, x if self.pos_every_block else x + pe], dim=1)  # (B, prefix+L, Dd)
        pe = nn.functional.pad(pe, (0, 0, self.num_prefix, 0)) if self.pos_every_block else None  # (B|1, prefix+L, Dd)
        attn_mask = padding_attn_mask(pad, self.num_prefix)
        for i, block in enumerate(self.blocks):
            if self.window is not None:
                local = window_attn_mask(tokens.grid, self.window, self.num_prefix, shift=self.window_shift and i % 2 == 1,
                                         device=x.device)
                block_mask = local if attn_mask is None else attn_mask & local
            else:
                block_mask = attn_mask
            x = block(x if pe is None else x + pe, attn_mask=block_mask)
        if mask.decode is None:
            return self.head(gather_tokens(self.norm(x[:, self.num_prefix :]), mask.masked))  # (B, M, out_dim)
        return self.head(self.norm(x[:, -mask.decode.shape[1] :]))  # (B, M', out_dim)


def window_attn_mask(grid: tuple[int, ...] | None, window: list[int], num_prefix: int, *, shift: bool,
                     device: torch.device) -> Tensor:
    """(1, 1, prefix+N, prefix+N) boolean mask, True = may attend: local attention in non-overlapping windows
    of `window` tokens per grid axis (block-diagonal over windows of the restored grid); prefix tokens see
    and are seen by every token. shift=True moves the window partition by half a window on every axis
    (Swin's shifted windows, but with smaller windows at the borders instead of Swin's cyclic roll)."""
    if grid is None or len(grid) != len(window):
        raise ValueError(f"model.decoder.window={window} needs tokens on a grid with {len(window)} axes, got grid {grid}")
    coords = torch.stack(torch.meshgrid(*[torch.arange(s, device=device) for s in grid], indexing="ij"), -1)
    coords = coords.reshape(-1, len(grid))  # (N, G)
    offset = torch.tensor([w // 2 if shift else 0 for w in window], device=device)
    win = (coords + offset) // torch.tensor(window, device=device)  # (N, G) window index per axis
    same = (win[:, None, :] == win[None, :, :]).all(-1)  # (N, N)
    n = same.shape[0]
    full = torch.ones(num_prefix + n, num_prefix + n, dtype=torch.bool, device=device)
    full[num_prefix:, num_prefix:] = same
    return full[None, None]
