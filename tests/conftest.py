"""Tests compose the real Hydra config and shrink it (tiny model, few steps, CPU)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
# The shrunken setting every end-to-end test starts from (see conf/debug/fast.yaml).
FAST = ["debug=fast", "logger=csv", "trainer.enable_progress_bar=false"]

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
