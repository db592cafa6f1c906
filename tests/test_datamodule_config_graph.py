"""GraphDataModule's options as a typed, checked dataclass (GraphDataConfig): errors name the key, the yaml keys."""
from __future__ import annotations

import dataclasses
import typing

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from datamodules.graph.datamodule import SOURCES, GraphDataConfig, GraphDataModule
from datamodules.graph.ops import PE_KINDS, positional_encoding
from tests.conftest import compose_cfg

ALLOWED = r"\('sbm', 'karate', 'motifs', 'pyg', 'smiles'\)"


@pytest.mark.parametrize("options,error,match", [
    ({"source": "synthetic"}, ValueError, rf"data\.source must be one of {ALLOWED} or null, got 'synthetic'"),
    ({"source": "cora"}, ValueError, rf"data\.source must be one of {ALLOWED} or null, got 'cora'"),
    ({"source": "pyg"}, ValueError, r"^data\.source=pyg needs data\.name \(e\.g\. Cora, PubMed, IMDB-BINARY\)$"),
    ({"source": "smiles"}, ValueError, r"^data\.source=smiles needs data\.root = a CSV file with a SMILES column$"),
    ({"name": 3}, TypeError, r"data\.name must be a string or null, got 3 of type int"),
    ({"root": ["a.csv"]}, TypeError, r"data\.root must be a string or null"),
    ({"dir": 1}, TypeError, r"data\.dir must be a string or null, got 1 of type int"),
    ({"num_features": 0}, ValueError, r"data\.num_features must be >= 1, got 0"),
    ({"num_features": 16.0}, TypeError, r"data\.num_features must be an int or null, got 16\.0 of type float"),
    ({"pe": "spectral"}, ValueError, r"data\.pe must be one of \('laplacian', 'random_walk', 'none'\), got 'spectral'"),
    ({"pe_dim": 0}, ValueError, r"data\.pe_dim must be >= 1, got 0"),
    ({"batch_size": "8"}, TypeError, r"data\.batch_size must be an int, got '8'"),
    ({"batch_size": 0}, ValueError, r"data\.batch_size must be >= 1, got 0"),
    ({"subgraph_nodes": 1}, ValueError, r"data\.subgraph_nodes must be >= 2, got 1"),
    ({"subgraph_nodes": "64"}, TypeError, r"data\.subgraph_nodes must be an int or null, got '64'"),
    ({"subgraph_hops": 0}, ValueError, r"data\.subgraph_hops must be >= 1, got 0"),
    ({"probe_per_class": 0}, ValueError, r"data\.probe_per_class must be >= 1, got 0"),
    ({"steps_per_epoch": 0}, ValueError, r"data\.steps_per_epoch must be >= 1, got 0"),
    ({"num_workers": -1}, ValueError, r"data\.num_workers must be >= 0, got -1"),
    ({"val_fraction": 1.0}, ValueError, r"data\.val_fraction must be in \[0, 1\), got 1\.0"),
    ({"val_fraction": -0.1}, ValueError, r"data\.val_fraction must be in \[0, 1\), got -0\.1"),
    ({"seed": "0"}, TypeError, r"data\.seed must be an int, got '0'"),
    ({"on_error": "ignore"}, ValueError, r"data\.on_error must be one of \('skip', 'raise'\), got 'ignore'"),
    ({"smiles_column": None}, TypeError, r"data\.smiles_column must be a string, got None"),
    ({"label_column": 2}, TypeError, r"data\.label_column must be a string or null, got 2 of type int"),
    ({"synthetic_size": 1}, ValueError, r"data\.synthetic_size must be >= 2, got 1"),
    ({"sbm_blocks": 1}, ValueError, r"data\.sbm_blocks must be >= 2, got 1"),
    ({"sbm_p_in": 1.5}, ValueError, r"data\.sbm_p_in is a probability: it must be in \[0, 1\], got 1\.5"),
    ({"sbm_p_out": -0.01}, ValueError, r"data\.sbm_p_out is a probability: it must be in \[0, 1\], got -0\.01"),
    ({"sbm_p_in": "high"}, TypeError, r"data\.sbm_p_in must be a number, got 'high'"),
    ({"sbm_features": "onehot"}, ValueError, r"data\.sbm_features must be one of \('topics', 'gaussian'\), got 'onehot'"),
    ({"sbm_words": 0}, ValueError, r"data\.sbm_words must be >= 1, got 0"),
    ({"sbm_topic_weight": 2}, ValueError, r"data\.sbm_topic_weight is a probability: it must be in \[0, 1\], got 2"),
    ({"sbm_informative": 0}, ValueError, r"data\.sbm_informative must be >= 1, got 0"),
    ({"sbm_class_sep": None}, TypeError, r"data\.sbm_class_sep must be a number, got None"),
    ({"pin_memory": 1}, TypeError, r"data\.pin_memory must be a bool \(true/false\), got 1 of type int"),
])
def test_a_wrong_option_names_the_key(options, error, match) -> None:
    with pytest.raises(error, match=match):
        GraphDataModule(**options)
    with pytest.raises(error, match=match):
        GraphDataConfig(**options)


