"""AudioDataConfig: every checked option names its key, the debug=fast aliases are gone, derived values."""
from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from datamodules.audio.datamodule import SOURCES, AudioDataConfig, AudioDataModule
from tests.conftest import compose_cfg

OPTIONS = "options: source, root, list, audio_dir, val_fold, sample_rate, mel_bins"


@pytest.mark.parametrize("options,error,match", [
    ({"batch_size": "8"}, TypeError, r"data\.batch_size must be an int, got '8' of type str"),
    ({"batch_size": 0}, ValueError, r"data\.batch_size must be >= 1, got 0"),
    ({"num_workers": -1}, ValueError, r"data\.num_workers must be >= 0, got -1"),
    ({"sample_rate": 800}, ValueError, r"data\.sample_rate must be >= 1000, got 800"),
    ({"sample_rate": 16000.0}, TypeError, r"data\.sample_rate must be an int, got 16000\.0"),
    ({"mel_bins": 0}, ValueError, r"data\.mel_bins must be >= 1, got 0"),
    ({"frames": 0}, ValueError, r"data\.frames must be >= 1, got 0"),
    ({"stats_clips": 0}, ValueError, r"data\.stats_clips must be >= 1, got 0"),
    ({"demo_clips_per_class": 1}, ValueError, r"data\.demo_clips_per_class must be >= 2, got 1"),
    ({"frame_length_ms": "25"}, TypeError, r"data\.frame_length_ms must be a number, got '25' of type str"),
    ({"frame_shift_ms": None}, TypeError, r"data\.frame_shift_ms must be a number, got None"),
    ({"demo_seconds": True}, TypeError, r"data\.demo_seconds must be a number, got True of type bool"),
    ({"val_fold": 1.5}, TypeError, r"data\.val_fold must be an int or null, got 1\.5 of type float"),
    ({"val_fraction": 1.0}, ValueError, r"data\.val_fraction must be in \[0, 1\), got 1\.0"),
    ({"val_fraction": -0.1}, ValueError, r"data\.val_fraction must be in \[0, 1\), got -0\.1"),
    ({"source": "esc50"}, ValueError, r"data\.source must be one of \('demo', 'folder'\) or null, got 'esc50'"),
    ({"source": "folder"}, ValueError,
     r"data\.source='folder' needs exactly one of data\.root and data\.list, got root=None, list=None"),
    ({"root": "/a", "list": "/b.csv"}, ValueError, r"data\.source='folder' needs exactly one of data\.root and data"),
    ({"root": 3}, TypeError, r"data\.root must be a string or null, got 3 of type int"),
    ({"list": ["a.csv"]}, TypeError, r"data\.list must be a string or null, got \['a\.csv'\]"),
    ({"audio_dir": 1}, TypeError, r"data\.audio_dir must be a string or null"),
    ({"cache_dir": 1}, TypeError, r"data\.cache_dir must be a string or null"),
    ({"demo_dir": 1}, TypeError, r"data\.demo_dir must be a string or null"),
    ({"mean": -4.0}, TypeError, r"data\.std must be a number when data\.mean is set \(fixed statistics need both"),
    ({"std": 4.0}, TypeError, r"data\.mean must be a number when data\.std is set \(fixed statistics need both"),
    ({"mean": -4.0, "std": 0}, ValueError, r"data\.std must be positive, got 0\.0"),
    ({"mean": -4.0, "std": -1.0}, ValueError, r"data\.std must be positive, got -1\.0"),
    ({"mean": "x", "std": 1.0}, TypeError, r"data\.mean must be a number or null, got 'x'"),
    ({"on_error": "ignore"}, ValueError, r"data\.on_error must be one of \('skip', 'raise'\), got 'ignore'"),
    ({"pin_memory": 1}, TypeError, r"data\.pin_memory must be a bool \(true/false\), got 1"),
    ({"seed": "0"}, TypeError, r"data\.seed must be an int, got '0'"),
])
def test_a_wrong_option_names_the_key(options, error, match) -> None:
    with pytest.raises(error, match=match):
        AudioDataModule(**options)
    with pytest.raises(error, match=match):
        AudioDataConfig(**options)


@pytest.mark.parametrize("options,match", [
    ({"source": "synthetic"}, r"data\.source must be one of \('demo', 'folder'\) or null, got 'synthetic'"),
    ({"image_size": 28}, rf"data\.image_size is not an option of AudioDataModule; {OPTIONS}"),
    ({"synthetic_size": 50}, rf"data\.synthetic_size is not an option of AudioDataModule; {OPTIONS}"),
])
def test_the_debug_fast_aliases_are_rejected(options, match) -> None:
    assert SOURCES == ("demo", "folder")
    with pytest.raises((TypeError, ValueError), match=match):
        AudioDataModule(**options)


