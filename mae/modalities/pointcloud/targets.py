"""Point-MAE's target: the hidden groups' points relative to their centre (`target=point_group`)."""
from __future__ import annotations

from mae.core.targets import PixelTarget
from mae.modalities.pointcloud.tokenizer import PointCloudTokenizer


class PointGroupTarget(PixelTarget):
    """The hidden groups' points relative to their centre, as they are (no per-token normalisation)."""

    inverse_note = "target=point groups: reconstruction = predicted offsets + the group's TRUE centre"
    layouts = (PointCloudTokenizer.layout,)
