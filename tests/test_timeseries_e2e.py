"""Time series end to end: `modality=timeseries` classification and forecasting tiny fits, the CLI, the recipe."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mae.train.config_check import validate
from mae.train.runner import run
from tests.conftest import ROOT, compose_cfg, fit_and_read, tiny_fit
from tests.test_timeseries import sines, write_csv

pytestmark = pytest.mark.e2e

# debug=fast-sized for series: a 1-block encoder 32 wide, 2 epochs of 2 batches.
TS_FAST = tiny_fit("timeseries", train_batches=2, val_batches=2)


def test_classification_fit_writes_probe_metrics_and_pictures(tmp_path):
    # JapaneseVowels: 12 channels, 7-29 steps: padded to 36 = 3 patches, padding patches -> Tokens.pad
    cfg = compose_cfg([*TS_FAST, "data.name=JapaneseVowels", "data.batch_size=8", "eval.max_samples=100"], tmp_path / "run")
    assert cfg.mask.ratio == 0.4 and cfg.target._target_.endswith("RevINPatchTarget")
    metrics, saved = fit_and_read(cfg, tmp_path / "run")
    assert 0.0 < metrics["train/loss"] < 10 and 0.0 <= saved["eval/linear_acc"] <= 1.0


def test_forecast_fit_with_block_masks_writes_horizon_metrics_against_baselines(tmp_path):
    csv = write_csv(tmp_path / "toy.csv", sines(500, 3))
    cfg = compose_cfg([*TS_FAST, "modality=timeseries_forecast", "mask=block", f"data.root={csv}", "data.context=48",
                       "data.horizons=[12,24]", "data.batch_size=16"], tmp_path / "run")
    validate(cfg)
    run(cfg)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for h in (12, 24):
        for suffix in ("", "_random_init", "_last_value"):
            for kind in ("mse", "mae"):
                value = saved[f"eval/forecast_{kind}_h{h}{suffix}"]
                assert np.isfinite(value) and value > 0
    # clean periodic sines: any fitted linear head beats repeating the last value
    assert saved["eval/forecast_mse_h24"] < saved["eval/forecast_mse_h24_last_value"]
    assert (tmp_path / "run" / "forecasts" / "forecast_h12.png").is_file()
    assert list((tmp_path / "run" / "reconstructions").glob("*.png"))


def test_cli_modality_timeseries_forecast_on_the_bundled_co2_series(tmp_path):
    run_dir = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "train.py", *TS_FAST, "modality=timeseries_forecast", "data.context=96",
         f"data.demo_dir={tmp_path / 'demo'}", "trainer.limit_val_batches=1", f"hydra.run.dir={run_dir}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "eval/forecast_mse_h96" in metrics and "pretrained" in proc.stdout
    assert (tmp_path / "demo" / "co2_weekly.csv").read_text().startswith("date,co2\n")


def test_paper_recipe_composes(tmp_path):
    from hydra.utils import instantiate

    cfg = compose_cfg(["experiment=patchtst_etth1", "data.root=/data/ETTh1.csv"], tmp_path)
    validate(cfg)
    assert cfg.data.task == "forecast" and cfg.data.context == 512 and cfg.tokenizer.patch_len == 12
    assert cfg.mask.ratio == 0.4 and cfg.mask._target_.endswith("RandomMasker")
    assert (cfg.model.encoder.dim, cfg.model.encoder.depth, cfg.model.encoder.num_heads) == (128, 3, 16)
    assert list(cfg.data.horizons) == [96, 192, 336, 720] and cfg.objective == "eval/forecast_mse_h96"
    module = instantiate(cfg.module)
    assert module.encoder.num_prefix == 0 and type(module.encoder.pos_embed).__name__ == "LearnedPosEmbed"
