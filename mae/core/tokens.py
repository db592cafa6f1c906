"""The contract between the parts: what a tokenizer produces and what a masker returns."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Tokens:
    """A batch of tokens, before any embedding.

    values: (B, N, C) raw token content (patch pixels, tubelet, point group, node features).
    pos:    (B or 1, N, P) coordinates used for the positional embedding (grid indices for grids).
    grid:   token grid shape, e.g. (H, W), (T, H, W) or (T, F); None for unstructured tokens.
    pad:    (B, N) True where a token is padding; None when every token is real.
    edge_index: (2, E) int64 edges between tokens, as indices into the flattened B*N token list (sample b's
            token i is b*N + i; padding tokens have no edges); None for tokens without a graph structure.
    """

    values: Tensor
    pos: Tensor
    grid: tuple[int, ...] | None = None
    pad: Tensor | None = None
    edge_index: Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.values.shape[0]

    @property
    def num_tokens(self) -> int:
        return self.values.shape[1]


@dataclass
class Mask:
    """A per-sample permutation of the token indices split into visible and hidden parts.

    keep:    (B, K) indices of visible tokens (K is the same for every sample: static shapes).
    masked:  (B, M) indices of hidden tokens, K + M = N.
    restore: (B, N) inverse permutation: gathering cat([keep, masked]) with it gives 0..N-1.
    decode:  (B, M') optional subset of `masked`: the only hidden tokens the decoder reconstructs
             (VideoMAE V2 dual masking); None = all of `masked`.
    """

    keep: Tensor
    masked: Tensor
    restore: Tensor
    decode: Tensor | None = None

    @property
    def predicted(self) -> Tensor:
        """(B, M') indices of the tokens the decoder predicts and the loss is taken on."""
        return self.masked if self.decode is None else self.decode

    @property
    def shuffle(self) -> Tensor:
        """(B, N) the permutation itself: visible indices first, then hidden ones."""
        return torch.cat([self.keep, self.masked], dim=1)

    def encoder_input(self, tokens: Tokens) -> Tokens:
        """The tokens the encoder sees: unchanged here; a masker's Mask subclass may corrupt hidden tokens
        (GraphMAE's random replacement, mae/modalities/graph/masking.py)."""
        return tokens

    def mask_token_at(self) -> Tensor:
        """(B, N) True where an encoder that sees every token (a GNN) puts its [MASK] token: every hidden
        token here; GraphMAE's random replacement leaves the replaced ones out (mae/modalities/graph/masking.py)."""
        return self.hidden_bool()

    def hidden_bool(self) -> Tensor:
        """(B, N) True where a token is hidden; for pictures and tests, not for the hot path."""
        b, n = self.restore.shape
        hidden = torch.zeros(b, n, dtype=torch.bool, device=self.restore.device)
        return hidden.scatter(1, self.masked, True)


def gather_tokens(x: Tensor, index: Tensor) -> Tensor:
    """Select tokens along dim 1. x: (B or 1, N, C), index: (B, K) -> (B, K, C)."""
    if x.shape[0] == 1 and index.shape[0] != 1:
        x = x.expand(index.shape[0], *x.shape[1:])
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
