"""Point cloud input reliability: absurd coordinates are refused at the pre-scan (naming the file), the other clouds
are loaded as if the file were not there; options the chosen source or augmentation does not read are errors."""
from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from datamodules.errors import LoadError, SkippedFileWarning
from datamodules.pointcloud.datamodule import PointCloudDataModule
from tests.conftest import compose_cfg


def good_folder(root):
    """Two classes of four clouds; one holds a NaN row and one an inf row (missing points: dropped, file kept)."""
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(4):
            pts = rng.normal(size=(200, 3)) * 50 + 1e3  # a scan in mm, away from the origin
            pts[7, i % 3] = np.nan if i == 1 else np.inf if i == 2 else pts[7, i % 3]
            np.save(root / cls / f"{i}.npy", pts)
    return root


def write_off(path, vertices: np.ndarray, faces: np.ndarray) -> None:
    rows = [f"{len(vertices)} {len(faces)} 0", *(" ".join(repr(float(v)) for v in row) for row in vertices),
            *("3 " + " ".join(map(str, f)) for f in faces)]
    path.write_text("OFF\n" + "\n".join(rows) + "\n")


def absurd_files(root) -> set[str]:
    """Coordinates near float32's largest value (a byte-swapped file), one row at 1e39 (inf in float32) and a mesh
    one of whose vertices sits at 1e38."""
    import trimesh

    rng = np.random.default_rng(1)
    np.save(root / "a" / "huge.npy", rng.normal(size=(200, 3)) * 1e38)
    one = rng.normal(size=(200, 3))
    one[3, 0] = 1e39
    np.save(root / "b" / "one_row.npy", one)
    box = trimesh.creation.box()
    vertices = box.vertices.copy()
    vertices[0, 0] = 1e38
    write_off(root / "b" / "mesh.off", vertices, box.faces)
    return {"huge.npy", "one_row.npy", "mesh.off"}


def datamodule(root, **kw) -> PointCloudDataModule:
    args = {"root": str(root), "num_points": 64, "batch_size": 2, "val_fraction": 0.0, "cache_dir": None} | kw
    return PointCloudDataModule(**args)


def test_absurd_clouds_are_skipped_and_the_others_load_as_without_them(tmp_path):
    good = good_folder(tmp_path / "good")
    mixed = tmp_path / "mixed"
    shutil.copytree(good, mixed)
    bad = absurd_files(mixed)
    data = datamodule(mixed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # trimesh's overflow warnings while sampling the bad mesh
        with pytest.warns(SkippedFileWarning, match=r"huge\.npy.*beyond \+-1e\+15"):
            data.setup()
    assert {path.split("/")[-1] for path, _ in data.skips.skipped} == bad
    clean = datamodule(good)
    clean.setup()
    assert data.num_train == clean.num_train == 8
    for position in range(8):
        points = data.train_eval_set[position]["points"]  # (64, 3)
        assert torch.isfinite(points).all() and torch.equal(points, clean.train_eval_set[position]["points"])
    assert torch.isfinite(next(iter(data.train_dataloader()))["points"]).all()


def test_on_error_raise_names_the_absurd_file(tmp_path):
    root = good_folder(tmp_path / "d")
    np.save(root / "a" / "huge.npy", np.random.default_rng(2).uniform(-3e38, 3e38, size=(100, 3)))
    with pytest.raises(LoadError, match=r"huge\.npy.*coordinates reach \d\.\d+e\+38, beyond \+-1e\+15"):
        datamodule(root, on_error="raise").setup()


@pytest.mark.parametrize("options,message", [
    ({"root": "/x", "synthetic_size": 100}, r"data\.synthetic_size is only read by data\.source='shapes'"),
    ({"list": "/x.csv", "synthetic_noise": 0.1, "synthetic_rotation": "any"},
     r"data\.synthetic_noise, data\.synthetic_rotation are only read by data\.source='shapes'"),
    ({"mesh_points": 100}, r"data\.mesh_points=100 is only read when meshes are cached.*'shapes' reads no meshes"),
    ({"root": "/x", "cache_dir": None, "mesh_points": 100}, r"data\.mesh_points=100 .*data\.cache_dir is null"),
    ({"root": "/x", "up_axis": 1}, r"data\.up_axis=1 is only read by data\.aug_rotate=true"),
    ({"aug_translate": float("nan")}, r"data\.aug_translate must be finite, got nan"),
    ({"aug_scale": [1.0, float("inf")]}, r"data\.aug_scale must be finite, got inf"),
    ({"synthetic_noise": float("inf")}, r"data\.synthetic_noise must be finite, got inf"),
    ({"aug_jitter": -0.01}, r"data\.aug_jitter must be >= 0, got -0\.01"),
])
def test_options_that_are_not_read_or_not_finite_are_errors(options, message):
    with pytest.raises(ValueError, match=message):
        PointCloudDataModule(**options)


def test_the_real_config_reads_every_option_it_is_given(tmp_path):
    """The yaml's values of the shapes-only options are their defaults, so a folder run built from it is accepted;
    the options a folder run does read are accepted; a shapes option with a folder is refused."""
    assert instantiate(compose_cfg(["modality=pointcloud", "data.root=/mn40"], tmp_path).data).source == "folder"
    assert instantiate(compose_cfg(["experiment=pointmae_modelnet40", "data.root=/mn40"], tmp_path).data)
    read = ["data.aug_rotate=true", "data.up_axis=1", "data.mesh_points=100"]
    assert instantiate(compose_cfg(["modality=pointcloud", "data.root=/mn40", *read], tmp_path).data)
    cfg = compose_cfg(["modality=pointcloud", "data.root=/mn40", "data.synthetic_rotation=any"], tmp_path)
    with pytest.raises(InstantiationException, match=r"data\.synthetic_rotation is only read by data\.source"):
        instantiate(cfg.data)
