"""Audio for Audio-MAE: Kaldi log-mel filterbanks of an audio folder, an ESC-50-style or AudioSet-style (multi-label)
CSV, or generated demo sounds.

Pipeline per clip: decode (soundfile) -> down-mix to mono -> resample (torchaudio) -> subtract the DC mean
-> in the train split with `roll_mag_aug`, Audio-MAE's waveform roll + gain (`features.roll_mag_aug`; the features are
then computed afresh) -> `torchaudio.compliance.kaldi.fbank` of the whole file (optionally cached on disk) -> the
normalisation `norm` with dataset statistics, crop / pad to `frames` frames (random crop in train, centre in
val/eval) and, in the train split only, SpecAugment when `freqm` / `timem` > 0 (Audio-MAE's fine-tuning: one
frequency band and one time band set to 0), in the order `norm` names:
  norm=standard (default): (x - mean) / std, then crop / pad and SpecAugment (padding and bands are 0 = the mean);
  norm=audiomae: crop / pad and SpecAugment of the raw log-mel (padding and bands are raw 0), then
    (x - mean) / (2 std): Audio-MAE's dataset.py `__getitem__`, `fbank = (fbank - self.norm_mean) / (self.norm_std * 2)`.
Batches are dicts {"fbank": (B, T, F) float, "label": (B,) int64, -1 when unlabeled}; a multi-label CSV adds
"labels": (B, K) multi-hot float, and "label" is then the first positive class (the lowest index, as Audio-MAE's
`calculate_stats` takes argmax of the target), -1 for a clip without one. The features are in
datamodules/audio/features.py, the demo sounds in datamodules/audio/demo.py.

Multi-label CSV (AudioSet; `read_multilabel_csv`): a header with a path column (`path` or `filename`) and `labels`,
the class names of a clip in one cell separated by `label_delimiter` (default ",": AudioSet's `positive_labels`
and Audio-MAE's / AST's `labels` field hold comma-separated mids, "/m/09x0r,/m/05zppz", so the CSV cell is
quoted), e.g.

    path,labels
    clips/YTID1.flac,"/m/09x0r,/m/05zppz"

The classes are those of `classes` (AudioSet's class_labels_indices.csv, `index,mid,display_name`: the mids in
index order; or a text file of one name per line), or else the sorted names found in the lists; a name outside
`classes` is an error naming the row.

Dataset statistics are computed once on the train split (at the first dataloader request, after Lightning
has restored a checkpoint) and saved with the run through `state_dict` / `load_state_dict`, so a resumed
run reuses them instead of recomputing.
"""
from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from datamodules.audio.dataset import STD_SCALE, AudioDataset, AudioNorm, Normalizer
from datamodules.audio.demo import write_demo
from datamodules.audio.features import FbankFeatures, SpecAugment, check_audio, roll_mag_aug
from datamodules.audio.lists import (
    class_sets,
    esc50_classes,
    is_multilabel_csv,
    read_class_names,
    read_esc50_csv,
    read_multilabel_csv,
)
from datamodules.base import SplitDataModule
from datamodules.checks import (
    OnError,
    build_config,
    changed_options,
    check_demo_or_folder,
    check_fields,
    check_val_fraction,
)
from datamodules.errors import verify_files
from datamodules.indexing import index_class_folder, resolve_source, split_indices
from datamodules.sampling import SeededSampler

AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3")
AudioSourceName = Literal["demo", "folder"]
SOURCES = get_args(AudioSourceName)
DEMO_OPTIONS = ("demo_dir", "demo_clips_per_class", "demo_seconds")  # read by source=demo only


@dataclass
class AudioIndex:
    """The clips of a source: paths, single labels (-1 = none), per-clip class sets (multi-label CSVs, else None),
    class names, ESC-50 folds (else None) and, with data.val_list, how many leading clips are the train list's."""

    paths: list[Path]
    labels: list[int]
    label_sets: list[list[int]] | None
    classes: list[str]
    folds: list[int] | None = None
    num_train: int | None = None

    def select(self, rows: Sequence[int]) -> AudioIndex:
        """The clips at `rows` (e.g. those that passed the pre-scan), with num_train recounted."""
        pick = lambda xs: None if xs is None else [xs[r] for r in rows]  # noqa: E731
        num_train = None if self.num_train is None else sum(r < self.num_train for r in rows)
        return AudioIndex([self.paths[r] for r in rows], [self.labels[r] for r in rows], pick(self.label_sets),
                          self.classes, pick(self.folds), num_train)


