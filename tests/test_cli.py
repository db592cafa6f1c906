"""End to end: the real config tree, composed and run shrunk on CPU."""
from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import timm
import torch
from hydra.utils import instantiate

from mae.train.checkpoints import load_run_module
from mae.train.config_check import validate
from mae.train.runner import run
from tests.conftest import CONF, FAST, ROOT, compose_cfg

pytestmark = pytest.mark.e2e

REQUIRED = ["train/loss", "val/loss", "eval/linear_acc", "eval/knn_acc", "eval/rankme",
            "eval/linear_acc_random_init", "eval/knn_acc_random_init"]
GROUPS = ["modality", "mask", "decoder_mask", "target", "loss", "model", "optim", "trainer", "logger", "callbacks",
          "eval", "debug"]
# options written for one modality are composed on it (on the main job's images they refuse at start-up)
WHERE = {("mask", "tube"): ["modality=video"], ("mask", "frame"): ["modality=video"],
         ("decoder_mask", "running_cell"): ["modality=video"],
         ("target", "hog"): ["tokenizer.patch_size=8", "target.cell_size=4", "data.image_size=32"],
         ("target", "video_hog"): ["modality=video"], ("target", "pred_frames"): ["modality=video"],
         ("target", "tubelet_norm_pix"): ["modality=video"],
         ("target", "point_group"): ["modality=pointcloud"], ("target", "node_features"): ["modality=graph", "data.num_features=256"],
         ("target", "revin_patch"): ["modality=timeseries"], ("eval", "graph"): ["modality=graph", "data.num_features=256"],
         ("eval", "forecast"): ["modality=timeseries_forecast"], ("model", "pointmae"): ["modality=pointcloud"],
         ("model", "pointmae_cpu"): ["modality=pointcloud"],
         ("modality", "graph"): ["data.num_features=256"]}  # train.py reads the width from the data


@pytest.mark.parametrize("group", GROUPS)
def test_every_config_group_option_composes(group, tmp_path):
    for option in sorted(p.stem for p in (CONF / group).glob("*.yaml")):
        cfg = compose_cfg([*FAST, f"{group}={option}", *WHERE.get((group, option), [])], tmp_path)
        validate(cfg)
        if group in ("modality", "mask", "decoder_mask", "target", "loss", "model", "optim"):
            instantiate(cfg.module)
        if group == "eval":
            assert instantiate(cfg.eval).enabled


def test_paper_recipe_composes_with_mae_values(tmp_path):
    cfg = compose_cfg(["experiment=mae_vit_base_in1k", "data.root=/data/imagenet/train"], tmp_path)
    validate(cfg)
    assert (cfg.model.encoder.dim, cfg.model.encoder.depth, cfg.model.encoder.num_heads) == (768, 12, 12)
    assert (cfg.model.decoder.dim, cfg.model.decoder.depth) == (512, 8)
    assert cfg.tokenizer.patch_size == 16 and cfg.data.image_size == 224 and cfg.mask.ratio == 0.75
    assert cfg.target._target_.endswith("NormPixTarget") and cfg.optim.blr == 1.5e-4
    assert cfg.trainer.max_epochs == 800 and cfg.optim.warmup_epochs == 40
    eff = cfg.data.batch_size * cfg.trainer.devices * cfg.trainer.num_nodes * cfg.trainer.accumulate_grad_batches
    assert eff == 4096


