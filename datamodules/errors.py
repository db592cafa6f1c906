"""The `on_error` policy of every file reader: "skip" (warn once per file and count) or "raise".

`check_on_error`, `SkipCounter` (with its skip log, read back by `read_skip_log`), `LoadError`, `try_load` /
`load_from` (the next readable file), `FileSubset` (the skip-on-error dataset skeleton of the file modalities) and
`verify_files` (a pre-scan at set-up).
"""
from __future__ import annotations

import csv
import io
import os
import re
import socket
import stat
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from torch.utils.data import Dataset

from datamodules.sampling import SampleKey, seeded

T = TypeVar("T")
ON_ERROR_CHOICES = ("skip", "raise")


# --------------------------------------------------------------------------------------------- on_error
class SkippedFileWarning(UserWarning):
    """Warned once per file dropped under on_error="skip"."""


class LoadError(RuntimeError):
    """A file that could not be read or decoded; the message names it. `kind` is the short category it is counted
    under (`data/skipped/<kind>`: the exception type name, "non_finite", ...); None: derived from the reason."""

    def __init__(self, path: str | Path, reason: str, *, kind: str | None = None) -> None:
        super().__init__(f"failed to load {str(path)!r}: {reason}")
        self.path = str(path)
        self.reason = reason
        self.kind = kind


def check_on_error(on_error: object) -> str:
    """Return on_error if it is "skip" or "raise"; raise ValueError otherwise."""
    if not isinstance(on_error, str) or on_error not in ON_ERROR_CHOICES:
        raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")
    return on_error


_EXCEPTION_NAME = re.compile(r"\b([A-Z]\w*(?:Error|Exception))\b")


def skip_kind(reason: str) -> str:
    """The short category of a skip reason given without one: the first exception type name in it
    ("pyav: InvalidDataError: ..." -> "InvalidDataError"), else its first words ("no audio samples (empty file)"
    -> "no_audio_samples"), else "other"."""
    found = _EXCEPTION_NAME.search(reason)
    if found:
        return found.group(1)
    for part in re.split(r"[^A-Za-z\s-]", reason):
        words = re.findall(r"[a-z]+", part.lower())
        if words:
            return "_".join(words[:3])
    return "other"


@dataclass(frozen=True)
class SkipRecord:
    """One skipped file: its path, a short category (`kind`) and the full reason."""

    path: str
    kind: str
    reason: str


SKIP_LOG_SUFFIX = ".tsv"
"""A skip log holds one file per process, <host>-<pid>.tsv: rows time, path, kind, reason (csv "excel-tab")."""


class SkipCounter:
    """Records every skipped file (path, kind, reason), warns once per file, and counts the files the pre-scan
    looked at (`indexed`, the denominator of the skipped fraction).

    DataLoader workers and DDP ranks each hold their own copy, so their in-memory `records` differ. Once
    `set_log_dir(dir)` is called (before the workers start: `mae.train.skips.SkippedFiles` does it at set-up),
    every copy also appends each record to its own process's file in `dir`, and `read_skip_log(dir)` gives the
    distinct files skipped by all of them.
    """

    def __init__(self) -> None:
        self.records: list[SkipRecord] = []
        self.indexed = 0
        self.log_dir: Path | None = None

    @property
    def count(self) -> int:
        """Files skipped in this process."""
        return len(self.records)

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """(path, reason) of each file skipped in this process."""
        return [(r.path, r.reason) for r in self.records]

    def skip(self, path: str | Path, reason: str, *, kind: str | None = None) -> None:
        record = SkipRecord(str(path), kind or skip_kind(reason), reason)
        self.records.append(record)
        if self.log_dir is not None:
            self._append([record])
        warnings.warn(f"skipping {str(path)!r}: {reason}", SkippedFileWarning, stacklevel=2)

    def set_log_dir(self, log_dir: str | Path) -> None:
        """From now on append every record to `log_dir`/<host>-<pid>.tsv; the records held so far (the pre-scan's)
        are written at once."""
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._append(self.records)

    def _append(self, records: Sequence[SkipRecord]) -> None:
        """One write per call, flushed, so that a reader sees whole rows from every process."""
        if not records:
            return
        buf = io.StringIO()
        writer = csv.writer(buf, dialect="excel-tab")
        writer.writerows([f"{time.time():.6f}", r.path, r.kind, r.reason[:500]] for r in records)
        log = self.log_dir / f"{socket.gethostname()}-{os.getpid()}{SKIP_LOG_SUFFIX}"
        with log.open("a", newline="") as f:
            f.write(buf.getvalue())


def read_skip_log(log_dir: str | Path) -> list[SkipRecord]:
    """The distinct files (by path) recorded in `log_dir` by every process, in the order first skipped; a row
    still being written (fewer than 4 fields) is left for the next read. A missing folder gives []."""
    rows: list[tuple[float, SkipRecord]] = []
    for log in sorted(Path(log_dir).glob(f"*{SKIP_LOG_SUFFIX}")):
        with log.open(newline="") as f:
            rows += [(float(row[0]), SkipRecord(row[1], row[2], row[3])) for row in csv.reader(f, dialect="excel-tab")
                     if len(row) == 4]
    first: dict[str, SkipRecord] = {}
    for _, record in sorted(rows, key=lambda row: row[0]):
        first.setdefault(record.path, record)
    return list(first.values())


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
        skips.skip(err.path, err.reason, kind=err.kind)
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

    def sample_labels(self) -> list[int]:
        """The label of every sample of the subset, in order, without loading a file (`datamodules.base.Labelled`)."""
        return [self.labels[i] for i in self.indices]

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


class NotRegularFileError(OSError):
    """A path that exists but is no regular file (a FIFO, socket, device or folder): never opened (a FIFO blocks)."""


_FILE_TYPES = {"p": "a FIFO", "s": "a socket", "c": "a character device", "b": "a block device", "d": "a folder"}


def check_regular_file(path: Path) -> None:
    """Raise NotRegularFileError unless `path` is a regular file after following symlinks (FileNotFoundError for a
    missing file or a dangling symlink)."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise NotRegularFileError(f"not a regular file but {_FILE_TYPES.get(stat.filemode(mode)[0], 'special')}")


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

    A path that is no regular file (missing, a dangling symlink, a FIFO, ...) fails before `check` opens it. The
    number of paths is added to `skips.indexed`. on_error="skip": bad files are dropped, each with a
    SkippedFileWarning, recorded in `skips` under its exception type name, plus one summary warning.
    on_error="raise": the first bad file raises LoadError naming it. Either way a RuntimeError naming `what`
    (the root or list file) is raised when every file fails.
    """
    check_on_error(on_error)
    if len(paths) != len(labels):
        raise ValueError(f"{len(paths)} paths but {len(labels)} labels for {what}")
    if not paths:
        raise ValueError(f"no files to load under {what}")
    skips = skips if skips is not None else SkipCounter()
    skips.indexed += len(paths)
    kept_paths: list[Path] = []
    kept_labels: list[int] = []
    first_error: str | None = None
    for path, label in zip(paths, labels):
        try:
            check_regular_file(path)
            check(path)
        except Exception as err:  # decoders raise many kinds (OSError, SyntaxError, ValueError, ...)
            reason = f"{type(err).__name__}: {err}"
            if on_error == "raise":
                raise LoadError(path, reason, kind=type(err).__name__) from err
            first_error = first_error or f"{str(path)!r}: {reason}"
            skips.skip(path, reason, kind=type(err).__name__)
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



