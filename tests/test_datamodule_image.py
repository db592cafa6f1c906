"""ImageDataModule and the shared datamodule helpers: indexing, on_error, split, seeding, typed arguments."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.errors import LoadError, SkippedFileWarning
from datamodules.image.datamodule import ImageDataModule
from datamodules.indexing import read_list_csv, split_indices
from datamodules.sampling import SeededSampler, seeded


def write_image(path: Path, *, size: tuple[int, int] = (20, 30), seed: int = 0) -> Path:
    """An RGB PNG/JPEG of `size` = (h, w) with random pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)  # (h, w, 3)
    Image.fromarray(pixels).save(path)
    return path


def png_bytes(seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def class_folder(tmp_path: Path) -> Path:
    """root/cat: 5 images, root/dog: 4 images (one nested, one .JPG), sizes vary."""
    root = tmp_path / "data"
    for i in range(5):
        write_image(root / "cat" / f"c{i}.png", size=(20 + i, 30), seed=i)
    for i in range(3):
        write_image(root / "dog" / f"d{i}.png", size=(40, 25), seed=10 + i)
    write_image(root / "dog" / "nested" / "d3.JPG", size=(33, 33), seed=20)
    (root / "dog" / "notes.txt").write_text("not an image")
    return root


@pytest.mark.parametrize("channels,image_size,expected_hw", [(1, 16, (16, 16)), (3, [24, 32], (24, 32))])
def test_folder_labels_and_batch_shapes(class_folder: Path, channels: int, image_size, expected_hw) -> None:
    dm = ImageDataModule(root=str(class_folder), channels=channels, image_size=image_size, batch_size=3,
                         val_fraction=0.25)
    dm.setup("fit")
    assert dm.source == "folder" and dm.classes == ["cat", "dog"] and dm.num_classes == 2 and dm.has_labels
    assert dm.image_size == expected_hw and dm.num_train == 7 and len(dm.val_set) == 2
    labels = sorted(dm.train_set.labels)
    assert labels == [0] * 5 + [1] * 4
    train = next(iter(dm.train_dataloader()))
    assert train["image"].shape == (3, channels, *expected_hw) and train["image"].dtype == torch.float32
    assert train["label"].dtype == torch.int64 and set(train["label"].tolist()) <= {0, 1}
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape == (2, channels, *expected_hw)
    plain_train, _ = dm.eval_dataloaders()
    got = torch.cat([b["label"] for b in plain_train])
    assert got.tolist() == [dm.train_set.labels[i] for i in dm.train_set.indices]
    assert len(dm.train_dataloader()) == 7 // 3  # drop_last


def corrupt_folder(root: Path) -> tuple[Path, Path]:
    """Add a random-bytes .png and a truncated PNG to class 'cat'."""
    garbage = root / "cat" / "garbage.png"
    garbage.write_bytes(np.random.default_rng(0).bytes(500))
    truncated = root / "cat" / "truncated.png"
    truncated.write_bytes(png_bytes()[:1500])
    return garbage, truncated


def test_corrupt_files_skipped_with_warning_and_count(class_folder: Path) -> None:
    garbage, truncated = corrupt_folder(class_folder)
    dm = ImageDataModule(root=str(class_folder), val_fraction=0.25, batch_size=2)
    with pytest.warns(SkippedFileWarning) as record:
        dm.setup("fit")
    messages = " ".join(str(w.message) for w in record)
    assert "garbage.png" in messages and "truncated.png" in messages and "skipped 2 of 11 files" in messages
    assert dm.skips.count == 2
    assert dm.num_train + len(dm.val_set) == 9
    assert next(iter(dm.train_dataloader()))["image"].shape == (2, 1, 28, 28)


def test_corrupt_file_raises_naming_it(class_folder: Path) -> None:
    garbage, _ = corrupt_folder(class_folder)
    dm = ImageDataModule(root=str(class_folder), on_error="raise")
    with pytest.raises(LoadError, match="garbage.png"):
        dm.setup("fit")


@pytest.mark.parametrize("on_error", ["skip", "raise"])
def test_file_broken_after_scan_is_handled_at_load_time(class_folder: Path, on_error: str) -> None:
    dm = ImageDataModule(root=str(class_folder), val_fraction=0.0, batch_size=9, on_error=on_error)
    dm.setup("fit")
    victim = dm.train_set.images.paths[dm.train_set.indices[0]]
    victim.write_bytes(b"no longer a png")
    loader, _ = dm.eval_dataloaders()
    if on_error == "raise":
        with pytest.raises(LoadError, match=victim.name):
            next(iter(loader))
        return
    with pytest.warns(SkippedFileWarning, match=victim.name):
        batch = next(iter(loader))
    assert batch["image"].shape[0] == 9 and dm.skips.count == 1  # replaced by the next sample


def test_missing_root_and_non_directory_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ImageDataModule(root=str(missing)).setup("fit")
    a_file = write_image(tmp_path / "single.png")
    with pytest.raises(ValueError, match="single.png.*not a directory"):
        ImageDataModule(root=str(a_file)).setup("fit")


def test_folder_without_images_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"docs.*\.png"):
        ImageDataModule(root=str(tmp_path)).setup("fit")
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "a.txt").write_text("x")
    with pytest.raises(ValueError, match=r"no file with extension.*flat"):
        ImageDataModule(root=str(flat)).setup("fit")


