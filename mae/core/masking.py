"""Masking as a permutation.

Every masker turns per-token *scores* into a `Mask`: argsort the scores, the lowest M are hidden,
the rest visible; a second argsort inverts the permutation. Structured masks (block, and later tube,
frame, time/freq) only change how the scores are drawn. Everything is vectorised over the batch and
runs on the tokens' device; randomness comes from an explicit `torch.Generator` so that a mask is a
pure function of (seed, step).

Padding (`Tokens.pad`, e.g. the trailing patches of a shorter UCR series) is never drawn: `mask_real` hides,
per row, exactly `num_masked(n_b, ratio)` of the row's n_b real tokens (the lowest-scoring ones), so the
structure of the scores is kept on the real tokens. Shapes stay static: K = the largest visible real count
of the batch; a shorter row fills its spare visible slots with padding tokens, which the encoder never
attends to and never pools (`Tokens.pad` gathered at `keep`), and all its other padding goes to the hidden
slots, where the loss weight is 0 (`MAEModule.forward`). Hidden real tokens come first in `masked`.
"""
from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from mae.core.grid import grid_coords
from mae.core.interfaces import DecoderMask, Masker
from mae.core.tokens import Mask, Tokens


def num_masked(num_tokens: int, ratio: float) -> int:
    """Exact count of hidden tokens: N - int(N * (1 - ratio)), as in MAE; at least one of each kind."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 < ratio < 1.0:
        raise ValueError(f"mask.ratio must be a number in (0, 1), got {ratio!r}")
    keep = int(num_tokens * (1.0 - ratio))
    keep = min(max(keep, 1), num_tokens - 1)
    return num_tokens - keep


def real_keep_counts(num_real: Tensor, ratio: float) -> Tensor:
    """(B,) real tokens per row -> (B,) visible real tokens per row: `num_masked`'s rule int(n (1 - ratio))
    clamped to [1, n - 1], per row. A row with one real token keeps it (nothing hidden: the encoder needs a
    visible token and the loss simply gets none from that row)."""
    keep = torch.floor(num_real.double() * (1.0 - ratio)).long()  # int() of a non-negative float
    keep = torch.minimum(keep.clamp_min(1), (num_real - 1).clamp_min(1))
    return torch.minimum(keep, num_real)


def mask_real(scores: Tensor, pad: Tensor | None, ratio: float) -> Mask:
    """scores (B, N), lowest hidden; pad (B, N) True = padding or None. Hides exactly `num_masked(n_b, ratio)`
    of each row's n_b real tokens (see the module docstring for the static shapes). Without padding this is
    `mask_from_scores(scores, num_masked(N, ratio))`, bit for bit."""
    n = scores.shape[1]
    if pad is None or not bool(pad.any()):
        return mask_from_scores(scores, num_masked(n, ratio))
    if pad.shape != scores.shape:
        raise ValueError(f"Tokens.pad has shape {tuple(pad.shape)}, the tokens {tuple(scores.shape)}: the tokenizer "
                         "must flag every token (B, N)")
    real = pad.logical_not()  # (B, N)
    num_real = real.sum(dim=1)  # (B,)
    if bool((num_real == 0).any()):
        raise ValueError("a token sequence of the batch is all padding (Tokens.pad): nothing to mask or encode; "
                         "the datamodule must drop empty samples (e.g. a series with no observed step)")
    keep_real = real_keep_counts(num_real, ratio)  # (B,)
    hide_real = num_real - keep_real  # (B,)
    k = int(keep_real.max())  # visible slots: the largest visible real count of the batch
    order = torch.argsort(scores.masked_fill(pad, float("inf")), dim=1, stable=True)  # real by score, then padding
    rank = torch.argsort(order, dim=1)  # (B, N) position of each token in that order
    hidden_real = real & (rank < hide_real[:, None])  # the lowest-scoring real tokens
    spare_visible = pad & (rank - num_real[:, None] < (k - keep_real)[:, None])  # first padding tokens, by index
    kind = torch.where(real & ~hidden_real, 3, torch.where(spare_visible, 2, torch.where(hidden_real, 1, 0)))
    key = kind * n + (n - 1 - rank)  # (B, N) distinct: by kind, then lowest score first within a kind
    return mask_from_scores(key, n - k)


def refuse_padding(tokens: Tokens, what: str) -> None:
    """Raise ValueError when `tokens` hold padding: for maskers whose structure (whole tubes, frames, column x row
    crossings) cannot hide an exact share of each row's real tokens. No tokenizer of theirs pads today."""
    if tokens.pad is not None and bool(tokens.pad.any()):
        raise ValueError(f"{what} cannot mask padded tokens (Tokens.pad) exactly per row: choose mask=random or "
                         "mask=block, which hide exactly mask.ratio of each row's real tokens, or feed unpadded data")


