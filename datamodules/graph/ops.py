"""Graph preprocessing on torch-geometric `Data`: cleaning, degree features, positional encodings, bounded
BFS subgraphs of big graphs, and the padded batch format the graph tokenizer reads.

Mini-batches of subgraphs: PyG's `NeighborLoader` / `ClusterLoader` need compiled extras (pyg-lib,
torch-sparse, METIS) that are not installed here, and `k_hop_subgraph` has no size cap (one hub node pulls
in most of a big graph), so `bfs_subgraph` is written here in plain torch on a CSR index: breadth-first from
a seed node, at most `hops` hops, truncated at random in the last hop to `max_nodes` nodes; the induced
edges come from `torch_geometric.utils.subgraph`.
"""
from __future__ import annotations

import math
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.transforms import AddLaplacianEigenvectorPE, AddRandomWalkPE
from torch_geometric.utils import coalesce, degree, remove_self_loops, subgraph, to_undirected

PeKind = Literal["laplacian", "random_walk", "none"]  # data.pe
PE_KINDS = get_args(PeKind)


# --------------------------------------------------------------------------------------------- cleaning
def degree_features(edge_index: Tensor, num_nodes: int, width: int) -> Tensor:
    """(n, width) one-hot node degree, degrees >= width-1 in the last column (for graphs without features)."""
    deg = degree(edge_index[0], num_nodes, dtype=torch.long)  # (n,)
    return F.one_hot(deg.clamp_max(width - 1), width).float()


def clean_graph(data: Data, *, num_features: int, what: str, stats: dict[str, int]) -> Data:
    """Undirected, coalesced edges without self-loops; float node features of width `num_features`
    (one-hot degree when the graph has none). Counts what it fixed in `stats`. Raises ValueError naming
    `what` on an empty graph or features of the wrong width."""
    n = int(data.num_nodes or 0)
    if n < 1:
        raise ValueError(f"{what}: graph without nodes")
    edge_index = data.edge_index if data.edge_index is not None else torch.empty(2, 0, dtype=torch.long)
    edge_index = edge_index.long()
    before = edge_index.shape[1]
    edge_index, _ = remove_self_loops(edge_index)
    stats["self_loops_removed"] = stats.get("self_loops_removed", 0) + before - edge_index.shape[1]
    edge_index = coalesce(to_undirected(edge_index, num_nodes=n), num_nodes=n)
    if edge_index.shape[1] == 0:
        stats["graphs_without_edges"] = stats.get("graphs_without_edges", 0) + 1
    isolated = n - int(torch.unique(edge_index[0]).numel()) if edge_index.numel() else n
    stats["isolated_nodes"] = stats.get("isolated_nodes", 0) + isolated
    x = data.x
    if x is None:
        stats["graphs_with_degree_features"] = stats.get("graphs_with_degree_features", 0) + 1
        x = degree_features(edge_index, n, num_features)
    x = x.float().reshape(n, -1)
    if x.shape[1] != num_features:
        raise ValueError(f"{what}: node features are {x.shape[1]} wide but data.num_features={num_features}; "
                         f"set data.num_features={x.shape[1]}")
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        stats["non_finite_features_zeroed"] = stats.get("non_finite_features_zeroed", 0) + int(bad.sum())
        x = torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    out = Data(x=x, edge_index=edge_index, num_nodes=n)
    for key in ("y", "train_mask", "val_mask", "test_mask"):
        if key in data and data[key] is not None:
            out[key] = data[key]
    return out


# ------------------------------------------------------------------------------------ positional encodings
def laplacian_pe(edge_index: Tensor, num_nodes: int, k: int) -> Tensor:
    """(n, k) eigenvectors of the k smallest non-trivial eigenvalues of the symmetric normalised Laplacian
    (PyG's AddLaplacianEigenvectorPE); graphs with n <= k get the n-1 available ones and zero columns."""
    k_eff = min(k, num_nodes - 1)
    if k_eff < 1:
        return torch.zeros(num_nodes, k)
    data = Data(edge_index=edge_index, num_nodes=num_nodes)
    pe = AddLaplacianEigenvectorPE(k_eff, attr_name="pe", is_undirected=True)(data).pe.float()  # (n, k_eff)
    return F.pad(pe, (0, k - k_eff))


def random_walk_pe(edge_index: Tensor, num_nodes: int, k: int) -> Tensor:
    """(n, k) probabilities of returning to the node after 1..k random-walk steps (PyG's AddRandomWalkPE)."""
    data = Data(edge_index=edge_index, num_nodes=num_nodes)
    return AddRandomWalkPE(walk_length=k, attr_name="pe")(data).pe.float()


