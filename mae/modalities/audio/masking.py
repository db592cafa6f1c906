"""Audio-MAE's structured spectrogram masks: whole time columns and / or frequency rows (`mask=time|freq|timefreq`)."""
from __future__ import annotations

import torch
from torch import Tensor

from mae.core.grid import grid_coords
from mae.core.interfaces import Masker
from mae.core.masking import mask_from_scores, num_masked
from mae.core.tokens import Mask, Tokens


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


class TimeFreqMasker(Masker):
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
