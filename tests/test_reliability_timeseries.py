"""Time series, reliability: an option the chosen task does not read is an error that names it, and values that
would overflow float32 (an inf cell, a column times 1e200, a value 1e18 train-stds out) are errors at load time
naming the file, column and line (CSV) or series, dim and step (.ts) instead of a NaN loss at step 0."""
from __future__ import annotations

import numpy as np
import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from datamodules.timeseries.datamodule import TimeSeriesDataConfig, TimeSeriesDataModule
from tests.conftest import compose_cfg
from tests.test_timeseries import forecast_dm, sines, write_csv

TS_HEADER = ("@problemName toy\n@timeStamps false\n@missing true\n@univariate true\n@equalLength true\n"
             "@classLabel true a b\n@data\n")


# ------------------------------------------------------------------------------------ unread options
def test_a_csv_given_to_the_classify_task_is_an_error_naming_the_forecast_modality(tmp_path) -> None:
    csv = write_csv(tmp_path / "series.csv", sines(400, 2))
    cfg = compose_cfg(["modality=timeseries", f"data.root={csv}"], tmp_path)
    expected = r"data\.root is a forecast option; use modality=timeseries_forecast data\.root=FILE\.csv"
    with pytest.raises(InstantiationException, match=expected):
        instantiate(cfg.data)
    forecast = instantiate(compose_cfg(["modality=timeseries_forecast", f"data.root={csv}"], tmp_path).data)
    assert forecast.cfg.root == csv and forecast.task == "forecast"


@pytest.mark.parametrize("options,match", [
    ({"horizons": [192]}, r"data\.horizons is a forecast option that data\.task=classify does not read"),
    ({"columns": ["c0"]}, r"data\.columns is a forecast option"),
    ({"date_column": "time"}, r"data\.date_column is a forecast option"),
    ({"split": "ratios"}, r"data\.split is a forecast option"),
    ({"ratios": [0.6, 0.2, 0.2]}, r"data\.ratios is a forecast option"),
    ({"window_stride": 4}, r"data\.window_stride is a forecast option"),
    ({"demo_dir": "/tmp/demo"}, r"data\.demo_dir is a forecast option"),
    ({"ridge_alphas": [1.0]}, r"data\.ridge_alphas is a forecast option"),
    ({"test_file": "toy_TEST.ts"}, r"data\.test_file needs data\.train_file \(the bundled data\.name=OSULeaf"),
    ({"name": "GunPoint", "train_file": "toy_TRAIN.ts"},
     r"data\.name=GunPoint and data\.train_file are both given: the file is read and the name ignored"),
    ({"val_fraction": 0.3}, r"data\.val_fraction splits a data\.train_file given without data\.test_file only; "
                            r"here the TEST split of data\.name=OSULeaf"),
    ({"train_file": "a_TRAIN.ts", "test_file": "a_TEST.ts", "val_fraction": 0.3},
     r"data\.val_fraction .* here data\.test_file is the held-out set"),
    ({"task": "forecast", "name": "GunPoint"}, r"data\.name is a classification option that data\.task=forecast"),
    ({"task": "forecast", "train_file": "a_TRAIN.ts"}, r"data\.train_file is a classification option .* data\.root"),
    ({"task": "forecast", "test_file": "a_TEST.ts"}, r"data\.test_file is a classification option"),
    ({"task": "forecast", "unequal": "resample"}, r"data\.unequal is a classification option"),
    ({"task": "forecast", "val_fraction": 0.1}, r"data\.val_fraction is a classification option: forecasting splits"),
    ({"task": "forecast", "split": "ett_hour", "ratios": [0.6, 0.2, 0.2]},
     r"data\.ratios is read with data\.split=ratios only, but the split is ett_hour"),
    ({"task": "forecast", "root": "data/ETTm1.csv", "ratios": [0.6, 0.2, 0.2]},
     r"data\.ratios is read .* the split is ett_minute \(data\.split=auto\)"),
])
def test_an_option_the_task_does_not_read_is_an_error(options, match) -> None:
    with pytest.raises(ValueError, match=match):
        TimeSeriesDataConfig(**options)


def test_the_options_each_task_reads_are_accepted() -> None:
    TimeSeriesDataConfig(train_file="a_TRAIN.ts", val_fraction=0.3)  # the split of a train file
    TimeSeriesDataConfig(train_file="a_TRAIN.ts", test_file="a_TEST.ts", unequal="resample", context=24)
    TimeSeriesDataConfig(name="GunPoint", on_nan="raise")
    TimeSeriesDataConfig(task="forecast", root="x.csv", split="ratios", ratios=[0.6, 0.2, 0.2], horizons=[24, 48],
                         columns=["a"], window_stride=2, ridge_alphas=[1.0])
    assert TimeSeriesDataConfig(task="forecast", root="ETTh1.csv").resolved_split == "ett_hour"


# ----------------------------------------------------------------------------------------- values
def test_an_infinite_csv_cell_is_named_by_column_and_line(tmp_path) -> None:
    values = sines(400, 3)
    values[57, 1] = np.inf
    with pytest.raises(ValueError, match=r"inf\.csv' column 'c1', line 59: inf is not finite \(1 such cells"):
        forecast_dm(write_csv(tmp_path / "inf.csv", values)).setup()


def test_a_column_beyond_float32_is_named_by_its_first_line(tmp_path) -> None:
    values = sines(400, 3)
    values[:, 2] *= 1e200  # finite in float64, inf in float32
    values[0, 2] = 0.0  # the first offending row is the second data row: line 3
    with pytest.raises(ValueError, match=r"huge\.csv' column 'c2', line 3: .*e\+200 is beyond the float32 range "
                                         r"\+-3\.4e\+38 \(399 such cells"):
        forecast_dm(write_csv(tmp_path / "huge.csv", values)).setup()
    dm = forecast_dm(write_csv(tmp_path / "big.csv", sines(400, 2) * 1e30))  # within float32: the scaler brings
    dm.setup()  # them to ~1
    assert np.isfinite(dm.train_set.data.numpy()).all() and float(dm.train_set.data.abs().max()) < 10


def test_a_value_far_outside_the_train_scale_is_named_after_the_scaler(tmp_path) -> None:
    values = sines(400, 2)
    values[390, 0] = 1e18  # inside float32, but 1e18 train standard deviations from the train mean: test rows
    dm = forecast_dm(write_csv(tmp_path / "spike.csv", values))
    with pytest.raises(ValueError, match=r"spike\.csv' column 'c0', line 392: 1e\+18 is .*e\+1\d after the "
                                         r"StandardScaler fitted on the train rows 0-280, beyond \+-1e\+15"):
        dm.setup()


@pytest.mark.parametrize("cell,problem", [("inf", "inf is not finite"), ("1e200", "1e\\+200 is too large"),
                                          ("-3e16", "-3e\\+16 is too large")])
def test_a_bad_value_in_a_ts_file_is_named_by_series_dim_and_step(tmp_path, cell, problem) -> None:
    train = tmp_path / "toy_TRAIN.ts"
    train.write_text(TS_HEADER + f"1,2,3,4:a\n1,2,3,4:b\n4,3,{cell},1:a\n2,2,2,2:b\n")
    dm = TimeSeriesDataModule(train_file=str(train), patch_len=2, val_fraction=0.5, batch_size=2)
    with pytest.raises(ValueError, match=rf"toy_TRAIN\.ts' series 2 \(data line 3 after @data\), dim_0, step 2: "
                                         rf"{problem}: values must be finite and within \+-1e\+15"):
        dm.setup()