def positional_encoding(kind: str, edge_index: Tensor, num_nodes: int, k: int) -> Tensor:
    if kind == "laplacian":
        return laplacian_pe(edge_index, num_nodes, k)
    if kind == "random_walk":
        return random_walk_pe(edge_index, num_nodes, k)
    if kind == "none":
        return torch.zeros(num_nodes, k)
    raise ValueError(f"data.pe must be one of {PE_KINDS}, got {kind!r}")


def random_sign_flip(pe: Tensor) -> Tensor:
    """Laplacian eigenvectors are defined up to sign: flip each column with probability 1/2 (torch RNG)."""
    signs = torch.randint(0, 2, (1, pe.shape[1])).float() * 2 - 1
    return pe * signs


# ------------------------------------------------------------------------------------- subgraph sampling
class CSR:
    """Row-compressed adjacency of an (undirected) edge_index: neighbours of u are col[rowptr[u]:rowptr[u+1]]."""

    def __init__(self, edge_index: Tensor, num_nodes: int) -> None:
        order = torch.argsort(edge_index[0] * num_nodes + edge_index[1])
        self.col = edge_index[1, order]
        counts = torch.bincount(edge_index[0], minlength=num_nodes)
        self.rowptr = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
        self.num_nodes = num_nodes

    def neighbours(self, nodes: Tensor) -> Tensor:
        """All neighbours (with repeats) of `nodes`, vectorised."""
        start, end = self.rowptr[nodes], self.rowptr[nodes + 1]
        counts = end - start
        if int(counts.sum()) == 0:
            return nodes.new_empty(0)
        offsets = torch.arange(int(counts.sum())) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
        return self.col[torch.repeat_interleave(start, counts) + offsets]


def bfs_subgraph(csr: CSR, edge_index: Tensor, seed: int, *, hops: int, max_nodes: int) -> tuple[Tensor, Tensor]:
    """Nodes within `hops` hops of `seed` (seed first, then by hop), cut to `max_nodes` by a random subset of
    the last hop reached (torch RNG); returns (nodes (n,), local edge_index (2, e) of the induced subgraph)."""
    seen = torch.zeros(csr.num_nodes, dtype=torch.bool)
    nodes = [torch.tensor([seed])]
    seen[seed] = True
    frontier, total = nodes[0], 1
    for _ in range(hops):
        if total >= max_nodes or frontier.numel() == 0:
            break
        nxt = torch.unique(csr.neighbours(frontier))
        nxt = nxt[~seen[nxt]]
        if total + nxt.numel() > max_nodes:
            nxt = nxt[torch.randperm(nxt.numel())[: max_nodes - total]]
        seen[nxt] = True
        nodes.append(nxt)
        frontier, total = nxt, total + nxt.numel()
    subset = torch.cat(nodes)
    local, _ = subgraph(subset, edge_index, relabel_nodes=True, num_nodes=csr.num_nodes)
    return subset, local


# ------------------------------------------------------------------------------------------------- batches
def collate_graphs(items: list[dict]) -> dict[str, Tensor]:
    """Pad B graph items to N = the largest node count: x (B, N, F), pe (B, N, P), pad (B, N),
    edge_index (2, E) into the flattened B*N nodes, label (B,), node_label (B, N) (-1 on padding),
    center (B,) the local index of the node a subgraph was sampled around (0 otherwise)."""
    sizes = [int(it["x"].shape[0]) for it in items]
    b, n = len(items), max(sizes)
    f, p = items[0]["x"].shape[1], items[0]["pe"].shape[1]
    x, pe = torch.zeros(b, n, f), torch.zeros(b, n, p)
    pad = torch.ones(b, n, dtype=torch.bool)
    node_label = torch.full((b, n), -1, dtype=torch.long)
    edges = []
    for i, (it, size) in enumerate(zip(items, sizes)):
        x[i, :size], pe[i, :size], pad[i, :size] = it["x"], it["pe"], False
        node_label[i, :size] = it["node_label"]
        edges.append(it["edge_index"] + i * n)
    return {
        "x": x, "pe": pe, "pad": pad, "edge_index": torch.cat(edges, dim=1),
        "label": torch.tensor([int(it["label"]) for it in items], dtype=torch.long),
        "node_label": node_label, "center": torch.tensor([int(it.get("center", 0)) for it in items]),
    }


def num_subgraphs(num_nodes: int, subgraph_nodes: int) -> int:
    """Subgraphs per epoch so that their node slots cover the graph about once."""
    return max(1, math.ceil(num_nodes / subgraph_nodes))
