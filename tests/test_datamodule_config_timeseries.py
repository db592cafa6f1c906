"""TimeSeriesDataConfig: typed, checked `data` options of TimeSeriesDataModule, the yaml keys, no debug=fast aliases."""
from __future__ import annotations

import dataclasses
from typing import get_args

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import ListConfig, OmegaConf

from datamodules.timeseries.datamodule import (
    SPLITS,
    TASKS,
    Split,
    Task,
    TimeSeriesDataConfig,
    TimeSeriesDataModule,
)
from tests.conftest import compose_cfg
from tests.test_timeseries import sines, write_csv


@pytest.mark.parametrize("options,error,match", [
    ({"task": "regress"}, ValueError, r"data\.task must be one of \('classify', 'forecast'\), got 'regress'"),
    ({"split": "months"}, ValueError,
     r"data\.split must be one of \('auto', 'ett_hour', 'ett_minute', 'ratios'\), got 'months'"),
    ({"on_nan": "drop"}, ValueError, r"data\.on_nan must be one of \('interpolate', 'raise'\), got 'drop'"),
    ({"unequal": "crop"}, ValueError, r"data\.unequal must be one of \('pad', 'resample'\), got 'crop'"),
    ({"ratios": [0.5, 0.5]}, ValueError, r"data\.ratios must hold 3 number\(s\), got 2: \[0\.5, 0\.5\]"),
    ({"ratios": 0.7}, TypeError, r"data\.ratios must be a list of 3 numbers, got 0\.7 of type float"),
    ({"ratios": [0.7, "x", 0.2]}, TypeError, r"data\.ratios\[1\] must be a number, got 'x'"),
    ({"ratios": [0.5, 0.3, 0.3]}, ValueError,
     r"data\.ratios must be three positive fractions \(train, val, test\) summing to 1, got \[0\.5, 0\.3, 0\.3\]"),
    ({"ratios": [0.0, 0.5, 0.5]}, ValueError, r"data\.ratios must be three positive fractions .*got \[0\.0, 0\.5"),
    ({"context": 6}, ValueError, r"data\.context must be >= 12 \(data\.patch_len\), got 6"),
    ({"context": 10, "patch_len": 16}, ValueError, r"data\.context must be >= 16 \(data\.patch_len\), got 10"),
    ({"context": 48.0}, TypeError, r"data\.context must be an int or null, got 48\.0 of type float"),
    ({"patch_len": 0}, ValueError, r"data\.patch_len must be >= 1, got 0"),
    ({"horizons": []}, ValueError, r"data\.horizons must hold at least one horizon, e\.g\. \[96\]"),
    ({"horizons": [96, 0]}, ValueError, r"data\.horizons\[1\] must be >= 1, got 0"),
    ({"horizons": 96}, TypeError, r"data\.horizons must be a list of ints, got 96 of type int"),
    ({"horizons": [96.0]}, TypeError, r"data\.horizons\[0\] must be an int, got 96\.0"),
    ({"window_stride": 0}, ValueError, r"data\.window_stride must be >= 1, got 0"),
    ({"batch_size": 0}, ValueError, r"data\.batch_size must be >= 1, got 0"),
    ({"batch_size": "64"}, TypeError, r"data\.batch_size must be an int, got '64'"),
    ({"num_workers": -1}, ValueError, r"data\.num_workers must be >= 0, got -1"),
    ({"columns": "OT"}, TypeError, r"data\.columns must be a list of strings or null, got 'OT' of type str"),
    ({"columns": ["OT", 3]}, TypeError, r"data\.columns\[1\] must be a string, got 3 of type int"),
    ({"date_column": None}, TypeError, r"data\.date_column must be a string, got None"),
    ({"root": 3}, TypeError, r"data\.root must be a string or null, got 3 of type int"),
    ({"name": 3}, TypeError, r"data\.name must be a string or null, got 3 of type int"),
    ({"train_file": ["a.ts"]}, TypeError, r"data\.train_file must be a string or null"),
    ({"demo_dir": 1}, TypeError, r"data\.demo_dir must be a string or null"),
    ({"plot_dir": 1.5}, TypeError, r"data\.plot_dir must be a string or null"),
    ({"ridge_alphas": [1.0, "a"]}, TypeError, r"data\.ridge_alphas\[1\] must be a number, got 'a'"),
    ({"ridge_alphas": 1.0}, TypeError, r"data\.ridge_alphas must be a list of numbers, got 1\.0"),
    ({"val_fraction": "0.2"}, TypeError, r"data\.val_fraction must be a number, got '0\.2'"),
    ({"seed": 1.5}, TypeError, r"data\.seed must be an int, got 1\.5"),
    ({"pin_memory": 1}, TypeError, r"data\.pin_memory must be a bool \(true/false\), got 1"),
])
def test_a_wrong_option_names_the_key(options, error, match) -> None:
    with pytest.raises(error, match=match):
        TimeSeriesDataModule(**options)
    with pytest.raises(error, match=match):
        TimeSeriesDataConfig(**options)


