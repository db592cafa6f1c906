"""End to end: `modality=graph` (GAT, node level) and the transformer on graph-level data, shrunk, fit on CPU."""
from __future__ import annotations

import pytest
from hydra.utils import instantiate

from mae.train.config_check import validate
from tests.conftest import FAST, PROBE_KEYS, compose_cfg, fit_and_read

pytestmark = pytest.mark.e2e

EVAL_KEYS = (*PROBE_KEYS, "eval/rankme_random_init")


def test_modality_defaults_are_graphmae(tmp_path):
    cfg = compose_cfg(["modality=graph", "data.num_features=256"], tmp_path)  # train.py reads it from the data
    validate(cfg)
    module = instantiate(cfg.module)
    assert type(module.encoder).__name__ == "GraphEncoder" and type(module.decoder).__name__ == "GraphDecoder"
    assert (module.masker.ratio, module.masker.replace_rate) == (0.5, 0.05)
    assert module.loss_fn.func.__name__ == "sce_loss" and type(module.target).__name__ == "NodeFeatureTarget"
    transformer = instantiate(compose_cfg(["modality=graph", "model=graph_transformer", "data.num_features=256"], tmp_path).module)
    assert type(transformer.encoder).__name__ == "Encoder" and type(transformer.masker).__name__ == "GraphMasker"
    block = instantiate(compose_cfg(["modality=graph", "mask=block"], tmp_path).mask)
    assert type(block).__name__ == "BlockMasker"  # an explicit mask choice still wins
    image = compose_cfg([], tmp_path)  # other modalities keep their defaults
    assert image.model.encoder._target_ == "mae.core.encoder.Encoder" and image.mask._target_ == "mae.core.masking.RandomMasker"


@pytest.mark.parametrize("name", ["graphmae_cora", "graphmae_pubmed"])
def test_paper_recipes_compose(name, tmp_path):
    cfg = compose_cfg([f"experiment={name}"], tmp_path)
    validate(cfg)
    enc = cfg.model.encoder
    cora = name == "graphmae_cora"
    assert (enc.dim, enc.depth, enc.num_heads) == ((512 if cora else 1024), 2, 4)
    assert (cfg.mask.ratio, cfg.mask.replace_rate) == ((0.5, 0.05) if cora else (0.75, 0.0))
    assert cfg.loss.alpha == 3 and cfg.optim.lr == 1e-3 and cfg.data.name == ("Cora" if cora else "PubMed")
    assert cfg.data.num_features == (1433 if cora else 500)
    module = instantiate(cfg.module)  # builds without touching the data (no download)
    assert module.encoder.dim == enc.dim


def test_node_level_gat_fit_writes_metrics_and_pictures(tmp_path):
    run_dir = tmp_path / "run"
    cfg = compose_cfg([*FAST, "modality=graph", "data.synthetic_size=90", "data.sbm_blocks=3", "data.num_features=24",
                       "data.probe_per_class=5", "data.pe_dim=4"], run_dir)
    metrics, saved = fit_and_read(cfg, run_dir, EVAL_KEYS)
    assert saved["train/loss"] == pytest.approx(metrics["train/loss"]) and 0 < saved["train/loss"] < 2 ** 3
    assert (run_dir / "embeddings.png").is_file()


def test_graph_level_transformer_fit_on_motifs(tmp_path):
    run_dir = tmp_path / "run"
    cfg = compose_cfg([*FAST, "modality=graph", "model=graph_transformer", "data.source=motifs",
                       "data.synthetic_size=48", "data.batch_size=8", "data.num_features=8", "data.pe_dim=4",
                       "callbacks.reconstruction.num_samples=4"], run_dir)
    fit_and_read(cfg, run_dir, EVAL_KEYS)
    assert (run_dir / "embeddings.png").is_file()
