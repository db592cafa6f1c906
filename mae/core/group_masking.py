"""Maskers of the mask-token family, each a port of its official generator turned into per-token scores
(mae/core/masking.py: the lowest M scores are hidden), so that K stays fixed per batch.

GroupMasker: SimMIM's MaskGenerator (microsoft/SimMIM data/data_simmim.py): a random set of ceil(G * ratio) of the
G groups of `group` tokens per axis is hidden (mask_patch_size 32 / model patch 16 = groups of 2 x 2 tokens).
BlockwiseMasker: BEiT's block-wise MaskingGenerator as MaskFeat runs it (facebookresearch/SlowFast
slowfast/datasets/transform.py MaskingGenerator, called from slowfast/datasets/imagenet.py with
num_masking_patches = round(H * W * ratio), min_num_patches = that // 5, max_num_patches = None).
"""
from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from mae.core.interfaces import Masker
from mae.core.masking import mask_from_scores, num_masked, refuse_padding
from mae.core.tokens import Mask, Tokens


def group_sizes(group: int | Sequence[int], dims: int) -> tuple[int, ...]:
    """mask.group as one size per grid axis (an int applies to every axis)."""
    sizes = (group,) * dims if isinstance(group, int) and not isinstance(group, bool) else tuple(group)
    if len(sizes) != dims or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes):
        raise ValueError(f"mask.group must be an integer >= 1 or a list of {dims} of them (one per grid axis), "
                         f"got {group!r}")
    return sizes


def group_index(grid: tuple[int, ...], sizes: tuple[int, ...], *, device: torch.device) -> tuple[Tensor, int]:
    """(N,) the group of each token of a row-major `grid` (groups row-major over the ceil-divided grid), and the
    number G of groups. A grid that `sizes` does not divide gets smaller groups at its far borders."""
    coarse = [math.ceil(g / s) for g, s in zip(grid, sizes)]
    axes = [torch.arange(g, device=device) // s for g, s in zip(grid, sizes)]
    cells = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(grid))  # (N, G) coarse coords
    index = torch.zeros(cells.shape[0], dtype=torch.long, device=device)
    for axis, size in enumerate(coarse):
        index = index * size + cells[:, axis]
    return index, math.prod(coarse)


def group_order_scores(order: Tensor, index: Tensor, noise: Tensor) -> Tensor:
    """(B, G) a permutation of the groups per sample (SimMIM's `np.random.permutation(token_count)`), (N,) each
    token's group, (B, N) uniform noise -> (B, N) scores whose lowest values are the tokens of order[:, 0], then of
    order[:, 1], ...: hiding the lowest ceil(G * ratio) groups' tokens is SimMIM's `mask[perm[:mask_count]] = 1`.
    The noise (< 1) only orders the tokens inside a partly hidden border group."""
    rank = order.argsort(dim=1).float()  # (B, G) position of each group in the permutation
    return rank[:, index] + noise * 0.5  # (B, N)


class GroupMasker(Masker):
    """SimMIM's masking: hide ceil(G * ratio) random groups of `group` tokens per axis (SimMIM: 2 x 2 tokens of
    16 px = its 32-px mask patches, ratio 0.6). Where `group` divides the grid, the hidden set is exactly
    SimMIM's (whole groups, ceil(G * ratio) of them); elsewhere the border groups are smaller and the hidden count is
    the MAE count N - int(N (1 - ratio)), the last group drawn being hidden in part."""

    def __init__(self, *, ratio: float, group: int | Sequence[int] = 2) -> None:
        num_masked(2, ratio)  # validates mask.ratio
        if not isinstance(group, int):
            group = list(group)  # a ListConfig from Hydra
        self.ratio, self.group = float(ratio), group

    def check_grid(self, grid: tuple[int, ...] | None) -> None:
        if grid is None:
            raise ValueError("mask=group hides groups of neighbouring tokens on a grid, and these tokens have none "
                             "(points, nodes): choose mask=random or mask=block")
        sizes = group_sizes(self.group, len(grid))
        if all(s == 1 for s in sizes):
            return
        if math.prod(math.ceil(g / s) for g, s in zip(grid, sizes)) < 2:
            raise ValueError(f"mask.group={list(sizes)} covers the whole token grid {tuple(grid)}: choose a smaller "
                             "mask.group")

    def num_hidden(self, grid: tuple[int, ...]) -> int:
        """SimMIM's count (ceil(G * ratio) whole groups) where the groups tile the grid, else MAE's count."""
        sizes = group_sizes(self.group, len(grid))
        n = math.prod(grid)
        if all(g % s == 0 for g, s in zip(grid, sizes)):
            groups = n // math.prod(sizes)
            hidden = min(max(math.ceil(groups * self.ratio), 1), groups - 1) * math.prod(sizes)  # data_simmim.py
            return hidden
        return num_masked(n, self.ratio)

    def __call__(self, tokens: Tokens, generator: torch.Generator | None = None) -> Mask:
        refuse_padding(tokens, "mask=group (whole groups of a full token grid)")
        grid = tokens.grid
        if grid is None or math.prod(grid) != tokens.num_tokens:
            raise ValueError(f"mask=group needs tokens on their grid, got grid {grid} for {tokens.num_tokens} tokens")
        device = tokens.values.device
        index, groups = group_index(grid, group_sizes(self.group, len(grid)), device=device)
        order = torch.rand(tokens.batch_size, groups, device=device, generator=generator).argsort(dim=1)  # (B, G)
        noise = torch.rand(tokens.batch_size, index.numel(), device=device, generator=generator)  # (B, N)
        return mask_from_scores(group_order_scores(order, index, noise), self.num_hidden(grid))


