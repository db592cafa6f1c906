"""Reconstruction pictures of modality=graph (`pictures: {_target_: mae.modalities.graph.pictures.GraphPictures}`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from mae.core.interfaces import EvalData, Pictures
from mae.core.pictures import save_figure
from mae.core.tokens import Tokens
from mae.modalities.graph.tokenizer import GraphTokenizer

MAX_DRAWN = 300  # nodes of the first graph drawn in the reconstruction picture


class GraphPictures(Pictures):
    """The reconstruction panels of modality=graph (see `draw`)."""

    def draw(self, panels: dict[str, Tensor], tokens: Tokens, note: str, path: Path, *, tokenizer: GraphTokenizer,
             data: EvalData) -> Figure:
        """Left: the first graph (its first MAX_DRAWN nodes) in a spring layout (networkx, seeded), hidden
        nodes red; right: cosine similarity of predicted vs true features of the hidden nodes of every graph
        in the panel batch (1 = perfect; SCE is (1 - cos)^alpha)."""
        import networkx as nx
        from matplotlib.collections import LineCollection

        original = panels["original"].float().cpu()  # (B, N, C)
        hidden = torch.isnan(panels["masked"].float().cpu()).all(dim=-1)  # (B, N)
        real = torch.ones_like(hidden) if tokens.pad is None else ~tokens.pad.cpu()
        fig = Figure(figsize=(9, 4))
        axes = fig.subplots(1, 2)
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
