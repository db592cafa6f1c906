"""Video clips for VideoMAE / MAE-ST: a folder or Kinetics/SSv2-style list of video files, or generated moving-MNIST mp4s.

Pipeline per video: decode with decord (default where it is installed) or PyAV -> K clips of `num_frames`
frames `sampling_rate` apart (random start in train, centred in val/eval) -> per clip: short side resized to a
random size in `short_side` (train; the smallest in val/eval), a train crop by `crop` (datamodules/video/crop.py:
random `image_size` box, VideoMAE's multi-scale crop or MAE-ST's random resized crop) or the centre box (eval),
optional horizontal flip -> [0, 1] -> (x - mean) / std per channel. Batches are dicts
{"video": (B, C, T, H, W) float, "label": (B,) int64, -1 when unlabeled}.

`repeat=K` (MAE-ST's repeated sampling; VideoMAE fine-tuning's `--num_sample`): a video is decoded once and yields
K clips, each with its own start, scale and crop. `batch_size` counts CLIPS: a train batch holds batch_size / K
videos x K clips (batch_size must be a multiple of K); one epoch is one pass over the videos. The lr rule counts
clips unless optim.lr_batch_divisor says otherwise (MAE-ST / VideoMAE V2 recipes: data.repeat, i.e. videos). Evaluation loaders
take one centred clip per video. Augmentation randomness is a pure function of (seed, epoch, position) through
`SeededSampler`, also with K > 1.

Multi-view test (`test_dataloader`, the fine-tuning stage's final score): `test_clips` temporal clips uniformly
spaced over each val video x `test_crops` spatial crops along the long side (VideoMAE's `--test_num_segment 5
--test_num_crop 3` on Kinetics-400): batches {"video": (B*V, C, T, H, W) with V = clips x crops, sample-major and
clip-major inside a sample, "label": (B,), "views": V}; the task averages the V softmax outputs (VideoMAE `merge`).
"""
from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from datamodules.base import SplitDataModule
from datamodules.checks import (
    OnError,
    build_config,
    changed_options,
    check_demo_or_folder,
    check_fields,
    check_val_fraction,
)
from datamodules.errors import FileSubset, SkipCounter, verify_files
from datamodules.indexing import index_class_folder, resolve_source, split_indices
from datamodules.sampling import SeededSampler
from datamodules.video.crop import TrainCrop
from datamodules.video.decode import ClipReader, check_video, default_backend
from datamodules.video.demo import write_demo
from datamodules.video.lists import read_video_list

VIDEO_EXTS = (".mp4", ".webm", ".avi", ".mkv", ".mov")
Backend = Literal["decord", "pyav"]
ShortVideo = Literal["loop", "pad", "skip"]
CropName = Literal["short_side", "multiscale", "resized"]  # datamodules.video.crop.CROPS
DemoLabel = Literal["digit", "direction"]
VideoSourceName = Literal["demo", "folder"]
BACKENDS, SHORT_POLICIES, SOURCES = get_args(Backend), get_args(ShortVideo), get_args(VideoSourceName)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
DEMO_OPTIONS = ("demo_dir", "demo_videos_per_class", "demo_frames", "demo_size", "demo_label", "demo_digit_size")
CROP_OPTIONS = {"crop_scales": "multiscale", "crop_area": "resized", "crop_aspect": "resized"}  # option -> its crop