def test_all_files_corrupt_is_a_clear_error(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / "x" / f"{i}.png").parent.mkdir(exist_ok=True)
        (tmp_path / "x" / f"{i}.png").write_bytes(b"junk" * i)
    with pytest.warns(SkippedFileWarning), pytest.raises(RuntimeError, match=f"all 3 files under.*{tmp_path.name}"):
        ImageDataModule(root=str(tmp_path)).setup("fit")


def test_csv_list_relative_paths_and_class_names(tmp_path: Path) -> None:
    for i in range(6):
        write_image(tmp_path / "imgs" / f"{i}.png", seed=i)
    rows = ["path,label"] + [f"imgs/{i}.png,{'zebra' if i % 2 else 'ant'}" for i in range(6)]
    (tmp_path / "lists").mkdir()
    csv_path = tmp_path / "lists" / "train.csv"
    csv_path.write_text("\n".join(f"../{r}" if i else r for i, r in enumerate(rows)) + "\n")
    dm = ImageDataModule(list=str(csv_path), val_fraction=0.0, batch_size=6)
    dm.setup("fit")
    assert dm.classes == ["ant", "zebra"] and dm.num_train == 6
    batch = next(iter(dm.eval_dataloaders()[0]))
    assert batch["label"].tolist() == [0, 1, 0, 1, 0, 1]


def test_csv_list_int_labels_no_labels_and_bad_line(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png")
    (tmp_path / "ints.csv").write_text("a.png,2\na.png,0\n")
    paths, labels, classes = read_list_csv(tmp_path / "ints.csv")
    assert paths == [tmp_path / "a.png"] * 2 and labels == [2, 0] and classes == ["0", "1", "2"]
    (tmp_path / "bare.csv").write_text("a.png\na.png\n")
    assert read_list_csv(tmp_path / "bare.csv")[1:] == ([-1, -1], [])
    (tmp_path / "bad.csv").write_text("a.png,1\na.png,1,extra\n")
    with pytest.raises(ValueError, match="bad.csv' line 2"):
        read_list_csv(tmp_path / "bad.csv")


def test_unlabeled_flat_folder(tmp_path: Path) -> None:
    for i in range(4):
        write_image(tmp_path / f"{i}.png", seed=i)
    dm = ImageDataModule(root=str(tmp_path), val_fraction=0.25, batch_size=3)
    dm.setup("fit")
    assert not dm.has_labels and dm.num_classes == 0
    assert next(iter(dm.train_dataloader()))["label"].tolist() == [-1, -1, -1]


def test_mnist_source_is_real_digits() -> None:
    dm = ImageDataModule(batch_size=500)
    dm.setup("fit")
    assert dm.source == "mnist" and dm.num_train == 4000 and len(dm.val_set) == 1000 and dm.num_classes == 10
    train, val = dm.eval_dataloaders()
    batches = list(train)
    labels = torch.cat([b["label"] for b in batches])
    assert labels.shape == (4000,) and set(labels.tolist()) == set(range(10))
    assert set(torch.cat([b["label"] for b in val]).tolist()) == set(range(10))
    pixels = dm.denormalize(torch.cat([b["image"] for b in batches]))  # (4000, 1, 28, 28) in [0, 1]
    assert pixels.shape == (4000, 1, 28, 28)
    assert 0.08 < pixels.mean() < 0.2 and (pixels == 0).float().mean() > 0.6 and pixels.max() == 1.0
    normed = torch.cat([b["image"] for b in batches])
    assert abs(normed.mean()) < 0.1 and 0.9 < normed.std() < 1.1  # MNIST default mean/std


def first_batch(dm: ImageDataModule, epoch: int) -> dict[str, torch.Tensor]:
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)
    return next(iter(loader))


