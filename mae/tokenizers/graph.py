"""Graphs -> node tokens: values = node features, pos = structural positional encodings, edges kept.

A batch from `datamodules.graph` holds B graphs padded to N nodes:
  x (B, N, F) node features, pe (B, N, P) positional encodings (Laplacian eigenvectors or random-walk
  return probabilities; zeros for padding), pad (B, N) True = padding, edge_index (2, E) into the flattened
  B*N nodes. Tokens(values=x, pos=pe, grid=None, pad=pad or None, edge_index=edge_index).
A batch cut to its first B' graphs (the pictures callback slices every tensor to 8 samples) keeps exactly
those graphs' edges: edges with an endpoint beyond B'*N are dropped.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from mae.callbacks.reconstruction import save_figure  # noqa: E402
from mae.targets import PixelTarget  # noqa: E402
from mae.types import Tokens  # noqa: E402


MAX_DRAWN = 300  # nodes of the first graph drawn in the reconstruction picture


class GraphTokenizer(nn.Module):
    """batch -> Tokens of nodes. `num_features` must equal the data's node-feature width (data.num_features)."""

    grid = None

    def __init__(self, *, num_features: int, pe_dim: int) -> None:
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

    def draw_reconstruction(self, panels: dict[str, Tensor], tokens: Tokens, note: str, path: Path) -> plt.Figure:
        """Left: the first graph (its first MAX_DRAWN nodes) in a spring layout (networkx, seeded), hidden
        nodes red; right: cosine similarity of predicted vs true features of the hidden nodes of every graph
        in the panel batch (1 = perfect; SCE is (1 - cos)^alpha)."""
        import networkx as nx
        from matplotlib.collections import LineCollection

        original = panels["original"].float().cpu()  # (B, N, C)
        hidden = torch.isnan(panels["masked"].float().cpu()).all(dim=-1)  # (B, N)
        real = torch.ones_like(hidden) if tokens.pad is None else ~tokens.pad.cpu()
        fig, axes = plt.subplots(1, 2, figsize=(9, 4))
        n0 = min(int(real[0].sum()), MAX_DRAWN)
        edges = [] if tokens.edge_index is None else tokens.edge_index.cpu()
        if len(edges):
            edges = edges[:, (edges[0] < n0) & (edges[1] < n0)]  # first graph's edges among its first n0 nodes
        graph = nx.Graph()
        graph.add_nodes_from(range(n0))
        graph.add_edges_from([] if not len(edges) else edges.t().tolist())
        xy = nx.spring_layout(graph, seed=0)
        ax = axes[0]
        segments = [(xy[a], xy[b]) for a, b in graph.edges()]
        ax.add_collection(LineCollection(segments, colors="0.55", linewidths=0.8, zorder=1))
        pts = torch.from_numpy(np.array([xy[i] for i in range(n0)]))  # (n0, 2)
        colours = ["tab:red" if h else "tab:blue" for h in hidden[0, :n0].tolist()]
        ax.scatter(pts[:, 0], pts[:, 1], c=colours, s=8, zorder=2)
        ax.set_title(f"graph 0 ({n0} nodes drawn): hidden red / visible blue", fontsize=8)
        ax.set_xticks([]), ax.set_yticks([])
        if "reconstruction" in panels:
            pred = panels["reconstruction"].float().cpu()
            sel = hidden & real
            cos = torch.nn.functional.cosine_similarity(pred[sel], original[sel], dim=-1)
            axes[1].hist(cos.numpy(), bins=30, range=(-1, 1), color="tab:green")
            axes[1].set_title(f"cos(pred, true) of {int(sel.sum())} hidden nodes, mean {cos.mean():.3f}", fontsize=8)
        return save_figure(fig, path, title=note)


class NodeFeatureTarget(PixelTarget):
    """GraphMAE's target: the hidden nodes' raw input features. `eps` is accepted and unused:
    conf/target/norm_pix.yaml passes it when the modality selects this class through `default_target`."""

    inverse_note = "target=node features: reconstruction = predicted features"

    def __init__(self, *, eps: float = 1e-6) -> None:
        super().__init__()
