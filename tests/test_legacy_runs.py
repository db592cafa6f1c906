"""Run directories written before the layout change load with today's code (mae.train.legacy).

tests/data/pre_layout_runs/<m>.yaml are real `.hydra/config.yaml` files written by commit a82d839 (old `_target_`
homes, `${oc.select:default_*}` picks, `mask.decoder=running_cell`, an unused `target.eps`)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mae.train.checkpoints import load_run_module
from mae.train.legacy import MOVED, upgrade_module_config, upgrade_overrides
from tests.conftest import compose_cfg

ROOT = Path(__file__).resolve().parents[1]
OLD = ROOT / "tests" / "data" / "pre_layout_runs"
TODAY = {"image": [], "video": ["mask=tube", "decoder_mask=running_cell"], "audio": [], "pointcloud": [],
         "graph": ["data.num_features=256"], "timeseries": ["model=patchtst_mae"],
         "timeseries_forecast": ["model=patchtst_mae"]}
"""The same run spelled today (old time-series runs ran the MAE-style variant, today's model=patchtst_mae)."""


def old_config(modality: str, run_dir: Path):
    cfg = OmegaConf.load(OLD / f"{modality}.yaml")
    cfg.run_dir = str(run_dir)
    return cfg


def shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in module.state_dict().items()}


@pytest.mark.parametrize("modality", TODAY)
def test_an_old_run_config_builds_the_module_of_today(modality, tmp_path) -> None:
    with pytest.raises(Exception):  # as written it names classes that moved
        instantiate(old_config(modality, tmp_path).module)
    old = instantiate(upgrade_module_config(old_config(modality, tmp_path)))
    cfg = compose_cfg([f"modality={modality}", *TODAY[modality]], tmp_path)
    cfg.run_dir = str(tmp_path)
    new = instantiate(cfg.module)
    for part in ("tokenizer", "masker", "target", "encoder", "decoder"):
        assert type(getattr(old, part)) is type(getattr(new, part)), part
    assert old.loss_fn.func is new.loss_fn.func
    assert shapes(old) == shapes(new)  # so an old checkpoint's weights load
    settings = ("batch_size", "blr", "lr", "weight_decay", "warmup_epochs", "min_lr", "seed")
    assert [getattr(old, k) for k in settings] == [getattr(new, k) for k in settings]
    assert vars(old.target) == vars(new.target)


def test_old_dual_masking_becomes_the_decoder_mask(tmp_path) -> None:
    cfg = upgrade_module_config(old_config("video", tmp_path))
    assert "decoder" not in cfg.masker and cfg.masker._target_ == "mae.modalities.video.masking.TubeMasker"
    assert cfg.decoder_mask == {"_target_": "mae.modalities.video.masking.RunningCellDecoderMask", "ratio": 0.5}
    module = instantiate(cfg)
    assert (module.masker.base.ratio, module.masker.decoder.ratio) == (0.75, 0.5)


def test_every_moved_target_names_a_class_of_today() -> None:
    from hydra.utils import get_object

    for old, new in MOVED.items():
        assert callable(get_object(new)), new
        with pytest.raises(Exception):
            get_object(old)


def test_a_config_of_today_passes_unchanged(tmp_path) -> None:
    cfg = compose_cfg(["modality=video", "mask=tube", "decoder_mask=running_cell"], tmp_path)
    cfg.run_dir = str(tmp_path)
    assert upgrade_module_config(cfg) == OmegaConf.create(OmegaConf.to_container(cfg.module, resolve=True))


def test_an_old_run_directory_loads_its_checkpoint(tmp_path) -> None:
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text((OLD / "image.yaml").read_text())
    weights = instantiate(upgrade_module_config(old_config("image", tmp_path))).state_dict()
    weights = {key: torch.randn_like(value) if value.is_floating_point() else value for key, value in weights.items()}
    (tmp_path / "checkpoints").mkdir()
    torch.save({"state_dict": weights}, tmp_path / "checkpoints" / "last.ckpt")
    module = load_run_module(tmp_path)
    assert all(torch.equal(module.state_dict()[key], value) for key, value in weights.items())


def test_the_old_dual_masking_override_is_rewritten() -> None:
    old = ["modality=video", "mask=tube", "mask.decoder=running_cell", "mask.decoder_ratio=0.25", "mask.ratio=0.9"]
    new, notes = upgrade_overrides(old)
    assert new == ["modality=video", "mask=tube", "decoder_mask=running_cell", "decoder_mask.ratio=0.25", "mask.ratio=0.9"]
    assert notes == ["mask.decoder=running_cell is now spelled decoder_mask=running_cell",
                     "mask.decoder_ratio=0.25 is now spelled decoder_mask.ratio=0.25"]
    assert upgrade_overrides(["mask.decoder=null,running_cell"])[0] == ["decoder_mask=none,running_cell"]
    assert upgrade_overrides(["decoder_mask=running_cell", "mask=tube"]) == (["decoder_mask=running_cell", "mask=tube"], [])


def test_train_py_takes_the_old_spelling(tmp_path) -> None:
    done = subprocess.run([sys.executable, "train.py", "modality=video", "mask=tube", "mask.decoder=running_cell",
                           "--cfg", "job"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "note: mask.decoder=running_cell is now spelled decoder_mask=running_cell" in done.stderr
    assert OmegaConf.create(done.stdout).decoder_mask._target_.endswith("RunningCellDecoderMask")
