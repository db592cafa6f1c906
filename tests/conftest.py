"""Tests compose the real Hydra config and shrink it (tiny model, few steps, CPU)."""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
# The shrunken setting every end-to-end test starts from (see conf/debug/fast.yaml).
FAST = ["debug=fast", "logger=csv", "trainer.enable_progress_bar=false"]



def tiny_fit(modality: str, *, train_batches: int, val_batches: int, decoder_depth: int = 1,
             pictures_every: int = 1) -> list[str]:
    """debug=fast (written for images) for any modality: CSV logs, 2 epochs of a few batches, a 1-block encoder
    32 wide, a decoder 32 wide; the modality's own data shrinking is added by each test."""
    return [
        f"modality={modality}", "logger=csv", "trainer.enable_progress_bar=false", "trainer.max_epochs=2",
        f"trainer.limit_train_batches={train_batches}", f"trainer.limit_val_batches={val_batches}",
        "trainer.log_every_n_steps=1",
        "model.encoder.dim=32", "model.encoder.depth=1", "model.encoder.num_heads=2",
        "model.decoder.dim=32", f"model.decoder.depth={decoder_depth}", "model.decoder.num_heads=2",
        f"callbacks.reconstruction.every_n_epochs={pictures_every}",
    ]


# metrics.json keys of a labelled run with the random-init baseline
PROBE_KEYS = ("train/loss", "val/loss", "eval/linear_acc", "eval/knn_acc", "eval/rankme",
              "eval/linear_acc_random_init", "eval/knn_acc_random_init")


def fit_and_read(cfg: DictConfig, run_dir: Path, keys: Sequence[str] = PROBE_KEYS) -> tuple[dict, dict]:
    """Run a composed config in-process (`mae.train.runner.run` validates it first); assert that metrics.json holds
    `keys` and that a reconstruction picture was written. Returns (run's metrics, metrics.json)."""
    from mae.train.runner import run

    metrics = run(cfg)
    saved = json.loads((run_dir / "metrics.json").read_text())
    for key in keys:
        assert key in saved, key
    assert list((run_dir / "reconstructions").glob("*.png"))
    return metrics, saved


os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


def compose_cfg(overrides: list[str], run_dir: Path | str) -> DictConfig:
    """The config `python train.py OVERRIDES` would run, with run_dir set (no Hydra runtime here)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=[*overrides, f"run_dir={run_dir}"])


@pytest.fixture
def fast_cfg(tmp_path):
    def make(*overrides: str) -> DictConfig:
        return compose_cfg([*FAST, *overrides], tmp_path / "run")

    return make
