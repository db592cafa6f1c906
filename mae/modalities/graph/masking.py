"""GraphMAE's node masking (Hou et al., KDD 2022), padding-aware and with random replacement.

A batch holds B graphs padded to N nodes (`Tokens.pad`). Per graph b with n_b real nodes exactly
m_b = n_b - clamp(floor(n_b (1 - ratio)), 1, n_b - 1) real nodes are hidden (as `num_masked`; a one-node
graph hides its node). Shapes stay static: M = max_b m_b hidden tokens per row, the rest of a row's hidden
slots are padding tokens (loss weight 0), which is always possible because m_b grows by at most one per node.

Random replacement (`replace_rate`): GraphMAE feeds int(replace_rate * m_b) of the hidden nodes the
features of random nodes of the same graph instead of the [MASK] token (the rest get [MASK]); the loss still
covers every hidden node. The draw comes from the masker's seeded generator, so it is a pure function of
the step; `GraphMask.encoder_input` applies it (called by `MAEModule.forward` before the encoder).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from mae.core.interfaces import Masker
from mae.core.masking import mask_from_scores
from mae.core.tokens import Mask, Tokens, gather_tokens


@dataclass
class GraphMask(Mask):
    """A Mask plus GraphMAE's random replacement.

    replace_source: (B, N) int64 token whose features each token takes (itself unless replaced).
    replaced:       (B, N) bool, hidden real nodes that take another node's features instead of [MASK].
    """

    replace_source: Tensor | None = None
    replaced: Tensor | None = None

    def encoder_input(self, tokens: Tokens) -> Tokens:
        """The tokens with the replaced nodes' features substituted (B, N, C)."""
        if self.replace_source is None:
            return tokens
        return dataclasses.replace(tokens, values=gather_tokens(tokens.values, self.replace_source))

    def mask_token_at(self) -> Tensor:
        """(B, N) the hidden nodes that get the [MASK] token: all hidden ones but the replaced."""
        hidden = self.hidden_bool()
        return hidden if self.replaced is None else hidden & ~self.replaced


def real_hidden_counts(num_real: Tensor, ratio: float) -> Tensor:
    """(B,) real node counts -> (B,) hidden counts n - clamp(floor(n (1 - ratio)), 1, n - 1) (n = 1: 1)."""
    keep = torch.floor(num_real.double() * (1.0 - ratio)).long()
    keep = torch.minimum(keep.clamp_min(1), num_real - 1).clamp_min(0)
    return num_real - keep


class GraphMasker(Masker):
    """GraphMAE's node masking: a uniformly random `ratio` of each graph's real nodes hidden (exact per graph),
    padding kept out of the count, and `replace_rate` of the hidden nodes given random nodes' features."""

    def __init__(self, *, ratio: float, replace_rate: float = 0.0) -> None:
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 < ratio < 1.0:
            raise ValueError(f"mask.ratio must be a number in (0, 1), got {ratio!r}")
        rate_ok = isinstance(replace_rate, (int, float)) and not isinstance(replace_rate, bool)
        if not rate_ok or not 0.0 <= replace_rate < 1.0:
            raise ValueError(f"mask.replace_rate must be a number in [0, 1), got {replace_rate!r}")
        self.ratio, self.replace_rate = float(ratio), float(replace_rate)

    def __call__(self, tokens: Tokens, generator: torch.Generator | None = None) -> GraphMask:
        b, n = tokens.batch_size, tokens.num_tokens
        device = tokens.values.device
        pad = tokens.pad if tokens.pad is not None else torch.zeros(b, n, dtype=torch.bool, device=device)
        real = ~pad  # (B, N)
        num_real = real.sum(dim=1)  # (B,)
        if bool((num_real == 0).any()):
            raise ValueError("a graph in the batch has no real node (all padding)")
        hidden_real = real_hidden_counts(num_real, self.ratio)  # (B,)
        m = int(hidden_real.max())
        if m >= n:  # one-node graphs only: keep one padding token visible is impossible without padding
            raise ValueError(f"cannot hide {m} of {n} tokens and keep one visible: pad the batch or use bigger graphs")
        draw = torch.rand(b, n, device=device, generator=generator)  # (B, N)
        order = torch.argsort(draw.masked_fill(pad, 2.0), dim=1)  # real nodes first, in random order
        rank = torch.argsort(order, dim=1)  # (B, N) position of each token in that order
        hidden = real & (rank < hidden_real[:, None])
        hidden |= pad & (rank < (num_real + m - hidden_real)[:, None])  # fill the row's spare slots with padding
        scores = torch.where(hidden, draw, 1.0 + draw)  # lowest M are hidden
        mask = mask_from_scores(scores, m)
        num_replaced = torch.floor(hidden_real.double() * self.replace_rate).long()  # (B,)
        replaced = real & (rank < num_replaced[:, None])  # a random subset of the hidden real nodes
        pick = torch.floor(torch.rand(b, n, device=device, generator=generator) * num_real[:, None]).long()
        source = torch.gather(order, 1, pick.clamp_max(n - 1))  # (B, N) a random real node of the same graph
        identity = torch.arange(n, device=device).expand(b, n)
        return GraphMask(keep=mask.keep, masked=mask.masked, restore=mask.restore,
                         replace_source=torch.where(replaced, source, identity), replaced=replaced)
