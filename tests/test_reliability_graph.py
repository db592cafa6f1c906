"""Graphs, reliability: the feature width is read from the data (data.num_features=null), labels that are no class
index are errors naming them, options the chosen source does not read are errors, node features that would
overflow float32 are named, and Laplacian positional encodings are bit-identical from process to process."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from torch_geometric.data import Data
from torch_geometric.utils import get_laplacian, to_scipy_sparse_matrix

from datamodules.graph.datamodule import GraphDataConfig, GraphDataModule
from datamodules.graph.ops import clean_graph, laplacian_pe
from tests.conftest import ROOT, compose_cfg

SMALL_GAT = ["model.encoder.dim=8", "model.encoder.num_heads=2", "model.decoder.dim=8"]


def write_smiles(path, labels: list[str]) -> str:
    molecules = ["CCO", "c1ccccc1", "CC(=O)O", "CCN", "C1CCCCC1", "CCCl"]
    path.write_text("smiles,label\n" + "".join(f"{m},{y}\n" for m, y in zip(molecules, labels)))
    return str(path)


class GivenGraphs(GraphDataModule):
    """A source that hands over the graphs of the test (as a downloaded PyG dataset would)."""

    def __init__(self, graphs: list[Data], *, level: str, **options: object) -> None:
        super().__init__(source="motifs", pe="none", pe_dim=2, batch_size=2, **options)
        self.given, self.given_level = graphs, level

    def _raw_graphs(self) -> tuple[list[Data], list[str], str]:
        return self.given, ["0", "1"], self.given_level


def ring(n: int) -> torch.Tensor:
    i = torch.arange(n)
    return torch.stack([i, (i + 1) % n])


# ------------------------------------------------------------------------------------ feature width
def test_the_smiles_feature_width_is_read_from_the_data_and_reaches_the_model(tmp_path) -> None:
    pytest.importorskip("rdkit", reason="molecules need the optional rdkit extra")
    csv = write_smiles(tmp_path / "mols.csv", ["0", "1", "0", "1", "0", "1"])
    cfg = compose_cfg(["modality=graph", f"data.root={csv}", "data.num_features=null", "data.batch_size=2",
                       *SMALL_GAT], tmp_path)
    dm = instantiate(cfg.data)
    assert dm.inferred_options() == {"num_features": 9}  # from_smiles: 9 atom features
    for key, value in dm.inferred_options().items():  # what the runner does before it builds the module
        cfg.data[key] = value
    module = instantiate(cfg.module)
    assert module.tokenizer.token_dim == 9
    loss = module(next(iter(dm.train_dataloader())), torch.Generator().manual_seed(0))["loss"]
    assert torch.isfinite(loss)
    given = GraphDataModule(root=csv, num_features=9)
    assert given.inferred_options() == {}  # a given width is the config's: nothing to fill in
    with pytest.raises(ValueError, match=r"mols\.csv\): node features are 9 wide but data\.num_features=12; "
                                         r"set data\.num_features=9"):
        GraphDataModule(root=csv, num_features=12).setup()


def test_featureless_graphs_get_one_hot_degrees_up_to_the_largest_degree() -> None:
    dm = GraphDataModule(source="motifs", synthetic_size=24, pe="none", pe_dim=2, batch_size=4)
    width = dm.inferred_options()["num_features"]
    largest = max(int(torch.bincount(g.edge_index[0], minlength=g.num_nodes).max()) for g in dm.graphs)
    assert width == largest + 1 == dm.graphs[0].x.shape[1]
    for g in dm.graphs:  # no degree clipped into the last column
        degrees = torch.bincount(g.edge_index[0], minlength=g.num_nodes)
        assert torch.equal(g.x.argmax(1), degrees) and torch.equal(g.x.sum(1), torch.ones(g.num_nodes))


def test_graphs_with_different_feature_widths_are_an_error_naming_both() -> None:
    graphs = [Data(x=torch.ones(3, 4), edge_index=ring(3), y=torch.tensor([0])),
              Data(x=torch.ones(3, 5), edge_index=ring(3), y=torch.tensor([1]))]
    with pytest.raises(ValueError, match=r"graphs have node features of different widths: graph #0 is 4 wide, "
                                         r"graph #1 is 5 wide"):
        GivenGraphs(graphs, level="graph").setup()


# ------------------------------------------------------------------------------------------- labels
@pytest.mark.parametrize("bad", ["-5", "1.5", "-1", "nan"])
def test_a_csv_label_that_is_no_class_index_is_an_error_naming_the_line(tmp_path, bad) -> None:
    pytest.importorskip("rdkit", reason="molecules need the optional rdkit extra")
    csv = write_smiles(tmp_path / "mols.csv", ["0", "1", "0", bad, "1", "0"])
    with pytest.raises(ValueError, match=rf"mols\.csv' column 'label' \(data\.label_column\) line 5: label "
                                         rf"'{bad}' is not a class index: numeric labels must be integers >= 0"):
        GraphDataModule(root=csv, num_features=9).setup()
    ok = GraphDataModule(root=write_smiles(tmp_path / "ok.csv", ["0", "2.0", "", "1", "0", "1"]), num_features=9)
    ok.setup()
    assert [int(g.y) for g in ok.graphs] == [0, 2, -1, 1, 0, 1] and ok.classes == ["0", "1", "2"]


@pytest.mark.parametrize("y,level,match", [
    (torch.tensor([-5]), "graph", r"graph #1 of data\.source=motifs: label -5\.0 is not a class: labels must be "
                                  r"integers >= 0 \(-1 = missing\)"),
    (torch.tensor([0.5]), "graph", r"graph #1 .*: label 0\.5 is not a class"),
    (torch.tensor([0, 1, 1]), "graph", r"graph #1 .*: 3 labels \(y of shape \(3,\)\) where 1 is expected"),
    (torch.tensor([0, -3, 1]), "node", r"graph #1 .*: node 1: label -3\.0 is not a class"),
])
def test_a_dataset_label_that_is_no_class_index_is_an_error_naming_the_graph(y, level, match) -> None:
    graphs = [Data(x=torch.ones(3, 4), edge_index=ring(3), y=torch.tensor([0] if level == "graph" else [0, 1, 0])),
              Data(x=torch.ones(3, 4), edge_index=ring(3), y=y)]
    with pytest.raises(ValueError, match=match):
        GivenGraphs(graphs, level=level).setup()


# ---------------------------------------------------------------------------------- unread options
@pytest.mark.parametrize("options,match", [
    ({"source": "motifs", "name": "Cora"}, r"data\.name='Cora' is read by data\.source=pyg only, but "
                                           r"data\.source=motifs"),
    ({"name": "Cora", "root": "mols.csv"},
     r"data\.root='mols\.csv' \(a CSV of SMILES\) is read by data\.source=smiles only, but data\.source=pyg "
     r"\(resolved from data\.name\)"),
    ({"source": "sbm", "root": "mols.csv"}, r"data\.root='mols\.csv' .* but data\.source=sbm"),
    ({"dir": "/tmp/graphs"}, r"data\.dir \(the download folder\) is read by data\.source=pyg only"),
    ({"source": "motifs", "smiles_column": "mol"}, r"data\.smiles_column is read by data\.source=smiles"),
    ({"label_column": None}, r"data\.label_column is read by data\.source=smiles"),
    ({"source": "karate", "synthetic_size": 50}, r"data\.synthetic_size sizes the generated sources"),
    ({"source": "motifs", "sbm_blocks": 3}, r"data\.sbm_blocks shapes the generated data\.source=sbm graph only"),
    ({"name": "MUTAG", "sbm_p_in": 0.5}, r"data\.sbm_p_in shapes the generated data\.source=sbm graph only"),
    ({"sbm_features": "gaussian", "sbm_words": 3}, r"data\.sbm_words is read with data\.sbm_features=topics only"),
    ({"sbm_class_sep": 2.0}, r"data\.sbm_class_sep is read with data\.sbm_features=gaussian only"),
    ({"source": "motifs", "subgraph_nodes": 16}, r"data\.subgraph_nodes cuts one big graph .* data\.source=motifs "
                                                 r"is graph level"),
    ({"name": "MUTAG", "subgraph_nodes": 16}, r"data\.subgraph_nodes .* data\.source=pyg \(resolved from "
                                              r"data\.name\) is graph level"),
    ({"subgraph_hops": 3}, r"data\.subgraph_hops is read with data\.subgraph_nodes=K only"),
])
def test_an_option_the_source_does_not_read_is_an_error(options, match) -> None:
    with pytest.raises(ValueError, match=r"options the chosen data does not read \(they would be ignored\): "
                                         rf".*{match}"):
        GraphDataConfig(**options)


def test_the_options_each_source_reads_are_accepted() -> None:
    assert GraphDataConfig(name="Cora", subgraph_nodes=64, subgraph_hops=3, dir="/tmp/g").resolved_level == "node"
    assert GraphDataConfig(root="m.csv", smiles_column="mol", label_column=None).resolved_level == "graph"
    assert GraphDataConfig(source="motifs", synthetic_size=30).resolved_level == "graph"
    assert GraphDataConfig(sbm_features="gaussian", sbm_informative=3, sbm_class_sep=1.0).resolved_level == "node"
    assert GraphDataConfig(name="KarateClub", subgraph_nodes=8).resolved_level == "node"


# ------------------------------------------------------------------------------------ feature values
@pytest.mark.parametrize("value,shown", [(float("inf"), "inf"), (float("nan"), "nan"), (1e200, "1e\\+200"),
                                         (-2e15, "-2e\\+15")])
def test_a_node_feature_that_is_not_finite_or_huge_is_named(value, shown) -> None:
    x = torch.ones(4, 3, dtype=torch.float64)
    x[2, 1] = value
    with pytest.raises(ValueError, match=rf"^g: node 2, feature column 1 is {shown} \(1 such values in this graph\): "
                                         rf"node features must be finite and within \+-1e\+15"):
        clean_graph(Data(x=x, edge_index=ring(4)), num_features=3, what="g", stats={})
    bad = Data(x=x, edge_index=ring(4), y=torch.tensor([1]))
    good = Data(x=torch.ones(4, 3), edge_index=ring(4), y=torch.tensor([0]))
    with pytest.warns(UserWarning, match=r"skipping 'graph #1 of data\.source=motifs': .* node 2, feature column 1"):
        dm = GivenGraphs([good, bad, good, good], level="graph", val_fraction=0.25)
        dm.setup()
    assert len(dm.graphs) == 3 and dm.skips.count == 1  # on_error=skip drops the graph, counted
    with pytest.raises(ValueError, match=r"graph #1 of data\.source=motifs: node 2, feature column 1"):
        GivenGraphs([good, bad], level="graph", on_error="raise").setup()
    with pytest.warns(UserWarning), pytest.raises(RuntimeError, match=r"no usable graph in data\.source=motifs: 1 "
                                                                      r"read, 1 skipped \(the first: .*node 2"):
        GivenGraphs([Data(x=x, edge_index=ring(4), y=torch.zeros(4, dtype=torch.long))], level="node").setup()


# ------------------------------------------------------------------------------- Laplacian encodings
PE_SCRIPT = """
import hashlib, torch
from datamodules.graph.ops import laplacian_pe
from torch_geometric.utils import coalesce, remove_self_loops
g = torch.Generator().manual_seed(0)
n = 150
ring = torch.arange(n)
edges = torch.cat([torch.randint(0, n, (2, 600), generator=g), torch.stack([ring, (ring + 1) % n])], 1)
edges = coalesce(remove_self_loops(torch.cat([edges, edges.flip(0)], 1))[0], num_nodes=n)
print(hashlib.sha256(laplacian_pe(edges, n, 8, seed=0).numpy().tobytes()).hexdigest())
"""


def test_laplacian_encodings_are_bit_identical_in_two_processes() -> None:
    digests = set()
    for hash_seed in ("1", "2"):  # and each process's own OS entropy, which scipy's eigsh used to start from
        proc = subprocess.run([sys.executable, "-c", PE_SCRIPT], cwd=ROOT, capture_output=True, text=True,
                              timeout=300, env={**os.environ, "PYTHONHASHSEED": hash_seed})
        assert proc.returncode == 0, proc.stderr[-2000:]
        digests.add(proc.stdout.strip())
    assert len(digests) == 1


def test_laplacian_encodings_have_a_canonical_sign_and_leave_the_global_rng_alone() -> None:
    g = torch.Generator().manual_seed(1)
    n, k = 120, 4
    ring = torch.arange(n)
    edges = torch.cat([torch.randint(0, n, (2, 400), generator=g), torch.stack([ring, (ring + 1) % n])], 1)
    edges = clean_graph(Data(edge_index=edges, num_nodes=n), num_features=1, what="g", stats={}).edge_index
    state = torch.get_rng_state()
    pe = laplacian_pe(edges, n, k, seed=3)
    assert torch.equal(torch.get_rng_state(), state)  # PyG's sign draw no longer moves the global RNG
    top = pe.abs().argmax(0)
    assert bool((pe[top, torch.arange(k)] > 0).all())  # each column's largest entry is positive
    assert torch.equal(laplacian_pe(edges, n, k, seed=3), pe)  # the same again in this process
    index, weight = get_laplacian(edges, normalization="sym", num_nodes=n)
    values, vectors = np.linalg.eigh(to_scipy_sparse_matrix(index, weight, n).toarray())  # the dense reference
    reference = torch.from_numpy(vectors[:, 1:k + 1]).float()
    assert torch.allclose((pe * reference).sum(0).abs(), torch.ones(k), atol=1e-4)  # the same eigenvectors
