"""End to end: `modality=pointcloud mask=random|block` composed from the real config, shrunk, fit on CPU."""
from __future__ import annotations

import pytest
from hydra.utils import instantiate

from mae.train.config_check import validate
from tests.conftest import FAST, compose_cfg, fit_and_read

pytestmark = pytest.mark.e2e

SHRINK = ["modality=pointcloud", "data.synthetic_size=48", "data.batch_size=8", "data.num_points=256",
          "tokenizer.num_groups=16", "tokenizer.group_size=16", "callbacks.reconstruction.num_samples=2"]


def test_modality_defaults_are_point_mae(tmp_path):
    cfg = compose_cfg(["modality=pointcloud"], tmp_path)
    validate(cfg)
    module = instantiate(cfg.module)
    assert module.masker.ratio == 0.6 and type(module.target).__name__ == "PointGroupTarget"
    assert module.loss_fn.func.__name__ == "masked_chamfer"
    assert (cfg.tokenizer.num_groups, cfg.tokenizer.group_size, cfg.data.num_points) == (64, 32, 1024)
    block = instantiate(compose_cfg(["modality=pointcloud", "mask=block"], tmp_path).mask)
    assert block.ratio == 0.6 and block.blocks_for(None) == 1  # one ball of groups (no grid)
    image_block = instantiate(compose_cfg(["mask=block"], tmp_path).mask)
    assert image_block.ratio == 0.75 and image_block.blocks_for((7, 7)) == 4  # image defaults unchanged


def test_modality_selects_a_point_mae_model_and_an_explicit_model_wins(tmp_path):
    enc = instantiate(compose_cfg(["modality=pointcloud"], tmp_path).module).encoder  # conf/model/pointmae_cpu.yaml
    assert (enc.dim, len(enc.blocks), enc.pool_type, enc.num_prefix, enc.pos_every_block) == (128, 4, "max_mean", 0, True)
    assert enc.embed.first[0].out_features == 32  # the CPU-sized mini-PointNet
    full = compose_cfg(["modality=pointcloud", "model=pointmae"], tmp_path)
    validate(full)
    assert (full.model.encoder.dim, full.model.encoder.depth, full.model.encoder.token_embed.widths) == (384, 12, [128, 256, 512])
    tiny = compose_cfg(["modality=pointcloud", "model=tiny"], tmp_path)
    assert tiny.model.encoder.dim == 192 and "widths" not in tiny.model.encoder.token_embed  # PointNetEmbed's defaults
    assert instantiate(tiny.module).encoder.embed.second[0].out_features == 512
    image = compose_cfg([], tmp_path).model
    assert image.encoder.dim == 128 and image.encoder.cls_token and "pos_every_block" not in image.encoder


def test_paper_recipe_composes(tmp_path):
    cfg = compose_cfg(["experiment=pointmae_modelnet40", "data.root=/data/modelnet40"], tmp_path)
    validate(cfg)
    enc, dec = cfg.model.encoder, cfg.model.decoder
    assert (enc.dim, enc.depth, enc.num_heads, dec.depth, enc.pool) == (384, 12, 6, 4, "max_mean")
    assert cfg.mask.ratio == 0.6 and cfg.optim.lr == 1e-3 and cfg.data.batch_size == 128
    assert cfg.trainer.max_epochs == 300 and cfg.optim.warmup_epochs == 10
    module = instantiate(cfg.module)
    assert type(module.encoder.embed).__name__ == "PointNetEmbed" and module.encoder.pool_dim == 768
    assert module.encoder.pos_every_block and module.decoder.pos_every_block
    assert module.encoder.embed.second[0].out_features == 512  # Point-MAE's mini-PointNet widths


@pytest.mark.parametrize("mask", ["random", "block"])
def test_tiny_fit_writes_metrics_and_pictures(mask, tmp_path):
    run_dir = tmp_path / "run"
    cfg = compose_cfg([*FAST, *SHRINK, f"mask={mask}"], run_dir)
    metrics, saved = fit_and_read(cfg, run_dir)
    assert saved["train/loss"] == pytest.approx(metrics["train/loss"]) and saved["train/loss"] > 0
