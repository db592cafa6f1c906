"""PointCloudDataConfig: the point-cloud datamodule's options (conf/modality/pointcloud.yaml), typed and checked."""
from __future__ import annotations

import dataclasses
from typing import get_args

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import ListConfig

from datamodules.pointcloud.augment import PointAugment
from datamodules.pointcloud.datamodule import SOURCES, PointCloudDataConfig, PointCloudDataModule
from datamodules.pointcloud.shapes import ROTATIONS, Rotation
from tests.conftest import compose_cfg


@pytest.mark.parametrize("options,error,match", [
    ({"source": "synthetic"}, ValueError,
     r"data\.source must be one of \('shapes', 'folder'\) or null, got 'synthetic'"),
    ({"source": "modelnet"}, ValueError, r"data\.source must be one of \('shapes', 'folder'\) or null"),
    ({"source": "folder"}, ValueError, r"data\.source='folder' needs exactly one of data\.root and data\.list"),
    ({"root": "/x", "list": "/y.csv"}, ValueError, r"needs exactly one of data\.root and data\.list"),
    ({"source": "shapes", "root": "/x"}, ValueError,
     r"data\.root / data\.list are only read by data\.source='folder' \(or null\), not 'shapes'"),
    ({"source": "shapes", "list": "/x.csv"}, ValueError, r"data\.root / data\.list are only read by"),
    ({"root": 3}, TypeError, r"data\.root must be a string or null, got 3 of type int"),
    ({"list": ["a.csv"]}, TypeError, r"data\.list must be a string or null"),
    ({"num_points": 0}, ValueError, r"data\.num_points must be >= 1, got 0"),
    ({"num_points": 256.0}, TypeError, r"data\.num_points must be an int, got 256\.0"),
    ({"batch_size": 0}, ValueError, r"data\.batch_size must be >= 1, got 0"),
    ({"batch_size": "8"}, TypeError, r"data\.batch_size must be an int, got '8'"),
    ({"num_workers": -1}, ValueError, r"data\.num_workers must be >= 0, got -1"),
    ({"val_fraction": 1.0}, ValueError, r"data\.val_fraction must be in \[0, 1\), got 1\.0"),
    ({"val_fraction": "0.2"}, TypeError, r"data\.val_fraction must be a number"),
    ({"seed": None}, TypeError, r"data\.seed must be an int, got None"),
    ({"on_error": "ignore"}, ValueError, r"data\.on_error must be one of \('skip', 'raise'\)"),
    ({"aug_scale": [0.5]}, ValueError, r"data\.aug_scale must hold 2 number\(s\), got 1: \[0\.5\]"),
    ({"aug_scale": 1.0}, TypeError, r"data\.aug_scale must be a list of 2 numbers, got 1\.0"),
    ({"aug_scale": [1.5, 0.5]}, ValueError, r"data\.aug_scale must satisfy 0 < min <= max, got \[1\.5, 0\.5\]"),
    ({"aug_scale": [0, 1]}, ValueError, r"data\.aug_scale must satisfy 0 < min <= max, got \[0\.0, 1\.0\]"),
    ({"aug_scale": [0.5, "x"]}, TypeError, r"data\.aug_scale\[1\] must be a number"),
    ({"aug_translate": "0.2"}, TypeError, r"data\.aug_translate must be a number"),
    ({"aug_rotate": "False"}, TypeError, r"data\.aug_rotate must be a bool \(true/false\)"),
    ({"aug_jitter": None}, TypeError, r"data\.aug_jitter must be a number"),
    ({"up_axis": 3}, ValueError, r"data\.up_axis must be 0, 1 or 2 \(x, y, z\), got 3"),
    ({"up_axis": -1}, ValueError, r"data\.up_axis must be 0, 1 or 2 \(x, y, z\), got -1"),
    ({"up_axis": "z"}, TypeError, r"data\.up_axis must be an int"),
    ({"synthetic_size": 1}, ValueError, r"data\.synthetic_size must be >= 2, got 1"),
    ({"synthetic_noise": "low"}, TypeError, r"data\.synthetic_noise must be a number"),
    ({"synthetic_rotation": "tilted"}, ValueError,
     r"data\.synthetic_rotation must be one of \('upright', 'any'\), got 'tilted'"),
    ({"cache_dir": 1}, TypeError, r"data\.cache_dir must be a string or null"),
    ({"mesh_points": 0}, ValueError, r"data\.mesh_points must be >= 1, got 0"),
    ({"pin_memory": 1}, TypeError, r"data\.pin_memory must be a bool"),
])
def test_a_wrong_option_names_the_key(options, error, match) -> None:
    with pytest.raises(error, match=match):
        PointCloudDataModule(**options)
    with pytest.raises(error, match=match):
        PointCloudDataConfig(**options)