def mask_from_scores(scores: Tensor, num_hidden: int) -> Mask:
    """scores: (B, N), lowest scores are hidden. Returns a Mask with K = N - num_hidden visible."""
    order = torch.argsort(scores, dim=1, descending=True)  # (B, N): visible first, hidden last
    n = scores.shape[1]
    keep, masked = order[:, : n - num_hidden], order[:, n - num_hidden :]
    restore = torch.argsort(order, dim=1)  # (B, N)
    return Mask(keep=keep, masked=masked, restore=restore)


def random_scores(batch: int, num_tokens: int, *, device: torch.device, generator: torch.Generator | None) -> Tensor:
    """(B, N) i.i.d. uniform scores: unstructured random masking (MAE)."""
    return torch.rand(batch, num_tokens, device=device, generator=generator)


def block_scores(
    batch: int,
    grid: tuple[int, ...],
    *,
    num_blocks: int,
    min_aspect: float,
    device: torch.device,
    generator: torch.Generator | None,
    pad: Tensor | None = None,
) -> Tensor:
    """(B, N) scores whose lowest values form `num_blocks` contiguous rectangles (BEiT-style blocks).

    Each block has a random centre and a random log-uniform aspect ratio in [min_aspect, 1/min_aspect]
    (applied to the first two grid axes). A token's score is its smallest scaled Chebyshev distance to
    any block centre, so hiding the lowest-M tokens grows all rectangles together until exactly M
    tokens are hidden. A small Euclidean term breaks ties so that every hidden token touches a hidden
    neighbour closer to its centre: each block stays 4-connected. pad (B, N) True = padding: the centres are
    then drawn uniformly among each row's real tokens (a block centred in the padding would only reach the
    real tokens at its edge).
    """
    coords = grid_coords(grid, device=device)  # (N, G)
    g = len(grid)
    if pad is None:
        sizes = torch.tensor(grid, device=device, dtype=torch.float32)
        centres = torch.rand(batch, num_blocks, g, device=device, generator=generator) * sizes  # (B, S, G)
        centres = centres.floor()
    else:
        real_first = torch.argsort(pad.to(torch.uint8), dim=1, stable=True)  # (B, N) real token indices first
        num_real = pad.logical_not().sum(dim=1, keepdim=True)  # (B, 1)
        pick = (torch.rand(batch, num_blocks, device=device, generator=generator) * num_real).long()  # (B, S)
        index = torch.gather(real_first, 1, torch.minimum(pick, num_real - 1))  # (B, S) a random real token each
        centres = coords[index]  # (B, S, G)
    scale = torch.ones(batch, num_blocks, g, device=device)
    if g >= 2:
        log_aspect = (torch.rand(batch, num_blocks, device=device, generator=generator) * 2 - 1) * math.log(1 / min_aspect)
        aspect = log_aspect.exp()  # (B, S): height / width
        scale[..., 0] = aspect.sqrt()
        scale[..., 1] = 1 / aspect.sqrt()
    delta = (coords[None, None] - centres[:, :, None]).abs() / scale[:, :, None]  # (B, S, N, G)
    cheb = delta.amax(dim=-1) + 1e-3 * delta.norm(dim=-1)  # (B, S, N)
    dist = cheb.amin(dim=1)  # (B, N)
    noise = torch.rand(dist.shape, device=device, generator=generator) * 1e-6
    return dist + noise  # small = hidden first


def nearest_seed_scores(pos: Tensor, *, num_seeds: int, generator: torch.Generator | None,
                        pad: Tensor | None = None) -> Tensor:
    """(B, N, P) continuous token positions -> (B, N) scores: Euclidean distance to the nearest of
    `num_seeds` randomly chosen tokens. Hiding the lowest-M tokens hides spatially contiguous regions
    (one ball of exactly M tokens around a random seed token for num_seeds=1). pad (B, N) True = padding:
    seeds are real tokens only (a row with fewer real tokens than seeds repeats padding seeds, harmless)."""
    b, n, _ = pos.shape
    draw = torch.rand(b, n, device=pos.device, generator=generator)  # (B, N)
    if pad is not None:
        draw = draw.masked_fill(pad, 2.0)  # padding sorts after every real token
    seeds = draw.argsort(dim=1)[:, :num_seeds]  # (B, S)
    centres = torch.gather(pos.float(), 1, seeds.unsqueeze(-1).expand(-1, -1, pos.shape[-1]))  # (B, S, P)
    dist = torch.cdist(pos.float(), centres).amin(dim=-1)  # (B, N)
    noise = torch.rand(dist.shape, device=pos.device, generator=generator) * 1e-6
    return dist + noise


