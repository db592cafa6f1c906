"""The MAE, Point-MAE and GraphMAE paper recipes against their official code: each recipe composed and its key values
(lr, epochs, warm-up, weight decay, clip, mask ratio, decoder shape, drop path, feature normalisation, evaluation)
asserted; the drop-path rates and DGL's row normalisation tested against small ports of the official lines."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from datamodules.graph.ops import row_normalize
from mae.core.decoder import Decoder
from mae.core.pos_embed import MLPPosEmbed
from mae.train.config_check import validate
from mae.train.distributed import describe, resolve_batch
from tests.conftest import compose_cfg


# ------------------------------------------------------------------ ports of the official code (reference only)
def official_dpr(drop_path_rate: float, depth: int) -> list[float]:
    """Pang-Yatian/Point-MAE models/Point_MAE.py: MaskTransformer and Point_MAE's decoder drop-path rates."""
    return [x.item() for x in torch.linspace(0, drop_path_rate, depth)]


def official_preprocess_features(features: sp.csr_matrix) -> np.ndarray:
    """dmlc/dgl dgl/data/citation_graph.py _preprocess_features (the row normalisation of Cora / CiteSeer / PubMed,
    GraphMAE's datasets)."""
    rowsum = np.asarray(features.sum(1))
    with np.errstate(divide="ignore"):  # (not in the original: silences the inf of an all-zero row)
        r_inv = np.power(rowsum, -1).flatten()
    r_inv[np.isinf(r_inv)] = 0.0
    r_mat_inv = sp.diags(r_inv)
    features = r_mat_inv.dot(features)
    return np.asarray(features.todense())


def drop_rates(blocks: torch.nn.Module) -> list[float]:
    """Each timm block's stochastic-depth rate (0 where it is an Identity)."""
    return [float(getattr(b.drop_path1, "drop_prob", 0.0)) for b in blocks]


# ------------------------------------------------------------------------------------------------- MAE
def test_mae_recipe_is_the_official_pretrain_command(tmp_path) -> None:
    """facebookresearch/mae PRETRAIN.md (8 nodes, --batch_size 64 --mask_ratio 0.75 --epochs 800 --warmup_epochs 40
    --blr 1.5e-4 --weight_decay 0.05 --norm_pix_loss), main_pretrain.py, models_mae.py mae_vit_base_patch16_dec512d8b."""
    cfg = compose_cfg(["experiment=mae_vit_base_in1k", "data.root=/nowhere"], tmp_path)
    validate(cfg)
    resolved = describe(resolve_batch(cfg), blr=float(cfg.optim.blr), lr=cfg.optim.lr,
                        lr_batch_divisor=cfg.optim.lr_batch_divisor)
    assert resolved["effective_batch"] == 4096 and resolved["lr"] == pytest.approx(1.5e-4 * 4096 / 256)
    assert (cfg.trainer.max_epochs, cfg.optim.warmup_epochs, cfg.optim.min_lr) == (800, 40, 0.0)
    assert cfg.optim.weight_decay == 0.05 and list(cfg.optim.optimizer.betas) == [0.9, 0.95]
    assert cfg.trainer.gradient_clip_val is None and cfg.mask.ratio == 0.75
    assert cfg.target._target_ == "mae.core.targets.NormPixTarget" and cfg.target.eps == 1e-6  # (var + 1e-6) ** .5
    assert list(cfg.data.crop_scale) == [0.2, 1.0] and cfg.data.hflip and cfg.data.image_size == 224
    enc, dec = cfg.model.encoder, cfg.model.decoder
    assert (enc.dim, enc.depth, enc.num_heads, enc.cls_token) == (768, 12, 12, True)
    assert (dec.dim, dec.depth, dec.num_heads) == (512, 8, 16) and cfg.tokenizer.patch_size == 16


