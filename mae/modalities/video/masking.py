"""Video maskers: VideoMAE's tube masking, whole-frame masking, and VideoMAE V2's running-cell decoder mask."""
from __future__ import annotations

import torch
from torch import Tensor

from mae.core.interfaces import DecoderMask, Masker
from mae.core.masking import mask_from_scores, num_masked, refuse_padding, with_decoder_mask
from mae.core.tokens import Mask, Tokens


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


def tube_masked(num_positions: int, ratio: float) -> int:
    """Hidden spatial positions per time step, VideoMAE's count: `int(mask_ratio * num_patches_per_frame)`
    (masking_generator.py TubeMaskingGenerator, the same in VideoMAE V2), kept in [1, H*W - 1]. At 14x14 and 0.9:
    176 hidden, 20 visible (MAE's rule, `num_masked`, would hide 177)."""
    num_masked(2, ratio)  # validates the ratio
    return min(max(int(ratio * num_positions), 1), num_positions - 1)


class TubeMasker(Masker):
    """VideoMAE tube masking: one random spatial mask of exactly `tube_masked(H*W, ratio)` positions per
    sample, shared by all T time steps (hidden tokens = T times that). Ties between the T copies of a
    position never matter: whole positions are hidden or kept. VideoMAE V2: decoder_mask=running_cell."""

    what = "mask=tube"

    def __init__(self, *, ratio: float) -> None:
        num_masked(2, ratio)
        self.ratio = ratio

    def check_grid(self, grid: tuple[int, ...] | None) -> None:
        check_time_grid(grid, self.what)

    def scores(self, grid: tuple[int, int, int], batch: int, device: torch.device,
               generator: torch.Generator | None) -> tuple[Tensor, int]:
        t, h, w = grid
        return tube_scores(batch, grid, device=device, generator=generator), t * tube_masked(h * w, self.ratio)

    def __call__(self, tokens: Tokens, generator: torch.Generator | None = None) -> Mask:
        grid = check_time_grid(tokens.grid, self.what)
        refuse_padding(tokens, f"{self.what} (whole tubes / frames of a full (T, H, W) grid)")
        scores, hidden = self.scores(grid, tokens.batch_size, tokens.values.device, generator)
        return mask_from_scores(scores, hidden)  # lowest scores hidden


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


class RunningCellDecoderMask(DecoderMask):
    """The decoder side of VideoMAE V2's dual masking (`decoder_mask=running_cell`): of the M hidden tokens the
    decoder reconstructs exactly M' = max(1, round(M (1 - ratio))), chosen by the running-cell pattern
    (`running_cell_visible`, a random start per sample): hidden tokens where the cell lets the decoder see come
    first, the remaining places are filled (or the surplus dropped) at random, so shapes stay static.

    Deviation, stated: V2's code decodes every token outside its decoder mask, also the few that the encoder
    saw (labels = all of them); here, as its paper's loss, the decoder predicts hidden tokens only.
    """

    what = "decoder_mask=running_cell"

    def __init__(self, *, ratio: float = 0.5) -> None:
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 < int(4 * ratio) < 4:
            raise ValueError(f"decoder_mask.ratio={ratio}: the running cell hides int(4 ratio) of 4 tokens, which "
                             "must be 1, 2 or 3: choose a ratio in [0.25, 1)")
        self.ratio = float(ratio)

    def check_grid(self, grid: tuple[int, ...] | None) -> None:
        check_time_grid(grid, self.what)

    def __call__(self, mask: Mask, tokens: Tokens, generator: torch.Generator | None = None) -> Mask:
        grid = check_time_grid(tokens.grid, self.what)
        b, m = mask.masked.shape
        device = mask.masked.device
        start = torch.randint(0, 4, (b,), device=device, generator=generator)
        visible = running_cell_visible(grid, ratio=self.ratio, start=start)  # (B, N)
        noise = torch.rand(b, m, device=device, generator=generator)  # (B, M) random order inside each kind
        priority = torch.gather(visible, 1, mask.masked).to(noise.dtype) + noise  # (B, M): cell-visible first
        count = max(1, round(m * (1.0 - self.ratio)))
        chosen = torch.argsort(priority, dim=1, descending=True)[:, :count]  # (B, M') positions in `masked`
        return with_decoder_mask(mask, torch.gather(mask.masked, 1, chosen))