def test_cli_main_job_tiny_writes_metrics_and_pictures(tmp_path):
    run_dir = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "train.py", *FAST, f"hydra.run.dir={run_dir}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in REQUIRED:
        assert key in metrics, key
    assert 0.0 <= metrics["eval/linear_acc"] <= 1.0 and metrics["eval/rankme"] >= 1.0
    assert "pretrained" in proc.stdout and "random init" in proc.stdout and str(run_dir) in proc.stdout
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert list((run_dir / "reconstructions").glob("*.png"))
    assert (run_dir / "csv" / "metrics.csv").is_file()
    # export the trained encoder to timm and get the same features as MAEModule.embed
    export_proc = subprocess.run([sys.executable, "-m", "mae.modalities.image.export", str(run_dir)], cwd=ROOT,
                                 capture_output=True, text=True, timeout=120)
    assert export_proc.returncode == 0, export_proc.stderr[-3000:]
    assert "timm.create_model" in export_proc.stdout
    spec = json.loads((run_dir / "export" / "timm_vit.json").read_text())
    model = timm.create_model(spec["model_name"], pretrained=False, num_classes=0, **spec["kwargs"]).eval()
    model.load_state_dict(torch.load(run_dir / "export" / "timm_vit.pth"), strict=True)
    module = load_run_module(run_dir)
    images = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(model(images), module.embed({"image": images}), atol=1e-5, rtol=1e-4)


def test_cli_help_lists_groups():
    proc = subprocess.run([sys.executable, "train.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    for group in ("modality", "mask", "model", "trainer", "logger", "experiment"):
        assert group in proc.stdout


def step_losses(run_dir) -> pd.Series:
    frame = pd.read_csv(run_dir / "csv" / "metrics.csv")
    rows = frame.dropna(subset=["train/loss_step"])
    return rows.set_index("step")["train/loss_step"]


def test_resume_from_checkpoint_gives_same_losses(tmp_path):
    common = [*FAST, "trainer.limit_train_batches=4", "eval.enabled=false", "objective=val/loss", "data.num_workers=0",
              "trainer.log_every_n_steps=1"]
    full = compose_cfg([*common, "trainer.max_epochs=3"], tmp_path / "full")
    run(full)
    first = compose_cfg([*common, "trainer.max_epochs=2"], tmp_path / "part")
    run(first)
    resumed = compose_cfg(
        [*common, "trainer.max_epochs=3", f"ckpt_path={tmp_path / 'part' / 'checkpoints' / 'last.ckpt'}"],
        tmp_path / "part",
    )
    run(resumed)
    a, b = step_losses(tmp_path / "full"), step_losses(tmp_path / "part")
    assert len(a) == 12 and set(a.index) == set(b.index)
    pd.testing.assert_series_equal(a.sort_index(), b.groupby(level=0).last().sort_index(), check_exact=False, rtol=1e-5)


@pytest.mark.parametrize("overrides", [
    ["mask=block"],
    ["target=hog", "tokenizer.patch_size=8", "target.cell_size=4", "data.image_size=32"],
    ["target=pixel", "loss=l1", "model.encoder.cls_token=false"],
    ["data.image_size=[16,24]", "model.encoder.pool=cls"],
    ["trainer.precision=bf16-mixed", "trainer.gradient_clip_val=1.0", "trainer.accumulate_grad_batches=2"],
])
def test_variants_run_end_to_end(fast_cfg, overrides):
    metrics = run(fast_cfg(*overrides, "eval.random_init=false"))
    assert metrics["train/loss"] > 0 and "eval/linear_acc" in metrics


@pytest.mark.parametrize("logger,expect", [("tensorboard", "tensorboard"), ("wandb", "wandb")])
def test_loggers_write_offline(fast_cfg, tmp_path, logger, expect):
    run(fast_cfg(f"logger={logger}", "eval.enabled=false", "objective=val/loss"))
    assert any((tmp_path / "run").rglob(f"*{expect}*")) or (tmp_path / "run" / expect).exists()


def test_bad_patch_size_fails_at_start_with_a_suggestion(fast_cfg):
    with pytest.raises(Exception, match="choose a patch size among"):
        run(fast_cfg("tokenizer.patch_size=5"))


def test_missing_root_fails_before_training(fast_cfg, tmp_path):
    with pytest.raises(Exception, match="does-not-exist"):
        run(fast_cfg("data.source=null", f"data.root={tmp_path / 'does-not-exist'}"))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_string_boolean_is_rejected(fast_cfg):
    with pytest.raises(ValueError, match="data.hflip"):
        run(fast_cfg("data.hflip='False'"))
