"""What the datamodules of every modality share.

- indexing: `index_class_folder` (one subfolder per class, or an unlabeled flat folder) and `read_list_csv`;
- the train/val split: `split_indices`;
- the `on_error` policy ("skip" with a warning and a count, or "raise"): `check_on_error`, `SkipCounter`,
  `LoadError`, `verify_files`;
- seeding: `SeededSampler` yields `(sample_seed, index)` keys and `seeded` runs a sample's transform under
  that seed, so augmentation is a pure function of (seed, epoch, position): exact resume, and the same
  batches whatever the number of workers.
"""
from __future__ import annotations

import csv
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import torch
from torch.utils.data import Dataset, DistributedSampler

from mae.seeding import mix_seed

T = TypeVar("T")
UNLABELED = -1
"""Label of a sample that has none (flat folders, CSV lists without a label column)."""
ON_ERROR_CHOICES = ("skip", "raise")
SampleKey = int | tuple[int, int]
"""What a dataset's __getitem__ receives: a plain index (evaluation) or (sample_seed, index) (training)."""


# --------------------------------------------------------------------------------------------- indexing
def _norm_exts(extensions: Sequence[str]) -> tuple[str, ...]:
    """('PNG', '.jpg') -> ('.png', '.jpg'): lower case with a leading dot."""
    if isinstance(extensions, str) or not extensions:
        raise ValueError(f"extensions must be a non-empty tuple of suffixes like ('.png',), got {extensions!r}")
    return tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)


def _files_under(folder: Path, exts: tuple[str, ...]) -> list[Path]:
    """Every file below `folder` (recursive, symlinks followed, hidden entries skipped) with a suffix in `exts`."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in filenames if not f.startswith(".") and Path(f).suffix.lower() in exts]
    return sorted(found)


def index_class_folder(root: str | Path, extensions: tuple[str, ...]) -> tuple[list[Path], list[int], list[str]]:
    """Index an ImageFolder-style tree: root/<class>/**/<file>, classes sorted by name.

    A root holding files but no (non-hidden) subfolder is an unlabeled set: every label is -1 and classes is [].
    Returns (paths, labels, classes). Raises FileNotFoundError / ValueError naming the path on a missing root,
    a root that is not a folder, a class folder without matching files, or no matching file at all.
    """
    root = Path(root).expanduser()
    exts = _norm_exts(extensions)
    if not root.exists():
        raise FileNotFoundError(f"data root {str(root)!r} does not exist")
    if not root.is_dir():
        raise ValueError(f"data root {str(root)!r} is not a directory")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:  # flat folder: unlabeled
        paths = [p for p in sorted(root.iterdir()) if p.is_file() and p.suffix.lower() in exts and p.name[0] != "."]
        if not paths:
            raise ValueError(f"no file with extension in {exts} found in {str(root)!r}")
        return paths, [UNLABELED] * len(paths), []
    paths, labels = [], []
    for label, class_dir in enumerate(class_dirs):
        files = _files_under(class_dir, exts)
        if not files:
            raise ValueError(
                f"class folder {str(class_dir)!r} holds no file with extension in {exts} "
                f"(every subfolder of {str(root)!r} is read as a class)"
            )
        paths += files
        labels += [label] * len(files)
    return paths, labels, [d.name for d in class_dirs]


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def read_list_csv(
    path: str | Path, *, extensions: tuple[str, ...] | None = None
) -> tuple[list[Path], list[int], list[str]]:
    """Read a CSV list of `path[,label]` rows; returns (paths, labels, classes).

    - header optional: a first row whose first cell is "path" (any case) is skipped;
    - relative paths are resolved against the CSV's folder; blank rows are skipped;
    - labels are either all integers >= 0 (classes = ["0", ..., str(max)]) or all class names
      (classes = sorted unique names, labels = their positions); no label column -> -1 and classes [].
    Errors (ValueError / FileNotFoundError) name the file and, where one is to blame, the line.
    Whether each listed file exists is left to `verify_files` (so on_error="skip" can drop missing ones).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"list file {str(path)!r} does not exist or is not a file")
    exts = _norm_exts(extensions) if extensions is not None else None
    with path.open(newline="") as f:
        rows = [(n, [c.strip() for c in row]) for n, row in enumerate(csv.reader(f), start=1)]
    rows = [(n, r) for n, r in rows if any(r)]
    if rows and rows[0][1][0].lower() == "path":
        rows = rows[1:]
    if not rows:
        raise ValueError(f"list file {str(path)!r} holds no entries")
    width = len(rows[0][1])
    paths: list[Path] = []
    raw_labels: list[str] = []
    for n, row in rows:
        where = f"{str(path)!r} line {n}"
        if len(row) != width or width not in (1, 2):
            raise ValueError(f"{where}: expected {width if width in (1, 2) else '1 or 2'} column(s) "
                             f"(path[,label]) like the first entry, got {len(row)}: {row}")
        if not row[0] or (width == 2 and not row[1]):
            raise ValueError(f"{where}: empty cell in {row}")
        file = Path(row[0]).expanduser()
        if exts is not None and file.suffix.lower() not in exts:
            raise ValueError(f"{where}: {row[0]!r} does not end with one of {exts}")
        paths.append(file if file.is_absolute() else path.parent / file)
        if width == 2:
            raw_labels.append(row[1])
    if width == 1:
        return paths, [UNLABELED] * len(paths), []
    numeric = [_is_int(x) for x in raw_labels]
    if all(numeric):
        labels = [int(x) for x in raw_labels]
        if min(labels) < 0:
            n = rows[labels.index(min(labels))][0]
            raise ValueError(f"{str(path)!r} line {n}: integer labels must be >= 0, got {min(labels)}")
        return paths, labels, [str(i) for i in range(max(labels) + 1)]
    if any(numeric):
        n = rows[numeric.index(not numeric[0])][0]
        raise ValueError(f"{str(path)!r} line {n}: labels mix integers and class names; use one kind")
    classes = sorted(set(raw_labels))
    lookup = {name: i for i, name in enumerate(classes)}
    return paths, [lookup[x] for x in raw_labels], classes


