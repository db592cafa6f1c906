"""GraphMAE's target: the hidden nodes' raw input features (`target=node_features`)."""
from __future__ import annotations

from mae.core.targets import PixelTarget
from mae.modalities.graph.tokenizer import GraphTokenizer


class NodeFeatureTarget(PixelTarget):
    """The hidden nodes' input features as they are."""

    inverse_note = "target=node features: reconstruction = predicted features"
    layouts = (GraphTokenizer.layout,)
