"""Graphs -> node tokens: values = node features, pos = structural positional encodings, edges kept.

A batch from `datamodules.graph.datamodule` holds B graphs padded to N nodes:
  x (B, N, F) node features, pe (B, N, P) positional encodings (Laplacian eigenvectors or random-walk
  return probabilities; zeros for padding), pad (B, N) True = padding, edge_index (2, E) into the flattened
  B*N nodes. Tokens(values=x, pos=pe, grid=None, pad=pad or None, edge_index=edge_index).
A batch cut to its first B' graphs (the pictures callback slices every tensor to 8 samples) keeps exactly
those graphs' edges: edges with an endpoint beyond B'*N are dropped.
"""
from __future__ import annotations

from torch import Tensor

from mae.core.interfaces import Tokenizer
from mae.core.tokens import Tokens


class GraphTokenizer(Tokenizer):
    """batch -> Tokens of nodes. `num_features` must equal the data's node-feature width (data.num_features)."""

    layout = "graph nodes"

    def __init__(self, *, num_features: int | None, pe_dim: int) -> None:
        if num_features is None:
            raise ValueError("tokenizer.num_features is null (data.num_features=null: the width is read from the data "
                             "when train.py starts a run); to build the model on its own, set data.num_features=N")
        super().__init__()
        if num_features < 1 or pe_dim < 1:
            raise ValueError(f"tokenizer.num_features and pe_dim must be >= 1, got {num_features}, {pe_dim}")
        self.token_dim, self.pe_dim = num_features, pe_dim

    def forward(self, batch: dict[str, Tensor]) -> Tokens:
        x, pe = batch["x"], batch["pe"]
        if x.ndim != 3 or x.shape[-1] != self.token_dim:
            raise ValueError(f"expected node features x of shape (B, N, {self.token_dim}) (data.num_features), "
                             f"got {tuple(x.shape)}")
        if pe.shape[:2] != x.shape[:2] or pe.shape[-1] != self.pe_dim:
            raise ValueError(f"expected positional encodings pe of shape {tuple(x.shape[:2]) + (self.pe_dim,)} "
                             f"(data.pe_dim), got {tuple(pe.shape)}")
        pad = batch.get("pad")
        if pad is not None and not bool(pad.any()):
            pad = None  # no padding in this batch (one graph, or equal sizes): no attention mask needed
        edge_index = batch["edge_index"]
        edge_index = edge_index[:, (edge_index < x.shape[0] * x.shape[1]).all(dim=0)]  # (2, E) see the module docstring
        return Tokens(values=x, pos=pe, grid=None, pad=pad, edge_index=edge_index)


