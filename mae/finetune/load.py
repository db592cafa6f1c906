"""Loading encoder weights strictly: every missing, unexpected or mis-shaped key is named, never silently dropped;
and installing a positional table (interpolated to the fine-tuning grid)."""
from __future__ import annotations

import logging
import re

from torch import Tensor, nn

from mae.core.pos_embed import GridTablePosEmbed, interpolate_grid_table

log = logging.getLogger(__name__)


def listed(names: list[str], limit: int = 10) -> str:
    return ", ".join(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def describe_vit(state: dict[str, Tensor]) -> str:
    """"width W, depth L" of a ViT state dict in our layout, for the error message; '' if not a ViT."""
    depth = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))}
    norm = state.get("norm.weight")
    if not depth or norm is None:
        return ""
    return f"a ViT of width {norm.shape[0]}, depth {max(depth) + 1}"


def load_encoder_strict(encoder: nn.Module, state: dict[str, Tensor], *, source: str) -> None:
    """Load `state` into `encoder` with strict=True after a comparison that names, in one ValueError, the keys the
    checkpoint lacks, the keys the encoder does not have, and the shapes that differ, with what to do."""
    own = encoder.state_dict()
    own = {k: v for k, v in own.items() if not k.startswith("pos_embed.table")}  # installed after loading
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in set(own) & set(state)
                    if tuple(state[k].shape) != tuple(own[k].shape))
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing in the checkpoint: {listed(missing)}")
        if unexpected:
            parts.append(f"not in this encoder: {listed(unexpected)}")
        if shapes:
            parts.append(f"shapes differ (checkpoint vs encoder): {listed(shapes)}")
        theirs, ours = describe_vit(state), describe_vit(own)
        hint = (f"the checkpoint is {theirs} and this encoder {ours}: choose the model= of the checkpoint "
                "(model=base: 768 x 12, large: 1024 x 24, small: 384 x 12, tiny: 192 x 12)") if theirs and ours and \
            theirs != ours else "check model= / tokenizer.patch_size / data.channels against the pre-training run"
        raise ValueError(f"pretrained={source} does not fit the encoder: " + "; ".join(parts) + f". {hint}")
    encoder.load_state_dict({**state, **{k: v for k, v in encoder.state_dict().items()
                                         if k.startswith("pos_embed.table")}}, strict=True)


def install_pos_table(encoder: nn.Module, table: Tensor, source_grid: tuple[int, ...], target_grid: tuple[int, ...],
                      *, trainable: bool) -> None:
    """Replace encoder.pos_embed by a table on `target_grid`, interpolated from `source_grid` when they differ."""
    source_grid, target_grid = tuple(source_grid), tuple(target_grid)
    if table.shape[1] != _cells(source_grid):
        raise ValueError(f"the positional table holds {table.shape[1]} positions, the pre-training grid "
                         f"{source_grid} {_cells(source_grid)}")
    if source_grid != target_grid:
        log.info("positional embedding interpolated from grid %s to %s", source_grid, target_grid)
        print(f"note: positional embedding interpolated from grid {source_grid} to {target_grid}", flush=True)
    encoder.pos_embed = GridTablePosEmbed(table=interpolate_grid_table(table, source_grid, target_grid),
                                          grid=target_grid, trainable=trainable)


def _cells(grid: tuple[int, ...]) -> int:
    n = 1
    for size in grid:
        n *= size
    return n