# ------------------------------------------------------------------------------------------------ split
def split_indices(n: int, *, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Deterministic shuffled split of range(n) into (train, val): train sorted, val in a fixed shuffled
    order (so that its first batch, used for pictures, mixes classes even when the source is sorted).

    The val size is round(n * val_fraction); val_fraction 0 gives an empty val split. Raises ValueError when
    the train split, or a val split asked for with val_fraction > 0, would be empty.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = int(n * val_fraction + 0.5)
    if val_fraction > 0 and n_val == 0:
        raise ValueError(f"val split would be empty: {n} samples x val_fraction {val_fraction} rounds to 0; "
                         "raise val_fraction or set it to 0 to train without validation")
    if n - n_val < 1:
        raise ValueError(f"train split would be empty: {n} samples, val_fraction {val_fraction}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(perm[n_val:]), perm[:n_val]


# --------------------------------------------------------------------------------------------- on_error
class SkippedFileWarning(UserWarning):
    """Warned once per file dropped under on_error="skip"."""


class LoadError(RuntimeError):
    """A file that could not be read or decoded; the message names it."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"failed to load {str(path)!r}: {reason}")
        self.path = str(path)
        self.reason = reason


def resolve_source(source: str | None, *, root: str | None, list_file: str | None, generated: str,
                   sources: Sequence[str]) -> str:
    """`data.source` of a datamodule with one generated source and "folder": "synthetic" (debug=fast's name) is an
    alias of `generated`, null picks "folder" when data.root or data.list is set (else `generated`), and "folder"
    needs exactly one of the two."""
    if source == "synthetic":
        source = generated
    if source is None:
        source = "folder" if root is not None or list_file is not None else generated
    if source not in sources:
        raise ValueError(f"data.source must be one of {tuple(sources)} or null, got {source!r}")
    if source == "folder" and (root is None) == (list_file is None):
        raise ValueError(f"data.source='folder' needs exactly one of data.root and data.list, got "
                         f"root={root!r}, list={list_file!r}")
    return source


def check_on_error(on_error: object) -> str:
    """Return on_error if it is "skip" or "raise"; raise ValueError otherwise."""
    if not isinstance(on_error, str) or on_error not in ON_ERROR_CHOICES:
        raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")
    return on_error


class SkipCounter:
    """Records every skipped file (path, reason) and warns once per file.

    In DataLoader worker processes each worker has its own copy: skips made there warn but do not add to
    the main process's count.
    """

    def __init__(self) -> None:
        self.skipped: list[tuple[str, str]] = []

    @property
    def count(self) -> int:
        return len(self.skipped)

    def skip(self, path: str | Path, reason: str) -> None:
        self.skipped.append((str(path), reason))
        warnings.warn(f"skipping {str(path)!r}: {reason}", SkippedFileWarning, stacklevel=2)


def try_load(index: int, load: Callable[[int], T], *, bad: set[int], on_error: str, skips: SkipCounter) -> T | None:
    """load(index), which raises LoadError on a bad file; under on_error="skip" a bad file is warned about,
    counted, remembered in `bad` (not retried in this process) and gives None; under "raise" it raises."""
    if index in bad:
        return None
    try:
        return load(index)
    except LoadError as err:
        if on_error == "raise":
            raise
        bad.add(index)
        skips.skip(err.path, err.reason)
        return None


def load_from(position: int, indices: Sequence[int], load: Callable[[int], T], *, bad: set[int], on_error: str,
              skips: SkipCounter, what: str) -> tuple[int, T]:
    """(index, loaded) for indices[position], or for the next loadable one (wrapping around) when files fail
    under on_error="skip"; a split where every file fails is a clear error."""
    n = len(indices)
    for step in range(n):
        index = indices[(position + step) % n]
        loaded = try_load(index, load, bad=bad, on_error=on_error, skips=skips)
        if loaded is not None:
            return index, loaded
    raise RuntimeError(f"every one of the {n} {what} of this split failed to load")


class FileSubset(Dataset):
    """The `indices` subset of a file-backed source, drawn under each sample's seed (`seeded`). Subclasses
    define `_load(index)` (the raw sample; LoadError on a bad file) and `_item(index, loaded)` (the batch dict).
    A file that fails raises (on_error="raise") or is skipped with a warning and replaced by the next one; `bad`
    remembers, per process, the indices already found broken so they are not retried."""

    what = "samples"  # plural noun for the error when every file of a split fails

    def __init__(self, *, labels: Sequence[int], indices: Sequence[int], on_error: str, skips: SkipCounter) -> None:
        self.labels, self.indices = list(labels), list(indices)
        self.on_error, self.skips = check_on_error(on_error), skips
        self.bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: SampleKey) -> dict:
        return seeded(key, self._get)

    def _load(self, index: int):
        raise NotImplementedError

    def _item(self, index: int, loaded) -> dict:
        raise NotImplementedError

    def _get(self, position: int) -> dict:
        index, loaded = load_from(position, self.indices, self._load, bad=self.bad, on_error=self.on_error,
                                  skips=self.skips, what=self.what)
        return self._item(index, loaded)


def verify_files(
    paths: Sequence[Path],
    labels: Sequence[int],
    check: Callable[[Path], None],
    *,
    on_error: str,
    what: str,
    skips: SkipCounter | None = None,
) -> tuple[list[Path], list[int]]:
    """Pre-scan files with `check` (raises on a bad file) and keep the good ones; returns (paths, labels).

    on_error="skip": bad files are dropped, each with a SkippedFileWarning, recorded in `skips`, plus one
    summary warning. on_error="raise": the first bad file raises LoadError naming it. Either way a
    RuntimeError naming `what` (the root or list file) is raised when every file fails.
    """
    check_on_error(on_error)
    if len(paths) != len(labels):
        raise ValueError(f"{len(paths)} paths but {len(labels)} labels for {what}")
    if not paths:
        raise ValueError(f"no files to load under {what}")
    skips = skips if skips is not None else SkipCounter()
    kept_paths: list[Path] = []
    kept_labels: list[int] = []
    first_error: str | None = None
    for path, label in zip(paths, labels):
        try:
            check(path)
        except Exception as err:  # decoders raise many kinds (OSError, SyntaxError, ValueError, ...)
            reason = f"{type(err).__name__}: {err}"
            if on_error == "raise":
                raise LoadError(path, reason) from err
            first_error = first_error or f"{str(path)!r}: {reason}"
            skips.skip(path, reason)
            continue
        kept_paths.append(path)
        kept_labels.append(label)
    if not kept_paths:
        raise RuntimeError(f"all {len(paths)} files under {what} failed to load; first error: {first_error}")
    dropped = len(paths) - len(kept_paths)
    if dropped:
        warnings.warn(f"skipped {dropped} of {len(paths)} files under {what} (on_error='skip')",
                      SkippedFileWarning, stacklevel=2)
    return kept_paths, kept_labels


# ---------------------------------------------------------------------------------------------- seeding
class SeededSampler(DistributedSampler):
    """Yields (sample_seed, index) keys; order and seeds depend only on (seed, epoch, position).

    shuffle=False keeps the order 0..n-1 (seeds still vary per epoch). Lightning calls `set_epoch` at the start
    of every epoch, so a resumed run replays the same epochs.

    Distributed: rank r of `num_replicas` takes positions r, r + W, r + 2W, ... of the one global order (the same on
    every rank), after dropping the last n % W positions, so shards are disjoint and hold no padding duplicates;
    with per-rank batch B the union of the ranks' batch b is the single-process batch b of size B x W. It is a
    DistributedSampler subclass only so that Lightning does not wrap it again; num_replicas / rank default to the
    initialised torch.distributed group (1 / 0 without one). With fewer samples than ranks, rank r gets sample
    position r mod n (a full-batch graph on every rank). `set_start(k)` skips this rank's first k positions once
    (a run resumed mid-epoch continues where the checkpoint was taken).
    """

    def __init__(self, num_samples: int, *, seed: int, shuffle: bool, num_replicas: int | None = None,
                 rank: int | None = None) -> None:
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}")
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        num_replicas = num_replicas if num_replicas is not None else (
            torch.distributed.get_world_size() if distributed else 1)
        rank = rank if rank is not None else (torch.distributed.get_rank() if distributed else 0)
        if not 0 <= rank < num_replicas:
            raise ValueError(f"need 0 <= rank < num_replicas, got rank {rank}, num_replicas {num_replicas}")
        self.num_samples = num_samples  # the global count (before sharding)
        self.seed = seed
        self.shuffle = shuffle
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_start(self, start: int) -> None:
        self.start = start

    def __len__(self) -> int:
        return max(1, self.num_samples // self.num_replicas)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        gen = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
        order = torch.randperm(self.num_samples, generator=gen) if self.shuffle else torch.arange(self.num_samples)
        seeds = torch.randint(0, 2**62, (self.num_samples,), generator=gen)  # (n,) one seed per position
        if self.num_samples < self.num_replicas:  # cannot shard: one sample per rank, repeated across ranks
            shard = slice(self.rank % self.num_samples + self.start, self.rank % self.num_samples + 1)
        else:  # drop the tail: no rank repeats a sample to pad its shard
            usable = len(self) * self.num_replicas
            shard = slice(self.rank + self.start * self.num_replicas, usable, self.num_replicas)
        self.start = 0  # skipping applies to one epoch only
        return iter(zip(seeds[shard].tolist(), order[shard].tolist()))


def split_key(key: SampleKey) -> tuple[int | None, int]:
    """(sample_seed, index) -> itself; a plain index -> (None, index)."""
    if isinstance(key, tuple):
        sample_seed, index = key
        return int(sample_seed), int(index)
    return None, int(key)


def seeded(key: SampleKey, fn: Callable[[int], T]) -> T:
    """fn(index); for a (sample_seed, index) key, run under a forked CPU RNG seeded with sample_seed.

    Only the CPU generator is reseeded and it is restored afterwards, so the caller's RNG stream (and any
    CUDA generator) is untouched. Plain int keys run fn as is.
    """
    sample_seed, index = split_key(key)
    if sample_seed is None:
        return fn(index)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(sample_seed)
        return fn(index)


# ------------------------------------------------------------------------------------- typed arguments
# Hydra hands over whatever the YAML holds; these checks turn a wrong type ("False" for a bool, 1.5 for an
# int) into an error naming the config key instead of a silent misreading.
def build_folder_once(folder: Path, fill: Callable[[Path], None]) -> Path:
    """Generated demo data, written once: `fill(tmp)` writes into a temporary sibling folder, which is marked
    DONE and renamed to `folder`. Idempotent and safe when several processes (test workers, DDP ranks) ask at
    once: the first rename wins, the others discard their copy."""
    if (folder / "DONE").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp_demo_", dir=folder.parent))
    try:
        fill(tmp)
        (tmp / "DONE").write_text("ok\n")
        os.replace(tmp, folder)
    except OSError:
        if not (folder / "DONE").is_file():  # not "another process finished first": a real failure
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool (true/false), got {value!r} of type {type(value).__name__}")
    return value


def check_int(name: str, value: object, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r} of type {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r} of type {type(value).__name__}")
    return float(value)


def check_floats(name: str, value: object, *, length: int | None = None) -> list[float]:
    """A list of numbers (a Hydra ListConfig is accepted) of the given length."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a list of numbers, got {value!r} of type {type(value).__name__}")
    out = [check_float(f"{name}[{i}]", v) for i, v in enumerate(value)]
    if length is not None and len(out) != length:
        raise ValueError(f"{name} must hold {length} number(s), got {len(out)}: {out}")
    return out


def check_optional_str(name: str, value: object) -> str | None:
    if value is not None and not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a string or null, got {value!r} of type {type(value).__name__}")
    return None if value is None else os.fspath(value)
