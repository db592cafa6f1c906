"""PatchTST's target: the hidden patches' RevIN-normalised values (`target=revin_patch`)."""
from __future__ import annotations

from mae.core.targets import PixelTarget
from mae.modalities.timeseries.tokenizer import PatchTSTTokenizer


class RevINPatchTarget(PixelTarget):
    """The hidden patches in RevIN units as they are (no per-patch normalisation on top): the tokenizer already
    normalised every (series, channel) with its own mean/std."""

    inverse_note = "target=RevIN patches: reconstruction drawn as predicted, in RevIN units"
    layouts = (PatchTSTTokenizer.layout,)