# ------------------------------------------------------------------------------------------- Point-MAE
def test_pointmae_recipe_is_the_official_pretrain_cfg(tmp_path) -> None:
    """cfgs/pretrain.yaml + tools/builder.py + tools/runner_pretrain.py."""
    cfg = compose_cfg(["experiment=pointmae_modelnet40", "data.root=/nowhere"], tmp_path)
    assert (cfg.data.num_points, cfg.data.batch_size) == (1024, 128)  # npoints, total_bs
    assert (cfg.tokenizer.num_groups, cfg.tokenizer.group_size) == (64, 32)
    assert cfg.mask._target_ == "mae.core.masking.RandomMasker" and cfg.mask.ratio == 0.6  # mask_type rand, 0.6
    assert cfg.loss.norm == 2  # cdl2
    assert cfg.optim.optimizer._target_ == "torch.optim.AdamW" and list(cfg.optim.optimizer.betas) == [0.9, 0.999]
    assert (cfg.optim.lr, cfg.optim.weight_decay) == (1e-3, 0.05)
    assert (cfg.optim.warmup_epochs, cfg.optim.min_lr, cfg.trainer.max_epochs) == (10, 1e-6, 300)
    assert cfg.trainer.gradient_clip_val is None  # runner_pretrain.py does not clip
    assert list(cfg.data.aug_scale) == pytest.approx([2 / 3, 3 / 2], abs=1e-4) and cfg.data.aug_translate == 0.2
    enc, dec = cfg.model.encoder, cfg.model.decoder
    assert (enc.dim, enc.depth, enc.num_heads, enc.drop_path) == (384, 12, 6, 0.1)  # trans_dim, depth, heads, dpr
    assert (dec.dim, dec.depth, dec.num_heads, dec.drop_path) == (384, 4, 6, 0.1)  # decoder_depth, decoder_num_heads


def test_pointmae_drop_path_rates_match_the_official_linspace(tmp_path) -> None:
    cfg = compose_cfg(["experiment=pointmae_modelnet40", "data.root=/nowhere"], tmp_path)
    validate(cfg)
    module = instantiate(cfg.module)  # builds without reading the data
    assert drop_rates(module.encoder.blocks) == pytest.approx(official_dpr(0.1, 12))
    assert drop_rates(module.decoder.blocks) == pytest.approx(official_dpr(0.1, 4))
    assert module.lr == pytest.approx(1e-3)  # absolute, not scaled by the batch


def test_decoder_drop_path_is_active_in_training_only() -> None:
    torch.manual_seed(0)
    dec = Decoder(enc_dim=8, num_prefix=0, out_dim=4, dim=8, depth=2, num_heads=2,
                  pos_embed=lambda dim: MLPPosEmbed(in_dim=3, dim=dim), drop_path=0.5)
    assert drop_rates(dec.blocks) == pytest.approx(official_dpr(0.5, 2))
    with pytest.raises(ValueError, match="drop_path"):
        Decoder(enc_dim=8, num_prefix=0, out_dim=4, dim=8, depth=2, num_heads=2,
                pos_embed=lambda dim: MLPPosEmbed(in_dim=3, dim=dim), drop_path=1.0)


# -------------------------------------------------------------------------------------------- GraphMAE
@pytest.mark.parametrize("name", ["graphmae_cora", "graphmae_pubmed"])
def test_graphmae_recipes_are_the_official_configs(name, tmp_path) -> None:
    """configs.yml cora / pubmed (run_transductive.sh --use_cfg), main_transductive.py's scheduler."""
    cfg = compose_cfg([f"experiment={name}"], tmp_path)
    validate(cfg)
    cora = name == "graphmae_cora"
    official = {  # configs.yml
        "lr": 0.001, "weight_decay": 2e-4 if cora else 1e-5, "max_epoch": 1500 if cora else 1000,
        "mask_rate": 0.5 if cora else 0.75, "replace_rate": 0.05 if cora else 0.0, "num_hidden": 512 if cora else 1024,
        "num_heads": 4, "num_layers": 2, "in_drop": 0.2, "attn_drop": 0.1, "alpha_l": 3, "lr_f": 0.01,
        "weight_decay_f": 1e-4, "max_epoch_f": 300,
    }
    assert cfg.optim.optimizer._target_ == "torch.optim.Adam"
    assert (cfg.optim.lr, cfg.optim.weight_decay) == (official["lr"], official["weight_decay"])
    assert (cfg.trainer.max_epochs, cfg.optim.warmup_epochs, cfg.optim.min_lr) == (official["max_epoch"], 0, 0.0)
    assert (cfg.mask.ratio, cfg.mask.replace_rate) == (official["mask_rate"], official["replace_rate"])
    enc, dec = cfg.model.encoder, cfg.model.decoder
    assert (enc.dim, enc.num_heads, enc.depth) == (official["num_hidden"], official["num_heads"], official["num_layers"])
    assert (enc.feat_drop, enc.attn_drop) == (official["in_drop"], official["attn_drop"])
    assert (dec.depth, dec.num_heads) == (1, 1)  # one GAT layer, num_out_heads 1
    assert cfg.loss.alpha == official["alpha_l"]
    assert cfg.data.feature_norm == "row" and cfg.data.steps_per_epoch == 1
    assert cfg.eval._target_ == "mae.modalities.graph.protocol.GraphMAEProtocol"
    assert (cfg.eval.lr_f, cfg.eval.weight_decay_f, cfg.eval.max_epoch_f) == (
        official["lr_f"], official["weight_decay_f"], official["max_epoch_f"])


