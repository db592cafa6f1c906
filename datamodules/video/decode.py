"""Video decoding: decord (default) or PyAV, the clip sampling plan, and `ClipReader` (one file -> clips)."""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from datamodules.errors import LoadError
from datamodules.video.crop import TrainCrop

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


def clip_starts(num_video_frames: int, span: int, clips: int, *, random: bool, spread: bool = False) -> Tensor:
    """(K,) first-frame indices of K clips covering `span` frames: uniform random (train), centred (val / eval), or
    `spread` (multi-view test): K starts uniformly spaced from the first frame to the last possible one,
    int(k x room / (K - 1)) as VideoMAE's test (`temporal_start = int(chunk_nb * temporal_step)`; one clip: centred)."""
    room = max(num_video_frames - span, 0)
    if random:
        return torch.randint(0, room + 1, (clips,))
    if spread and clips > 1:
        return torch.tensor([int(k * room / (clips - 1)) for k in range(clips)], dtype=torch.int64)
    return torch.full((clips,), room // 2, dtype=torch.int64)


def clip_indices(num_video_frames: int, *, num_frames: int, sampling_rate: int, clips: int, random: bool,
                 short: str, path: str | Path, spread: bool = False) -> Tensor:
    """(K, T) frame indices: T = num_frames frames `sampling_rate` apart per clip (starts: `clip_starts`). A video
    shorter than one clip ((T - 1) * rate + 1 frames) is looped (`short="loop"`: indices wrap around), padded with
    its last frame (`"pad"`) or refused (`"skip"`: LoadError, then the on_error policy applies)."""
    span = (num_frames - 1) * sampling_rate + 1
    offsets = torch.arange(num_frames) * sampling_rate  # (T,)
    if num_video_frames < span and short == "skip":
        raise LoadError(path, f"{num_video_frames} frames, shorter than one clip of {span} (data.num_frames="
                              f"{num_frames} x data.sampling_rate={sampling_rate}; data.short_video=skip)")
    index = clip_starts(num_video_frames, span, clips, random=random, spread=spread)[:, None] + offsets  # (K, T)
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

    def views(self, path: str | Path, *, clips: int, crops: int) -> Tensor:
        """The multi-view test of one file: (clips x crops, C, T, H, W) normalised, clip-major (view k * crops + j is
        temporal clip k, spatial crop j). Clips: `clip_starts(spread=True)`; crops: `view_box` along the long side
        (3 = left / centre / right, or top / centre / bottom for a portrait video: VideoMAE's test_num_crop)."""
        plan = lambda n: clip_indices(n, num_frames=self.num_frames, sampling_rate=self.sampling_rate,  # noqa: E731
                                      clips=clips, random=False, short=self.short, path=path, spread=True)
        frames = self.read(path, plan)  # (K, T, H, W, 3) uint8
        out = []
        for clip in frames:
            x = self.resized(clip, short=self.short_side[0])  # (T, 3, H', W')
            size = (x.shape[-2], x.shape[-1])
            for j in range(crops):
                top, left, bh, bw = view_box(size, self.image_size, j, crops)
                out.append(x[:, :, top : top + bh, left : left + bw].clamp(0, 1).transpose(0, 1))  # (3, T, h, w)
        return (torch.stack(out) - self.mean) / self.std  # (K * S, 3, T, h, w)

    def resized(self, clip: Tensor, *, short: int) -> Tensor:
        """(T, H, W, 3) uint8 -> (T, 3, H', W') in [0, 1], the short side resized to `short` (never below the crop)."""
        x = clip.permute(0, 3, 1, 2).float() / 255.0  # (T, 3, H, W)
        h, w = x.shape[-2:]
        size = (max(short, round(h * short / min(h, w))), max(short, round(w * short / min(h, w))))
        ch, cw = self.image_size
        size = (max(size[0], ch), max(size[1], cw))  # never smaller than the crop
        if size != (h, w):
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        return x

    def spatial(self, clip: Tensor, *, train: bool) -> Tensor:
        """(T, H, W, 3) uint8 -> (3, T, h, w) in [0, 1]: short side resized, then cropped (train: the `crop` policy's
        box, resized to image_size; eval: the centre box), maybe flipped."""
        lo, hi = self.short_side
        short = int(torch.randint(lo, hi + 1, ())) if train and hi > lo else lo
        x = self.resized(clip, short=short)  # (T, 3, H', W')
        size = (x.shape[-2], x.shape[-1])
        ch, cw = self.image_size
        top, left, bh, bw = self.crop.box(size, (ch, cw)) if train else ((size[0] - ch) // 2, (size[1] - cw) // 2, ch, cw)
        x = x[:, :, top : top + bh, left : left + bw]
        if (bh, bw) != (ch, cw):  # multiscale / resized boxes
            x = F.interpolate(x, size=(ch, cw), mode="bilinear", antialias=True, align_corners=False)
        if train and self.hflip and bool(torch.rand(()) < 0.5):
            x = x.flip(-1)
        return x.clamp(0, 1).transpose(0, 1).contiguous()  # (3, T, h, w)


def view_box(size: tuple[int, int], out: tuple[int, int], index: int, count: int) -> tuple[int, int, int, int]:
    """(top, left, h, w) of test crop `index` of `count` in a frame of `size` (H, W) >= `out` (h, w): the boxes are
    uniformly spaced along the long side (W, or H for a portrait frame; `int(index x step)` with step = (long - crop)
    / (count - 1), as VideoMAE's test `spatial_start`) and centred on the short side; one crop is the centre box."""
    (h, w), (ch, cw) = size, out
    along_h = h > w
    room = (h - ch) if along_h else (w - cw)
    offset = int(index * room / (count - 1)) if count > 1 else room // 2
    centre = (w - cw) // 2 if along_h else (h - ch) // 2
    return (offset, centre, ch, cw) if along_h else (centre, offset, ch, cw)