@pytest.mark.parametrize("override,match", [
    ("data.source=synthetic", r"data\.source must be one of \('demo', 'folder'\) or null, got 'synthetic'"),
    ("+data.image_size=28", r"data\.image_size is not an option of AudioDataModule"),
    ("+data.synthetic_size=50", r"data\.synthetic_size is not an option of AudioDataModule"),
])
def test_the_aliases_fail_from_the_command_line(override, match, tmp_path) -> None:
    cfg = compose_cfg(["modality=audio", override], tmp_path)
    with pytest.raises(InstantiationException, match=match):
        instantiate(cfg.data)


def test_the_config_is_frozen_and_converts_numbers_and_paths() -> None:
    cfg = AudioDataConfig(mean=-4, std=5, frame_length_ms=20, root=Path("/data/sounds"))
    assert (cfg.mean, cfg.std, cfg.frame_length_ms, cfg.root) == (-4.0, 5.0, 20.0, "/data/sounds")
    assert all(type(v) is float for v in (cfg.mean, cfg.std, cfg.frame_length_ms)) and type(cfg.root) is str
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.frames = 64  # type: ignore[misc]
    dm = AudioDataModule(frames=64)
    with pytest.raises(dataclasses.FrozenInstanceError):
        dm.cfg.batch_size = 8  # type: ignore[misc]


@pytest.mark.parametrize("options,source", [
    ({}, "demo"), ({"root": "/x"}, "folder"), ({"list": "/x.csv"}, "folder"),
])
def test_the_source_is_resolved(options, source) -> None:
    assert AudioDataConfig(**options).resolved_source == source
    assert AudioDataModule(**options).source == source


def test_the_demo_folder_is_demo_dir_or_a_temp_folder_keyed_by_the_demo_settings() -> None:
    keyed = AudioDataConfig(demo_clips_per_class=8, demo_seconds=1.5, seed=3).demo_folder
    assert keyed == Path(tempfile.gettempdir()) / "mae_audio_demo" / "c8_s1.5_seed3"
    assert AudioDataConfig().demo_folder.name == "c60_s3.0_seed0"  # demo_seconds is a float in the key
    assert AudioDataConfig(demo_dir="/tmp/my_demo", seed=3).demo_folder == Path("/tmp/my_demo")


def test_the_module_copies_the_config_into_its_features() -> None:
    dm = AudioDataModule(sample_rate=8000, mel_bins=64, frame_length_ms=20, frame_shift_ms=5, cache_dir="/tmp/c",
                         batch_size=4, num_workers=1, pin_memory=True, seed=7)
    assert (dm.batch_size, dm.num_workers, dm.pin_memory, dm.seed) == (4, 1, True, 7)
    settings = dm.features.settings
    assert (settings["sample_rate"], settings["mel_bins"], settings["frame_length_ms"], settings["frame_shift_ms"]) == (
        8000, 64, 20.0, 5.0)
    assert dm.features.cache_dir == Path("/tmp/c")


def test_fixed_statistics_are_used_saved_and_never_replaced_by_a_checkpoint() -> None:
    fixed = AudioDataModule(mean=-4, std=2)
    assert fixed.cfg.fixed_stats and (fixed.normalizer.mean, fixed.normalizer.std) == (-4.0, 2.0)
    state = fixed.state_dict()
    assert (state["feature_mean"], state["feature_std"]) == (-4.0, 2.0)
    other = AudioDataModule(mean=1.0, std=3.0)
    other.load_state_dict(state)
    assert (other.normalizer.mean, other.normalizer.std) == (1.0, 3.0)
    computed = AudioDataModule()
    assert not computed.cfg.fixed_stats and computed.normalizer.mean is None
    computed.load_state_dict(state)  # same feature settings: the saved statistics are reused
    assert (computed.normalizer.mean, computed.normalizer.std) == (-4.0, 2.0)


def test_val_fold_without_a_csv_names_the_keys(tmp_path) -> None:
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            sf.write(tmp_path / cls / f"{i}.wav", np.zeros(800, np.float32), 16000)
    dm = AudioDataModule(root=str(tmp_path), val_fold=1, frames=8, mel_bins=16)
    with pytest.raises(ValueError, match=r"data\.val_fold needs an ESC-50-style data\.list CSV with a fold column"):
        dm.setup()
