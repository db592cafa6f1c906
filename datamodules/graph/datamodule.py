"""Graphs for GraphMAE: node-level (one big graph) and graph-level (many small graphs) data on torch-geometric.

Sources (`data.source`, inferred when null):
- "sbm" (default, offline, node level): PyG's `StochasticBlockModelDataset` graph, built in memory:
  `data.sbm_blocks` communities of equal size (`data.synthetic_size` nodes in all), edge probabilities
  `data.sbm_p_in` / `data.sbm_p_out`, `data.num_features` (null: 256) Cora-like bag-of-words features or
  sklearn's make_classification (class = community, `data.sbm_informative`, `data.sbm_class_sep`).
- "karate" (offline, node level): Zachary's karate club (34 nodes, 4 classes, identity features: num_features 34).
- "motifs" (offline, graph level): `data.synthetic_size` generated graphs of 6 kinds (cycle, grid, tree,
  wheel, Erdos-Renyi, Barabasi-Albert) with a few random extra edges, WITHOUT node features (degree features).
- "pyg": any torch-geometric dataset by `data.name`: Planetoid (Cora, CiteSeer, PubMed: node level, public
  split), KarateClub, else a TUDataset (IMDB-BINARY, MUTAG, PROTEINS, ...: graph level); downloaded into
  `data.dir` (only when asked for: needs network the first time).
- "smiles" (graph level): `data.root` = CSV with a `data.smiles_column` and optional `data.label_column`
  (molecules via `torch_geometric.utils.from_smiles`, 9 atom features; needs rdkit: `pip install rdkit`).

`data.num_features=null` takes the width from the data (`inferred_options()` hands it to the model config):
the features' width, or for graphs without features the largest degree + 1 (one-hot degree features).
Options the chosen source does not read are an error (`datamodules/graph/options.py`).

Bad input: self-loops are removed, edges made undirected, graphs without edges and isolated nodes are kept
(GATConv adds self-loops), graphs without features get one-hot degree features; invalid SMILES, empty graphs and
graphs with a node feature that is not finite or beyond +-1e15 are skipped with a warning and a count
(`data.on_error=skip`) or raise; missing labels become -1 (evaluation then skips them; all missing: RankMe
only), and a label that is no class index (-5, 1.5, several per graph) is an error naming it. Counts are in
`datamodule.stats`.

Node level: pre-training sees the whole graph (transductive, as GraphMAE): full batch (one step per
`data.steps_per_epoch`), or with `data.subgraph_nodes=K` batches of BFS subgraphs of at most K nodes
(`datamodules.graph.ops.bfs_subgraph`). Evaluation: node embeddings of the frozen encoder -> probe trained on the
train nodes (Planetoid: train_mask) and scored on the held-out nodes (Planetoid: test_mask, as GraphMAE
reports; otherwise a random `data.val_fraction` of the labelled nodes). eval=graphmae also needs a val split to
pick its epoch on (`node_split`: Planetoid's val_mask, otherwise half of the held-out nodes).
Graph level: train/val split of the graphs; evaluation on pooled graph embeddings.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torch_geometric.data import Data

from datamodules.base import SplitDataModule
from datamodules.checks import OnError, build_config, check_fields, check_val_fraction
from datamodules.graph.datasets import GraphItems, NodeItems
from datamodules.graph.ops import (
    FeatureNorm,
    PeKind,
    clean_graph,
    collate_graphs,
    feature_width,
    graph_labels,
    num_subgraphs,
    positional_encoding,
    row_normalize,
)
from datamodules.graph.options import unread_options
from datamodules.graph.sources import MOTIFS, motif_dataset, read_smiles_csv, topic_features
from datamodules.indexing import split_indices
from datamodules.sampling import SeededSampler

GraphSourceName = Literal["sbm", "karate", "motifs", "pyg", "smiles"]
SbmFeatures = Literal["topics", "gaussian"]  # data.sbm_features
SOURCES = get_args(GraphSourceName)
PLANETOID = ("cora", "citeseer", "pubmed")
KARATE = ("karate", "karateclub")
SBM_WIDTH = 256  # data.num_features=null on the generated sbm features


# ---------------------------------------------------------------------------------------------- config
@dataclass(kw_only=True, frozen=True)
class GraphDataConfig:
    """The `data` options of GraphDataModule (conf/modality/graph.yaml), checked when built: an error names the
    key (`data.<field>`), what it got and what to write. Paths are stored as str."""

    source: GraphSourceName | None = None  # null: "pyg" if name is set, "smiles" if root is set, else "sbm"
    name: str | None = None  # source=pyg: a torch-geometric dataset (Cora, CiteSeer, PubMed, KarateClub, IMDB-BINARY...)
    root: str | None = None  # source=smiles: a CSV file with a SMILES column
    dir: str | None = None  # noqa: A003 - where datasets are downloaded / generated (null: $TMPDIR/mae_graph_data)
    num_features: int | None = None  # node-feature width, >= 1; null: the data's (no features: max degree + 1; sbm 256)
    pe: PeKind = "laplacian"  # positional encodings: laplacian | random_walk | none
    feature_norm: FeatureNorm = "none"  # none: features as stored; row: each node's features divided by their sum
    # (DGL's Cora / CiteSeer / PubMed, as GraphMAE reads them: ops.row_normalize)
    pe_dim: int = 8  # positional-encoding width, >= 1
    batch_size: int = 32  # graphs (graph level) or subgraphs (node level with subgraph_nodes) per batch, >= 1
    subgraph_nodes: int | None = None  # node level: null = full batch; K >= 2 = BFS subgraphs of <= K nodes
    subgraph_hops: int = 2  # node level, subgraph_nodes set: BFS hops, >= 1
    probe_per_class: int | None = None  # node level without a public split: probe-train nodes per class (null: val_fraction)
    steps_per_epoch: int = 1  # node level, full batch: optimiser steps (= passes over the graph) per epoch, >= 1
    num_workers: int = 0  # DataLoader worker processes
    val_fraction: float = 0.2  # graph level: share of graphs held out; node level: of the labelled nodes; in [0, 1)
    seed: int = 0  # the split, the generated graphs and the augmentation draws
    on_error: OnError = "skip"  # an invalid SMILES / empty graph: "skip" (warn + count in `skips`) or "raise"
    smiles_column: str = "smiles"  # source=smiles: the CSV column of SMILES strings
    label_column: str | None = "label"  # source=smiles: the CSV column of labels (null or absent: unlabeled)
    synthetic_size: int = 1000  # sbm: nodes; motifs: graphs; >= 2
    sbm_blocks: int = 5  # sbm: communities (= classes), >= 2
    sbm_p_in: float = 0.02  # sbm: edge probability inside a community, in [0, 1]
    sbm_p_out: float = 0.002  # sbm: edge probability between communities, in [0, 1]
    sbm_features: SbmFeatures = "topics"  # sbm: topics (Cora-like bag of words) or gaussian (make_classification)
    sbm_words: int = 12  # sbm, topics: words drawn per node, >= 1
    sbm_topic_weight: float = 0.2  # sbm, topics: probability a word comes from the node's class block, in [0, 1]
    sbm_informative: int = 8  # sbm, gaussian: informative features, >= 1
    sbm_class_sep: float = 0.5  # sbm, gaussian: class separation of make_classification
    pin_memory: bool = False  # DataLoader pin_memory

    def __post_init__(self) -> None:
        check_fields(self, minimum={"num_features": 1, "pe_dim": 1, "batch_size": 1, "subgraph_nodes": 2,
                                    "subgraph_hops": 1, "probe_per_class": 1, "steps_per_epoch": 1, "num_workers": 0,
                                    "synthetic_size": 2, "sbm_blocks": 2, "sbm_words": 1, "sbm_informative": 1})
        if self.resolved_source == "pyg" and self.name is None:
            raise ValueError("data.source=pyg needs data.name (e.g. Cora, PubMed, IMDB-BINARY)")
        if self.resolved_source == "smiles" and self.root is None:
            raise ValueError("data.source=smiles needs data.root = a CSV file with a SMILES column")
        check_val_fraction(self.val_fraction)
        for key in ("sbm_p_in", "sbm_p_out", "sbm_topic_weight"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"data.{key} is a probability: it must be in [0, 1], got {getattr(self, key)}")
        unread = unread_options(self)
        if unread:
            raise ValueError("options the chosen data does not read (they would be ignored): " + "; ".join(unread))

    @property
    def resolved_source(self) -> str:
        """source, null resolved: "pyg" if name is set, "smiles" if root is set, else "sbm"."""
        if self.source is not None:
            return self.source
        return "pyg" if self.name is not None else "smiles" if self.root is not None else "sbm"

    @property
    def resolved_level(self) -> str:
        """"node" (one big graph: sbm, karate, Planetoid, KarateClub) or "graph" (many small graphs)."""
        source = self.resolved_source
        if source in ("sbm", "karate"):
            return "node"
        if source == "pyg" and self.name is not None and self.name.lower() in (*PLANETOID, *KARATE):
            return "node"
        return "graph"


# ----------------------------------------------------------------------------------------- datamodule
class GraphDataModule(SplitDataModule):
    """Graph data for GraphMAE pre-training and frozen-feature evaluation (see the module docstring); the options
    are GraphDataConfig's fields."""

    unit = "graphs"
    cfg: GraphDataConfig

    def __init__(self, **options: object) -> None:
        super().__init__(build_config(GraphDataConfig, options, owner="GraphDataModule"))
        cfg = self.cfg
        self.source, self.subgraph_nodes = cfg.resolved_source, cfg.subgraph_nodes
        self.stats: dict[str, int] = {}
        self._ready = False

    # ---- loading ---------------------------------------------------------------------------------
    def _cache_dir(self, what: str) -> Path:
        base = Path(self.cfg.dir).expanduser() if self.cfg.dir else Path(tempfile.gettempdir()) / "mae_graph_data"
        return base / what

    def _raw_graphs(self) -> tuple[list[Data], list[str], str]:
        """(graphs, class names, level) before cleaning."""
        cfg = self.cfg
        if self.source == "sbm":
            return [self._sbm()], [str(c) for c in range(cfg.sbm_blocks)], "node"
        if self.source == "karate" or (cfg.name or "").lower() in KARATE:
            from torch_geometric.datasets import KarateClub

            return [KarateClub()[0]], [str(c) for c in range(4)], "node"
        if self.source == "motifs":
            return motif_dataset(cfg.synthetic_size, seed=self.seed), list(MOTIFS), "graph"
        if self.source == "smiles":
            graphs, classes = read_smiles_csv(cfg.root, smiles_column=cfg.smiles_column,
                                              label_column=cfg.label_column, on_error=cfg.on_error, skips=self.skips)
            return graphs, classes, "graph"
        from torch_geometric.datasets import Planetoid, TUDataset

        if cfg.name.lower() in PLANETOID:
            ds = Planetoid(str(self._cache_dir("planetoid")), cfg.name)
            return [ds[0]], [str(c) for c in range(ds.num_classes)], "node"
        ds = TUDataset(str(self._cache_dir("tu")), cfg.name)
        return [ds[i] for i in range(len(ds))], [str(c) for c in range(ds.num_classes)], "graph"

    def _sbm(self) -> Data:
        """The stochastic block model graph of PyG's StochasticBlockModelDataset, built from the same two
        library calls (`stochastic_blockmodel_graph`, sklearn's `make_classification`, features sorted by
        class so that class = community) in memory: the dataset class hands sklearn a tensor of class
        weights, which sklearn >= 1.6 rejects. Deterministic in data.seed."""
        from sklearn.datasets import make_classification
        from torch_geometric.utils import stochastic_blockmodel_graph

        s, c = self.cfg, self.cfg.sbm_blocks
        width = SBM_WIDTH if s.num_features is None else s.num_features
        sizes = [s.synthetic_size // c + (i < s.synthetic_size % c) for i in range(c)]
        probs = [[s.sbm_p_in if i == j else s.sbm_p_out for j in range(c)] for i in range(c)]
        n = sum(sizes)
        if s.sbm_features == "topics":
            x, sizes = topic_features(sizes, width, words=s.sbm_words, topic_weight=s.sbm_topic_weight,
                                      seed=self.seed)
        else:
            x, y = make_classification(n_samples=n, n_features=width, n_classes=c,
                                       weights=[z / n for z in sizes],
                                       n_informative=min(s.sbm_informative, width),
                                       n_redundant=0, class_sep=s.sbm_class_sep, random_state=self.seed)
            sizes = np.bincount(y, minlength=c).tolist()  # sklearn's exact class counts = the community sizes
            x = torch.from_numpy(x[y.argsort(kind="stable")]).float()  # (n, F) rows of class k = community k
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            edge_index = stochastic_blockmodel_graph(sizes, probs, directed=False)
        return Data(x=x, edge_index=edge_index, y=torch.arange(c).repeat_interleave(torch.tensor(sizes)), num_nodes=n)

    def _prepare(self) -> None:
        if self._ready:
            return
        cfg = self.cfg
        raw, self._classes, self.level = self._raw_graphs()
        data = f"data.source={self.source}" + (f" ({cfg.name})" if cfg.name else f" ({cfg.root})" if cfg.root else "")
        self.feature_width = feature_width(raw, given=cfg.num_features, what=data)
        graphs = []
        for i, g in enumerate(raw):
            what = f"graph #{i} of {data}"
            labels = graph_labels(g.y, count=1 if self.level == "graph" else int(g.num_nodes or 0), what=what)
            try:
                graph = clean_graph(g, num_features=self.feature_width, what=what, stats=self.stats)
            except ValueError as err:
                if cfg.on_error == "raise" or "data.num_features" in str(err):
                    raise
                self.skips.skip(what, str(err))
                continue
            graph.y = labels
            if cfg.feature_norm == "row":
                graph.x = row_normalize(graph.x)
            graphs.append(graph)
        if not graphs:
            first = f" (the first: {self.skips.skipped[0][1]})" if self.skips.count else ""
            raise RuntimeError(f"no usable graph in {data}: {len(raw)} read, {self.skips.count} skipped{first}")
        self.stats["skipped"] = self.skips.count
        self.graphs = graphs
        self.pes = [positional_encoding(cfg.pe, g.edge_index, g.num_nodes, cfg.pe_dim, seed=self.seed) for g in graphs]
        flip = cfg.pe == "laplacian"
        if self.level == "graph":
            train_idx, val_idx = split_indices(len(graphs), val_fraction=cfg.val_fraction, seed=self.seed)
            self.train_set = GraphItems(graphs, self.pes, train_idx, flip=flip)
            self.train_eval_set = GraphItems(graphs, self.pes, train_idx, flip=False)
            self.val_set = GraphItems(graphs, self.pes, val_idx, flip=False)
        else:
            self._prepare_nodes(graphs[0], self.pes[0], flip)
        self._ready = True

    def _prepare_nodes(self, graph: Data, pe: Tensor, flip: bool) -> None:
        cfg, n, k = self.cfg, graph.num_nodes, self.subgraph_nodes
        self.probe_val: Tensor | None = None  # Planetoid's val_mask nodes (`node_split`); None without a public split
        length = cfg.steps_per_epoch if k is None else num_subgraphs(n, k)
        common = {"subgraph_nodes": k, "hops": cfg.subgraph_hops, "seed": self.seed}
        self.train_set = NodeItems(graph, pe, length=length, flip=flip, **common)
        val_len = 1 if k is None else min(length, 8)
        self.val_set = NodeItems(graph, pe, length=val_len, flip=False, **common)
        self.train_eval_set = self.val_set
        y = graph.y.reshape(-1).long() if graph.y is not None else torch.full((n,), -1)
        labelled = torch.nonzero(y >= 0).flatten()
        if "train_mask" in graph and "test_mask" in graph and graph.train_mask is not None:
            self.probe_train = torch.nonzero(graph.train_mask).flatten()
            self.probe_eval = torch.nonzero(graph.test_mask).flatten()
            self.probe_split = "public train_mask -> test_mask"
            if "val_mask" in graph and graph.val_mask is not None:
                self.probe_val = torch.nonzero(graph.val_mask).flatten()
        elif labelled.numel() < 2:
            self.probe_train = self.probe_eval = torch.arange(n)
            self.probe_split = "no labels: RankMe only"
        elif cfg.probe_per_class is None or not self._per_class_split(y, labelled):
            fraction = max(cfg.val_fraction, 1 / labelled.numel())
            tr, ev = split_indices(labelled.numel(), val_fraction=fraction, seed=self.seed)
            self.probe_train, self.probe_eval = labelled[tr], labelled[ev]
            self.probe_split = f"random {1 - cfg.val_fraction:.0%} / {cfg.val_fraction:.0%} of the labelled nodes"
        self.node_labels = y

    def _per_class_split(self, y: Tensor, labelled: Tensor) -> bool:
        """Planetoid-style probe split: `probe_per_class` random labelled nodes per class train the probe, the
        other labelled nodes score it. False (caller falls back to val_fraction) when nothing would be left."""
        g = torch.Generator().manual_seed(self.seed)
        order = labelled[torch.randperm(labelled.numel(), generator=g)]
        rank = torch.zeros(y.numel(), dtype=torch.long)  # position of each node among its class, random order
        for c in y[order].unique().tolist():
            members = order[y[order] == c]
            rank[members] = torch.arange(members.numel())
        is_train = rank[order] < self.cfg.probe_per_class
        if bool(is_train.all()):
            return False
        self.probe_train, self.probe_eval = order[is_train].sort().values, order[~is_train].sort().values
        self.probe_split = f"{self.cfg.probe_per_class} labelled nodes per class -> the other labelled nodes"
        return True

    def inferred_options(self) -> dict[str, int]:
        """The `data` options left null that the data decides, for the model config: {"num_features": width} when
        data.num_features is null (reads the data), else {}. The runner writes them into cfg.data before it builds
        the module, whose tokenizer reads ${data.num_features}."""
        if self.cfg.num_features is not None:
            return {}
        self._prepare()
        return {"num_features": self.feature_width}

    def fit_batch_to_split(self, world_size: int) -> int:
        """Node level trains on the full graph or on subgraphs without drop_last: the batch never needs lowering."""
        self._prepare()
        return self.batch_size if self.level == "node" else super().fit_batch_to_split(world_size)

    # ---- loaders -----------------------------------------------------------------------------------
    def _loader(self, dataset: Dataset, *, sampler=None, drop_last: bool) -> DataLoader:
        batch = 1 if self.level == "node" and self.subgraph_nodes is None else self.batch_size
        return DataLoader(dataset, batch_size=batch, sampler=sampler, drop_last=drop_last, collate_fn=collate_graphs,
                          num_workers=self.num_workers, pin_memory=self.pin_memory,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        self._prepare()
        if self.level == "node" and (self.subgraph_nodes is None or len(self.train_set) < self.batch_size):
            sampler = SeededSampler(len(self.train_set), seed=self.seed, shuffle=True)
            return self._loader(self.train_set, sampler=sampler, drop_last=False)
        return super().train_dataloader()

    # ---- evaluation (eval=graph: mae.modalities.graph.eval.GraphProbe) -------------------------------
    eval_tasks = ("graph",)

    @property
    def num_nodes(self) -> int:
        """Node level: the number of nodes of the graph."""
        self._prepare()
        return int(self.graphs[0].num_nodes)

    def node_split(self) -> tuple[Tensor, Tensor, Tensor]:
        """Node level: (train, val, test) node ids for a protocol that picks its epoch on a val split (eval=graphmae):
        Planetoid's public train_mask / val_mask / test_mask (GraphMAE's split: 140 / 500 / 1000 nodes on Cora);
        without a public split the probe-train nodes, and the held-out nodes (`probe_eval`) halved at random
        (seeded by data.seed) into val and test."""
        self._prepare()
        if self.level != "node":
            raise ValueError("node_split is for node-level data (one big graph); this is graph-level data "
                             f"(data.source={self.source}): evaluate pooled graph embeddings instead")
        if self.probe_val is not None:
            return self.probe_train, self.probe_val, self.probe_eval
        g = torch.Generator().manual_seed(self.seed)
        order = self.probe_eval[torch.randperm(len(self.probe_eval), generator=g)]  # (n_eval,) shuffled
        half = len(order) // 2
        return self.probe_train, order[:half].sort().values, order[half:].sort().values

    def node_batches(self, nodes: Tensor) -> list[dict[str, Tensor]]:
        """Batches that embed `nodes` of the node-level graph: the whole graph once (full batch), or one BFS
        subgraph centred at each node (its embedding = the centre's, local index 0)."""
        if self.subgraph_nodes is None:
            return [collate_graphs([self.val_set[0]])]
        items = NodeItems(self.graphs[0], self.pes[0], length=len(nodes), subgraph_nodes=self.subgraph_nodes,
                          hops=self.cfg.subgraph_hops, flip=False, centers=nodes, seed=self.seed)
        return [collate_graphs([items[i] for i in range(s, min(s + self.batch_size, len(nodes)))])
                for s in range(0, len(nodes), self.batch_size)]
