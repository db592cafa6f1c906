"""The `on_error` policy of every file reader: "skip" (warn once per file and count) or "raise".

`check_on_error`, `SkipCounter`, `LoadError`, `try_load` / `load_from` (the next readable file), `FileSubset`
(the skip-on-error dataset skeleton of the file modalities) and `verify_files` (a pre-scan at set-up).
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
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
    """A file that could not be read or decoded; the message names it."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"failed to load {str(path)!r}: {reason}")
        self.path = str(path)
        self.reason = reason


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



