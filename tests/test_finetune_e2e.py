"""The pretrain -> finetune / linprobe chain through the real config: metrics.json, the scratch baseline, the loaded
weights, the frozen probe, label fractions, another image size, resume after kill -9, and the start-up errors."""
from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from mae.train.runner import run
from tests.conftest import FAST, compose_cfg
from tests.test_resume import signal_at, step_losses, train_cli

DATA = ["data.source=synthetic", "data.synthetic_size=96", "data.batch_size=16", "data.val_fraction=0.25"]
PRETRAIN = [*FAST, *DATA, "eval.enabled=false", "objective=val/loss", "trainer.limit_train_batches=null",
            "trainer.limit_val_batches=null"]
FINETUNE = [*FAST, *DATA, "finetune.epochs=2", "trainer.limit_train_batches=null", "trainer.limit_val_batches=null",
            "trainer.log_every_n_steps=1", "+logger.csv.flush_logs_every_n_steps=1"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("pre") / "run"
    cfg = compose_cfg(PRETRAIN, run_dir)
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")  # what Hydra writes beside a CLI run, before it runs
    run(cfg)
    return run_dir


def encoder_weights(ckpt: Path) -> dict[str, torch.Tensor]:
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    return {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}


@pytest.mark.e2e
def test_finetune_with_scratch_baseline_writes_both_columns(pretrained, tmp_path):
    run_dir = tmp_path / "ft"
    metrics = run(compose_cfg([*FINETUNE, "stage=finetune", f"pretrained={pretrained}",
                               "finetune.scratch_baseline=true"], run_dir))
    saved = json.loads((run_dir / "metrics.json").read_text())
    for key in ("finetune/top1", "finetune/top1_scratch", "finetune/loss", "finetune/loss_scratch"):
        assert key in saved and 0.0 <= saved[key] < 10, key
    assert "finetune/top5" not in saved  # 4 classes: no top-5
    assert metrics["finetune/train_samples"] == 72 and saved["finetune/steps"] == 2 * (72 // 16)
    assert (run_dir / "confusion.png").is_file() and (run_dir / "scratch" / "confusion.png").is_file()
    tuned, scratch = encoder_weights(run_dir / "checkpoints" / "last.ckpt"), encoder_weights(
        run_dir / "scratch" / "checkpoints" / "last.ckpt")
    start = encoder_weights(pretrained / "checkpoints" / "last.ckpt")
    # fine-tuning moved the pretrained weights a little; the scratch run started elsewhere
    moved = (tuned["blocks.0.attn.qkv.weight"] - start["blocks.0.attn.qkv.weight"]).abs().max()
    assert 0 < moved < (scratch["blocks.0.attn.qkv.weight"] - start["blocks.0.attn.qkv.weight"]).abs().max()


@pytest.mark.e2e
def test_linprobe_keeps_the_encoder_frozen(pretrained, tmp_path):
    run_dir = tmp_path / "lp"
    run(compose_cfg([*FINETUNE, "stage=linprobe", f"pretrained={pretrained / 'checkpoints' / 'last.ckpt'}",
                     "linprobe.epochs=2"], run_dir))  # the probe's block wins over finetune.*: linprobe.* sets it
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert "finetune/top1" in saved and saved["finetune/label_fraction"] == 1.0 and saved["finetune/epochs"] == 2
    start = encoder_weights(pretrained / "checkpoints" / "last.ckpt")
    after = encoder_weights(run_dir / "checkpoints" / "last.ckpt")
    for key, value in start.items():
        assert torch.equal(value, after[key]), key
    head = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert "head.norm.running_mean" in head  # BatchNorm without affine before the linear head


@pytest.mark.e2e
def test_label_fraction_and_another_image_size(pretrained, tmp_path):
    run_dir = tmp_path / "lf"
    metrics = run(compose_cfg([*FINETUNE, "stage=finetune", f"pretrained={pretrained}", "finetune.label_fraction=0.25",
                               "data.image_size=32"], run_dir))
    assert metrics["finetune/train_samples"] == pytest.approx(18, abs=2)  # a quarter of 72, balanced per class
    assert metrics["finetune/label_fraction"] == 0.25
    tuned = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert tuned["encoder.pos_embed.table"].shape[1] == (32 // 4) ** 2  # 7x7 -> 8x8, interpolated and learned


@pytest.mark.e2e
def test_finetune_resumes_after_kill9_exactly(pretrained, tmp_path):
    common = [*FINETUNE, "stage=finetune", f"pretrained={pretrained}", "finetune.epochs=3",
              "callbacks.step_checkpoint.every_n_train_steps=2"]
    whole = tmp_path / "whole"
    assert train_cli(whole, *common).returncode == 0
    chain = tmp_path / "chain"
    proc = train_cli(chain, *common, *signal_at(7, signal.SIGKILL))
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    proc = train_cli(chain, *common, "resume=auto")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert step_losses(chain).equals(step_losses(whole))
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (whole, chain))
    assert a["finetune/top1"] == b["finetune/top1"] and a["finetune/loss"] == pytest.approx(b["finetune/loss"])


def test_bad_pretrained_paths_are_named(tmp_path, pretrained):
    with pytest.raises(FileNotFoundError, match="no such file"):
        run(compose_cfg([*FINETUNE, "stage=finetune", f"pretrained={tmp_path / 'nope'}"], tmp_path / "a"))
    with pytest.raises(ValueError, match="needs pretrained=PATH"):
        run(compose_cfg([*FINETUNE, "stage=finetune"], tmp_path / "b"))
    corrupt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    corrupt.parent.mkdir(parents=True)
    (tmp_path / "run" / ".hydra").mkdir()
    (tmp_path / "run" / ".hydra" / "config.yaml").write_text((pretrained / ".hydra" / "config.yaml").read_text())
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="corrupt"):
        run(compose_cfg([*FINETUNE, "stage=finetune", f"pretrained={tmp_path / 'run'}"], tmp_path / "c"))
    with pytest.raises(ValueError, match="modality"):
        run(compose_cfg([*FINETUNE[:3], "modality=pointcloud", "stage=finetune", f"pretrained={pretrained}"],
                        tmp_path / "d"))


def test_objective_must_be_a_finetune_metric(tmp_path, pretrained):
    with pytest.raises(ValueError, match="finetune/<metric>"):
        run(compose_cfg([*FINETUNE, "stage=finetune", f"pretrained={pretrained}", "objective=eval/linear_acc"],
                        tmp_path / "a"))
    with pytest.raises(ValueError, match="scratch_baseline=true"):
        run(compose_cfg([*FINETUNE, "stage=finetune", f"pretrained={pretrained}", "objective=finetune/top1_scratch"],
                        tmp_path / "b"))


@pytest.mark.e2e
def test_finetune_from_an_official_timm_pth_and_a_hf_directory(tmp_path):
    from timm.models.vision_transformer import VisionTransformer
    from transformers import ViTMAEConfig, ViTMAEModel

    vit = VisionTransformer(img_size=28, patch_size=4, in_chans=1, num_classes=0, embed_dim=32, depth=1, num_heads=2,
                            global_pool="avg", fc_norm=True)
    torch.save({"model": vit.state_dict()}, tmp_path / "mae.pth")
    # a .pth carries no head count: model= / model.encoder.num_heads names it; the rest is read from the shapes
    metrics = run(compose_cfg([*FINETUNE, "stage=finetune", f"pretrained={tmp_path / 'mae.pth'}", "finetune.epochs=1",
                               "model.encoder.num_heads=2"], tmp_path / "pth"))
    assert "finetune/top1" in metrics
    rgb = VisionTransformer(img_size=28, patch_size=4, in_chans=3, num_classes=0, embed_dim=32, depth=1, num_heads=2)
    torch.save({"model": rgb.state_dict()}, tmp_path / "rgb.pth")
    with pytest.raises(ValueError, match="3-channel input .* data.channels=3"):  # another input: named at start-up
        run(compose_cfg([*FINETUNE, "stage=finetune", f"pretrained={tmp_path / 'rgb.pth'}",
                         "model.encoder.num_heads=2"], tmp_path / "wrong"))
    hf = ViTMAEModel(ViTMAEConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                  image_size=28, patch_size=4, num_channels=1))
    hf.save_pretrained(tmp_path / "hf")
    metrics = run(compose_cfg([*FINETUNE, "stage=finetune", f"pretrained={tmp_path / 'hf'}", "finetune.epochs=1"],
                              tmp_path / "hfrun"))  # the architecture from config.json: no model= needed
    assert "finetune/top1" in metrics


@pytest.mark.e2e
def test_finetune_under_ddp_two_cpu_processes(pretrained, tmp_path):
    """trainer=ddp_cpu: the test metrics are gathered over both ranks (the confusion matrix too), rank 0 writes."""
    done = train_cli(tmp_path / "ddp", *DATA, "data.batch_size=8", "stage=finetune", f"pretrained={pretrained}",
                     "trainer=ddp_cpu", "finetune.epochs=1", "finetune.scratch_baseline=true", "logger=csv",
                     "trainer.enable_progress_bar=false")
    assert done.returncode == 0, done.stderr[-3000:]
    saved = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert {"finetune/top1", "finetune/top1_scratch"} <= saved.keys() and saved["optim/effective_batch"] == 16
    assert (tmp_path / "ddp" / "confusion.png").exists() and (tmp_path / "ddp" / "scratch" / "confusion.png").exists()