def test_row_normalize_equals_dgl() -> None:
    rng = np.random.default_rng(0)
    dense = (rng.random((7, 11)) < 0.3) * rng.random((7, 11)) * 0.2  # TF-IDF-like: small, sparse, rows below 1
    dense[3] = 0.0  # an all-zero row stays 0 (DGL: inf -> 0)
    ours = row_normalize(torch.from_numpy(dense).float())
    reference = official_preprocess_features(sp.csr_matrix(dense))
    np.testing.assert_allclose(ours.numpy(), reference, rtol=1e-6, atol=1e-7)
    assert float(ours[3].abs().sum()) == 0.0
    assert dense[0].sum() < 1 and float(ours[0].sum()) == pytest.approx(1.0)  # PyG's NormalizeFeatures would not scale


def test_feature_norm_row_reaches_the_graph_tokens(tmp_path) -> None:
    base = ["modality=graph", "data.synthetic_size=60", "data.sbm_blocks=3", "data.num_features=16",
            "data.sbm_words=4"]
    raw = instantiate(compose_cfg(base, tmp_path).data)
    normed = instantiate(compose_cfg([*base, "data.feature_norm=row"], tmp_path).data)
    raw.setup("fit")
    normed.setup("fit")
    x_raw, x_row = raw.graphs[0].x, normed.graphs[0].x
    assert torch.allclose(x_row, row_normalize(x_raw)) and not torch.allclose(x_row, x_raw)
    sums = x_row.sum(1)
    assert torch.allclose(sums[sums > 0], torch.ones_like(sums[sums > 0]))
    with pytest.raises(Exception, match="data.feature_norm must be one of"):  # hydra wraps the ValueError
        instantiate(compose_cfg([*base, "data.feature_norm=l2"], tmp_path).data)


# ------------------------------------------------------------------------------------------ every recipe
RECIPES = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_composes_and_cites_the_official_code(name, tmp_path) -> None:
    """Each conf/experiment file composes (with a placeholder for the data path it requires) and names its sources:
    no value left 'from memory', and every top-level block of values carries comments."""
    path = Path(__file__).resolve().parents[1] / "conf" / "experiment" / f"{name}.yaml"
    text = path.read_text()
    for phrase in ("from memory", "not re-checked", "recollection", "as remembered"):
        assert phrase not in text.lower(), f"{path.name}: '{phrase}' - read the value from the official code"
    if not name.endswith("_mnist"):  # the *_mnist files are CPU-size demos of a method, not paper recipes
        assert text.count("#") >= 8, f"{path.name}: each value needs its source beside it"
    overrides = [f"experiment={name}"]
    cfg = compose_cfg(overrides, tmp_path)
    for key in ("data.root", "data.list", "data.val_root", "pretrained"):
        if OmegaConf.select(cfg, key, default=None) == "???":
            overrides.append(f"{key}=/nowhere")
    validate(compose_cfg(overrides, tmp_path))
