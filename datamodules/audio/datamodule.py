"""Audio for Audio-MAE: Kaldi log-mel filterbanks of an audio folder / ESC-50-style CSV, or generated demo sounds.

Pipeline per clip: decode (soundfile) -> down-mix to mono -> resample (torchaudio) -> subtract the DC mean
-> `torchaudio.compliance.kaldi.fbank` of the whole file (optionally cached on disk) -> crop / pad to
`frames` frames (random crop in train, centre in val/eval) -> (x - mean) / std with dataset statistics.
Batches are dicts {"fbank": (B, T, F) float, "label": (B,) int64, -1 when unlabeled}.

Dataset statistics are computed once on the train split (at the first dataloader request, after Lightning
has restored a checkpoint) and saved with the run through `state_dict` / `load_state_dict`, so a resumed
run reuses them instead of recomputing.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from datamodules.base import SplitDataModule
from datamodules.checks import check_bool, check_float, check_int, check_optional_str
from datamodules.demo import build_folder_once
from datamodules.errors import FileSubset, LoadError, SkipCounter, check_on_error, try_load, verify_files
from datamodules.indexing import UNLABELED, index_class_folder, resolve_source, split_indices
from datamodules.sampling import SeededSampler

AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3")
SOURCES = ("demo", "folder")
DEMO_CLASSES = ("tone", "chirp", "noise_burst", "harmonic", "clicks")
FEATURE_VERSION = 1  # bump when the feature code changes: old cache entries are never reused


# ------------------------------------------------------------------------------------------- features
def decode(path: str | Path) -> tuple[Tensor, int]:
    """Any soundfile format -> ((C, S) float32 waveform, sample rate); LoadError naming the file otherwise."""
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (S, C)
    except Exception as err:  # libsndfile raises LibsndfileError / RuntimeError / TypeError on bad files
        raise LoadError(path, f"{type(err).__name__}: {err}") from err
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise LoadError(path, "no audio samples (empty file)")
    if not np.isfinite(data).all():
        raise LoadError(path, "non-finite samples")
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(sr)


def check_audio(path: Path) -> None:
    """Cheap pre-scan: the header parses and announces at least one frame."""
    try:
        info = sf.info(str(path))
    except Exception as err:
        raise LoadError(path, f"{type(err).__name__}: {err}") from err
    if info.frames <= 0 or info.samplerate <= 0:
        raise LoadError(path, "no audio samples (empty file)")


class FbankFeatures:
    """waveform -> (frames, mel_bins) Kaldi-compatible log-mel filterbank (Audio-MAE / AST settings:
    htk_compat, hanning window, no energy, no dither), with an optional on-disk cache.

    The cache path is `cache_dir/<settings hash>/<sha256 of the file's bytes>.pt`: changing any setting
    (or FEATURE_VERSION) changes the folder, so stale features are never reused; `computed` counts fbank
    computations in this process (for tests and benchmarks)."""

    def __init__(self, *, sample_rate: int, mel_bins: int, frame_length_ms: float, frame_shift_ms: float,
                 cache_dir: str | None) -> None:
        self.sample_rate, self.mel_bins = sample_rate, mel_bins
        self.frame_length_ms, self.frame_shift_ms = frame_length_ms, frame_shift_ms
        self.cache_dir = None if cache_dir is None else Path(cache_dir).expanduser()
        self.computed = 0

    @property
    def settings(self) -> dict:
        return {"sample_rate": self.sample_rate, "mel_bins": self.mel_bins, "frame_length_ms": self.frame_length_ms,
                "frame_shift_ms": self.frame_shift_ms, "window": "hanning", "htk_compat": True, "dither": 0.0,
                "version": FEATURE_VERSION}

    def settings_key(self) -> str:
        return hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()[:16]

    def from_waveform(self, wave: Tensor, sr: int) -> Tensor:
        """(C, S) at sr -> (frames, mel_bins). Multi-channel is averaged, other rates resampled; a clip shorter
        than one window is zero-padded to one window (one frame)."""
        wave = wave.float().mean(dim=0, keepdim=True)  # (1, S) mono
        if sr != self.sample_rate:
            wave = torchaudio.functional.resample(wave, sr, self.sample_rate)
        wave = wave - wave.mean()
        window = int(self.sample_rate * self.frame_length_ms / 1000)
        if wave.shape[1] < window:
            wave = torch.nn.functional.pad(wave, (0, window - wave.shape[1]))
        self.computed += 1
        return torchaudio.compliance.kaldi.fbank(
            wave, htk_compat=True, sample_frequency=self.sample_rate, use_energy=False, window_type="hanning",
            num_mel_bins=self.mel_bins, dither=0.0, frame_length=self.frame_length_ms,
            frame_shift=self.frame_shift_ms,
        )  # (frames, mel_bins)

    def __call__(self, path: str | Path) -> Tensor:
        if self.cache_dir is None:
            return self.from_waveform(*decode(path))
        try:
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError as err:
            raise LoadError(path, f"{type(err).__name__}: {err}") from err
        file = self.cache_dir / self.settings_key() / f"{digest}.pt"
        if file.is_file():
            try:
                return torch.load(file)
            except Exception:  # a torn or foreign file: recompute and overwrite
                pass
        feats = self.from_waveform(*decode(path))
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
        torch.save(feats.clone(), tmp)
        os.replace(tmp, file)
        return feats


def crop_or_pad(feats: Tensor, frames: int, *, random: bool) -> Tensor:
    """(T', F) -> (frames, F): a random (train) or centred crop, or zero padding at the end (after normalising,
    0 is the dataset mean)."""
    t = feats.shape[0]
    if t > frames:
        start = int(torch.randint(0, t - frames + 1, ())) if random else (t - frames) // 2
        return feats[start : start + frames]
    return torch.nn.functional.pad(feats, (0, 0, 0, frames - t))


# ------------------------------------------------------------------------------------------ demo data
def demo_clip(label: int, *, seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One synthetic sound event of class `label` (see DEMO_CLASSES) at random pitch, length, place, loudness
    and background-noise level: (S,) float32 in [-1, 1]."""
    n = int(seconds * sr)
    length = rng.uniform(0.3, 0.8) * seconds
    start = rng.uniform(0, seconds - length)
    t = np.arange(int(length * sr)) / sr
    if label == 0:  # pure tone
        ev = np.sin(2 * np.pi * rng.uniform(300, 3000) * t)
    elif label == 1:  # linear chirp, up or down
        f0, f1 = rng.uniform(200, 4000, size=2)
        ev = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * length)))
    elif label == 2:  # white-noise burst
        ev = rng.standard_normal(t.size) * 0.5
    elif label == 3:  # harmonic stack, 1/k amplitudes
        f0 = rng.uniform(100, 400)
        ev = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 7)) / 2
    else:  # click train
        ev = np.zeros(t.size)
        ev[:: max(1, int(sr / rng.uniform(4, 20)))] = 1.0
    envelope = np.minimum(1.0, np.minimum(t, length - t) / 0.01)  # 10 ms fades
    clip = rng.standard_normal(n) * 10 ** rng.uniform(-3.5, -2)  # background noise
    i = int(start * sr)
    clip[i : i + t.size] += ev * envelope * 10 ** rng.uniform(-1.2, -0.1)
    return np.clip(clip, -1, 1).astype(np.float32)