# ---------------------------------------------------------------------------------------------- config
@dataclass(kw_only=True, frozen=True)
class AudioDataConfig:
    """The `data` options of AudioDataModule (conf/modality/audio.yaml), checked when built: an error names the
    key (`data.<field>`), what it got and what to write. Paths are stored as str."""

    source: AudioSourceName | None = None  # null: "folder" when root or list is set, else "demo"
    root: str | None = None  # source=folder: one subfolder of wav/flac/ogg/mp3 files per class, or a flat folder
    list: str | None = None  # noqa: A003 - source=folder: an ESC-50-style CSV filename,target[,fold] or a multi-label
    # CSV path,labels (AudioSet; module docstring) (key `data.list`)
    audio_dir: str | None = None  # the folder the CSV's filenames are relative to (null: the CSV's folder)
    val_fold: int | None = None  # ESC-50: the fold held out as the val split (null: a data.val_fraction split)
    sample_rate: int = 16000  # Hz every clip is resampled to, >= 1000
    mel_bins: int = 128  # log-mel filterbank bins, >= 1
    frame_length_ms: float = 25.0  # fbank window length, in ms
    frame_shift_ms: float = 10.0  # fbank hop, in ms
    frames: int = 1024  # crop / pad length in frames (one per hop), >= 1
    freqm: int = 0  # train split: SpecAugment frequency band of up to freqm bins (Audio-MAE AS-2M: 48), 0 = off
    timem: int = 0  # train split: SpecAugment time band of up to timem frames (Audio-MAE AS-2M: 192), 0 = off
    val_list: str | None = None  # a second CSV (same kind) as the whole val (= test) split, e.g. AudioSet's eval set
    classes: str | None = None  # multi-label CSV: the class list file (AudioSet's class_labels_indices.csv); null:
    # the sorted names found in data.list (and data.val_list)
    label_delimiter: str = ","  # multi-label CSV: what separates the class names in a labels cell
    mean: float | None = None  # fixed feature mean, set with data.std; null (both): computed on the train split
    std: float | None = None  # fixed feature std, positive, set with data.mean
    norm: AudioNorm = "standard"  # standard: (x - mean) / std before crop / pad; audiomae: (x - mean) / (2 std) after
    # crop / pad and SpecAugment (Audio-MAE's dataset.py; module docstring)
    roll_mag_aug: bool = False  # train split: Audio-MAE's waveform roll + gain (features.roll_mag_aug), features
    # computed afresh (not cached) for train clips
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
                                    "batch_size": 1, "num_workers": 0, "demo_clips_per_class": 2, "freqm": 0,
                                    "timem": 0})
        if self.freqm > self.mel_bins:
            raise ValueError(f"data.freqm={self.freqm} must be at most data.mel_bins={self.mel_bins} (the widest "
                             "frequency band SpecAugment may hide)")
        if self.timem > self.frames:
            raise ValueError(f"data.timem={self.timem} must be at most data.frames={self.frames} (the widest time band "
                             "SpecAugment may hide)")
        if not self.label_delimiter:
            raise ValueError("data.label_delimiter must be a non-empty string (e.g. ',' or ';')")
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
        if self.val_list is not None:
            if self.list is None:
                raise ValueError("data.val_list (the val split's own CSV) needs the train clips as a CSV in data.list: "
                                 "set data.list, or remove data.val_list")
            if self.val_fold is not None:
                raise ValueError(f"data.val_fold={self.val_fold} and data.val_list both choose the val split: keep one")
            if changed_options(self, ("val_fraction",)):
                raise ValueError(f"data.val_fraction={self.val_fraction} is not read with data.val_list (that CSV is "
                                 "the val split): remove data.val_fraction, or data.val_list to split by fraction")
        for key in changed_options(self, ("classes", "label_delimiter")):
            if self.list is None:
                raise ValueError(f"data.{key} is only read with a multi-label CSV in data.list (path,labels): remove "
                                 f"data.{key}, or give the CSV as data.list")
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
        self.normalizer = Normalizer(STD_SCALE[cfg.norm])
        if cfg.fixed_stats:
            self.normalizer.mean, self.normalizer.std = cfg.mean, cfg.std
        self.stats_computations = 0
        self._label_sets: list[list[int]] | None = None
        self._ready = False

    # -------------------------------------------------------------------------------------- indexing
    def _read_lists(self) -> AudioIndex:
        """data.list (and data.val_list after it): an ESC-50-style or a multi-label CSV, both lists of one kind."""
        cfg = self.cfg
        files = [cfg.list] + ([cfg.val_list] if cfg.val_list is not None else [])
        kinds = [is_multilabel_csv(f) for f in files]
        if len(set(kinds)) > 1:
            raise ValueError(f"data.list={cfg.list!r} and data.val_list={cfg.val_list!r} must be CSVs of one kind "
                             "(both filename,target[,fold] or both path,labels)")
        if not kinds[0]:
            for key in changed_options(cfg, ("classes", "label_delimiter")):
                raise ValueError(f"data.{key} is only read with a multi-label CSV (a path,labels header); "
                                 f"data.list={cfg.list!r} is an ESC-50-style filename,target CSV: remove data.{key}")
            parts = [read_esc50_csv(f, audio_dir=cfg.audio_dir) for f in files]
            labels = [y for _, ys, _ in parts for y in ys]
            classes = esc50_classes(cfg.list, max(labels) + 1)
            return AudioIndex([x for xs, _, _ in parts for x in xs], labels, None, classes,
                              [f for _, _, fs in parts for f in fs], len(parts[0][0]) if cfg.val_list else None)
        parts = [read_multilabel_csv(f, audio_dir=cfg.audio_dir, delimiter=cfg.label_delimiter) for f in files]
        if cfg.classes is not None:
            classes, source = read_class_names(cfg.classes), f"those of data.classes={cfg.classes!r}"
        else:
            classes = sorted({x for _, names, _, _ in parts for row in names for x in row})
            source = "the names found in the lists (data.classes=null)"
            if not classes:
                raise ValueError(f"data.list={cfg.list!r}: no row names a class (every labels cell is empty)")
        sets = [y for f, (_, names, lines, _) in zip(files, parts)
                for y in class_sets(names, classes, where=repr(str(f)), lines=lines, source=source)]
        folds = [x for *_, fs in parts for x in fs]
        return AudioIndex([x for xs, *_ in parts for x in xs], [min(y) if y else -1 for y in sets], sets, classes,
                          folds if any(folds) else None, len(parts[0][0]) if cfg.val_list else None)

    def _index(self) -> AudioIndex:
        """The whole source (data.val_list's clips after the train list's), bad files removed by the pre-scan."""
        cfg = self.cfg
        if self.source == "demo":
            root = write_demo(cfg.demo_folder, clips_per_class=cfg.demo_clips_per_class, seconds=cfg.demo_seconds,
                              seed=self.seed)
            if self.features.cache_dir is None:  # the demo's files never change: cache their features beside them
                self.features.cache_dir = root / ".features"
            paths, labels, classes = index_class_folder(root, AUDIO_EXTS)
            index, what = AudioIndex(paths, labels, None, classes), repr(str(root))
        elif cfg.root is not None:
            paths, labels, classes = index_class_folder(cfg.root, AUDIO_EXTS)
            index, what = AudioIndex(paths, labels, None, classes), repr(cfg.root)
        else:
            index = self._read_lists()
            what = f"list {cfg.list!r}" + (f" and val list {cfg.val_list!r}" if cfg.val_list else "")
        _, rows = verify_files(index.paths, list(range(len(index.paths))), check_audio, on_error=cfg.on_error,
                               what=what, skips=self.skips)
        return index.select(rows)

    def _split(self, index: AudioIndex) -> tuple[list[int], list[int]]:
        n, folds, val_fold = len(index.paths), index.folds, self.cfg.val_fold
        if index.num_train is not None:  # data.val_list: its clips are the val split
            if index.num_train in (0, n):
                raise ValueError(f"data.list / data.val_list leave an empty split after the pre-scan "
                                 f"({index.num_train} train and {n - index.num_train} val clips)")
            return list(range(index.num_train)), list(range(index.num_train, n))
        if val_fold is None:
            return split_indices(n, val_fraction=self.cfg.val_fraction, seed=self.seed)
        if folds is None:
            raise ValueError("data.val_fold needs an ESC-50-style data.list CSV with a fold column (esc50.csv; a "
                             "multi-label path,labels CSV may have one too)")
        val = [i for i, f in enumerate(folds) if f == val_fold]
        train = [i for i, f in enumerate(folds) if f != val_fold]
        if not val or not train:
            raise ValueError(f"data.val_fold={val_fold} leaves an empty split (folds present: {sorted(set(folds))})")
        perm = torch.randperm(len(val), generator=torch.Generator().manual_seed(self.seed)).tolist()
        return train, [val[i] for i in perm]

    @property
    def multi_label(self) -> bool:
        """Whether the batches carry "labels" (B, K) multi-hot (a multi-label CSV)."""
        self._prepare()
        return self._label_sets is not None

    def _prepare(self) -> None:
        if self._ready:
            return
        index = self._index()
        self._classes, self._label_sets = index.classes, index.label_sets
        train_idx, val_idx = self._split(index)
        spec_augment = SpecAugment(freqm=self.cfg.freqm, timem=self.cfg.timem)

        def subset(indices: list[int], random_crop: bool, normalize: bool = True, augment: SpecAugment | None = None,
                   wave_augment: Callable[[Tensor], Tensor] | None = None) -> AudioDataset:
            return AudioDataset(paths=index.paths, labels=index.labels, indices=indices, features=self.features,
                                normalize=self.normalizer if normalize else None, frames=self.cfg.frames,
                                random_crop=random_crop, on_error=self.cfg.on_error, skips=self.skips,
                                label_sets=index.label_sets, num_classes=len(index.classes), spec_augment=augment,
                                normalize_last=self.cfg.norm == "audiomae", wave_augment=wave_augment)

        # SpecAugment and roll_mag_aug: the train split only (Audio-MAE's dataset_val: roll_mag_aug=False, no freqm/timem)
        self.train_set = subset(train_idx, True, augment=spec_augment,
                                wave_augment=roll_mag_aug if self.cfg.roll_mag_aug else None)
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
                "feature_settings": self.features.settings, "feature_norm": self.cfg.norm}

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


__all__ = ["AudioDataConfig", "AudioDataModule", "AudioDataset", "AudioIndex", "read_class_names", "read_esc50_csv",
           "read_multilabel_csv"]
