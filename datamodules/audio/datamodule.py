"""Audio for Audio-MAE: Kaldi log-mel filterbanks of an audio folder / ESC-50-style CSV, or generated demo sounds.

Pipeline per clip: decode (soundfile) -> down-mix to mono -> resample (torchaudio) -> subtract the DC mean
-> `torchaudio.compliance.kaldi.fbank` of the whole file (optionally cached on disk) -> crop / pad to
`frames` frames (random crop in train, centre in val/eval) -> (x - mean) / std with dataset statistics.
Batches are dicts {"fbank": (B, T, F) float, "label": (B,) int64, -1 when unlabeled}. The features are in
datamodules/audio/features.py, the demo sounds in datamodules/audio/demo.py.

Dataset statistics are computed once on the train split (at the first dataloader request, after Lightning
has restored a checkpoint) and saved with the run through `state_dict` / `load_state_dict`, so a resumed
run reuses them instead of recomputing.
"""
from __future__ import annotations

import csv
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from datamodules.audio.demo import write_demo
from datamodules.audio.features import FbankFeatures, check_audio, crop_or_pad
from datamodules.base import SplitDataModule
from datamodules.checks import (
    OnError,
    build_config,
    changed_options,
    check_demo_or_folder,
    check_fields,
    check_val_fraction,
)
from datamodules.errors import FileSubset, SkipCounter, try_load, verify_files
from datamodules.indexing import index_class_folder, resolve_source, split_indices
from datamodules.sampling import SeededSampler

AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3")
AudioSourceName = Literal["demo", "folder"]
SOURCES = get_args(AudioSourceName)
DEMO_OPTIONS = ("demo_dir", "demo_clips_per_class", "demo_seconds")  # read by source=demo only


