"""Issue 14: a config that cannot work stops at start-up with a message naming the key, the value and what to write
(before anything is built), and the documented workflows (evaluation off, a flat unlabeled image folder, no
training step) either run to the end or stop at start-up: never an exit 1 after training. Each case is run as the
user runs it: the real config composed and given to `mae.train.runner.run`, and through `python train.py`."""
from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CONF, FAST, ROOT, compose_cfg
from PIL import Image

from mae.core.masking import BlockMasker, RandomMasker
from mae.core.optim import resolve_lr
from mae.train.config_ranges import RULES
from mae.train.runner import objective_value, run

pytestmark = pytest.mark.e2e

# a few seconds of training and evaluation on 64 generated labelled shapes
SMALL_IMAGES = ["data.source=synthetic", "data.synthetic_size=64", "data.batch_size=16"]


def train_py(*overrides: str, run_dir: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "train.py", *FAST, *overrides, f"hydra.run.dir={run_dir}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def write_flat_folder(folder: Path, n: int = 40) -> Path:
    """n random 28x28 grey PNGs directly in `folder`: no class subfolders, so no labels."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(folder / f"img{i:02d}.png")
    return folder


# ------------------------------------------------------------------------------------ option values
BAD_VALUES = [
    (["mask.ratio=abc"], r"mask\.ratio='abc': mask\.ratio must be a number with 0 < mask\.ratio < 1"),
    (["mask.ratio=null"], r"mask\.ratio=null: mask\.ratio must be a number with 0 < mask\.ratio < 1"),
    (["mask.ratio=1.0"], r"mask\.ratio=1\.0: mask\.ratio must be a number with 0 < mask\.ratio < 1"),
    (["optim.blr=-1"], r"optim\.blr=-1: optim\.blr must be a number with optim\.blr > 0"),
    (["optim.lr=0"], r"optim\.lr=0: optim\.lr must be null or a number with optim\.lr > 0"),
    (["optim.weight_decay=-1"], r"optim\.weight_decay=-1: optim\.weight_decay must be a number with "
                                r"optim\.weight_decay >= 0"),
    (["optim.warmup_epochs=-1"], r"optim\.warmup_epochs=-1: optim\.warmup_epochs must be a number with "
                                 r"optim\.warmup_epochs >= 0"),
    (["optim.min_lr=-0.1"], r"optim\.min_lr=-0\.1: optim\.min_lr must be a number with optim\.min_lr >= 0"),
    (["mask=block", "mask.num_blocks=0"], r"mask\.num_blocks=0: mask\.num_blocks must be null or an integer with "
                                          r"mask\.num_blocks >= 1"),
    (["mask=block", "mask.min_aspect=abc"], r"mask\.min_aspect='abc': .* 0 < mask\.min_aspect <= 1"),
    (["modality=graph", "mask.replace_rate=1"], r"mask\.replace_rate=1: .* 0 <= mask\.replace_rate < 1"),
    (["modality=video", "decoder_mask=running_cell", "decoder_mask.ratio=abc"],
     r"decoder_mask\.ratio='abc': .* 0 < decoder_mask\.ratio < 1"),
]


@pytest.mark.parametrize("overrides, message", BAD_VALUES)
def test_an_option_out_of_its_range_stops_before_anything_is_built(overrides, message, tmp_path):
    cfg = compose_cfg([*FAST, *overrides], tmp_path / "run")
    with pytest.raises(ValueError, match=message):
        run(cfg)
    assert not (tmp_path / "run").exists()  # refused before the run directory, the data or the model


def test_train_py_names_every_bad_value_at_once(tmp_path):
    proc = train_py("mask.ratio=abc", "optim.lr=0", "optim.warmup_epochs=-1", run_dir=tmp_path / "run")
    assert proc.returncode == 1
    assert "mask.ratio='abc': mask.ratio must be a number with 0 < mask.ratio < 1" in proc.stderr
    assert "optim.lr=0: optim.lr must be null or a number with optim.lr > 0" in proc.stderr
    assert "optim.warmup_epochs=-1: optim.warmup_epochs must be a number with optim.warmup_epochs >= 0" in proc.stderr
    assert "Invalid learning rate" not in proc.stderr
    assert not (tmp_path / "run" / "resolved.yaml").exists()  # Hydra made the folder; the run wrote nothing


def test_every_numeric_key_of_every_mask_yaml_has_a_range(tmp_path):
    checked = {rule.key for rule in RULES}
    for group in ("mask", "decoder_mask"):
        for option in sorted(p.stem for p in (CONF / group).glob("*.yaml")):
            options = compose_cfg([f"{group}={option}"], tmp_path)[group] or {}  # decoder_mask=none: null
            for key, value in options.items():
                numeric = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
                if numeric:
                    assert f"{group}.{key}" in checked, f"{group}={option}: {group}.{key} has no Range in RULES"


def test_maskers_and_the_lr_rule_refuse_non_numbers_by_name():
    with pytest.raises(ValueError, match=r"mask\.ratio must be a number in \(0, 1\), got 'abc'"):
        RandomMasker(ratio="abc")
    with pytest.raises(ValueError, match=r"mask\.num_blocks must be null or an integer >= 1, got 2\.5"):
        BlockMasker(ratio=0.5, num_blocks=2.5)
    with pytest.raises(ValueError, match=r"learning rate must be a number > 0, got 0 from optim\.lr=0"):
        resolve_lr(blr=1e-3, lr=0, effective_batch=256)
    with pytest.raises(ValueError, match=r"got -0\.5 from optim\.blr=-1 x effective batch 128 / 256"):
        resolve_lr(blr=-1, lr=None, effective_batch=128)


def test_an_unresolvable_interpolation_is_named(tmp_path):
    cfg = compose_cfg([*FAST, "+extra=${data.nowhere}"], tmp_path / "run")
    with pytest.raises(ValueError, match=r"extra cannot be resolved: .*data\.nowhere"):
        run(cfg)


# ---------------------------------------------------------------------------------- target / modality
# the target options that fit each modality's tokens (Target.layouts vs Tokenizer.layout)
FITTING = {
    "image": "hog, target=norm_pix, target=pixel",
    "audio": "norm_pix, target=pixel",
    "video": "norm_pix, target=pixel, target=pred_frames, target=tubelet_norm_pix, target=video_hog",
    "pointcloud": "norm_pix, target=pixel, target=point_group",
    "graph": "node_features, target=norm_pix, target=pixel",
    "timeseries": "norm_pix, target=pixel, target=revin_patch",
}
WRONG = {"image": "revin_patch", "audio": "hog", "video": "hog", "pointcloud": "node_features",
         "graph": "point_group", "timeseries": "hog"}


@pytest.mark.parametrize("modality", sorted(FITTING))
def test_a_target_for_other_tokens_lists_the_targets_that_fit(modality, tmp_path):
    cfg = compose_cfg([*FAST, f"modality={modality}", f"target={WRONG[modality]}"], tmp_path / "run")
    with pytest.raises(ValueError, match=rf"target={WRONG[modality]} needs .*: choose one of target="
                                         rf"{FITTING[modality]}$"):
        run(cfg)
    assert not (tmp_path / "run").exists()


def test_train_py_timeseries_with_hog_says_which_targets_fit(tmp_path):
    proc = train_py("modality=timeseries", "target=hog", run_dir=tmp_path / "run")
    assert proc.returncode == 1
    assert ("target=hog needs image patches, and modality=timeseries (PatchTSTTokenizer) makes series patches: "
            "choose one of target=norm_pix, target=pixel, target=revin_patch") in proc.stderr
    assert "Interpolation" not in proc.stderr


# ------------------------------------------------------------------------------- evaluation switched off
def test_eval_off_with_an_eval_objective_stops_at_start_up_and_val_loss_runs(tmp_path):
    with pytest.raises(ValueError, match=r"objective=eval/linear_acc comes from the evaluation after fit, which "
                                         r"eval\.enabled=false turns off: set objective=val/loss"):
        run(compose_cfg([*FAST, *SMALL_IMAGES, "eval.enabled=false"], tmp_path / "refused"))
    assert not (tmp_path / "refused").exists()
    cfg = compose_cfg([*FAST, *SMALL_IMAGES, "eval.enabled=false", "objective=val/loss"], tmp_path / "run")
    metrics = run(cfg)
    assert math.isfinite(objective_value(metrics, cfg.objective)) and not any(k.startswith("eval/") for k in metrics)


def test_train_py_eval_off_says_what_to_set_before_training(tmp_path):
    proc = train_py("eval.enabled=false", run_dir=tmp_path / "run")
    assert proc.returncode == 1
    assert "eval.enabled=false turns off: set objective=val/loss (or objective=train/loss)" in proc.stderr
    assert not (tmp_path / "run" / "resolved.yaml").exists()  # Hydra made the folder; the run wrote nothing


def test_random_init_off_with_its_objective_stops_at_start_up(tmp_path):
    cfg = compose_cfg([*FAST, "eval.random_init=false", "objective=eval/knn_acc_random_init"], tmp_path / "run")
    with pytest.raises(ValueError, match=r"eval\.random_init=false turns off: set objective=eval/knn_acc or"):
        run(cfg)


def test_a_missing_objective_after_the_work_is_nan_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="mae.train.runner"):
        value = objective_value({"train/loss": 1.0, "val/loss": 0.9}, "eval/linaer_acc")
    assert math.isnan(value)
    assert "objective=eval/linaer_acc is not among the run's metrics" in caplog.text and "val/loss" in caplog.text


# ------------------------------------------------------------------------------- unlabeled image folder
def test_flat_image_folder_gets_rankme_and_the_label_objective_stops_before_training(tmp_path, capsys):
    folder = write_flat_folder(tmp_path / "flat")
    data = [f"data.root={folder}", "data.batch_size=8"]
    with pytest.raises(ValueError, match=r"objective=eval/linear_acc needs class labels and the data has none "
                                         r"\(ImageDataModule.*\): set objective=eval/rankme"):
        run(compose_cfg([*FAST, *data], tmp_path / "refused"))
    assert not (tmp_path / "refused" / "checkpoints").exists()  # stopped before fit
    cfg = compose_cfg([*FAST, *data, "objective=eval/rankme"], tmp_path / "run")
    metrics = run(cfg)
    assert metrics["eval/rankme"] >= 1.0 and metrics["eval/rankme_random_init"] >= 1.0
    assert "eval/linear_acc" not in metrics and "eval/knn_acc" not in metrics
    assert objective_value(metrics, cfg.objective) == metrics["eval/rankme"]
    assert "the data has no labels: RankMe only" in capsys.readouterr().out


def test_train_py_on_a_flat_image_folder_reports_rankme(tmp_path):
    folder = write_flat_folder(tmp_path / "flat")
    run_dir = tmp_path / "run"
    proc = train_py(f"data.root={folder}", "data.batch_size=8", "objective=eval/rankme", run_dir=run_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RankMe only" in proc.stdout and "eval/rankme" in proc.stdout and "random init" in proc.stdout
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["eval/rankme"] >= 1.0 and "eval/linear_acc" not in saved


# ------------------------------------------------------------------------------------- no training step
def test_max_steps_0_evaluates_the_untrained_encoder_and_a_loss_objective_stops_at_start_up(tmp_path):
    with pytest.raises(ValueError, match=r"objective=val/loss is logged by training, and trainer\.max_steps=0 runs "
                                         r"no training step: set an eval/ metric"):
        run(compose_cfg([*FAST, *SMALL_IMAGES, "trainer.max_steps=0", "objective=val/loss"], tmp_path / "refused"))
    assert not (tmp_path / "refused").exists()
    cfg = compose_cfg([*FAST, *SMALL_IMAGES, "trainer.max_steps=0"], tmp_path / "run")
    metrics = run(cfg)
    assert metrics["train/steps"] == 0.0 and "train/loss" not in metrics
    assert 0.0 <= objective_value(metrics, cfg.objective) <= 1.0  # eval/linear_acc of the untrained encoder


def test_train_py_max_steps_0_with_train_loss_says_what_to_set(tmp_path):
    proc = train_py("trainer.max_steps=0", "objective=train/loss", run_dir=tmp_path / "run")
    assert proc.returncode == 1
    assert ("objective=train/loss is logged by training, and trainer.max_steps=0 runs no training step: set an eval/ "
            "metric as the objective (objective=eval/linear_acc scores the untrained encoder") in proc.stderr