def test_the_debug_aliases_are_gone() -> None:
    with pytest.raises(ValueError, match=r"data\.source must be one of \('shapes', 'folder'\) or null, got 'synth"):
        PointCloudDataModule(source="synthetic")
    with pytest.raises(TypeError, match=r"data\.image_size is not an option of PointCloudDataModule; options: source"):
        PointCloudDataModule(image_size=28)
    assert PointCloudDataModule(synthetic_size=12).cfg.synthetic_size == 12  # a real option, not an alias


def test_an_unknown_key_is_named_with_the_options(tmp_path) -> None:
    with pytest.raises(TypeError, match=r"data\.points, data\.size are not options of PointCloudDataModule"):
        PointCloudDataModule(points=8, size=4)
    cfg = compose_cfg(["modality=pointcloud", "+data.numpoints=32"], tmp_path)
    with pytest.raises(InstantiationException, match=r"data\.numpoints is not an option of PointCloudDataModule"):
        instantiate(cfg.data)
    bad = compose_cfg(["modality=pointcloud", "data.source=synthetic"], tmp_path)
    with pytest.raises(InstantiationException, match=r"data\.source must be one of \('shapes', 'folder'\) or null"):
        instantiate(bad.data)


def test_the_literal_choices() -> None:
    assert SOURCES == ("shapes", "folder") and get_args(Rotation) == ROTATIONS == ("upright", "any")


def test_frozen_config_and_derived_values() -> None:
    dm = PointCloudDataModule(root="/x", aug_scale=ListConfig([0.8, 1]), aug_translate=0, aug_rotate=True,
                              aug_jitter=0.01, up_axis=1, batch_size=4, seed=7, pin_memory=True)
    assert (dm.source, dm.batch_size, dm.num_workers, dm.pin_memory, dm.seed) == ("folder", 4, 0, True, 7)
    assert dm.cfg.aug_scale == (0.8, 1.0) and type(dm.cfg.aug_translate) is float
    aug = dm.augment
    assert isinstance(aug, PointAugment)
    assert (tuple(aug.scale), aug.translate, aug.rotate, aug.jitter, aug.up_axis) == ((0.8, 1.0), 0.0, True, 0.01, 1)
    assert PointCloudDataModule(list="/x.csv").source == "folder" and PointCloudDataModule().source == "shapes"
    assert PointCloudDataConfig().resolved_source == "shapes" and PointCloudDataConfig().synthetic_rotation == "upright"
    with pytest.raises(dataclasses.FrozenInstanceError):
        dm.cfg.batch_size = 8  # type: ignore[misc]


def test_the_config_drives_the_data() -> None:
    """The augmentation and the shapes follow the config: up_axis=1 rotates about y only, leaving y unchanged."""
    dm = PointCloudDataModule(num_points=64, batch_size=4, synthetic_size=12, aug_scale=[1, 1], aug_translate=0.0,
                              aug_rotate=True, up_axis=1, synthetic_rotation="upright", seed=0)
    dm.setup()
    plain_cloud = dm.train_eval_set[0]["points"]  # no augmentation, fixed subsample of train index 0
    turned = dm.augment(plain_cloud.clone())
    assert torch.allclose(turned[:, 1], plain_cloud[:, 1]) and not torch.allclose(turned, plain_cloud)
    assert torch.allclose(turned.norm(dim=1), plain_cloud.norm(dim=1), atol=1e-5)  # a rotation
    assert len(dm.train_set) + len(dm.val_set) == 12 and dm.classes[0] == "sphere"
