"""Datamodule options as typed, checked dataclasses: check_fields, and for every modality the wrong-option errors, the unknown key, the yaml keys."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import ListConfig, OmegaConf

from datamodules.audio.datamodule import AudioDataConfig, AudioDataModule
from datamodules.checks import OnError, check_fields
from datamodules.errors import ON_ERROR_CHOICES
from datamodules.graph.datamodule import GraphDataConfig, GraphDataModule
from datamodules.image.datamodule import ImageDataConfig, ImageDataModule
from datamodules.pointcloud.datamodule import PointCloudDataConfig, PointCloudDataModule
from datamodules.timeseries.datamodule import TimeSeriesDataConfig, TimeSeriesDataModule
from datamodules.video.crop import CROPS
from datamodules.video.datamodule import CropName, VideoDataConfig, VideoDataModule
from tests.conftest import CONF, compose_cfg

MODULES = {"image": (ImageDataModule, ImageDataConfig), "video": (VideoDataModule, VideoDataConfig),
           "audio": (AudioDataModule, AudioDataConfig), "pointcloud": (PointCloudDataModule, PointCloudDataConfig),
           "graph": (GraphDataModule, GraphDataConfig), "timeseries": (TimeSeriesDataModule, TimeSeriesDataConfig)}
"""Every modality's datamodule and its options dataclass; each modality's own cases: tests/test_datamodule_config_<m>.py."""


@dataclass(kw_only=True, frozen=True)
class Toy:
    flag: bool = True
    count: int = 1
    rate: float = 0.5
    name: str | None = None
    weights: list[float] = field(default_factory=lambda: [1.0])
    pair: tuple[int, int] = (1, 2)
    size: int | tuple[int, int] = 3
    mode: Literal["a", "b"] = "a"

    def __post_init__(self) -> None:
        check_fields(self, prefix="toy", minimum={"count": 0})


def test_check_fields_converts_lists_numbers_and_paths() -> None:
    toy = Toy(weights=ListConfig([1, 2.5]), pair=ListConfig([3, 4]), rate=1, name=Path("a/b"), size=[5, 6])
    assert toy.weights == [1.0, 2.5] and type(toy.weights) is list and all(type(w) is float for w in toy.weights)
    assert toy.pair == (3, 4) and type(toy.pair) is tuple and toy.size == (5, 6)
    assert toy.rate == 1.0 and type(toy.rate) is float and toy.name == "a/b"
    assert Toy() == Toy(weights=[1.0])


@pytest.mark.parametrize("options,error,message", [
    ({"flag": "yes"}, TypeError, "toy.flag must be a bool (true/false), got 'yes' of type str"),
    ({"count": 1.5}, TypeError, "toy.count must be an int, got 1.5 of type float"),
    ({"count": True}, TypeError, "toy.count must be an int, got True"),
    ({"count": -1}, ValueError, "toy.count must be >= 0, got -1"),
    ({"rate": "0.5"}, TypeError, "toy.rate must be a number, got '0.5' of type str"),
    ({"name": 3}, TypeError, "toy.name must be a string or null, got 3 of type int"),
    ({"weights": 1.0}, TypeError, "toy.weights must be a list of numbers, got 1.0 of type float"),
    ({"weights": [1.0, "x"]}, TypeError, "toy.weights[1] must be a number, got 'x'"),
    ({"pair": [1]}, ValueError, "toy.pair must hold 2 int(s), got 1: [1]"),
    ({"size": "3"}, TypeError, "toy.size must be an int or a list of 2 ints, got '3' of type str"),
    ({"size": [1, 2, 3]}, ValueError, "toy.size must hold 2 int(s), got 3"),
    ({"mode": "c"}, ValueError, "toy.mode must be one of ('a', 'b'), got 'c'"),
])
def test_check_fields_names_the_field_what_it_got_and_what_to_write(options, error, message) -> None:
    with pytest.raises(error) as info:
        Toy(**options)
    assert message in str(info.value)


@pytest.mark.parametrize("modality,options,error,match", [
    ("image", {"batch_size": "8"}, TypeError, r"data\.batch_size must be an int, got '8'"),
    ("image", {"batch_size": 0}, ValueError, r"data\.batch_size must be >= 1, got 0"),
    ("image", {"hflip": "False"}, TypeError, r"data\.hflip must be a bool \(true/false\)"),
    ("image", {"channels": 2}, ValueError, r"data\.channels must be 1 \(grey\) or 3 \(RGB\), got 2"),
    ("image", {"channels": 3, "mean": [0.5]}, ValueError, r"data\.mean must hold 3 number\(s\), got 1: \[0.5\]"),
    ("image", {"image_size": [16, "a"]}, TypeError, r"data\.image_size\[1\] must be an int"),
    ("image", {"image_size": 0}, ValueError, r"data\.image_size must be positive"),
    ("image", {"val_fraction": 1.0}, ValueError, r"data\.val_fraction must be in \[0, 1\)"),
    ("image", {"crop_scale": [0.5]}, ValueError, r"data\.crop_scale must hold 2 number\(s\)"),
    ("image", {"source": "imagenet"}, ValueError,
     r"data\.source must be one of \('mnist', 'folder', 'synthetic'\) or null, got 'imagenet'"),
    ("image", {"source": "folder"}, ValueError, r"data\.source='folder' needs exactly one of data\.root and data"),
    ("image", {"source": "mnist", "root": "/x"}, ValueError, r"data\.root / data\.list are only read by"),
    ("image", {"on_error": "ignore"}, ValueError, r"data\.on_error must be one of \('skip', 'raise'\)"),
    ("image", {"root": 3}, TypeError, r"data\.root must be a string or null, got 3 of type int"),
    ("video", {"source": "synthetic"}, ValueError, r"data\.source must be one of \('demo', 'folder'\) or null"),
    ("video", {"num_frames": 0}, ValueError, r"data\.num_frames must be >= 1, got 0"),
    ("video", {"num_frames": 8.0}, TypeError, r"data\.num_frames must be an int, got 8\.0"),
    ("video", {"backend": "ffmpeg"}, ValueError, r"data\.backend must be one of \('decord', 'pyav'\) or null"),
    ("video", {"crop": "random_crop"}, ValueError, r"data\.crop must be one of \('short_side', 'multiscale'"),
    ("video", {"crop_area": [0.8, 0.5]}, ValueError, r"data\.crop_area must be \[min, max\]"),
    ("video", {"mean": [0.5, 0.5]}, ValueError, r"data\.mean must hold 3 number\(s\), got 2"),
    ("video", {"std": "0.2"}, TypeError, r"data\.std must be a list of 3 numbers, got '0\.2'"),
    ("video", {"channels": 1}, ValueError, r"data\.channels must be 3: decoded videos are RGB"),
    ("video", {"image_size": 32, "short_side": [40, 36]}, ValueError,
     r"data\.short_side must be an int or \[min, max\] with min <= max, got \[40, 36\]"),
    ("video", {"image_size": 32, "short_side": 16}, ValueError, r"data\.short_side must be >= 32, got 16"),
    ("video", {"batch_size": 6, "repeat": 4}, ValueError, r"data\.batch_size=6 counts clips and must be a multiple"),
    ("video", {"short_video": "cut"}, ValueError, r"data\.short_video must be one of \('loop', 'pad', 'skip'\)"),
    ("video", {"demo_label": "colour"}, ValueError, r"data\.demo_label must be one of \('digit', 'direction'\)"),
    ("video", {"demo_size": 32, "demo_digit_size": 40}, ValueError,
     r"data\.demo_digit_size=40 must be at most data\.demo_size=32"),
    ("video", {"video_dir": 1}, TypeError, r"data\.video_dir must be a string or null"),
    ("video", {"pin_memory": 1}, TypeError, r"data\.pin_memory must be a bool"),
])
def test_a_wrong_option_names_the_key(modality, options, error, match) -> None:
    module, config = MODULES[modality]
    with pytest.raises(error, match=match):
        module(**options)
    with pytest.raises(error, match=match):
        config(**options)


@pytest.mark.parametrize("modality", MODULES)
def test_an_unknown_key_is_named_with_the_options(modality) -> None:
    module, config = MODULES[modality]
    first = dataclasses.fields(config)[0].name
    with pytest.raises(TypeError, match=rf"data\.framez is not an option of {module.__name__}; options: {first}, "):
        module(framez=8)
    with pytest.raises(TypeError, match=r"data\.framez, data\.sizez are not options of"):
        module(framez=8, sizez=4)


def test_an_unknown_key_from_the_command_line(tmp_path) -> None:
    cfg = compose_cfg(["modality=image", "+data.imagesize=32"], tmp_path)
    with pytest.raises(InstantiationException, match=r"data\.imagesize is not an option of ImageDataModule"):
        instantiate(cfg.data)


def plain(value: object) -> object:
    """Tuples as lists, the yaml's way."""
    return [plain(v) for v in value] if isinstance(value, (tuple, list)) else value


