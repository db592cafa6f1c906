"""Audio input reliability: absurd sample values are refused at load time (naming the file) and kept out of the
dataset statistics; options the chosen source or split does not read are errors naming them."""
from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from datamodules.audio.datamodule import AudioDataModule
from datamodules.audio.features import MAX_ABS_SAMPLE
from datamodules.errors import LoadError, SkippedFileWarning
from tests.conftest import compose_cfg

SR = 16000


def tone(freq: float, amplitude: float = 0.5, seconds: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * freq * np.arange(int(seconds * SR)) / SR)).astype(np.float32)


def good_folder(root):
    """Two classes of four float WAVs; one peaks at 2.0 (a float file over full scale is real audio and kept)."""
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(4):
            sf.write(root / cls / f"{i}.wav", tone(300.0 * (1 + i), 2.0 if i == 3 else 0.5), SR, subtype="FLOAT")
    return root


def datamodule(root, **kw) -> AudioDataModule:
    args = {"root": str(root), "frames": 32, "mel_bins": 32, "batch_size": 2, "val_fraction": 0.0} | kw
    return AudioDataModule(**args)


@pytest.mark.parametrize("amplitude", [1e30, 1e10, 32768.0])  # NaN features, finite but absurd, int16 scale
def test_an_absurd_clip_is_skipped_and_the_statistics_are_those_of_the_good_clips(tmp_path, amplitude):
    good = good_folder(tmp_path / "good")
    mixed = tmp_path / "mixed"
    shutil.copytree(good, mixed)
    sf.write(mixed / "a" / "loud.wav", tone(440.0, amplitude), SR, subtype="FLOAT")
    data = datamodule(mixed)
    with pytest.warns(SkippedFileWarning, match=r"loud\.wav.*beyond \+-1000"):
        data.ensure_stats()  # what the first dataloader request does
    mean, std = data.normalizer.mean, data.normalizer.std
    assert [path.split("/")[-1] for path, _ in data.skips.skipped] == ["loud.wav"]
    assert math.isfinite(mean) and math.isfinite(std)
    assert (mean, std) == pytest.approx(datamodule(good).compute_stats(), rel=1e-9)
    batch = next(iter(data.train_dataloader()))
    assert torch.isfinite(batch["fbank"]).all()


def test_on_error_raise_names_the_absurd_file(tmp_path):
    root = good_folder(tmp_path / "d")
    sf.write(root / "b" / "loud.wav", tone(440.0, 1e30), SR, subtype="FLOAT")
    data = datamodule(root, on_error="raise")
    data.setup()  # the pre-scan reads headers only: the samples are checked when the clip is decoded
    with pytest.raises(LoadError, match=r"loud\.wav.*samples reach 1e\+30, beyond \+-1000.*rescale"):
        data.train_dataloader()  # the statistics decode every train clip
    assert MAX_ABS_SAMPLE == 1e3


@pytest.mark.parametrize("options,message", [
    ({"source": "demo", "root": "/x"}, r"data\.root is only read by data\.source='folder' \(or null\), not 'demo'"),
    ({"source": "demo", "list": "/x.csv"}, r"data\.list is only read by data\.source='folder'"),
    ({"root": "/x", "demo_dir": "/d"}, r"data\.demo_dir is only read by data\.source='demo'.*remove data\.demo_dir"),
    ({"list": "/x.csv", "demo_seconds": 1.0, "demo_clips_per_class": 4},
     r"data\.demo_clips_per_class, data\.demo_seconds are only read by data\.source='demo'"),
    ({"root": "/x", "audio_dir": "/a"}, r"data\.audio_dir is only read with data\.list"),
    ({"audio_dir": "/a"}, r"data\.audio_dir is only read with data\.list"),
    ({"list": "/x.csv", "val_fold": 1, "val_fraction": 0.1},
     r"data\.val_fraction=0\.1 is not read with data\.val_fold=1"),
    ({"mean": -4.0, "std": 4.0, "stats_clips": 10}, r"data\.stats_clips=10 is not read with fixed data\.mean"),
    ({"mean": float("nan"), "std": 1.0}, r"data\.mean must be a finite number, got nan"),
    ({"mean": 0.0, "std": float("inf")}, r"data\.std must be a finite number, got inf"),
])
def test_options_that_are_not_read_or_not_finite_are_errors(options, message):
    with pytest.raises(ValueError, match=message):
        AudioDataModule(**options)


def test_the_real_config_reads_every_option_it_is_given(tmp_path):
    """The yaml's values of the demo-only options are their defaults, so a folder run built from it is accepted, and
    one that also sets a demo option is refused."""
    cfg = compose_cfg(["modality=audio", "data.root=/data/sounds"], tmp_path)
    assert instantiate(cfg.data).source == "folder"
    assert instantiate(compose_cfg(["modality=audio", "data.list=/m.csv", "data.val_fold=1"], tmp_path).data)
    assert instantiate(compose_cfg(["experiment=audiomae_vit_base_as2m", "data.root=/as2m"], tmp_path).data)
    cfg = compose_cfg(["modality=audio", "data.root=/data/sounds", "data.demo_clips_per_class=5"], tmp_path)
    with pytest.raises(InstantiationException, match=r"data\.demo_clips_per_class is only read by data\.source"):
        instantiate(cfg.data)