# -------------------------------------------------------------------------------------------- lists
def read_esc50_csv(path: str | Path, *, audio_dir: str | None) -> tuple[list[Path], list[int], list[int]]:
    """ESC-50-style `filename,target,fold[,...]` CSV (header required; other columns ignored) -> (paths,
    labels, folds). Paths are relative to `audio_dir` (default: the CSV's folder)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"list file {str(path)!r} does not exist or is not a file")
    base = Path(audio_dir).expanduser() if audio_dir else path.parent
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"filename", "target"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"list file {str(path)!r} needs a header with filename,target[,fold]; missing {sorted(missing)}")
        paths, labels, folds = [], [], []
        for n, row in enumerate(reader, start=2):
            try:
                labels.append(int(row["target"]))
                folds.append(int(row["fold"]) if row.get("fold") not in (None, "") else 0)
            except ValueError as err:
                raise ValueError(f"{str(path)!r} line {n}: target/fold must be integers: {err}") from err
            paths.append(base / row["filename"])
    if not paths:
        raise ValueError(f"list file {str(path)!r} holds no entries")
    return paths, labels, folds


# ------------------------------------------------------------------------------------------- dataset
class Normalizer:
    """Shared (mean, std) set once the statistics are known; datasets read it at __getitem__ time."""

    def __init__(self) -> None:
        self.mean: float | None = None
        self.std: float | None = None

    def __call__(self, x: Tensor) -> Tensor:
        if self.mean is None or self.std is None:
            raise RuntimeError("feature statistics are not set yet (AudioDataModule computes them on first use)")
        return (x - self.mean) / self.std


class AudioDataset(FileSubset):
    """The `indices` subset of `paths` as normalised fbank crops; a file that fails raises LoadError
    (on_error="raise") or is skipped with a warning and replaced by the next one (on_error="skip")."""

    what = "clips"

    def __init__(self, *, paths: Sequence[Path], labels: Sequence[int], indices: Sequence[int],
                 features: FbankFeatures, normalize: Normalizer | None, frames: int, random_crop: bool,
                 on_error: str, skips: SkipCounter) -> None:
        super().__init__(labels=labels, indices=indices, on_error=on_error, skips=skips)
        self.paths = list(paths)
        self.features, self.normalize, self.frames, self.random_crop = features, normalize, frames, random_crop

    def _load(self, index: int) -> Tensor:
        return self.features(self.paths[index])  # (T', F); LoadError on a bad file

    def raw(self, position: int) -> Tensor | None:
        """Full-file features of the sample at `position` ((T', F)), None if the file is bad and skipped."""
        return try_load(self.indices[position], self._load, bad=self.bad, on_error=self.on_error, skips=self.skips)

    def _item(self, index: int, loaded: Tensor) -> dict[str, Tensor | int]:
        feats = self.normalize(loaded) if self.normalize is not None else loaded
        return {"fbank": crop_or_pad(feats, self.frames, random=self.random_crop), "label": self.labels[index]}  # (T, F)


# ---------------------------------------------------------------------------------------------- config
@dataclass(kw_only=True, frozen=True)
class AudioDataConfig:
    """The `data` options of AudioDataModule (conf/modality/audio.yaml), checked when built: an error names the
    key (`data.<field>`), what it got and what to write. Paths are stored as str."""

    source: AudioSourceName | None = None  # null: "folder" when root or list is set, else "demo"
    root: str | None = None  # source=folder: one subfolder of wav/flac/ogg/mp3 files per class, or a flat folder
    list: str | None = None  # noqa: A003 - source=folder: an ESC-50-style CSV filename,target[,fold] (key `data.list`)
    audio_dir: str | None = None  # the folder the CSV's filenames are relative to (null: the CSV's folder)
    val_fold: int | None = None  # ESC-50: the fold held out as the val split (null: a data.val_fraction split)
    sample_rate: int = 16000  # Hz every clip is resampled to, >= 1000
    mel_bins: int = 128  # log-mel filterbank bins, >= 1
    frame_length_ms: float = 25.0  # fbank window length, in ms
    frame_shift_ms: float = 10.0  # fbank hop, in ms
    frames: int = 1024  # crop / pad length in frames (one per hop), >= 1
    mean: float | None = None  # fixed feature mean, set with data.std; null (both): computed on the train split
    std: float | None = None  # fixed feature std, positive, set with data.mean
    stats_clips: int = 2000  # computed statistics: at most this many (evenly spaced) train clips, >= 1
    cache_dir: str | None = None  # on-disk feature cache (null: none, except the demo's beside its files)
    batch_size: int = 32  # clips per batch
    num_workers: int = 0  # DataLoader worker processes
    val_fraction: float = 0.2  # share held out as the val split, in [0, 1) (unused with data.val_fold)
    seed: int = 0  # the split, the demo clips and the random crops
    on_error: OnError = "skip"  # an unreadable file: "skip" (warn + count in `skips`) or "raise"
    demo_dir: str | None = None  # source=demo: where the clips are written (null: a temp folder keyed by settings)
    demo_clips_per_class: int = 60  # source=demo: clips per class (5 classes), >= 2
    demo_seconds: float = 3.0  # source=demo: length of every clip, in seconds
    pin_memory: bool = False  # DataLoader pin_memory

    def __post_init__(self) -> None:
        check_fields(self, minimum={"sample_rate": 1000, "mel_bins": 1, "frames": 1, "stats_clips": 1,
                                    "batch_size": 1, "num_workers": 0, "demo_clips_per_class": 2})
        self.resolved_source  # resolve_source checks data.source / data.root / data.list
        for key, value in (("mean", self.mean), ("std", self.std)):
            if value is not None and not math.isfinite(value):
                raise ValueError(f"data.{key} must be a finite number, got {value}")
        if (self.mean is None) != (self.std is None):
            missing, given = ("std", "mean") if self.std is None else ("mean", "std")
            raise TypeError(f"data.{missing} must be a number when data.{given} is set (fixed statistics need both; "
                            f"leave both null to compute them on the train split), got {missing}=None")
        if self.std is not None and self.std <= 0:
            raise ValueError(f"data.std must be positive, got {self.std}")
        check_val_fraction(self.val_fraction)
        self._check_unread_options()

    def _check_unread_options(self) -> None:
        """An option the chosen source or split does not read is an error naming it, not silently ignored."""
        check_demo_or_folder(self, source=self.resolved_source, root=self.root, list_file=self.list,
                             demo_options=DEMO_OPTIONS)
        if self.audio_dir is not None and self.list is None:
            raise ValueError("data.audio_dir is only read with data.list (the folder the CSV's filenames are relative "
                             "to): remove data.audio_dir, or give the CSV as data.list")
        if self.val_fold is not None and changed_options(self, ("val_fraction",)):
            raise ValueError(f"data.val_fraction={self.val_fraction} is not read with data.val_fold={self.val_fold} "
                             "(that fold is the val split): remove data.val_fraction, or data.val_fold to split by "
                             "fraction")
        if self.fixed_stats and changed_options(self, ("stats_clips",)):
            raise ValueError(f"data.stats_clips={self.stats_clips} is not read with fixed data.mean / data.std (no "
                             "statistics are computed): remove data.stats_clips, or data.mean and data.std to compute "
                             "them on the train split")

    @property
    def resolved_source(self) -> str:
        """"demo" or "folder" (`resolve_source`: null picks folder when root or list is set)."""
        return resolve_source(self.source, root=self.root, list_file=self.list, generated="demo", sources=SOURCES)

    @property
    def fixed_stats(self) -> bool:
        """data.mean and data.std are given: never computed, never replaced by a checkpoint's."""
        return self.mean is not None

    @property
    def demo_folder(self) -> Path:
        """Where source=demo writes its clips: data.demo_dir, or a temp folder keyed by the demo settings."""
        if self.demo_dir:
            return Path(self.demo_dir)
        key = f"c{self.demo_clips_per_class}_s{self.demo_seconds}_seed{self.seed}"
        return Path(tempfile.gettempdir()) / "mae_audio_demo" / key


# ---------------------------------------------------------------------------------------- datamodule
class AudioDataModule(SplitDataModule):
    """Audio clips as normalised log-mel spectrograms for Audio-MAE and frozen-feature evaluation; the options are
    AudioDataConfig's fields.

    source: "folder" (`root` with one subfolder per class, or a flat unlabeled folder; or an ESC-50-style CSV
    `list` with `val_fold`) or "demo" (generated sound events written as FLAC/WAV under `demo_dir`, default a
    temp folder); None picks "folder" when root or list is given, else "demo".
    mean/std: fixed feature statistics (both), or None (both) to compute them on the train split (at most
    `stats_clips` clips).
    cache_dir: on-disk feature cache; the demo caches under its own folder when None.
    """

    unit = "clips"
    cfg: AudioDataConfig

    def __init__(self, **options: object) -> None:
        super().__init__(build_config(AudioDataConfig, options, owner="AudioDataModule"))
        cfg = self.cfg
        self.source = cfg.resolved_source
        self.features = FbankFeatures(sample_rate=cfg.sample_rate, mel_bins=cfg.mel_bins,
                                      frame_length_ms=cfg.frame_length_ms, frame_shift_ms=cfg.frame_shift_ms,
                                      cache_dir=cfg.cache_dir)
        self.normalizer = Normalizer()
        if cfg.fixed_stats:
            self.normalizer.mean, self.normalizer.std = cfg.mean, cfg.std
        self.stats_computations = 0
        self._ready = False

    # -------------------------------------------------------------------------------------- indexing
    def _index(self) -> tuple[list[Path], list[int], list[str], list[int] | None]:
        """(paths, labels, classes, folds or None) of the whole source, bad files removed by the pre-scan."""
        cfg, folds = self.cfg, None
        if self.source == "demo":
            root = write_demo(cfg.demo_folder, clips_per_class=cfg.demo_clips_per_class, seconds=cfg.demo_seconds,
                              seed=self.seed)
            if self.features.cache_dir is None:  # the demo's files never change: cache their features beside them
                self.features.cache_dir = root / ".features"
            paths, labels, classes = index_class_folder(root, AUDIO_EXTS)
            what = repr(str(root))
        elif cfg.root is not None:
            paths, labels, classes = index_class_folder(cfg.root, AUDIO_EXTS)
            what = repr(cfg.root)
        else:
            paths, labels, folds = read_esc50_csv(cfg.list, audio_dir=cfg.audio_dir)
            classes = [str(i) for i in range(max(labels) + 1)]
            what = f"list {cfg.list!r}"
        by_path = dict(zip(map(str, paths), folds)) if folds is not None else None
        paths, labels = verify_files(paths, labels, check_audio, on_error=cfg.on_error, what=what, skips=self.skips)
        if by_path is not None:
            folds = [by_path[str(p)] for p in paths]
        return paths, labels, classes, folds

    def _split(self, n: int, folds: list[int] | None) -> tuple[list[int], list[int]]:
        val_fold = self.cfg.val_fold
        if val_fold is None:
            return split_indices(n, val_fraction=self.cfg.val_fraction, seed=self.seed)
        if folds is None:
            raise ValueError("data.val_fold needs an ESC-50-style data.list CSV with a fold column")
        val = [i for i, f in enumerate(folds) if f == val_fold]
        train = [i for i, f in enumerate(folds) if f != val_fold]
        if not val or not train:
            raise ValueError(f"data.val_fold={val_fold} leaves an empty split (folds present: {sorted(set(folds))})")
        perm = torch.randperm(len(val), generator=torch.Generator().manual_seed(self.seed)).tolist()
        return train, [val[i] for i in perm]

    def _prepare(self) -> None:
        if self._ready:
            return
        paths, labels, self._classes, folds = self._index()
        train_idx, val_idx = self._split(len(paths), folds)

        def subset(indices: list[int], random_crop: bool, normalize: bool = True) -> AudioDataset:
            return AudioDataset(paths=paths, labels=labels, indices=indices, features=self.features,
                                normalize=self.normalizer if normalize else None, frames=self.cfg.frames,
                                random_crop=random_crop, on_error=self.cfg.on_error, skips=self.skips)

        self.train_set = subset(train_idx, True)
        self.train_eval_set = subset(train_idx, False)
        self.val_set = subset(val_idx, False)
        self._ready = True

    # ------------------------------------------------------------------------------- normalisation
    def compute_stats(self) -> tuple[float, float]:
        """Mean and std of the full-file features of (at most `stats_clips` evenly spaced) train clips."""
        self._prepare()
        ds = self.train_eval_set
        step = max(1, len(ds) // self.cfg.stats_clips)
        total, total_sq, count = 0.0, 0.0, 0
        for position in range(0, len(ds), step):
            feats = ds.raw(position)
            if feats is None:
                continue
            f = feats.double()
            total, total_sq, count = total + f.sum().item(), total_sq + (f * f).sum().item(), count + f.numel()
        if count == 0:
            raise RuntimeError("every train clip failed to load: no feature statistics")
        mean = total / count
        std = max((total_sq / count - mean * mean), 0.0) ** 0.5
        self.stats_computations += 1
        return mean, max(std, 1e-5)

    def ensure_stats(self) -> None:
        if self.normalizer.mean is None:
            self.normalizer.mean, self.normalizer.std = self.compute_stats()

    def state_dict(self) -> dict:
        """Saved in Lightning checkpoints: the feature statistics and the settings they belong to."""
        return {"feature_mean": self.normalizer.mean, "feature_std": self.normalizer.std,
                "feature_settings": self.features.settings}

    def load_state_dict(self, state: dict) -> None:
        if self.cfg.fixed_stats or state.get("feature_mean") is None:
            return
        if state.get("feature_settings") != self.features.settings:
            return  # statistics of other features: recompute
        self.normalizer.mean, self.normalizer.std = float(state["feature_mean"]), float(state["feature_std"])

    # ----------------------------------------------------------------------------------- dataloaders
    def _loader(self, dataset: Dataset, *, sampler: SeededSampler | None = None, drop_last: bool) -> DataLoader:
        self.ensure_stats()  # after a checkpoint restore: reuse, never recompute
        return super()._loader(dataset, sampler=sampler, drop_last=drop_last)


__all__ = ["AudioDataConfig", "AudioDataModule", "AudioDataset", "read_esc50_csv"]
