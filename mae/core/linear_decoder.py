"""The one-layer prediction head of the "encoder sees every token" family (SimMIM, MaskFeat, PatchTST): the
encoder has already put its [MASK] token (or zeros) at the hidden positions and run all N tokens; the head reads
the hidden positions out and maps each latent to its target with one linear layer."""
from __future__ import annotations

from torch import Tensor, nn

from mae.core.interfaces import MAEDecoder
from mae.core.tokens import Mask, Tokens, gather_tokens


class LinearDecoder(MAEDecoder):
    """latent (B, prefix+N, D_enc) of EVERY token -> (B, M', out_dim) predictions at `mask.predicted`.

    dropout: applied to the latents before the linear layer (PatchTST's pretrain head: dropout then Linear).
    dim / depth / num_heads: the sizes of a transformer decoder, which a linear head has not: accepted and unused, so
    that shrinking configs written on shared keys (debug=fast, tests/conftest.py tiny_fit) apply to every model.
    """

    reads = "all"

    def __init__(self, *, enc_dim: int, num_prefix: int, out_dim: int, dropout: float = 0.0, dim: int | None = None,
                 depth: int | None = None, num_heads: int | None = None) -> None:
        super().__init__()
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"model.decoder.dropout must be a number in [0, 1), got {dropout!r}")
        self.num_prefix = num_prefix
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(enc_dim, out_dim)

    def forward(self, latent: Tensor, tokens: Tokens, mask: Mask) -> Tensor:
        n = tokens.num_tokens
        if latent.shape[1] != self.num_prefix + n:
            raise ValueError(
                f"model.decoder=linear reads the hidden tokens out of the encoder's output, so it needs an encoder that "
                f"sees every token ({self.num_prefix}+{n} latents), got {latent.shape[1]}: use it with an encoder that "
                "puts mask tokens in place (model=simmim / maskfeat / patchtst), not the MAE encoder of visible tokens")
        x = latent[:, self.num_prefix :]  # (B, N, D)
        return self.head(self.drop(gather_tokens(x, mask.predicted)))  # (B, M', out_dim)