CONFIGS = [[f"modality={path.stem}"] for path in sorted((CONF / "modality").glob("*.yaml"))] + [
    [f"experiment={path.stem}"] for path in sorted((CONF / "experiment").glob("*.yaml"))]


@pytest.mark.parametrize("overrides", CONFIGS, ids=lambda o: o[0])
def test_the_composed_config_builds_the_datamodule_with_the_yaml_values(overrides, tmp_path) -> None:
    data = compose_cfg(overrides, tmp_path).data
    dm = instantiate(data)  # nothing is read or downloaded yet
    assert (type(dm), type(dm.cfg)) in MODULES.values()
    written = OmegaConf.to_container(data, resolve=True)
    written.pop("_target_")
    got = {key: plain(getattr(dm.cfg, key)) for key in written}
    assert got == written
    assert set(written) == {f.name for f in dataclasses.fields(dm.cfg)}
    for f in dataclasses.fields(dm.cfg):  # no ListConfig left inside
        assert not isinstance(getattr(dm.cfg, f.name), ListConfig), f.name


@pytest.mark.parametrize("modality", MODULES)
def test_every_field_is_a_yaml_key_and_every_yaml_key_a_field(modality) -> None:
    yaml_keys = set(OmegaConf.load(CONF / "modality" / f"{modality}.yaml").data) - {"_target_"}
    fields = {f.name for f in dataclasses.fields(MODULES[modality][1])}
    assert yaml_keys - fields == set(), f"conf/modality/{modality}.yaml keys that are no option"
    assert fields - yaml_keys == set(), f"options missing from conf/modality/{modality}.yaml"


@pytest.mark.parametrize("modality", MODULES)
@pytest.mark.parametrize("fraction", [1.0, -0.1])
def test_a_val_fraction_outside_0_1_is_named(modality, fraction) -> None:
    with pytest.raises(ValueError, match=rf"data\.val_fraction must be in \[0, 1\), got {fraction}"):
        MODULES[modality][1](val_fraction=fraction)


def test_the_literal_choices_match_the_checked_ones() -> None:
    assert get_args(OnError) == ON_ERROR_CHOICES and get_args(CropName) == CROPS


def test_derived_values_of_the_datamodules() -> None:
    image = ImageDataModule(channels=3, image_size=[24, 32], root="/x")
    assert (image.source, image.image_size, image.mean, image.std) == (
        "folder", (24, 32), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    video = VideoDataModule(image_size=[16], short_side=24, demo_label="direction", crop="resized", backend="pyav")
    assert (video.source, video.backend, video.image_size, video.short_side) == ("demo", "pyav", (16, 16), (24, 24))
    assert video.crop.kind == "resized" and video.cfg.demo_videos_per_class == 200
    with pytest.raises(dataclasses.FrozenInstanceError):
        video.cfg.batch_size = 8  # type: ignore[misc]