@pytest.mark.parametrize("key,value", [("source", "synthetic"), ("source", "demo"), ("source", None),
                                       ("image_size", 32), ("synthetic_size", 64)])
def test_the_debug_fast_aliases_are_unknown_keys(key, value) -> None:
    with pytest.raises(TypeError, match=rf"data\.{key} is not an option of TimeSeriesDataModule; "
                                        r"options: task, name, train_file, test_file, unequal, root, "):
        TimeSeriesDataModule(**{key: value})


def test_an_unknown_key_from_the_command_line_is_named(tmp_path) -> None:
    for override in ("+data.source=synthetic", "+data.image_size=32"):
        cfg = compose_cfg(["modality=timeseries", override], tmp_path)
        key = override[len("+data."):].split("=")[0]
        with pytest.raises(InstantiationException, match=rf"data\.{key} is not an option of TimeSeriesDataModule"):
            instantiate(cfg.data)


def test_debug_fast_sets_no_data_key_and_builds_the_default(tmp_path) -> None:
    plain = compose_cfg(["modality=timeseries"], tmp_path).data
    fast = compose_cfg(["modality=timeseries", "debug=fast"], tmp_path).data
    assert OmegaConf.to_container(fast, resolve=True) == OmegaConf.to_container(plain, resolve=True)
    assert instantiate(fast).cfg == instantiate(plain).cfg


def test_the_debug_fast_aliases_are_no_fields() -> None:
    assert not {"source", "synthetic_size", "image_size"} & {f.name for f in dataclasses.fields(TimeSeriesDataConfig)}


def test_lists_become_tuples_of_the_right_type_and_the_config_is_frozen() -> None:
    cfg = TimeSeriesDataConfig(task="forecast", ratios=ListConfig([0.6, 0.2, 0.2]), horizons=ListConfig([24, 12]),
                               columns=ListConfig(["a", "b"]), ridge_alphas=ListConfig([1, 0.5]))
    assert (cfg.ratios, cfg.horizons, cfg.columns, cfg.ridge_alphas) == ((0.6, 0.2, 0.2), (24, 12), ("a", "b"),
                                                                         (1.0, 0.5))
    assert all(type(v) is tuple for v in (cfg.ratios, cfg.horizons, cfg.columns, cfg.ridge_alphas))
    assert type(cfg.ridge_alphas[0]) is float
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.batch_size = 8  # type: ignore[misc]
    assert get_args(Task) == TASKS == ("classify", "forecast")
    assert get_args(Split) == SPLITS == ("auto", "ett_hour", "ett_minute", "ratios")


def test_derived_values_of_the_datamodule() -> None:
    dm = TimeSeriesDataModule(task="forecast", horizons=[336, 96, 192], ridge_alphas=[0.1, 1], batch_size=8)
    assert dm.cfg.horizons == (336, 96, 192) and dm.cfg.sorted_horizons == [96, 192, 336]
    assert dm.horizons == [96, 192, 336] and dm.ridge_alphas == [0.1, 1.0] and type(dm.ridge_alphas) is list
    assert (dm.task, dm.eval_tasks, dm.batch_size, dm.num_workers, dm.seed) == ("forecast", ("forecast",), 8, 0, 0)
    assert TimeSeriesDataModule().eval_tasks == ("probe",) and TimeSeriesDataModule().cfg.name == "OSULeaf"


def test_unsorted_horizons_give_the_windows_of_sorted_ones(tmp_path) -> None:
    csv = write_csv(tmp_path / "toy.csv", sines(400, 2))
    common = dict(task="forecast", root=csv, context=48, patch_len=12, batch_size=8)
    a = TimeSeriesDataModule(**common, horizons=[24, 12])
    b = TimeSeriesDataModule(**common, horizons=[12, 24])
    a.setup(), b.setup()
    for name in ("train", "val", "test"):
        sa, sb = a.forecast_sets[name], b.forecast_sets[name]
        assert (sa.horizon, len(sa)) == (sb.horizon, len(sb)) == (24, len(sb))  # longest future, shortest decides
        assert torch.equal(sa[len(sa) - 1]["future"].isnan(), sb[len(sb) - 1]["future"].isnan())
    assert len(a.forecast_sets["test"]) == a.split_rows["test"][1] - a.split_rows["test"][0] - 48 - 12 + 1
