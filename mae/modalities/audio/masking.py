"""Audio-MAE's structured spectrogram masks: whole time columns and / or frequency rows (`mask=time|freq|timefreq`),
and its fine-tuning token dropping (`finetune.token_drop`: `TimeFreqTokenDrop`)."""
from __future__ import annotations

import torch
from torch import Tensor

from mae.core.grid import grid_coords
from mae.core.interfaces import Masker
from mae.core.masking import mask_real, num_masked, refuse_padding
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
    more column/row (see `line_scores`). The grid is (T, F): axis 0 time, axis 1 frequency. With padding
    (`Tokens.pad`), exactly `num_masked(n_b, ratio)` of each row's real tokens, lowest line scores first."""

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
        return mask_real(scores, tokens.pad, self.ratio)  # lowest scores hidden; padding never drawn


# ------------------------------------------------------------------- fine-tuning token dropping
class TimeFreqTokenDrop(Masker):
    """Audio-MAE's fine-tuning masking (models_vit.py `VisionTransformer.random_masking_2d`, used in training with
    `--mask_2d True --mask_t_prob 0.2 --mask_f_prob 0.2` on AudioSet): per sample, keep int(T x (1 - mask_t_prob))
    random time columns and int(F x (1 - mask_f_prob)) random frequency rows of the (T, F) token grid; the kept
    tokens are their crossings, T' x F' of them, the same K for every sample. As there, the order of `keep` is
    the kept columns in random order, each with its kept rows in random order (irrelevant to a mean pool).
    Meant for `finetune.token_drop` (the head then pools the kept tokens only); evaluation sees every token."""

    def __init__(self, *, mask_t_prob: float = 0.2, mask_f_prob: float = 0.2) -> None:
        for name, value in (("mask_t_prob", mask_t_prob), ("mask_f_prob", mask_f_prob)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"finetune.token_drop.{name} must be a number in [0, 1), got {value!r}")
        self.mask_t_prob, self.mask_f_prob = float(mask_t_prob), float(mask_f_prob)

    def check_grid(self, grid: tuple[int, ...] | None) -> None:
        if grid is None or len(grid) != 2:
            raise ValueError(f"finetune.token_drop=TimeFreqTokenDrop drops time columns and frequency rows of a 2-D "
                             f"(time, freq) token grid such as modality=audio's; got grid {grid}: use another "
                             "finetune.token_drop or null")

    def kept(self, grid: tuple[int, int]) -> tuple[int, int]:
        """(T', F'): the time columns and frequency rows kept of a (T, F) grid (Audio-MAE's len_keep_T / len_keep_F)."""
        t, f = grid
        keep_t, keep_f = int(t * (1 - self.mask_t_prob)), int(f * (1 - self.mask_f_prob))
        if keep_t < 1 or keep_f < 1:
            raise ValueError(f"finetune.token_drop keeps {keep_t} of {t} time columns and {keep_f} of {f} frequency "
                             f"rows (mask_t_prob={self.mask_t_prob}, mask_f_prob={self.mask_f_prob}): lower them")
        return keep_t, keep_f

    def __call__(self, tokens: Tokens, generator: torch.Generator | None = None) -> Mask:
        self.check_grid(tokens.grid)
        refuse_padding(tokens, "finetune.token_drop=TimeFreqTokenDrop (whole columns x rows, the same K per sample)")
        assert tokens.grid is not None
        (t, f), b, device = tokens.grid, tokens.batch_size, tokens.values.device
        keep_t, keep_f = self.kept((t, f))
        cols = torch.argsort(torch.rand(b, t, device=device, generator=generator), dim=1)[:, :keep_t]  # (B, T')
        rows = torch.argsort(torch.rand(b, f, device=device, generator=generator), dim=1)[:, :keep_f]  # (B, F')
        keep = (cols[:, :, None] * f + rows[:, None, :]).reshape(b, keep_t * keep_f)  # (B, K) token = time * F + freq
        hidden = torch.ones(b, t * f, dtype=torch.bool, device=device).scatter(1, keep, False)  # (B, N)
        masked = hidden.nonzero()[:, 1].reshape(b, t * f - keep.shape[1])  # (B, M) hidden tokens, increasing
        restore = torch.argsort(torch.cat([keep, masked], dim=1), dim=1)  # (B, N)
        return Mask(keep=keep, masked=masked, restore=restore)