# ------------------------------------------------------------------------------------------- dataset
def collate_clips(samples: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Videos of K clips each -> one batch of clips: video (B*K, C, T, H, W), label (B*K,)."""
    return {"video": torch.cat([s["video"] for s in samples]), "label": torch.cat([s["label"] for s in samples])}


def collate_views(samples: list[dict]) -> dict[str, Tensor | int]:
    """Videos of V test views each -> {"video": (B*V, C, T, H, W) sample-major, "label": (B,), "views": V}: one label
    per video (the multi-view convention of mae/finetune/tasks.py)."""
    video = torch.stack([s["video"] for s in samples])  # (B, V, C, T, H, W)
    return {"video": video.flatten(0, 1), "label": torch.tensor([int(s["label"]) for s in samples]),
            "views": video.shape[1]}


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


class VideoViewsDataset(FileSubset):
    """The multi-view test of the `indices` subset: item = {"video": (V, C, T, H, W) with V = clips x crops
    (`ClipReader.views`, clip-major), "label": int}; `collate_views` batches them. Deterministic (no draws)."""

    what = "videos"

    def __init__(self, *, paths: Sequence[Path], labels: Sequence[int], indices: Sequence[int], reader: ClipReader,
                 clips: int, crops: int, on_error: str, skips: SkipCounter) -> None:
        super().__init__(labels=labels, indices=indices, on_error=on_error, skips=skips)
        self.paths, self.reader, self.clips, self.crops = list(paths), reader, clips, crops

    def _load(self, index: int) -> Tensor:
        return self.reader.views(self.paths[index], clips=self.clips, crops=self.crops)  # LoadError on a bad file

    def _item(self, index: int, loaded: Tensor) -> dict[str, Tensor | int]:
        return {"video": loaded, "label": self.labels[index]}


# ---------------------------------------------------------------------------------------------- config
@dataclass(kw_only=True, frozen=True)
class VideoDataConfig:
    """The `data` options of VideoDataModule (conf/modality/video.yaml), checked when built: an error names the
    key (`data.<field>`), what it got and what to write. Lists are stored as tuples, paths as str."""

    source: VideoSourceName | None = None  # null: "folder" when root or list is set, else "demo"
    root: str | None = None  # source=folder: one subfolder of mp4/webm/avi/mkv/mov files per class, or a flat folder
    list: str | None = None  # noqa: A003 - source=folder: a Kinetics/SSv2 list of `path label` rows (key `data.list`)
    val_list: str | None = None  # a second list as the whole val (= test) split (Kinetics' val list); no val_fraction
    video_dir: str | None = None  # the folder the list's relative paths start from (null: the list's folder)
    backend: Backend | None = None  # the decoder; null: decord where installed, else pyav
    num_frames: int = 16  # frames per clip, >= 1
    sampling_rate: int = 4  # frames between sampled frames, >= 1
    image_size: int | tuple[int, ...] = 224  # crop size: an int or [H, W]
    short_side: int | tuple[int, ...] | None = None  # int or [min, max] >= crop (train: random, eval: min); null: crop
    channels: int = 3  # must be 3: decoded videos are RGB
    mean: tuple[float, float, float] = IMAGENET_MEAN  # per channel
    std: tuple[float, float, float] = IMAGENET_STD  # per channel, positive
    hflip: bool = False  # random horizontal flips in training
    crop: CropName = "short_side"  # the train crop (datamodules/video/crop.py); eval takes the centre box
    crop_scales: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)  # crop=multiscale: box sides / short side, in (0, 1]
    crop_area: tuple[float, float] = (0.5, 1.0)  # crop=resized: [min, max] share of the frame's area
    crop_aspect: tuple[float, float] = (0.75, 1.3333)  # crop=resized: [min, max] aspect ratio (MAE-ST's)
    repeat: int = 1  # MAE-ST repeated sampling: clips per decoded train video, >= 1
    test_clips: int = 1  # multi-view test: temporal clips per val video, uniformly spaced (VideoMAE K400: 5), >= 1
    test_crops: int = 1  # multi-view test: spatial crops along the long side (3: left/centre/right), >= 1
    short_video: ShortVideo = "loop"  # a video shorter than one clip: loop | pad (last frame) | skip (on_error)
    batch_size: int = 32  # clips per batch, a multiple of repeat
    num_workers: int = 0  # DataLoader worker processes
    val_fraction: float = 0.2  # share of the videos held out as the val split
    seed: int = 0  # the split, the demo videos and the augmentation draws
    on_error: OnError = "skip"  # an unreadable file: "skip" (warn + count in `skips`) or "raise"
    demo_dir: str | None = None  # source=demo: where the videos are written (null: a temp folder keyed by settings)
    demo_videos_per_class: int = 200  # source=demo: videos per class, >= 2
    demo_frames: int = 24  # source=demo: frames per video, >= 1
    demo_size: int = 40  # source=demo: frame side in pixels, >= 8
    demo_label: DemoLabel = "digit"  # source=demo: digit (10 classes) or direction (4 directions of motion)
    demo_digit_size: int | None = 28  # source=demo: digit side in pixels, <= demo_size; null: demo_size / 2
    pin_memory: bool = False  # DataLoader pin_memory

    def __post_init__(self) -> None:
        check_fields(self, minimum={"num_frames": 1, "sampling_rate": 1, "repeat": 1, "test_clips": 1,
                                    "test_crops": 1, "batch_size": 1,
                                    "num_workers": 0, "demo_videos_per_class": 2, "demo_frames": 1,
                                    "demo_size": 8, "demo_digit_size": 1})
        check_val_fraction(self.val_fraction)
        self.resolved_source  # resolve_source checks data.source / data.root / data.list
        if self.backend == "decord" and default_backend() != "decord":
            raise ValueError("data.backend=decord but decord is not installed here (wheels exist for x86-64 "
                             "Linux/Windows): use data.backend=pyav or null")
        sizes = self._sizes()
        if len(sizes) not in (1, 2):
            raise ValueError(f"data.image_size must be an int or [H, W], got {[*sizes]}")
        if min(sizes) < 1:
            raise ValueError(f"data.image_size must be >= 1, got {min(sizes)}")
        short = self._short_sides()
        if len(short) not in (1, 2) or short[0] > short[-1]:
            raise ValueError(f"data.short_side must be an int or [min, max] with min <= max, got {[*short]}")
        if min(short) < min(sizes):
            raise ValueError(f"data.short_side must be >= {min(sizes)}, got {min(short)}")
        if self.channels != 3:
            raise ValueError(f"data.channels must be 3: decoded videos are RGB (got {self.channels!r})")
        for key, values in (("mean", self.mean), ("std", self.std)):
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"data.{key} must be finite numbers, got {[*values]}")
        if min(self.std) <= 0:
            raise ValueError(f"data.std must be positive, got {[*self.std]}")
        self.train_crop  # TrainCrop checks data.crop_scales / data.crop_area / data.crop_aspect
        if self.batch_size % self.repeat:
            raise ValueError(f"data.batch_size={self.batch_size} counts clips and must be a multiple of data.repeat="
                             f"{self.repeat} (each video gives {self.repeat} clips)")
        if self.demo_digit_size is not None and self.demo_digit_size > self.demo_size:
            raise ValueError(f"data.demo_digit_size={self.demo_digit_size} must be at most "
                             f"data.demo_size={self.demo_size}")
        self._check_unread_options()

    def _check_unread_options(self) -> None:
        """An option the chosen source or crop does not read is an error naming it, not silently ignored."""
        check_demo_or_folder(self, source=self.resolved_source, root=self.root, list_file=self.list,
                             demo_options=DEMO_OPTIONS)
        if self.video_dir is not None and self.list is None:
            raise ValueError("data.video_dir is only read with data.list (the folder the list's relative paths start "
                             "from): remove data.video_dir, or give the list as data.list")
        if self.val_list is not None:
            if self.resolved_source != "folder" or (self.list is None and self.root is None):
                raise ValueError("data.val_list (the val split's own list) needs the train videos from data.list or "
                                 "data.root: set one of them, or remove data.val_list")
            if changed_options(self, ("val_fraction",)):
                raise ValueError(f"data.val_fraction={self.val_fraction} is not read with data.val_list (that list is "
                                 "the val split): remove data.val_fraction, or data.val_list to split by fraction")
        for key in changed_options(self, tuple(CROP_OPTIONS)):
            if CROP_OPTIONS[key] != self.crop:
                raise ValueError(f"data.{key} is only read by data.crop={CROP_OPTIONS[key]}, but data.crop="
                                 f"{self.crop}: set data.crop={CROP_OPTIONS[key]}, or remove data.{key}")

    @property
    def resolved_source(self) -> str:
        """"demo" or "folder" (`resolve_source`: null picks folder when root or list is set)."""
        return resolve_source(self.source, root=self.root, list_file=self.list, generated="demo", sources=SOURCES)

    @property
    def resolved_backend(self) -> str:
        return self.backend if self.backend is not None else default_backend()

    def _sizes(self) -> tuple[int, ...]:
        return (self.image_size,) if isinstance(self.image_size, int) else self.image_size

    def _short_sides(self) -> tuple[int, ...]:
        if self.short_side is None:
            return (min(self._sizes()),)
        return (self.short_side,) if isinstance(self.short_side, int) else self.short_side

    @property
    def image_hw(self) -> tuple[int, int]:
        """The crop size (H, W): [S] and S mean (S, S)."""
        return self._sizes()[0], self._sizes()[-1]

    @property
    def short_side_range(self) -> tuple[int, int]:
        """(min, max) of the resized short side; [S] and S mean (S, S), null the crop's short side."""
        return self._short_sides()[0], self._short_sides()[-1]

    @property
    def train_crop(self) -> TrainCrop:
        return TrainCrop(kind=self.crop, scales=self.crop_scales, area=self.crop_area, aspect=self.crop_aspect)


# ---------------------------------------------------------------------------------------- datamodule
class VideoDataModule(SplitDataModule):
    """Video clips for VideoMAE / MAE-ST pre-training and frozen-feature evaluation; the options are
    VideoDataConfig's fields.

    source: "folder" (`root` with one subfolder per class of mp4/webm/avi/mkv/mov files, or a flat unlabeled
    folder; or a `list` file) or "demo" (generated moving-MNIST mp4s under `demo_dir`, default a temp folder).
    """

    unit = "videos"
    cfg: VideoDataConfig

    def __init__(self, **options: object) -> None:
        super().__init__(build_config(VideoDataConfig, options, owner="VideoDataModule"))
        cfg = self.cfg
        self.source, self.backend, self.crop = cfg.resolved_source, cfg.resolved_backend, cfg.train_crop
        self.image_size, self.short_side = cfg.image_hw, cfg.short_side_range
        self._ready = False

    def reader(self) -> ClipReader:
        cfg = self.cfg
        return ClipReader(backend=self.backend, num_frames=cfg.num_frames, sampling_rate=cfg.sampling_rate,
                          image_size=self.image_size, short_side=self.short_side, mean=cfg.mean, std=cfg.std,
                          hflip=cfg.hflip, short=cfg.short_video, crop=self.crop)

    def _index(self) -> tuple[list[Path], list[int], list[str], str]:
        """(paths, labels, classes, what) of the train source (data.root, data.list or the demo)."""
        cfg = self.cfg
        if self.source == "demo":
            digit = cfg.demo_size // 2 if cfg.demo_digit_size is None else cfg.demo_digit_size
            key = (f"{cfg.demo_label}_v{cfg.demo_videos_per_class}_f{cfg.demo_frames}_s{cfg.demo_size}"
                   f"_d{digit}{'_bounce' if cfg.demo_label == 'digit' else ''}_seed{self.seed}")
            folder = Path(cfg.demo_dir) if cfg.demo_dir else Path(tempfile.gettempdir()) / "mae_video_demo" / key
            root = write_demo(folder, videos_per_class=cfg.demo_videos_per_class, frames=cfg.demo_frames,
                              size=cfg.demo_size, label=cfg.demo_label, seed=self.seed,
                              digit_size=cfg.demo_digit_size)
            paths, labels, classes = index_class_folder(root, VIDEO_EXTS)
            return paths, labels, classes, repr(str(root))
        if cfg.root is not None:
            paths, labels, classes = index_class_folder(cfg.root, VIDEO_EXTS)
            return paths, labels, classes, repr(cfg.root)
        paths, labels, classes = read_video_list(cfg.list, video_dir=cfg.video_dir)
        return paths, labels, classes, f"list {cfg.list!r}"

    def _with_val_list(self, paths: list[Path], labels: list[int], classes: list[str]
                       ) -> tuple[list[Path], list[int], list[str], int]:
        """The train source followed by data.val_list's videos, their labels in the train source's classes (a val
        class name the train source lacks is an error naming it); returns (paths, labels, classes, train count)."""
        val_paths, val_labels, val_classes = read_video_list(self.cfg.val_list, video_dir=self.cfg.video_dir)
        names = [val_classes[y] if y >= 0 else None for y in val_labels]
        if all(c == str(i) for i, c in enumerate(classes)) and all(c == str(i) for i, c in enumerate(val_classes)):
            classes = [str(i) for i in range(max(len(classes), len(val_classes)))]  # integer labels: the same ids
        unknown = sorted({n for n in names if n is not None and n not in classes})
        if unknown:
            raise ValueError(f"data.val_list={self.cfg.val_list!r} names class(es) {unknown[:10]} that the train "
                             f"videos do not have (classes: {classes[:10]}{' ...' if len(classes) > 10 else ''})")
        mapped = [classes.index(n) if n is not None else -1 for n in names]
        return [*paths, *val_paths], [*labels, *mapped], classes, len(paths)

    def _prepare(self) -> None:
        if self._ready:
            return
        paths, labels, self._classes, what = self._index()
        n_train = None
        if self.cfg.val_list is not None:
            paths, labels, self._classes, n_train = self._with_val_list(paths, labels, self._classes)
            what = f"{what} and val list {self.cfg.val_list!r}"
        rows = list(range(len(paths)))
        kept, rows = verify_files(paths, rows, lambda p: check_video(p, self.backend), on_error=self.cfg.on_error,
                                  what=what, skips=self.skips)
        paths, labels = kept, [labels[r] for r in rows]
        if n_train is None:
            train_idx, val_idx = split_indices(len(paths), val_fraction=self.cfg.val_fraction, seed=self.seed)
        else:
            train_idx = [i for i, r in enumerate(rows) if r < n_train]
            val_idx = [i for i, r in enumerate(rows) if r >= n_train]
        reader = self.reader()

        def subset(indices: list[int], *, clips: int, train: bool) -> VideoDataset:
            return VideoDataset(paths=paths, labels=labels, indices=indices, reader=reader, clips=clips, train=train,
                                on_error=self.cfg.on_error, skips=self.skips)

        self.train_set = subset(train_idx, clips=self.cfg.repeat, train=True)
        self.train_eval_set = subset(train_idx, clips=1, train=False)
        self.val_set = subset(val_idx, clips=1, train=False)
        self.test_views = VideoViewsDataset(paths=paths, labels=labels, indices=val_idx, reader=reader,
                                            clips=self.cfg.test_clips, crops=self.cfg.test_crops,
                                            on_error=self.cfg.on_error, skips=self.skips)
        self._ready = True

    @property
    def test_views_per_video(self) -> int:
        """V = data.test_clips x data.test_crops views per val video in `test_dataloader`."""
        return self.cfg.test_clips * self.cfg.test_crops

    def test_dataloader(self) -> DataLoader:
        """The fine-tuning stage's final score: the val split as V = test_clips x test_crops views per video
        (`VideoViewsDataset`): batches {"video": (B*V, C, T, H, W), "label": (B,), "views": V} with B =
        max(1, batch_size // V) videos (batch_size counts clips). One view: the val loader (the centred clip)."""
        self._prepare()
        views = self.test_views_per_video
        if views == 1:
            return self.val_dataloader()
        return DataLoader(self.test_views, batch_size=max(1, self.batch_size // views), shuffle=False,
                          drop_last=False, num_workers=self.num_workers, pin_memory=self.pin_memory,
                          persistent_workers=self.num_workers > 0, collate_fn=collate_views)

    def _loader(self, dataset: Dataset, *, sampler: SeededSampler | None = None, drop_last: bool,
                videos_per_batch: int | None = None) -> DataLoader:
        return DataLoader(dataset, batch_size=videos_per_batch or self.batch_size, sampler=sampler,
                          drop_last=drop_last, num_workers=self.num_workers, pin_memory=self.pin_memory,
                          persistent_workers=self.num_workers > 0, collate_fn=collate_clips)

    def fit_batch_to_split(self, world_size: int) -> int:
        """batch_size counts clips (repeat per video): lowered to the videos this rank holds x repeat when fewer."""
        videos = max(1, self.num_train // world_size)
        self.batch_size = min(self.batch_size, videos * self.cfg.repeat)
        return self.batch_size

    def train_dataloader(self) -> DataLoader:
        """batch_size / repeat videos per batch, each giving `repeat` clips; seeded shuffle, drop_last."""
        self._prepare()
        videos = self.batch_size // self.cfg.repeat
        if len(self.train_set) < videos:
            raise ValueError(f"the train split holds {len(self.train_set)} videos, fewer than one batch of "
                             f"{videos} (data.batch_size={self.batch_size} clips / data.repeat={self.cfg.repeat}); "
                             "use a smaller data.batch_size")
        sampler = SeededSampler(len(self.train_set), seed=self.seed, shuffle=True)
        return self._loader(self.train_set, sampler=sampler, drop_last=True, videos_per_batch=videos)


__all__ = ["VideoDataModule", "VideoDataConfig", "VideoViewsDataset", "read_video_list", "collate_clips",
           "collate_views"]
