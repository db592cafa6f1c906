"""Masking as a permutation.

Every masker turns per-token *scores* into a `Mask`: argsort the scores, the lowest M are hidden,
the rest visible; a second argsort inverts the permutation. Structured masks (block, and later tube,
frame, time/freq) only change how the scores are drawn. Everything is vectorised over the batch and
runs on the tokens' device; randomness comes from an explicit `torch.Generator` so that a mask is a
pure function of (seed, step).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from mae.types import Mask, Tokens


def num_masked(num_tokens: int, ratio: float) -> int:
    """Exact count of hidden tokens: N - int(N * (1 - ratio)), as in MAE; at least one of each kind."""
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"mask.ratio must be in (0, 1), got {ratio}")
    keep = int(num_tokens * (1.0 - ratio))
    keep = min(max(keep, 1), num_tokens - 1)
    return num_tokens - keep


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


def grid_coords(grid: tuple[int, ...], *, device: torch.device) -> Tensor:
    """(N, G) integer coordinates of a row-major token grid of G dims."""
    axes = [torch.arange(s, device=device, dtype=torch.float32) for s in grid]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(grid))


def block_scores(
    batch: int,
    grid: tuple[int, ...],
    *,
    num_blocks: int,
    min_aspect: float,
    device: torch.device,
    generator: torch.Generator | None,
) -> Tensor:
    """(B, N) scores whose lowest values form `num_blocks` contiguous rectangles (BEiT-style blocks).

    Each block has a random centre and a random log-uniform aspect ratio in [min_aspect, 1/min_aspect]
    (applied to the first two grid axes). A token's score is its smallest scaled Chebyshev distance to
    any block centre, so hiding the lowest-M tokens grows all rectangles together until exactly M
    tokens are hidden. A small Euclidean term breaks ties so that every hidden token touches a hidden
    neighbour closer to its centre: each block stays 4-connected.
    """
    coords = grid_coords(grid, device=device)  # (N, G)
    g = len(grid)
    sizes = torch.tensor(grid, device=device, dtype=torch.float32)
    centres = torch.rand(batch, num_blocks, g, device=device, generator=generator) * sizes  # (B, S, G)
    centres = centres.floor()
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


def nearest_seed_scores(pos: Tensor, *, num_seeds: int, generator: torch.Generator | None) -> Tensor:
    """(B, N, P) continuous token positions -> (B, N) scores: Euclidean distance to the nearest of
    `num_seeds` randomly chosen tokens. Hiding the lowest-M tokens hides spatially contiguous regions
    (one ball of exactly M tokens around a random seed token for num_seeds=1)."""
    b, n, _ = pos.shape
    seeds = torch.rand(b, n, device=pos.device, generator=generator).argsort(dim=1)[:, :num_seeds]  # (B, S)
    centres = torch.gather(pos.float(), 1, seeds.unsqueeze(-1).expand(-1, -1, pos.shape[-1]))  # (B, S, P)
    dist = torch.cdist(pos.float(), centres).amin(dim=-1)  # (B, N)
    noise = torch.rand(dist.shape, device=pos.device, generator=generator) * 1e-6
    return dist + noise


class RandomMasker:
    """MAE: hide a uniformly random subset of exactly round(ratio * N) tokens per sample (MAE-ST's random
    space-time masking on video). `decoder="running_cell"`: VideoMAE V2 dual masking (see `DecoderMasking`)."""

    def __init__(self, *, ratio: float, decoder: str | None = None, decoder_ratio: float = 0.5) -> None:
        num_masked(2, ratio)  # validates the ratio early
        self.ratio = ratio
        self.decoder_masking = DecoderMasking(kind=decoder, ratio=decoder_ratio)

    def check_grid(self, grid: tuple[int, ...] | None) -> None:
        """Any token set can be masked at random (a decoder mask needs a (T, H, W) grid)."""
        self.decoder_masking.check_grid(grid)

    def __call__(self, tokens: Tokens, generator: torch.Generator | None = None) -> Mask:
        b, n = tokens.batch_size, tokens.num_tokens
        scores = random_scores(b, n, device=tokens.values.device, generator=generator)
        return self.decoder_masking(mask_from_scores(scores, num_masked(n, self.ratio)), tokens, generator)


class BlockMasker:
    """BEiT-style block masking on the token grid with an exact ratio (see `block_scores`); on tokens
    without a grid (point groups), the tokens nearest to random seed tokens (see `nearest_seed_scores`)."""

    def __init__(self, *, ratio: float, num_blocks: int = 1, min_aspect: float = 0.3) -> None:
        num_masked(2, ratio)
        if num_blocks < 1:
            raise ValueError(f"mask.num_blocks must be >= 1, got {num_blocks}")
        if not 0.0 < min_aspect <= 1.0:
            raise ValueError(f"mask.min_aspect must be in (0, 1], got {min_aspect}")
        self.ratio, self.num_blocks, self.min_aspect = ratio, num_blocks, min_aspect

    def check_grid(self, grid: tuple[int, ...] | None) -> None:
        """Grid tokens get rectangles; tokens without a grid (point groups) get balls around their `pos`."""
        if grid is not None and len(grid) == 3:
            raise ValueError(f"mask=block draws 2-D (BEiT) rectangles and the tokens lie on a (T, H, W) grid {grid} "
                             "(modality=video): choose mask=tube, mask=random or mask=frame")

    def __call__(self, tokens: Tokens, generator: torch.Generator | None = None) -> Mask:
        if tokens.grid is None:  # continuous positions: the groups nearest to num_blocks random seed tokens
            scores = nearest_seed_scores(tokens.pos, num_seeds=self.num_blocks, generator=generator)
            return mask_from_scores(scores, num_masked(tokens.num_tokens, self.ratio))  # small = hidden
        scores = block_scores(
            tokens.batch_size, tokens.grid, num_blocks=self.num_blocks, min_aspect=self.min_aspect,
            device=tokens.values.device, generator=generator,
        )
        return mask_from_scores(scores, num_masked(tokens.num_tokens, self.ratio))  # small = hidden


# ------------------------------------------------------------------------- time / frequency masking
def line_scores(
    batch: int,
    grid: tuple[int, ...],
    *,
    axes: tuple[int, ...],
    device: torch.device,
    generator: torch.Generator | None,
) -> Tensor:
    """(B, N) scores whose lowest values are whole grid lines (time columns and/or frequency rows).

    For every chosen axis a (0 = time, 1 = freq of a (T, F) grid) each line along it gets a random rank r,
    scored r / size_a + a / (4 T F) (the offset keeps a column and a row from ever tying). A token's score is the
    smallest score of its lines. Distinct line scores differ by at least 1 / (4 T F), and a token noise
    below 1 / (8 T F) only orders tokens *within* a line, so the lowest M tokens are: every line (column
    or row) whose score is below the threshold, whole, plus a random subset of the tokens still visible in
    exactly one more line (the one at the threshold). With two axes the hidden columns and rows come in
    equal fractions (e.g. 40 % of columns and 40 % of rows reach a bit over 64 % of tokens).
    """
    coords = grid_coords(grid, device=device).long()  # (N, G)
    n = coords.shape[0]
    cells = float(n)
    score = torch.full((batch, n), float("inf"), device=device, dtype=torch.float32)
    for a in axes:
        size = grid[a]
        rank = torch.argsort(torch.argsort(torch.rand(batch, size, device=device, generator=generator), dim=1), dim=1)
        line = rank.to(torch.float32) / size + a / (4.0 * cells)  # (B, size_a)
        score = torch.minimum(score, line[:, coords[:, a]])  # (B, N)
    noise = torch.rand(batch, n, device=device, generator=generator) / (8.0 * cells)
    return score + noise


class TimeFreqMasker:
    """Structured spectrogram masking (Audio-MAE's time / frequency / time+frequency masking) with an exact
    count: whole time columns (`time`), whole frequency rows (`freq`) or both, then the remainder inside one
    more column/row (see `line_scores`). The grid is (T, F): axis 0 time, axis 1 frequency."""

    def __init__(self, *, ratio: float, time: bool = True, freq: bool = True) -> None:
        num_masked(2, ratio)
        if not isinstance(time, bool) or not isinstance(freq, bool) or not (time or freq):
            raise ValueError(f"mask.time / mask.freq must be booleans and at least one true, got {time!r}, {freq!r}")
        self.ratio, self.axes = ratio, tuple(a for a, on in ((0, time), (1, freq)) if on)

    def check_grid(self, grid: tuple[int, ...] | None) -> None:
        if grid is None or len(grid) != 2:
            raise ValueError(
                f"mask=time/freq/timefreq needs tokens on a 2-D (time, freq) grid such as modality=audio; "
                f"got grid {grid}: choose mask=random"
            )

    def __call__(self, tokens: Tokens, generator: torch.Generator | None = None) -> Mask:
        self.check_grid(tokens.grid)
        assert tokens.grid is not None
        scores = line_scores(tokens.batch_size, tokens.grid, axes=self.axes, device=tokens.values.device,
                             generator=generator)
        return mask_from_scores(scores, num_masked(tokens.num_tokens, self.ratio))  # lowest scores hidden


# ------------------------------------------------------------------------------ video: tube / frame masks
def check_time_grid(grid: tuple[int, ...] | None, what: str) -> tuple[int, int, int]:
    """The (T, H, W) grid of video tokens; a clear error for tokens without a time axis. A 3-D grid is the
    test for "has a time axis": images (H, W) and spectrograms (T, F) are 2-D (on audio use mask=time)."""
    if grid is None or len(grid) != 3:
        raise ValueError(
            f"{what} needs tokens on a (T, H, W) space-time grid such as modality=video; got grid {grid}: "
            "choose mask=random or mask=block (images), mask=time/freq/timefreq (audio)"
        )
    t, h, w = grid
    return t, h, w


def tube_scores(batch: int, grid: tuple[int, int, int], *, device: torch.device,
                generator: torch.Generator | None) -> Tensor:
    """(B, T*H*W) scores equal along time: one random score per spatial position, repeated over the T time
    steps, so the lowest T*m tokens are the same m spatial positions in every time step (VideoMAE's tubes)."""
    t, h, w = grid
    spatial = torch.rand(batch, 1, h * w, device=device, generator=generator)  # (B, 1, H*W)
    return spatial.expand(batch, t, h * w).reshape(batch, t * h * w)  # (B, N), row-major (t, h, w)


def frame_scores(batch: int, grid: tuple[int, int, int], *, device: torch.device,
                 generator: torch.Generator | None) -> Tensor:
    """(B, T*H*W) scores equal within a time step: hiding the lowest f*H*W tokens hides f whole time steps."""
    t, h, w = grid
    per_step = torch.rand(batch, t, 1, device=device, generator=generator)  # (B, T, 1)
    return per_step.expand(batch, t, h * w).reshape(batch, t * h * w)  # (B, N)


class TubeMasker:
    """VideoMAE tube masking: one random spatial mask of exactly `num_masked(H*W, ratio)` positions per
    sample, shared by all T time steps (hidden tokens = T times that). Ties between the T copies of a
    position never matter: whole positions are hidden or kept. `decoder="running_cell"`: VideoMAE V2."""

    what = "mask=tube"

    def __init__(self, *, ratio: float, decoder: str | None = None, decoder_ratio: float = 0.5) -> None:
        num_masked(2, ratio)
        self.ratio = ratio
        self.decoder_masking = DecoderMasking(kind=decoder, ratio=decoder_ratio)

    def check_grid(self, grid: tuple[int, ...] | None) -> None:
        check_time_grid(grid, self.what)
        self.decoder_masking.check_grid(grid)

    def scores(self, grid: tuple[int, int, int], batch: int, device: torch.device,
               generator: torch.Generator | None) -> tuple[Tensor, int]:
        t, h, w = grid
        return tube_scores(batch, grid, device=device, generator=generator), t * num_masked(h * w, self.ratio)

    def __call__(self, tokens: Tokens, generator: torch.Generator | None = None) -> Mask:
        grid = check_time_grid(tokens.grid, self.what)
        scores, hidden = self.scores(grid, tokens.batch_size, tokens.values.device, generator)
        return self.decoder_masking(mask_from_scores(scores, hidden), tokens, generator)  # lowest scores hidden


class FrameMasker(TubeMasker):
    """Whole time steps hidden: exactly `num_masked(T, ratio)` of the T token time steps per sample."""

    what = "mask=frame"

    def scores(self, grid: tuple[int, int, int], batch: int, device: torch.device,
               generator: torch.Generator | None) -> tuple[Tensor, int]:
        t, h, w = grid
        if t < 2:
            raise ValueError(f"mask=frame needs at least 2 token time steps, got grid {grid}: "
                             "raise data.num_frames or lower tokenizer.tubelet_size")
        return frame_scores(batch, grid, device=device, generator=generator), h * w * num_masked(t, self.ratio)


# ------------------------------------------------------------------- VideoMAE V2 dual masking (decoder side)
def running_cell_visible(grid: tuple[int, int, int], *, ratio: float, start: Tensor) -> Tensor:
    """(B, T*H*W) bool, True where VideoMAE V2's running-cell decoder mask lets the decoder reconstruct.

    A cell is a queue of 4 = int(4 ratio) ones (not decoded) then zeros; in time step t the queue is read
    from (start + t + 1) mod 4 and laid out as a 2x2 unit tiled over (H, W) (V2's `RunningCellMaskingGenerator`:
    `run_cell()` before `get_cell()`, `np.tile(unit, (H/2, W/2))`; odd H or W are cut, not an error).
    start: (B,) int64 pointer positions in [0, 4).
    """
    t, h, w = grid
    hidden_per_cell = int(4 * ratio)
    device = start.device
    ti = torch.arange(t, device=device).view(t, 1, 1)
    cell = (2 * (torch.arange(h, device=device) % 2)).view(1, h, 1) + (torch.arange(w, device=device) % 2).view(1, 1, w)
    slot = (cell + ti + 1).reshape(1, -1) + start.view(-1, 1)  # (B, N) position in the rotating queue
    return slot % 4 >= hidden_per_cell


class DecoderMasking:
    """The decoder side of VideoMAE V2's dual masking: of the M hidden tokens the decoder reconstructs exactly
    M' = max(1, round(M (1 - ratio))), chosen by the running-cell pattern (`running_cell_visible`, a random
    start per sample): hidden tokens where the cell lets the decoder see come first, the remaining places are
    filled (or the surplus dropped) at random, so shapes stay static. kind=None: the decoder reconstructs
    every hidden token (plain MAE).

    Deviation, stated: V2's code decodes every token outside its decoder mask, also the few that the encoder
    saw (labels = all of them); here, as its paper's loss, the decoder predicts hidden tokens only.
    """

    KINDS = ("running_cell",)

    def __init__(self, *, kind: str | None, ratio: float) -> None:
        if kind is not None and kind not in self.KINDS:
            raise ValueError(f"mask.decoder must be null or one of {self.KINDS}, got {kind!r}")
        if kind is not None and not 0.0 < int(4 * ratio) < 4:
            raise ValueError(f"mask.decoder_ratio={ratio}: the running cell hides int(4 ratio) of 4 tokens, which "
                             "must be 1, 2 or 3: choose a ratio in [0.25, 1)")
        self.kind, self.ratio = kind, float(ratio)

    def check_grid(self, grid: tuple[int, ...] | None) -> None:
        if self.kind is not None:
            check_time_grid(grid, f"mask.decoder={self.kind}")

    def __call__(self, mask: Mask, tokens: Tokens, generator: torch.Generator | None) -> Mask:
        if self.kind is None:
            return mask
        grid = check_time_grid(tokens.grid, f"mask.decoder={self.kind}")
        b, m = mask.masked.shape
        device = mask.masked.device
        start = torch.randint(0, 4, (b,), device=device, generator=generator)
        visible = running_cell_visible(grid, ratio=self.ratio, start=start)  # (B, N)
        noise = torch.rand(b, m, device=device, generator=generator)  # (B, M) random order inside each kind
        priority = torch.gather(visible, 1, mask.masked).to(noise.dtype) + noise  # (B, M): cell-visible first
        count = max(1, round(m * (1.0 - self.ratio)))
        chosen = torch.argsort(priority, dim=1, descending=True)[:, :count]  # (B, M') positions in `masked`
        return Mask(keep=mask.keep, masked=mask.masked, restore=mask.restore,
                    decode=torch.gather(mask.masked, 1, chosen))
