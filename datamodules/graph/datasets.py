"""The graph datasets GraphDataModule serves: whole graphs (graph level) and full-graph or BFS-subgraph items of one big
graph (node level)."""
from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torch_geometric.data import Data

from datamodules.graph.ops import (
    CSR,
    bfs_subgraph,
    random_sign_flip,
)
from datamodules.sampling import SampleKey, seeded, split_key
from mae.core.seeding import mix_seed


class GraphItems(Dataset):
    """Graph-level: the `indices` subset of a list of cleaned graphs with precomputed PE; an item is a dict
    for `collate_graphs`. Keys (sample_seed, i) flip Laplacian PE signs at random (train-time augmentation)."""

    def __init__(self, graphs: list[Data], pes: list[Tensor], indices: list[int], *, flip: bool) -> None:
        self.graphs, self.pes, self.indices, self.flip = graphs, pes, indices, flip

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: SampleKey) -> dict:
        sample_seed, position = split_key(key)
        if sample_seed is None or not self.flip:  # evaluation: the encodings as computed
            return self._get(position, flip=False)
        return seeded(key, lambda p: self._get(p, flip=True))

    def _get(self, position: int, *, flip: bool) -> dict:
        i = self.indices[position]
        g, pe = self.graphs[i], self.pes[i]
        label = int(g.y.reshape(-1)[0]) if g.y is not None else -1
        return {"x": g.x, "pe": random_sign_flip(pe) if flip else pe, "edge_index": g.edge_index,
                "label": label, "node_label": torch.full((g.num_nodes,), -1, dtype=torch.long)}


class NodeItems(Dataset):
    """Node-level: the whole graph (subgraph_nodes None) or BFS subgraphs around seed nodes.

    length items per epoch; with a (sample_seed, position) key the seed node and the PE sign flips are drawn
    under that seed (pure function of seed, epoch, position); a plain int key p uses `centers[p]` (evaluation)
    or, for training-style subgraphs without a seed, node p.
    """

    def __init__(self, graph: Data, pe: Tensor, *, length: int, subgraph_nodes: int | None, hops: int,
                 flip: bool, centers: Tensor | None = None, seed: int = 0) -> None:
        self.graph, self.pe, self.length, self.subgraph_nodes, self.hops = graph, pe, length, subgraph_nodes, hops
        self.flip, self.centers, self.seed = flip, centers, seed
        self.csr = CSR(graph.edge_index, graph.num_nodes) if subgraph_nodes is not None else None
        y = graph.y if graph.y is not None else torch.full((graph.num_nodes,), -1)
        self.node_label = y.reshape(-1).long()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: SampleKey) -> dict:
        sample_seed, position = split_key(key)
        if sample_seed is None:  # deterministic: seeded by (seed, position)
            key = (mix_seed(self.seed, position), position)
        return seeded(key, lambda p: self._get(p, random_center=sample_seed is not None))

    def _get(self, position: int, *, random_center: bool) -> dict:
        g = self.graph
        pe = random_sign_flip(self.pe) if self.flip else self.pe
        if self.subgraph_nodes is None:
            return {"x": g.x, "pe": pe, "edge_index": g.edge_index, "label": -1, "node_label": self.node_label}
        if self.centers is not None:
            center = int(self.centers[position])
        else:
            center = int(torch.randint(0, g.num_nodes, ())) if random_center else position % g.num_nodes
        nodes, local = bfs_subgraph(self.csr, g.edge_index, center, hops=self.hops, max_nodes=self.subgraph_nodes)
        return {"x": g.x[nodes], "pe": pe[nodes], "edge_index": local, "label": -1,
                "node_label": self.node_label[nodes], "center": 0}
