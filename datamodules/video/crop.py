"""Train-time spatial crops of video clips: which box of the (short-side resized) frame becomes the training crop.

- `short_side` (default): a random `image_size` box; the scale jitter comes from `data.short_side=[min, max]`.
- `multiscale`: VideoMAE's pre-training crop, TSN's `GroupMultiScaleCrop(input_size, [1, .875, .75, .66])`: box
  sides = the frame's short side x one of `scales` (a side within 3 px of the output is snapped to it), height and
  width scales at most one step apart (aspect jitter), the box at one of 13 fixed offsets (4 corners, centre, 4
  edge middles, 4 quarter points: `more_fix_crop`), then resized to `image_size`.
- `resized`: MAE-ST's random resized crop (SlowFast's `random_resized_crop`, the same draw as torchvision's
  `RandomResizedCrop.get_params`, which we call): a box of `area` x the frame's area with an aspect ratio
  log-uniform in `aspect`, resized to `image_size`.

All draws use torch's global CPU generator, which the datamodule seeds per sample (`datamodules.sampling.seeded`).
Evaluation clips always take the centre `image_size` box.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torchvision.transforms import RandomResizedCrop

CROPS = ("short_side", "multiscale", "resized")
Box = tuple[int, int, int, int]
"""(top, left, height, width) in pixels."""


def randint(high: int) -> int:
    """A uniform int in [0, high) from torch's global generator."""
    return int(torch.randint(0, high, ()))


def multiscale_box(size: tuple[int, int], out: tuple[int, int], scales: Sequence[float], *, max_distort: int = 1) -> Box:
    """TSN / VideoMAE `GroupMultiScaleCrop._sample_crop_size` + `fill_fix_offset(more_fix_crop=True)` for a frame of
    `size` (H, W) and an output of `out` (h, w)."""
    h, w = size
    sides = [int(min(h, w) * s) for s in scales]
    heights = [out[0] if abs(s - out[0]) < 3 else s for s in sides]
    widths = [out[1] if abs(s - out[1]) < 3 else s for s in sides]
    pairs = [(bh, bw) for i, bh in enumerate(heights) for j, bw in enumerate(widths) if abs(i - j) <= max_distort]
    bh, bw = pairs[randint(len(pairs))]
    hs, ws = (h - bh) // 4, (w - bw) // 4
    offsets = [(0, 0), (0, 4 * ws), (4 * hs, 0), (4 * hs, 4 * ws), (2 * hs, 2 * ws),  # corners, centre
               (2 * hs, 0), (2 * hs, 4 * ws), (4 * hs, 2 * ws), (0, 2 * ws),  # edge middles
               (hs, ws), (hs, 3 * ws), (3 * hs, ws), (3 * hs, 3 * ws)]  # quarter points
    top, left = offsets[randint(len(offsets))]
    return top, left, bh, bw


def resized_box(size: tuple[int, int], area: tuple[float, float], aspect: tuple[float, float]) -> Box:
    """A random resized crop's box in a frame of `size` (H, W) (torchvision's draw, 10 tries then a centre box)."""
    shape_only = torch.empty(1, 1, 1).expand(1, *size)  # (1, H, W): get_params reads the shape only
    top, left, bh, bw = RandomResizedCrop.get_params(shape_only, scale=list(area), ratio=list(aspect))
    return int(top), int(left), int(bh), int(bw)


@dataclass(frozen=True)
class TrainCrop:
    """The `data.crop` policy and its parameters (`data.crop_scales`, `data.crop_area`, `data.crop_aspect`)."""

    kind: str = "short_side"
    scales: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)
    area: tuple[float, float] = (0.5, 1.0)
    aspect: tuple[float, float] = (0.75, 4 / 3)

    def __post_init__(self) -> None:
        if self.kind not in CROPS:
            raise ValueError(f"data.crop must be one of {CROPS}, got {self.kind!r}")
        if not self.scales or not all(0 < s <= 1 for s in self.scales):
            raise ValueError(f"data.crop_scales must be fractions of the short side in (0, 1], got {list(self.scales)}")
        if len(self.area) != 2 or not 0 < self.area[0] <= self.area[1] <= 1:
            raise ValueError(f"data.crop_area must be [min, max] with 0 < min <= max <= 1, got {list(self.area)}")
        if len(self.aspect) != 2 or not 0 < self.aspect[0] <= self.aspect[1]:
            raise ValueError(f"data.crop_aspect must be [min, max] with 0 < min <= max, got {list(self.aspect)}")

    def box(self, size: tuple[int, int], out: tuple[int, int]) -> Box:
        """The training box in a frame of `size` (H, W) >= `out` (h, w); its content is resized to `out`."""
        if self.kind == "multiscale":
            return multiscale_box(size, out, self.scales)
        if self.kind == "resized":
            return resized_box(size, self.area, self.aspect)
        return randint(size[0] - out[0] + 1), randint(size[1] - out[1] + 1), out[0], out[1]