def test_the_debug_fast_aliases_are_gone() -> None:
    with pytest.raises(ValueError, match=r"data\.source must be one of .*'sbm'.* or null, got 'synthetic'"):
        GraphDataModule(source="synthetic")
    with pytest.raises(TypeError, match=r"^data\.image_size is not an option of GraphDataModule; options: source, "):
        GraphDataModule(image_size=32)
    assert "synthetic" not in SOURCES and GraphDataModule(synthetic_size=40).cfg.synthetic_size == 40  # a real option


def test_an_unknown_key_from_the_command_line(tmp_path) -> None:
    cfg = compose_cfg(["modality=graph", "+data.num_nodes=100"], tmp_path)
    with pytest.raises(InstantiationException, match=r"data\.num_nodes is not an option of GraphDataModule"):
        instantiate(cfg.data)


@pytest.mark.parametrize("options,source", [
    ({}, "sbm"),
    ({"name": "Cora"}, "pyg"),
    ({"root": "molecules.csv"}, "smiles"),
    ({"source": "pyg", "name": "Cora"}, "pyg"),  # (name + root, or a source that does not read name: an error,
    ({"source": "smiles", "root": "molecules.csv"}, "smiles"),  # tests/test_reliability_graph.py)
    ({"source": "karate"}, "karate"),
])
def test_a_null_source_is_resolved_from_name_and_root(options, source) -> None:
    assert GraphDataConfig(**options).resolved_source == source
    dm = GraphDataModule(**options)
    assert dm.source == source and dm.cfg.source == options.get("source")


def test_the_config_is_frozen_and_converts_paths(tmp_path) -> None:
    dm = GraphDataModule(dir=tmp_path, name="Cora", batch_size=4, num_workers=0, pin_memory=True,
                         subgraph_nodes=16, seed=3)
    assert dm.cfg.dir == str(tmp_path) and type(dm.cfg.dir) is str
    assert GraphDataConfig(root=tmp_path / "m.csv").root == str(tmp_path / "m.csv")
    assert (dm.batch_size, dm.num_workers, dm.pin_memory, dm.seed, dm.subgraph_nodes) == (4, 0, True, 3, 16)
    assert dm._cache_dir("tu") == tmp_path / "tu"
    with pytest.raises(dataclasses.FrozenInstanceError):
        dm.cfg.batch_size = 8  # type: ignore[misc]
    assert GraphDataConfig(sbm_p_in=1).sbm_p_in == 1.0 and type(GraphDataConfig(sbm_p_in=1).sbm_p_in) is float


def test_field_names_do_not_shadow_the_annotations() -> None:
    """`dir`, `name`, `pe` and `source` are class attributes too: the annotations must still resolve to types."""
    hints = typing.get_type_hints(GraphDataConfig)
    assert hints["dir"] == str | None and hints["label_column"] == str | None and hints["pin_memory"] is bool
    assert typing.get_args(hints["pe"]) == PE_KINDS
    assert typing.get_args(hints["source"])[0].__args__ == SOURCES


@pytest.mark.parametrize("kind", PE_KINDS)
def test_every_pe_choice_is_one_positional_encoding_knows(kind) -> None:
    edge_index = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])  # a path of 4 nodes
    assert positional_encoding(kind, edge_index, 4, 2).shape == (4, 2)


@pytest.mark.parametrize("features", ["topics", "gaussian"])
def test_the_sbm_options_reach_the_generated_graph(features) -> None:
    dm = GraphDataModule(synthetic_size=31, sbm_blocks=3, sbm_p_in=1.0, sbm_p_out=0.0, num_features=12, pe="none",
                         pe_dim=2, sbm_features=features,
                         **({"sbm_words": 3} if features == "topics" else {"sbm_informative": 3}))  # each kind's own
    dm.setup()
    graph = dm.graphs[0]
    assert dm.level == "node" and dm.classes == ["0", "1", "2"] and graph.num_nodes == 31 and graph.x.shape == (31, 12)
    y = graph.y
    src, dst = graph.edge_index
    assert bool((y[src] == y[dst]).all())  # p_out = 0: no edge between communities
    sizes = torch.bincount(y, minlength=3)
    assert graph.edge_index.shape[1] == int((sizes * (sizes - 1)).sum())  # p_in = 1: every pair inside one
    if features == "topics":
        assert bool(((graph.x == 0) | (graph.x == 1)).all()) and bool((graph.x.sum(1) <= 3).all())


@pytest.mark.parametrize("name", ["graphmae_cora", "graphmae_pubmed"])
def test_the_paper_recipes_build_their_config(name, tmp_path) -> None:
    dm = instantiate(compose_cfg([f"experiment={name}"], tmp_path).data)  # no download: nothing is read yet
    assert dm.source == "pyg" and dm.cfg.name in ("Cora", "PubMed") and dm.cfg.pe == "none"
