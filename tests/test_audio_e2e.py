"""Audio end to end: `modality=audio` with every spectrogram mask, local decoder attention, resume, the CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from datamodules.audio.datamodule import AudioDataModule
from mae.train.config_check import validate
from mae.train.runner import run
from tests.conftest import ROOT, compose_cfg, fit_and_read, tiny_fit

pytestmark = pytest.mark.e2e

# Like debug=fast (which is written for images), shrunk for audio: 8 demo clips per class of 1.5 s,
# 64 frames x 32 mel bins in 8x8 patches = 8x4 tokens, a 1-block encoder, 2 epochs of 3 batches.
AUDIO_FAST = [
    *tiny_fit("audio", train_batches=3, val_batches=2, decoder_depth=2),
    "data.demo_clips_per_class=8", "data.demo_seconds=1.5", "data.frames=64", "data.mel_bins=32",
    "tokenizer.patch_size=8", "data.batch_size=8",
]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("audio_demo") / "demo"


def audio_cfg(run_dir, demo_dir, *overrides):
    return compose_cfg([*AUDIO_FAST, f"data.demo_dir={demo_dir}", *overrides], run_dir)


@pytest.mark.parametrize("mask", ["random", "time", "freq", "timefreq"])
def test_audio_fit_with_each_mask_writes_metrics(tmp_path, demo_dir, mask):
    cfg = audio_cfg(tmp_path / "run", demo_dir, f"mask={mask}", "eval.random_init=true")
    assert cfg.mask.ratio == 0.8  # the audio modality's default ratio
    metrics, saved = fit_and_read(cfg, tmp_path / "run", ("train/loss", "val/loss", "eval/linear_acc", "eval/knn_acc",
                                                          "eval/rankme", "eval/linear_acc_random_init",
                                                          "eval/rankme_random_init"))
    assert metrics["train/loss"] > 0 and 0.0 <= saved["eval/knn_acc"] <= 1.0


def test_audio_fit_with_local_decoder_attention(tmp_path, demo_dir):
    metrics = run(audio_cfg(tmp_path / "run", demo_dir, "model.decoder.window=[2,2]", "eval.random_init=false"))
    assert metrics["train/loss"] > 0 and "eval/linear_acc" in metrics


def test_resume_reuses_the_saved_feature_statistics(tmp_path, demo_dir, monkeypatch):
    calls = []
    original = AudioDataModule.compute_stats

    def counting(self):
        calls.append(1)
        return original(self)

    monkeypatch.setattr(AudioDataModule, "compute_stats", counting)
    common = ["eval.enabled=false", "objective=val/loss"]
    run(audio_cfg(tmp_path / "run", demo_dir, *common, "trainer.max_epochs=1"))
    assert len(calls) == 1
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=True)["AudioDataModule"]
    assert state["feature_std"] > 0
    run(audio_cfg(tmp_path / "run", demo_dir, *common, "trainer.max_epochs=2", f"ckpt_path={ckpt}"))
    assert len(calls) == 1  # restored from the checkpoint, not recomputed
    state2 = torch.load(ckpt, weights_only=True)["AudioDataModule"]
    assert state2["feature_mean"] == state["feature_mean"]


def test_image_defaults_are_unchanged_and_paper_recipe_composes(tmp_path):
    assert compose_cfg([], tmp_path).mask.ratio == 0.75
    cfg = compose_cfg(["experiment=audiomae_vit_base_as2m", "data.root=/data/audioset"], tmp_path)
    validate(cfg)
    assert cfg.data._target_.endswith("AudioDataModule") and cfg.data.frames == 1024 and cfg.data.mel_bins == 128
    assert cfg.data.sample_rate == 16000 and cfg.tokenizer.patch_size == 16 and cfg.mask.ratio == 0.8
    assert cfg.mask._target_.endswith("RandomMasker") and cfg.target._target_.endswith("NormPixTarget")
    assert (cfg.model.encoder.dim, cfg.model.encoder.depth) == (768, 12) and list(cfg.model.decoder.window) == [4, 4]
    assert cfg.optim.blr == 2.0e-4 and cfg.trainer.max_epochs == 33 and cfg.optim.warmup_epochs == 3
    assert cfg.data.batch_size * cfg.trainer.devices * cfg.trainer.num_nodes * cfg.trainer.accumulate_grad_batches == 512
    from hydra.utils import instantiate

    tok = instantiate(cfg.tokenizer)
    assert tok.grid == (64, 8) and tok.grid[0] * tok.grid[1] == 512


def test_cli_modality_audio(tmp_path, demo_dir):
    run_dir = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "train.py", *AUDIO_FAST, "mask=timefreq", f"data.demo_dir={demo_dir}",
         f"hydra.run.dir={run_dir}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "eval/linear_acc" in metrics and "pretrained" in proc.stdout


def test_debug_fast_composes_for_audio(tmp_path):
    from hydra.utils import instantiate

    from tests.conftest import FAST

    cfg = compose_cfg([*FAST, "modality=audio"], tmp_path)
    validate(cfg)
    data = instantiate(cfg.data)  # debug=fast sets shared keys only: audio keeps its own demo data
    assert data.source == "demo" and cfg.trainer.limit_train_batches == 3
    instantiate(cfg.module)
