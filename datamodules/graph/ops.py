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

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.transforms import AddLaplacianEigenvectorPE, AddRandomWalkPE
from torch_geometric.utils import coalesce, degree, remove_self_loops, subgraph, to_undirected

PeKind = Literal["laplacian", "random_walk", "none"]  # data.pe
FeatureNorm = Literal["none", "row"]  # data.feature_norm
PE_KINDS = get_args(PeKind)
MAX_ABS_FEATURE = 1e15  # node features are fed as they are (no scaling): beyond this their float32 squares overflow
UNLABELED = -1  # a missing label (evaluation leaves it out)


# --------------------------------------------------------------------------------------------- cleaning
def degree_features(edge_index: Tensor, num_nodes: int, width: int) -> Tensor:
    """(n, width) one-hot node degree, degrees >= width-1 in the last column (for graphs without features)."""
    deg = degree(edge_index[0], num_nodes, dtype=torch.long)  # (n,)
    return F.one_hot(deg.clamp_max(width - 1), width).float()


def clean_edges(edge_index: Tensor | None, num_nodes: int, stats: dict[str, int]) -> Tensor:
    """(2, E) undirected, coalesced edges without self-loops (None: no edges); counts the self-loops removed."""
    edge_index = edge_index.long() if edge_index is not None else torch.empty(2, 0, dtype=torch.long)
    before = edge_index.shape[1]
    edge_index, _ = remove_self_loops(edge_index)
    stats["self_loops_removed"] = stats.get("self_loops_removed", 0) + before - edge_index.shape[1]
    return coalesce(to_undirected(edge_index, num_nodes=num_nodes), num_nodes=num_nodes)


def feature_width(graphs: list[Data], *, given: int | None, what: str) -> int:
    """The node-feature width of the data. Graphs with features: their width, which every graph must share and
    `given` (data.num_features, None = infer) must equal (a ValueError names both). Graphs without any features
    get one-hot degrees: `given` columns, or (None) the largest degree of the data + 1, so no degree is clipped."""
    widths = {i: int(g.x.reshape(int(g.num_nodes or 0), -1).shape[1]) for i, g in enumerate(graphs) if g.x is not None}
    if not widths:
        if given is not None:
            return given
        degrees = [int(degree(clean_edges(g.edge_index, int(g.num_nodes), {})[0], int(g.num_nodes)).max())
                   for g in graphs if g.num_nodes]
        return max(degrees, default=0) + 1
    found = sorted(set(widths.values()))
    if len(found) > 1:
        first = {w: next(i for i, v in widths.items() if v == w) for w in found}
        raise ValueError(f"{what}: graphs have node features of different widths: "
                         + ", ".join(f"graph #{i} is {w} wide" for w, i in first.items())
                         + "; every graph of a dataset needs the same features")
    if given is not None and given != found[0]:
        raise ValueError(f"{what}: node features are {found[0]} wide but data.num_features={given}; "
                         f"set data.num_features={found[0]}")
    return found[0]


def row_normalize(x: Tensor) -> Tensor:
    """(n, F) -> (n, F) with each row divided by its sum, all-zero rows left at 0: DGL's citation datasets
    (`dgl/data/citation_graph.py` `_preprocess_features`: r_inv = rowsum^-1, inf -> 0, diag(r_inv) @ features), which
    GraphMAE's Cora / CiteSeer / PubMed features pass through. Not PyG's `NormalizeFeatures`, which clamps the sum at 1
    (rows of PubMed's TF-IDF values summing below 1 would stay unnormalised) and shifts by the minimum first."""
    total = x.sum(dim=1, keepdim=True)  # (n, 1)
    inverse = torch.where(total != 0, 1.0 / total, torch.zeros_like(total))
    return x * inverse


def check_feature_values(x: Tensor, *, what: str) -> None:
    """Raise ValueError naming the first node and feature column of (n, F) `x` that is NaN, infinite or beyond
    +-MAX_ABS_FEATURE (checked in float64, before the float32 cast that would turn 1e200 into inf)."""
    values = x.double()
    bad = ~torch.isfinite(values) | (values.abs() > MAX_ABS_FEATURE)
    if bool(bad.any()):
        node, column = (int(v) for v in torch.nonzero(bad)[0])
        raise ValueError(f"{what}: node {node}, feature column {column} is {float(values[node, column]):g} "
                         f"({int(bad.sum())} such values in this graph): node features must be finite and within "
                         f"+-{MAX_ABS_FEATURE:g} (they are fed unscaled; float32 squares overflow beyond); fix or "
                         f"rescale the data")