def test_seeded_sampler_same_batch_for_any_worker_count() -> None:
    def make(workers: int) -> ImageDataModule:
        dm = ImageDataModule(source="synthetic", synthetic_size=64, batch_size=8, num_workers=workers, seed=3)
        dm.setup("fit")
        return dm

    single, multi = make(0), make(2)
    a, b = first_batch(single, 0), first_batch(multi, 0)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    assert torch.equal(first_batch(single, 0)["image"], a["image"])  # replayable
    c = first_batch(single, 1)
    assert not torch.equal(c["image"], a["image"])
    plain = next(iter(single.eval_dataloaders()[0]))["image"]
    assert not torch.equal(plain, a["image"])  # augmentation is on in training only


def test_seeded_sampler_and_seeded_helper() -> None:
    sampler = SeededSampler(10, seed=1, shuffle=True)
    first = list(sampler)
    assert sorted(i for _, i in first) == list(range(10)) and list(sampler) == first
    sampler.set_epoch(1)
    assert list(sampler) != first
    assert [i for _, i in SeededSampler(5, seed=1, shuffle=False)] == list(range(5))
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    x = seeded((123, 4), lambda i: torch.rand(1) + i)
    assert torch.equal(x, seeded((123, 4), lambda i: torch.rand(1) + i))
    assert torch.equal(torch.rand(1), before)  # the caller's RNG stream is untouched


def test_split_indices() -> None:
    train, val = split_indices(10, val_fraction=0.2, seed=0)
    assert len(train) == 8 and len(val) == 2 and sorted(train + val) == list(range(10))
    assert split_indices(10, val_fraction=0.2, seed=0) == (train, val)
    assert split_indices(10, val_fraction=0.0, seed=0) == (list(range(10)), [])
    with pytest.raises(ValueError, match="val split would be empty"):
        split_indices(2, val_fraction=0.1, seed=0)
    with pytest.raises(ValueError, match="train split would be empty"):
        split_indices(1, val_fraction=0.5, seed=0)


def test_typed_arguments_are_validated() -> None:
    with pytest.raises(TypeError, match="data.hflip"):
        ImageDataModule(hflip="False")
    with pytest.raises(ValueError, match="data.mean must hold 3"):
        ImageDataModule(channels=3, mean=[0.5], std=[0.2, 0.2, 0.2])
    with pytest.raises(ValueError, match="data.std must hold 1"):
        ImageDataModule(std=[0.2, 0.2, 0.2])
    with pytest.raises(ValueError, match="on_error"):
        ImageDataModule(on_error="ignore")
    with pytest.raises(ValueError, match="data.source"):
        ImageDataModule(source="imagenet")


def test_train_split_smaller_than_a_batch_suggests_batch_size() -> None:
    dm = ImageDataModule(source="synthetic", synthetic_size=10, batch_size=16)
    with pytest.raises(ValueError, match="data.batch_size"):
        dm.train_dataloader()


def test_denormalize_inverts_normalisation() -> None:
    dm = ImageDataModule(source="synthetic", synthetic_size=16, channels=3, image_size=[8, 12], batch_size=4)
    batch = next(iter(dm.eval_dataloaders()[0]))
    pixels = dm.denormalize(batch["image"])  # (B, 3, 8, 12)
    raw = dm.train_set.images[dm.train_set.indices[0]].float() / 255  # (3, 8, 12)
    assert torch.allclose(pixels[0], raw, atol=1e-5)