def blockwise_mask(height: int, width: int, *, num_masking: int, min_patches: int, max_patches: int | None,
                   min_aspect: float, rng: random.Random) -> np.ndarray:
    """(height, width) int array, 1 = hidden: SlowFast's MaskingGenerator.__call__ (BEiT's), with its `random`
    calls drawn from `rng` in the same order, so the same seed gives the official mask."""
    max_patches = num_masking if max_patches is None else max_patches
    log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))
    mask = np.zeros((height, width), dtype=int)
    count = 0
    while count < num_masking:
        budget = min(num_masking - count, max_patches)
        delta = 0
        for _ in range(10):  # MaskingGenerator._mask
            target_area = rng.uniform(min_patches, budget)
            aspect = math.exp(rng.uniform(*log_aspect))
            h = int(round(math.sqrt(target_area * aspect)))
            w = int(round(math.sqrt(target_area / aspect)))
            if w < width and h < height:
                top = rng.randint(0, height - h)
                left = rng.randint(0, width - w)
                block = mask[top: top + h, left: left + w]
                num_masked = block.sum()
                if 0 < h * w - num_masked <= budget:  # overlap allowed, only new tokens count
                    delta += int((block == 0).sum())
                    block[...] = 1
                if delta > 0:
                    break
        if delta == 0:
            break
        count += delta
    return mask


class BlockwiseMasker(Masker):
    """MaskFeat's / BEiT's block-wise masking on 2-D token grids: rectangles of random area in [min_tokens, what is
    left] and log-uniform aspect in [min_aspect, 1 / min_aspect] are added (overlaps allowed) until
    round(H * W * ratio) tokens are hidden (SlowFast imagenet.py: `num_mask = round(... * MASK_RATIO)`,
    `min_mask = num_mask // 5`). The official generator may stop a few tokens short when ten tries in a row add
    nothing; here those are topped up with random tokens so that every sample hides the same count (K fixed).

    Not `mask=block` (mae/core/masking.py BlockMasker): that one grows 4 rectangles together to the exact ratio.
    """

    def __init__(self, *, ratio: float, min_tokens: int | None = None, max_tokens: int | None = None,
                 min_aspect: float = 0.3) -> None:
        num_masked(2, ratio)  # validates mask.ratio
        for key, value in (("min_tokens", min_tokens), ("max_tokens", max_tokens)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"mask.{key} must be null or an integer >= 1, got {value!r}")
        if isinstance(min_aspect, bool) or not isinstance(min_aspect, (int, float)) or not 0.0 < min_aspect <= 1.0:
            raise ValueError(f"mask.min_aspect must be a number in (0, 1], got {min_aspect!r}")
        self.ratio, self.min_tokens, self.max_tokens, self.min_aspect = float(ratio), min_tokens, max_tokens, min_aspect

    def check_grid(self, grid: tuple[int, ...] | None) -> None:
        if grid is None or len(grid) != 2:
            raise ValueError(f"mask=blockwise draws BEiT's rectangles on a 2-D token grid, got grid {grid}: choose "
                             "mask=tube or mask=random on video, mask=random or mask=block otherwise")

    def num_hidden(self, grid: tuple[int, int]) -> int:
        n = grid[0] * grid[1]
        return min(max(round(n * self.ratio), 1), n - 1)  # SlowFast imagenet.py: round(H * W * MASK_RATIO)

    def __call__(self, tokens: Tokens, generator: torch.Generator | None = None) -> Mask:
        refuse_padding(tokens, "mask=blockwise (rectangles on a full 2-D token grid)")
        self.check_grid(tokens.grid)
        height, width = tokens.grid
        m = self.num_hidden((height, width))
        min_patches = m // 5 if self.min_tokens is None else self.min_tokens
        device = tokens.values.device
        seeds = torch.randint(0, 2**62, (tokens.batch_size,), generator=generator,
                              device=generator.device if generator is not None else device).tolist()
        masks = [blockwise_mask(height, width, num_masking=m, min_patches=min_patches, max_patches=self.max_tokens,
                                min_aspect=self.min_aspect, rng=random.Random(seed)) for seed in seeds]
        hidden = torch.from_numpy(np.stack(masks).reshape(tokens.batch_size, -1)).to(device)  # (B, N) 1 = hidden
        top_up = torch.rand(hidden.shape, device=device, generator=generator) * 0.5  # ranks the rest for a top-up
        return mask_from_scores(top_up - hidden.float(), m)  # hidden ones lowest: all of them, then random others