def graph_labels(y: Tensor | None, *, count: int, what: str) -> Tensor:
    """(count,) long class labels: 1 for a graph, one per node for a node-level graph; None: all UNLABELED.
    A ValueError names `what`, the item and the value for a label that is not an integer >= -1 (-1 = missing;
    another negative number or a float would silently become a class or be truncated to one), or for a count
    of labels other than `count` (several targets per graph: a multi-task or regression set)."""
    if y is None:
        return torch.full((count,), UNLABELED, dtype=torch.long)
    flat = y.reshape(-1)
    if flat.numel() != count:
        per = "is expected (one class per graph)" if count == 1 else "are expected (one class per node)"
        raise ValueError(f"{what}: {flat.numel()} labels (y of shape {tuple(y.shape)}) where {count} {per}; "
                         f"multi-target or regression labels are not classes the probes can score")
    values = flat.double()
    bad = ~torch.isfinite(values) | (values != values.round()) | (values < UNLABELED)
    if bool(bad.any()):
        item = int(torch.nonzero(bad)[0])
        where = "" if count == 1 else f" node {item}:"
        raise ValueError(f"{what}:{where} label {float(values[item])!r} is not a class: labels must be integers "
                         f">= 0 (-1 = missing){f' ({int(bad.sum())} such labels)' if count > 1 else ''}")
    return flat.long()


def clean_graph(data: Data, *, num_features: int, what: str, stats: dict[str, int]) -> Data:
    """Undirected, coalesced edges without self-loops; float node features of width `num_features`
    (one-hot degree when the graph has none). Counts what it fixed in `stats`. Raises ValueError naming
    `what` on an empty graph, features of the wrong width, or a feature value that is not finite or beyond
    +-MAX_ABS_FEATURE (`check_feature_values`)."""
    n = int(data.num_nodes or 0)
    if n < 1:
        raise ValueError(f"{what}: graph without nodes")
    edge_index = clean_edges(data.edge_index, n, stats)
    if edge_index.shape[1] == 0:
        stats["graphs_without_edges"] = stats.get("graphs_without_edges", 0) + 1
    isolated = n - int(torch.unique(edge_index[0]).numel()) if edge_index.numel() else n
    stats["isolated_nodes"] = stats.get("isolated_nodes", 0) + isolated
    x = data.x
    if x is None:
        stats["graphs_with_degree_features"] = stats.get("graphs_with_degree_features", 0) + 1
        x = degree_features(edge_index, n, num_features)
    x = x.reshape(n, -1)
    if x.shape[1] != num_features:
        raise ValueError(f"{what}: node features are {x.shape[1]} wide but data.num_features={num_features}; "
                         f"set data.num_features={x.shape[1]}")
    check_feature_values(x, what=what)
    out = Data(x=x.float(), edge_index=edge_index, num_nodes=n)
    for key in ("y", "train_mask", "val_mask", "test_mask"):
        if key in data and data[key] is not None:
            out[key] = data[key]
    return out


# ------------------------------------------------------------------------------------ positional encodings
def laplacian_pe(edge_index: Tensor, num_nodes: int, k: int, *, seed: int = 0) -> Tensor:
    """(n, k) eigenvectors of the k smallest non-trivial eigenvalues of the symmetric normalised Laplacian
    (PyG's AddLaplacianEigenvectorPE); graphs with n <= k get the n-1 available ones and zero columns.

    Reproducible: PyG's sparse solver (scipy `eigsh`, from 100 nodes on) starts from a vector drawn from OS
    entropy and PyG flips each column's sign with the global torch RNG; here `eigsh` starts from a vector drawn
    from `seed` and the sign is canonical (`canonical_sign`), so the same graph and seed give bit-identical
    encodings in any process, and the global RNG is left as it was."""
    k_eff = min(k, num_nodes - 1)
    if k_eff < 1:
        return torch.zeros(num_nodes, k)
    data = Data(edge_index=edge_index, num_nodes=num_nodes)
    v0 = np.random.default_rng(seed).uniform(-1.0, 1.0, num_nodes)  # (n,) as ARPACK's own start: uniform [-1, 1)
    with torch.random.fork_rng(devices=[]):  # PyG's random sign draw must not move the global RNG
        pe = AddLaplacianEigenvectorPE(k_eff, attr_name="pe", is_undirected=True, v0=v0)(data).pe  # (n, k_eff)
    return F.pad(canonical_sign(pe).float(), (0, k - k_eff))


def canonical_sign(vectors: Tensor) -> Tensor:
    """(n, k) columns, each multiplied by the sign that makes its largest-magnitude entry positive (the first
    such entry when several tie): eigenvectors are defined up to sign, this picks one without randomness."""
    top = vectors.abs().argmax(dim=0)  # (k,) row of each column's largest |entry| (the first one on ties)
    pivot = vectors.gather(0, top[None])  # (1, k)
    return vectors * torch.where(pivot < 0, -1.0, 1.0).to(vectors.dtype)


def random_walk_pe(edge_index: Tensor, num_nodes: int, k: int) -> Tensor:
    """(n, k) probabilities of returning to the node after 1..k random-walk steps (PyG's AddRandomWalkPE)."""
    data = Data(edge_index=edge_index, num_nodes=num_nodes)
    return AddRandomWalkPE(walk_length=k, attr_name="pe")(data).pe.float()


def positional_encoding(kind: str, edge_index: Tensor, num_nodes: int, k: int, *, seed: int = 0) -> Tensor:
    """(n, k) encodings of `kind` (data.pe); `seed` starts the Laplacian's eigen-solver (`laplacian_pe`)."""
    if kind == "laplacian":
        return laplacian_pe(edge_index, num_nodes, k, seed=seed)
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