def write_demo(folder: Path, *, clips_per_class: int, seconds: float, seed: int) -> Path:
    """Write the demo set as real audio files: folder/<class>/<i>.flac (16 kHz mono) and, every third clip,
    .wav at 22.05 kHz stereo (so resampling and down-mixing run too). Written once (`build_folder_once`)."""

    def fill(tmp: Path) -> None:
        rng = np.random.default_rng(seed)
        for label, name in enumerate(DEMO_CLASSES):
            (tmp / name).mkdir()
            for i in range(clips_per_class):
                if i % 3 == 2:
                    sr = 22050
                    mono = demo_clip(label, seconds=seconds, sr=sr, rng=rng)
                    sf.write(tmp / name / f"{i:04d}.wav", np.stack([mono, mono * 0.8], axis=1), sr)
                else:
                    sr = 16000
                    sf.write(tmp / name / f"{i:04d}.flac", demo_clip(label, seconds=seconds, sr=sr, rng=rng), sr)

    return build_folder_once(folder, fill)


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


# ---------------------------------------------------------------------------------------- datamodule
class AudioDataModule(SplitDataModule):
    """Audio clips as normalised log-mel spectrograms for Audio-MAE and frozen-feature evaluation.

    source: "folder" (`root` with one subfolder per class, or a flat unlabeled folder; or an ESC-50-style CSV
    `list` with `val_fold`) or "demo" (generated sound events written as FLAC/WAV under `demo_dir`, default a
    temp folder); None picks "folder" when root or list is given, else "demo".
    mean/std: fixed feature statistics, or None to compute them on the train split (at most `stats_clips` clips).
    cache_dir: on-disk feature cache; the demo caches under its own folder when None.
    As debug=fast (written for images) sets them: source "synthetic" is an alias of "demo", `synthetic_size`
    (if set) is the total number of demo clips, and `image_size` is accepted and ignored.
    """

    unit = "clips"

    def __init__(
        self,
        *,
        source: str | None = None,
        root: str | None = None,
        list: str | None = None,  # noqa: A002 (config key `data.list`)
        audio_dir: str | None = None,
        val_fold: int | None = None,
        sample_rate: int = 16000,
        mel_bins: int = 128,
        frame_length_ms: float = 25.0,
        frame_shift_ms: float = 10.0,
        frames: int = 1024,
        mean: float | None = None,
        std: float | None = None,
        stats_clips: int = 2000,
        cache_dir: str | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        val_fraction: float = 0.2,
        seed: int = 0,
        on_error: str = "skip",
        demo_dir: str | None = None,
        demo_clips_per_class: int = 60,
        demo_seconds: float = 3.0,
        pin_memory: bool = False,
        synthetic_size: int | None = None,
        image_size: object = None,  # ignored (see class docstring)
    ) -> None:
        super().__init__()
        self.root = check_optional_str("data.root", root)
        self.list_csv = check_optional_str("data.list", list)
        self.audio_dir = check_optional_str("data.audio_dir", audio_dir)
        self.val_fold = None if val_fold is None else check_int("data.val_fold", val_fold)
        self.source = resolve_source(source, root=self.root, list_file=self.list_csv, generated="demo",
                                     sources=SOURCES)
        self.frames = check_int("data.frames", frames, minimum=1)
        self.features = FbankFeatures(
            sample_rate=check_int("data.sample_rate", sample_rate, minimum=1000),
            mel_bins=check_int("data.mel_bins", mel_bins, minimum=1),
            frame_length_ms=check_float("data.frame_length_ms", frame_length_ms),
            frame_shift_ms=check_float("data.frame_shift_ms", frame_shift_ms),
            cache_dir=check_optional_str("data.cache_dir", cache_dir),
        )
        self.normalizer = Normalizer()
        self.fixed_stats = mean is not None or std is not None
        if self.fixed_stats:
            self.normalizer.mean, self.normalizer.std = check_float("data.mean", mean), check_float("data.std", std)
            if self.normalizer.std <= 0:
                raise ValueError(f"data.std must be positive, got {std}")
        self.stats_clips = check_int("data.stats_clips", stats_clips, minimum=1)
        self.stats_computations = 0
        self.batch_size = check_int("data.batch_size", batch_size, minimum=1)
        self.num_workers = check_int("data.num_workers", num_workers, minimum=0)
        self.val_fraction = check_float("data.val_fraction", val_fraction)
        self.seed = check_int("data.seed", seed)
        self.on_error = check_on_error(on_error)
        self.demo_dir = check_optional_str("data.demo_dir", demo_dir)
        self.demo_clips_per_class = check_int("data.demo_clips_per_class", demo_clips_per_class, minimum=2)
        if synthetic_size is not None:
            total = check_int("data.synthetic_size", synthetic_size, minimum=2 * len(DEMO_CLASSES))
            self.demo_clips_per_class = total // len(DEMO_CLASSES)
        self.demo_seconds = check_float("data.demo_seconds", demo_seconds)
        self.pin_memory = check_bool("data.pin_memory", pin_memory)
        self.skips = SkipCounter()
        self._ready = False

    # -------------------------------------------------------------------------------------- indexing
    def _index(self) -> tuple[list[Path], list[int], list[str], list[int] | None]:
        """(paths, labels, classes, folds or None) of the whole source, bad files removed by the pre-scan."""
        folds = None
        if self.source == "demo":
            key = f"c{self.demo_clips_per_class}_s{self.demo_seconds}_seed{self.seed}"
            folder = Path(self.demo_dir) if self.demo_dir else Path(tempfile.gettempdir()) / "mae_audio_demo" / key
            root = write_demo(folder, clips_per_class=self.demo_clips_per_class, seconds=self.demo_seconds, seed=self.seed)
            if self.features.cache_dir is None:  # the demo's files never change: cache their features beside them
                self.features.cache_dir = root / ".features"
            paths, labels, classes = index_class_folder(root, AUDIO_EXTS)
            what = repr(str(root))
        elif self.root is not None:
            paths, labels, classes = index_class_folder(self.root, AUDIO_EXTS)
            what = repr(self.root)
        else:
            paths, labels, folds = read_esc50_csv(self.list_csv, audio_dir=self.audio_dir)
            classes = [str(i) for i in range(max(labels) + 1)]
            what = f"list {self.list_csv!r}"
        by_path = dict(zip(map(str, paths), folds)) if folds is not None else None
        paths, labels = verify_files(paths, labels, check_audio, on_error=self.on_error, what=what, skips=self.skips)
        if by_path is not None:
            folds = [by_path[str(p)] for p in paths]
        return paths, labels, classes, folds

    def _split(self, n: int, folds: list[int] | None) -> tuple[list[int], list[int]]:
        if self.val_fold is None:
            return split_indices(n, val_fraction=self.val_fraction, seed=self.seed)
        if folds is None:
            raise ValueError("data.val_fold needs an ESC-50-style data.list CSV with a fold column")
        val = [i for i, f in enumerate(folds) if f == self.val_fold]
        train = [i for i, f in enumerate(folds) if f != self.val_fold]
        if not val or not train:
            raise ValueError(f"data.val_fold={self.val_fold} leaves an empty split (folds present: {sorted(set(folds))})")
        perm = torch.randperm(len(val), generator=torch.Generator().manual_seed(self.seed)).tolist()
        return train, [val[i] for i in perm]

    def _prepare(self) -> None:
        if self._ready:
            return
        paths, labels, self._classes, folds = self._index()
        train_idx, val_idx = self._split(len(paths), folds)

        def subset(indices: list[int], random_crop: bool, normalize: bool = True) -> AudioDataset:
            return AudioDataset(paths=paths, labels=labels, indices=indices, features=self.features,
                                normalize=self.normalizer if normalize else None, frames=self.frames,
                                random_crop=random_crop, on_error=self.on_error, skips=self.skips)

        self.train_set = subset(train_idx, True)
        self.train_eval_set = subset(train_idx, False)
        self.val_set = subset(val_idx, False)
        self._ready = True

    # ------------------------------------------------------------------------------- normalisation
    def compute_stats(self) -> tuple[float, float]:
        """Mean and std of the full-file features of (at most `stats_clips` evenly spaced) train clips."""
        self._prepare()
        ds = self.train_eval_set
        step = max(1, len(ds) // self.stats_clips)
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
        if self.fixed_stats or state.get("feature_mean") is None:
            return
        if state.get("feature_settings") != self.features.settings:
            return  # statistics of other features: recompute
        self.normalizer.mean, self.normalizer.std = float(state["feature_mean"]), float(state["feature_std"])

    # ----------------------------------------------------------------------------------- dataloaders
    def _loader(self, dataset: Dataset, *, sampler: SeededSampler | None = None, drop_last: bool) -> DataLoader:
        self.ensure_stats()  # after a checkpoint restore: reuse, never recompute
        return super()._loader(dataset, sampler=sampler, drop_last=drop_last)

__all__ = ["AudioDataModule", "FbankFeatures", "crop_or_pad", "decode", "demo_clip", "write_demo", "UNLABELED"]