class RandomMasker(Masker):
    """MAE: hide a uniformly random subset of exactly `num_masked(N, ratio)` tokens per sample (MAE-ST's random
    space-time masking on video); with padding, exactly `num_masked(n_b, ratio)` of each row's n_b real tokens
    (`mask_real`). Any token set can be masked at random."""

    def __init__(self, *, ratio: float) -> None:
        num_masked(2, ratio)  # validates the ratio early
        self.ratio = ratio

    def __call__(self, tokens: Tokens, generator: torch.Generator | None = None) -> Mask:
        b, n = tokens.batch_size, tokens.num_tokens
        scores = random_scores(b, n, device=tokens.values.device, generator=generator)
        return mask_real(scores, tokens.pad, self.ratio)


class DualMasker(Masker):
    """Dual masking (VideoMAE V2) around any masker: `base` chooses what the encoder sees, `decoder` which of
    the hidden tokens the decoder reconstructs (`Mask.decode`). Draws from the same generator after `base`."""

    def __init__(self, *, base: Masker, decoder: DecoderMask) -> None:
        self.base, self.decoder = base, decoder

    def check_grid(self, grid: tuple[int, ...] | None) -> None:
        self.base.check_grid(grid)
        self.decoder.check_grid(grid)

    def __call__(self, tokens: Tokens, generator: torch.Generator | None = None) -> Mask:
        return self.decoder(self.base(tokens, generator), tokens, generator)


def with_decoder_mask(mask: Mask, decode: Tensor) -> Mask:
    """The same Mask (subclass fields kept) whose decoder reconstructs only the hidden tokens `decode` (B, M')."""
    return dataclasses.replace(mask, decode=decode)


class BlockMasker(Masker):
    """BEiT-style block masking on the token grid with an exact ratio (see `block_scores`); on tokens
    without a grid (point groups), the tokens nearest to random seed tokens (see `nearest_seed_scores`).
    With padding, the blocks grow from real tokens and hide exactly `num_masked(n_b, ratio)` real ones per row.

    num_blocks None: 4 rectangles on a 2-D grid (images, spectrograms), 1 span on a 1-D grid (series patches)
    and 1 ball on tokens without a grid (point groups).
    """

    def __init__(self, *, ratio: float, num_blocks: int | None = None, min_aspect: float = 0.3) -> None:
        num_masked(2, ratio)
        whole = isinstance(num_blocks, int) and not isinstance(num_blocks, bool)
        if num_blocks is not None and (not whole or num_blocks < 1):
            raise ValueError(f"mask.num_blocks must be null or an integer >= 1, got {num_blocks!r}")
        if isinstance(min_aspect, bool) or not isinstance(min_aspect, (int, float)) or not 0.0 < min_aspect <= 1.0:
            raise ValueError(f"mask.min_aspect must be a number in (0, 1], got {min_aspect!r}")
        self.ratio, self.num_blocks, self.min_aspect = ratio, num_blocks, min_aspect

    def check_grid(self, grid: tuple[int, ...] | None) -> None:
        """Grid tokens get rectangles; tokens without a grid (point groups) get balls around their `pos`."""
        if grid is not None and len(grid) == 3:
            raise ValueError(f"mask=block draws 2-D (BEiT) rectangles and the tokens lie on a (T, H, W) grid {grid} "
                             "(modality=video): choose mask=tube, mask=random or mask=frame")

    def blocks_for(self, grid: tuple[int, ...] | None) -> int:
        """The number of blocks on tokens with this grid (see the class docstring for num_blocks None)."""
        if self.num_blocks is not None:
            return self.num_blocks
        return 4 if grid is not None and len(grid) == 2 else 1

    def __call__(self, tokens: Tokens, generator: torch.Generator | None = None) -> Mask:
        blocks = self.blocks_for(tokens.grid)
        pad = tokens.pad if tokens.pad is not None and bool(tokens.pad.any()) else None
        if tokens.grid is None:  # continuous positions: the groups nearest to num_blocks random seed tokens
            pos = tokens.pos.expand(tokens.batch_size, -1, -1)  # (B, N, P)
            scores = nearest_seed_scores(pos, num_seeds=blocks, generator=generator, pad=pad)
            return mask_real(scores, pad, self.ratio)  # small = hidden, padding never drawn
        scores = block_scores(
            tokens.batch_size, tokens.grid, num_blocks=blocks, min_aspect=self.min_aspect,
            device=tokens.values.device, generator=generator, pad=pad,
        )
        return mask_real(scores, pad, self.ratio)  # small = hidden, padding never drawn



