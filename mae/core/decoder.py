"""Lightweight MAE decoder: puts mask tokens back in place and predicts only the hidden tokens."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from mae.core.encoder import LayerNorm, init_mae_weights, padding_attn_mask, transformer_blocks
from mae.core.interfaces import MAEDecoder
from mae.core.tokens import Mask, Tokens, gather_tokens
from mae.core.window_attention import window_blocks


class Decoder(MAEDecoder):
    """latent (B, prefix+K, D_enc) -> predictions (B, M, out_dim) at the hidden positions.

    window=[wt, wf] (null: global attention): Audio-MAE's local decoder (models_mae.py decoder_mode=1, see
    mae.core.window_attention): the prefix (cls) is dropped and the grid runs through post-norm Swin blocks with
    windowed cosine attention and a relative position bias, every odd block shifted by wt // 2 on time when
    window_shift is true."""

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
        drop_path: float = 0.0,
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
        # drop_path: stochastic depth rising linearly to this rate over the blocks (Point-MAE's decoder: 0.1)
        if window is None:
            self.blocks = transformer_blocks(dim=dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
                                             drop_path=drop_path)
        elif drop_path:
            raise ValueError("model.decoder.drop_path applies to the global-attention decoder; Audio-MAE's local "
                             "decoder (model.decoder.window set) has none: set model.decoder.drop_path=0")
        else:
            self.blocks = window_blocks(dim=dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, window=window,
                                        shift=self.window_shift)
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
            if self.window is not None:
                if pad is not None:
                    raise ValueError("model.decoder.window (Audio-MAE's windowed blocks) does not take padded tokens: "
                                     "set model.decoder.window=null for data with padding")
                x = x if self.pos_every_block else x + pe  # (B, N, Dd): the prefix is dropped (decoder_mode=1)
                for block in self.blocks:
                    x = block(x + pe if self.pos_every_block else x, tokens.grid)
                return self.head(gather_tokens(self.norm(x), mask.masked))  # (B, M, out_dim)
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
        for block in self.blocks:
            x = block(x if pe is None else x + pe, attn_mask=attn_mask)
        if mask.decode is None:
            return self.head(gather_tokens(self.norm(x[:, self.num_prefix :]), mask.masked))  # (B, M, out_dim)
        return self.head(self.norm(x[:, -mask.decode.shape[1] :]))  # (B, M', out_dim)

