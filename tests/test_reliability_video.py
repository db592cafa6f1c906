"""Video option reliability: decoded frames are uint8, so the floats to check are the normalisation's (data.mean,
data.std); options the chosen source or crop does not read are errors naming them."""
from __future__ import annotations

import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from datamodules.video.datamodule import VideoDataModule
from tests.conftest import compose_cfg


@pytest.mark.parametrize("options,message", [
    ({"source": "demo", "root": "/x"}, r"data\.root is only read by data\.source='folder' \(or null\), not 'demo'"),
    ({"source": "demo", "list": "/k400.txt"}, r"data\.list is only read by data\.source='folder'"),
    ({"root": "/x", "demo_frames": 12}, r"data\.demo_frames is only read by data\.source='demo'.*remove data\.demo_fr"),
    ({"list": "/k400.txt", "demo_label": "direction", "demo_videos_per_class": 4},
     r"data\.demo_videos_per_class, data\.demo_label are only read by data\.source='demo'"),
    ({"root": "/x", "demo_digit_size": None}, r"data\.demo_digit_size is only read by data\.source='demo'"),
    ({"root": "/x", "video_dir": "/v"}, r"data\.video_dir is only read with data\.list"),
    ({"video_dir": "/v"}, r"data\.video_dir is only read with data\.list"),
    ({"crop_scales": [1.0, 0.5]}, r"data\.crop_scales is only read by data\.crop=multiscale, but data\.crop=short_s"),
    ({"crop": "resized", "crop_scales": [1.0, 0.5]}, r"data\.crop_scales is only read by data\.crop=multiscale"),
    ({"crop": "multiscale", "crop_area": [0.3, 1.0]}, r"data\.crop_area is only read by data\.crop=resized"),
    ({"crop_aspect": [0.5, 2.0]}, r"data\.crop_aspect is only read by data\.crop=resized"),
    ({"mean": [float("nan"), 0.5, 0.5]}, r"data\.mean must be finite numbers, got \[nan, 0\.5, 0\.5\]"),
    ({"std": [float("inf"), 0.2, 0.2]}, r"data\.std must be finite numbers, got \[inf, 0\.2, 0\.2\]"),
])
def test_options_that_are_not_read_or_not_finite_are_errors(options, message):
    with pytest.raises(ValueError, match=message):
        VideoDataModule(**options)


def test_the_real_config_reads_every_option_it_is_given(tmp_path):
    """The yaml's values of the demo-only and crop-only options are their defaults, so a folder run built from it
    (and from each paper recipe) is accepted, as are the options a crop reads; a demo option with a folder is
    refused."""
    assert instantiate(compose_cfg(["modality=video", "data.root=/k400"], tmp_path).data).source == "folder"
    assert instantiate(compose_cfg(["experiment=videomae_vit_base_k400", "data.list=/k.txt", "data.video_dir=/k"],
                                   tmp_path).data)
    assert instantiate(compose_cfg(["experiment=mae_st_vit_large_k400", "data.root=/k400"], tmp_path).data)
    read = ["data.crop=multiscale", "data.crop_scales=[1.0,0.8]"]
    assert instantiate(compose_cfg(["modality=video", "data.root=/k400", *read], tmp_path).data).crop.scales == (1, .8)
    cfg = compose_cfg(["modality=video", "data.root=/k400", "data.demo_size=64"], tmp_path)
    with pytest.raises(InstantiationException, match=r"data\.demo_size is only read by data\.source='demo'"):
        instantiate(cfg.data)


def test_a_split_smaller_than_one_batch_lowers_the_batch_to_whole_videos_times_repeat(tmp_path):
    """The runner's small-split rule (`fit_batch_to_split`): batch_size counts clips, `repeat` per video."""
    dm = VideoDataModule(demo_dir=str(tmp_path / "demo"), demo_label="direction", demo_videos_per_class=3,
                         demo_frames=12, demo_size=32, num_frames=4, sampling_rate=2, image_size=16,
                         short_side=[16, 24], repeat=2, batch_size=64, val_fraction=0.2)
    videos = dm.num_train  # 12 demo videos, 0.2 of them held out
    assert videos < 32
    assert dm.fit_batch_to_split(2) == (videos // 2) * 2  # per rank: its videos x repeat
    assert dm.fit_batch_to_split(1) == (videos // 2) * 2  # never raised again once lowered
    dm.batch_size = 64
    assert dm.fit_batch_to_split(1) == videos * 2
    batches = list(dm.train_dataloader())
    assert len(batches) == 1 and batches[0]["video"].shape[0] == videos * 2
