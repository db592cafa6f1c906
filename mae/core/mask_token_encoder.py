"""The encoder of the "encoder sees every token" family (SimMIM, MaskFeat): the embeddings of the hidden tokens are
replaced by one learned [MASK] token, and the whole sequence runs through the ViT, so a one-layer head
(mae/core/linear_decoder.py) reads the hidden positions out of (B, prefix+N, D).

The order is the official one: patch embedding -> blend with the mask token -> cls token -> positional embedding ->
blocks -> norm (microsoft/SimMIM models/simmim.py VisionTransformerForSimMIM.forward: `x = x * (1 - w) + mask_token
* w` right after `patch_embed`, before `cat(cls)` and `+ pos_embed`; SlowFast slowfast/models/masked.py
`_maskfeat_forward` the same). A hidden token therefore keeps its position: only its content is replaced.
Works for any tokens (image, video, spectrogram grids): it needs nothing but `Mask.mask_token_at()`.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.layers import LayerScale
from torch import Tensor, nn

from mae.core.encoder import Encoder
from mae.core.tokens import Mask, Tokens


def blend_mask_token(x: Tensor, hidden: Tensor, mask_token: Tensor) -> Tensor:
    """(B, N, D) embeddings, (B, N) True = hidden, (1, 1, D) token -> (B, N, D) with the token at the hidden ones:
    SimMIM's `w = mask.flatten(1).unsqueeze(-1); x = x * (1 - w) + mask_token * w`."""
    w = hidden.unsqueeze(-1).to(x.dtype)  # (B, N, 1)
    return x * (1 - w) + mask_token.to(x.dtype) * w


class MaskTokenEncoder(Encoder):
    """`Encoder` (same embedding, positions, cls token, blocks, norm, pooling) whose `forward(tokens, mask)` returns
    the latents of EVERY token, (B, prefix+N, D), the hidden ones encoded from the learned [MASK] token.

    no_decay: parameter names kept out of weight decay (SimMIM's ViT decays its mask token but not cls_token,
    models/vision_transformer.py no_weight_decay = {pos_embed, cls_token}; MaskFeat's recipe decays both,
    MVIT.ZERO_DECAY_POS_CLS False); 1-D parameters (norms, biases) are never decayed (mae/core/optim.py).
    layer_scale: timm's LayerScale init value on both residual branches of every block (SimMIM ViT
    MODEL.VIT.INIT_VALUES 0.1, config.py); null = none (MaskFeat, MAE).
    pool (evaluation, fine-tuning) is the Encoder's: every token, no mask token.
    """

    latents = "all"

    def __init__(self, *, no_decay: Sequence[str] = ("cls_token", "mask_token"), layer_scale: float | None = None,
                 **encoder) -> None:
        super().__init__(**encoder)
        if isinstance(no_decay, str) or not all(isinstance(n, str) for n in no_decay):
            raise ValueError(f"model.encoder.no_decay must be a list of parameter names, got {no_decay!r}")
        unknown = set(no_decay) - {"cls_token", "mask_token"}
        if unknown:
            raise ValueError(f"model.encoder.no_decay names unknown parameters {sorted(unknown)}: "
                             "choose among cls_token, mask_token")
        self.no_decay = set(no_decay)
        if layer_scale is not None:
            if isinstance(layer_scale, bool) or not isinstance(layer_scale, (int, float)) or not layer_scale > 0:
                raise ValueError(f"model.encoder.layer_scale must be null or a number > 0, got {layer_scale!r}")
            for block in self.blocks:  # timm's Block(init_values=...) builds the same LayerScale modules
                block.ls1 = LayerScale(self.dim, init_values=float(layer_scale))
                block.ls2 = LayerScale(self.dim, init_values=float(layer_scale))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, self.dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)  # simmim.py / masked.py: trunc_normal_(mask_token, std=.02)

    def no_weight_decay(self) -> set[str]:
        return set(self.no_decay)

    def forward(self, tokens: Tokens, mask: Mask | None = None) -> Tensor:
        """(B, prefix+N, D) normalised latents of every token, the hidden ones (`mask.mask_token_at()`) entering as
        the [MASK] token; mask None = no token replaced (the plain encoder on all tokens)."""
        x = self.embed(tokens.values)  # (B, N, D)
        if mask is not None:
            x = blend_mask_token(x, mask.mask_token_at(), self.mask_token)  # before cls and positions, as SimMIM
        return self.norm(self.run_blocks(x, self.pos_embed(tokens.pos).to(x.dtype), tokens.pad))
