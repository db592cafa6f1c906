"""Bad files are counted over every worker (data/skipped in metrics.json) and can stop a run; folders are indexed as
regular files, each once; 16-bit / 32-bit / float images are rescaled, never saturated; image options that a
source would not read are errors. Every file here is real (PIL, numpy, os.symlink, os.mkfifo); nothing is patched."""
from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import FAST, ROOT, compose_cfg, fit_and_read
from PIL import Image

from datamodules.errors import LoadError, SkipCounter, SkippedFileWarning, read_skip_log, skip_kind
from datamodules.image.datamodule import ImageDataModule
from datamodules.image.decode import FileImages
from datamodules.indexing import UNLABELED, IndexingWarning, index_class_folder
from mae.train.skips import TooManySkippedFiles


# ------------------------------------------------------------------------------------------------ files
def write_png(path: Path, seed: int, size: int = 28) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)).save(path)
    return path


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """A PNG's (type, body) chunks."""
    pos, out = 8, []
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        out.append((data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]))
        pos += 12 + n
    return out


def write_decode_corrupt_png(path: Path, seed: int) -> Path:
    """A PNG whose compressed pixel data is damaged but whose chunk CRCs are recomputed: `Image.verify()` (the
    pre-scan) passes, decoding fails ("unrecognized data stream contents": OSError)."""
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (28, 28), dtype=np.uint8)).save(buf, "PNG")
    out = buf.getvalue()[:8]
    for kind, body in _chunks(buf.getvalue()):
        if kind == b"IDAT":
            body = body[:len(body) // 2] + bytes(b ^ 0xFF for b in body[len(body) // 2:len(body) // 2 + 40]) + \
                body[len(body) // 2 + 40:]
        out += struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out)
    with Image.open(path) as im:
        im.verify()  # the pre-scan passes ...
    with pytest.raises(OSError), Image.open(path) as im:
        im.convert("L")  # ... decoding fails
    return path


def corrupt_class_folder(root: Path, *, good: int, corrupt: int) -> list[Path]:
    """root/a and root/b with `good` real PNGs each; `corrupt` decode-corrupt PNGs spread over both classes."""
    for i in range(good):
        write_png(root / "a" / f"a{i:02d}.png", seed=i)
        write_png(root / "b" / f"b{i:02d}.png", seed=100 + i)
    return [write_decode_corrupt_png(root / "ab"[i % 2] / f"bad{i:02d}.png", seed=200 + i) for i in range(corrupt)]


# ------------------------------------------------------------------------------ bad files: counted, threshold
def test_worker_skips_reach_the_log_and_are_counted_once(tmp_path: Path) -> None:
    bad = corrupt_class_folder(tmp_path / "data", good=6, corrupt=3)
    dm = ImageDataModule(root=str(tmp_path / "data"), num_workers=2, batch_size=3, val_fraction=0.0)
    dm.setup("fit")
    dm.skips.set_log_dir(tmp_path / "skipped")
    for _ in range(2):  # two loaders: fresh workers skip the same files again (their warnings stay in the workers)
        assert sum(len(b["label"]) for b in dm.eval_dataloaders()[0]) == 15
    assert dm.skips.count == 0  # the main process decoded nothing: every skip happened in a worker
    records = read_skip_log(tmp_path / "skipped")
    assert sorted(Path(r.path).name for r in records) == sorted(p.name for p in bad)
    assert {r.kind for r in records} == {"OSError"} and dm.skips.indexed == 15


def test_set_log_dir_writes_the_pre_scan_skips(tmp_path: Path) -> None:
    skips = SkipCounter()
    with pytest.warns(SkippedFileWarning):
        skips.skip("/x/a.png", "UnidentifiedImageError: cannot identify image file", kind="UnidentifiedImageError")
    assert read_skip_log(tmp_path / "log") == []
    skips.set_log_dir(tmp_path / "log")
    with pytest.warns(SkippedFileWarning):
        skips.skip("/x/b\tc.png", "no audio samples (empty file)")  # a tab in the path survives the TSV
    assert [(r.path, r.kind) for r in read_skip_log(tmp_path / "log")] == [
        ("/x/a.png", "UnidentifiedImageError"), ("/x/b\tc.png", "no_audio_samples")]
    assert skip_kind("pyav: InvalidDataError: bad") == "InvalidDataError" and skip_kind("12 frames, short") == "frames"


@pytest.mark.e2e
def test_run_counts_pre_scan_and_worker_skips_in_metrics(tmp_path: Path, capsys) -> None:
    root = tmp_path / "data"
    corrupt_class_folder(root, good=12, corrupt=3)
    (root / "a" / "garbage.png").write_bytes(np.random.default_rng(0).bytes(300))  # fails the pre-scan
    run_dir = tmp_path / "run"
    cfg = compose_cfg([*FAST, f"data.root={root}", "data.num_workers=2", "data.batch_size=4",
                       "data.val_fraction=0.25"], run_dir)
    _, saved = fit_and_read(cfg, run_dir)
    assert saved["data/skipped"] == 4.0
    assert saved["data/skipped/OSError"] == 3.0 and saved["data/skipped/UnidentifiedImageError"] == 1.0
    out = capsys.readouterr().out
    assert "data/skipped/OSError" in out and "data/skipped " in out


@pytest.mark.e2e
def test_max_fraction_stops_the_run_naming_count_option_and_files(tmp_path: Path) -> None:
    root = tmp_path / "data"
    bad = corrupt_class_folder(root, good=12, corrupt=6)  # 6 of 30 fail only when decoded, in the workers
    run_dir = tmp_path / "run"
    cfg = compose_cfg([*FAST, f"data.root={root}", "data.num_workers=2", "data.batch_size=4", "eval.enabled=false",
                       "objective=val/loss", "callbacks.skipped_files.max_fraction=0.05"], run_dir)
    from mae.train.runner import run

    with pytest.raises(TooManySkippedFiles) as err:
        run(cfg)
    message = str(err.value)
    assert "of 30 files (" in message and "callbacks.skipped_files.max_fraction=0.05" in message
    assert any(p.name in message for p in bad) and "OSError" in message
    assert not (run_dir / "metrics.json").exists()


@pytest.mark.e2e
def test_max_fraction_stops_every_ddp_rank_together(tmp_path: Path) -> None:
    root = tmp_path / "data"
    corrupt_class_folder(root, good=12, corrupt=4)
    proc = subprocess.run(
        [sys.executable, "train.py", *FAST, "trainer=ddp_cpu", f"data.root={root}", "data.num_workers=1",
         "data.batch_size=4", "eval.enabled=false", "objective=val/loss", "callbacks.skipped_files.max_fraction=0.05",
         "callbacks.skipped_files.check_every_n_steps=1", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode != 0
    # rank 0 decides, both ranks raise (no rank is left waiting in a collective)
    assert proc.stderr.count("TooManySkippedFiles: ") == 2, proc.stderr[-3000:]
    assert "callbacks.skipped_files.max_fraction=0.05" in proc.stderr


# -------------------------------------------------------------------------------- indexing: regular files once
def write_names(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"x")


def test_symlink_loops_index_each_file_once_with_its_label(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_names(root / "a", [f"{i}.png" for i in range(20)])
    write_names(root / "b" / "deep", [f"{i}.png" for i in range(20)])
    os.symlink(root, root / "a" / "root_again")  # a class folder holding its parent
    os.symlink("..", root / "b" / "deep" / "up")  # a subfolder holding its class folder
    paths, labels, classes = index_class_folder(root, (".png",))  # before: 18,040 paths
    assert classes == ["a", "b"] and len(paths) == 40 and len(set(paths)) == 40
    assert all(p.parent == root / "a" for p, y in zip(paths, labels) if y == 0) and labels.count(0) == 20
    assert all(p.parent == root / "b" / "deep" for p, y in zip(paths, labels) if y == 1) and labels.count(1) == 20


def test_symlink_to_another_class_folder_is_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_names(root / "a", [f"{i}.png" for i in range(20)])
    write_names(root / "b", [f"{i}.png" for i in range(20)])
    os.symlink(root / "a", root / "b" / "from_a")  # class b holding class a: a's files are not b's
    paths, labels, _ = index_class_folder(root, (".png",))
    assert len(paths) == 40 and labels == [0] * 20 + [1] * 20 and all(p.parent.name == "ab"[y] for p, y in
                                                                      zip(paths, labels))


def test_file_reachable_from_two_classes_belongs_to_the_first(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_names(root / "a", ["x.png", "y.png"])
    write_names(root / "b", ["z.png"])
    os.symlink(root / "a" / "x.png", root / "b" / "x_link.png")
    os.link(root / "a" / "y.png", root / "b" / "y_hard.png")
    with pytest.warns(IndexingWarning, match="2 file.s. under .* reachable by more than one path"):
        paths, labels, _ = index_class_folder(root, (".png",))
    assert [(p.name, y) for p, y in zip(paths, labels)] == [("x.png", 0), ("y.png", 0), ("z.png", 1)]


def test_flat_folder_with_a_symlink_to_itself_stays_unlabeled(tmp_path: Path) -> None:
    write_names(tmp_path, [f"{i}.png" for i in range(40)])
    os.symlink(".", tmp_path / "loop")
    paths, labels, classes = index_class_folder(tmp_path, (".png",))
    assert len(paths) == 40 and classes == [] and set(labels) == {UNLABELED}


def _finishes(work, fifos: list[Path], timeout: float = 30.0) -> dict:
    """Run work() in a thread; if it is still blocked after `timeout` (a FIFO opened for reading), release the FIFOs
    (a writer opens and closes them) and report it."""
    result: dict = {}

    def target() -> None:
        try:
            result["value"] = work()
        except Exception as err:  # noqa: BLE001 - reported to the test, not lost in the thread
            result["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        for fifo in fifos:
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        thread.join(5)
        pytest.fail(f"still running after {timeout}s: a FIFO was opened")
    if "error" in result:
        raise result["error"]
    return result


def test_fifo_named_png_is_not_indexed_and_nothing_hangs(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for i in range(4):
        write_png(root / "a" / f"{i}.png", seed=i)
        write_png(root / "b" / f"{i}.png", seed=10 + i)
    os.mkfifo(root / "a" / "pipe.png")
    flat = tmp_path / "flat"
    for i in range(4):
        write_png(flat / f"{i}.png", seed=i)
    os.mkfifo(flat / "pipe.png")

    def prepare(folder: Path) -> list[Path]:
        dm = ImageDataModule(root=str(folder), val_fraction=0.0, batch_size=2)
        dm.setup("fit")
        return dm.train_set.images.paths

    for folder, n in ((root, 8), (flat, 4)):
        paths = _finishes(lambda folder=folder: prepare(folder), [folder / "a" / "pipe.png", folder / "pipe.png"])
        assert len(paths["value"]) == n and not any(p.name == "pipe.png" for p in paths["value"])
    with pytest.warns(IndexingWarning, match="1 entry .* no regular file.*pipe.png"):
        index_class_folder(root, (".png",))


def test_fifo_in_a_csv_list_is_skipped_without_opening_it(tmp_path: Path) -> None:
    for i in range(3):
        write_png(tmp_path / f"{i}.png", seed=i)
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "list.csv").write_text("0.png\n1.png\npipe.png\n2.png\n")

    def prepare() -> ImageDataModule:
        dm = ImageDataModule(list=str(tmp_path / "list.csv"), val_fraction=0.0, batch_size=2)
        dm.setup("fit")
        return dm

    dm = _finishes(prepare, [tmp_path / "pipe.png"])["value"]
    assert dm.num_train == 3 and [r.kind for r in dm.skips.records] == ["NotRegularFileError"]
    assert "FIFO" in dm.skips.records[0].reason


# ---------------------------------------------------------------------------------- 16-bit and float images
def load_one(path: Path, mode: str = "L") -> np.ndarray:
    return FileImages([path], mode=mode).load(0).numpy()  # (C, h, w) uint8


def test_16bit_png_and_32bit_tiff_are_rescaled_not_saturated(tmp_path: Path) -> None:
    values = np.random.default_rng(0).integers(0, 65536, (12, 10)).astype(np.uint16)  # (h, w)
    values[0, :3] = [0, 257 * 100, 65535]
    Image.fromarray(values).save(tmp_path / "deep.png")
    Image.fromarray(values.astype(np.int32)).save(tmp_path / "deep.tif")  # mode "I"
    assert Image.open(tmp_path / "deep.png").mode == "I;16" and Image.open(tmp_path / "deep.tif").mode == "I"
    expected = ((values.astype(np.int64) + 128) // 257).astype(np.uint8)  # round(v / 257)
    for name in ("deep.png", "deep.tif"):
        got = load_one(tmp_path / name)
        assert got.shape == (1, 12, 10) and np.array_equal(got[0], expected), name
        assert got[0, 0, :3].tolist() == [0, 100, 255]
    rgb = load_one(tmp_path / "deep.png", "RGB")
    assert rgb.shape == (3, 12, 10) and all(np.array_equal(c, expected) for c in rgb)


def test_float_tiff_in_unit_range_is_scaled_to_255(tmp_path: Path) -> None:
    values = np.random.default_rng(1).random((9, 7)).astype(np.float32)
    values[0, :3] = [0.0, 0.5, 1.0]
    Image.fromarray(values).save(tmp_path / "float.tif")
    got = load_one(tmp_path / "float.tif")[0]
    assert np.array_equal(got, np.floor(values.astype(np.float64) * 255 + 0.5).astype(np.uint8))
    assert got[0, :3].tolist() == [0, 128, 255]


def test_out_of_range_images_are_skipped_naming_file_and_range(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for i in range(4):
        write_png(root / f"{i}.png", seed=i)
    Image.fromarray(np.linspace(-2, 1000, 64, dtype=np.float32).reshape(8, 8)).save(root / "wide.tif")
    nan = np.zeros((8, 8), np.float32)
    nan[3, 3] = np.nan
    Image.fromarray(nan).save(root / "nan.tif")
    Image.fromarray(np.full((8, 8), 70000, np.int32)).save(root / "big.tif")
    dm = ImageDataModule(root=str(root), val_fraction=0.0, batch_size=7)
    with pytest.warns(SkippedFileWarning) as record:
        list(dm.eval_dataloaders()[0])
    text = " ".join(str(w.message) for w in record)
    assert "wide.tif" in text and "span [-2, 1000], outside [0, 1]" in text
    assert "big.tif" in text and "[70000, 70000], outside the 16-bit range" in text
    assert sorted((Path(r.path).name, r.kind) for r in dm.skips.records) == [
        ("big.tif", "out_of_range"), ("nan.tif", "non_finite"), ("wide.tif", "out_of_range")]
    with pytest.raises(LoadError, match="wide.tif.*outside"):
        FileImages([root / "wide.tif"], mode="L").load(0)


# ------------------------------------------------------------------------------ options a source would not read
def test_root_and_list_together_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"exactly one of data\.root and data\.list.*set data\.list=null"):
        ImageDataModule(root=str(tmp_path), list=str(tmp_path / "x.csv"))


@pytest.mark.parametrize("options,source", [({}, "mnist"), ({"root": "/data"}, "folder")])
def test_synthetic_size_without_the_synthetic_source_is_an_error(options: dict, source: str) -> None:
    with pytest.raises(ValueError, match=rf"data\.synthetic_size=64 is only read by data\.source='synthetic', "
                                         rf"not '{source}'; remove it or set data\.source=synthetic"):
        ImageDataModule(synthetic_size=64, **options)
    assert ImageDataModule(source="synthetic", synthetic_size=64).cfg.synthetic_size == 64

