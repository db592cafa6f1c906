"""Indexing of files on disk: class folders (`index_class_folder`), CSV lists (`read_list_csv`), where the data
comes from (`resolve_source`) and the train/val split (`split_indices`)."""
from __future__ import annotations

import csv
import os
import stat
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from datamodules.checks import check_val_fraction

UNLABELED = -1
"""Label of a sample that has none (flat folders, CSV lists without a label column)."""


# --------------------------------------------------------------------------------------------- indexing
def _norm_exts(extensions: Sequence[str]) -> tuple[str, ...]:
    """('PNG', '.jpg') -> ('.png', '.jpg'): lower case with a leading dot."""
    if isinstance(extensions, str) or not extensions:
        raise ValueError(f"extensions must be a non-empty tuple of suffixes like ('.png',), got {extensions!r}")
    return tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)


Identity = tuple[int, int]
"""(st_dev, st_ino): what a path names once symlinks are followed; two names of one file or folder share it."""


def _identity(path: Path) -> Identity | None:
    """The identity of what `path` names (symlinks followed); None when it cannot be stat'ed (dangling link, ...)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _wanted(name: str, exts: tuple[str, ...]) -> bool:
    return not name.startswith(".") and Path(name).suffix.lower() in exts


def _files_under(folder: Path, exts: tuple[str, ...], *, excluded: set[Identity]) -> list[Path]:
    """Every entry below `folder` (recursive, symlinks followed, hidden entries skipped) whose name has a suffix in
    `exts`, sorted. Each folder is entered once: a symlink to a folder this walk has already entered (a loop) or to
    one of `excluded` (the root, the other class folders) is not followed."""
    entered = set(excluded) | {_identity(folder)}
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        keep = []
        for name in sorted(d for d in dirnames if not d.startswith(".")):
            identity = _identity(Path(dirpath) / name)
            if identity is not None and identity not in entered:
                entered.add(identity)
                keep.append(name)
        dirnames[:] = keep  # os.walk enters only these
        found += [Path(dirpath) / f for f in filenames if _wanted(f, exts)]
    return sorted(found)


class IndexingWarning(UserWarning):
    """A class folder tree holds files reachable twice or entries that are no regular file."""


class _RegularFiles:
    """Keeps each regular file once (by identity, symlinks followed): `add(path)` is False for a second name of a
    file already kept (a symlink or hard link; recorded in `duplicates`) and for what is no regular file (a FIFO,
    socket, device or dangling symlink, which the pre-scan must never open; recorded in `special`)."""

    def __init__(self) -> None:
        self.kept: dict[Identity, Path] = {}
        self.duplicates: list[tuple[Path, Path]] = []  # (left out, the name kept)
        self.special: list[Path] = []

    def add(self, path: Path) -> bool:
        try:
            st = os.stat(path)
        except OSError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            self.special.append(path)
            return False
        identity = (st.st_dev, st.st_ino)
        if identity in self.kept:
            self.duplicates.append((path, self.kept[identity]))
            return False
        self.kept[identity] = path
        return True

    def warn(self, root: Path) -> None:
        """One warning for the files reached twice, one for the entries that are no regular file."""
        if self.duplicates:
            left_out, kept = self.duplicates[0]
            warnings.warn(f"{len(self.duplicates)} file(s) under {str(root)!r} are reachable by more than one path "
                          "(symlinks or hard links); each is indexed once, under its first path in sorted order "
                          f"(the first class folder): e.g. {str(left_out)!r} is {str(kept)!r}", IndexingWarning,
                          stacklevel=3)
        if self.special:
            shown = ", ".join(repr(str(p)) for p in self.special[:3])
            warnings.warn(f"{len(self.special)} entr{'y' if len(self.special) == 1 else 'ies'} under {str(root)!r} "
                          "named like data files are no regular files (FIFO, socket, device or dangling symlink) and "
                          f"are not indexed: {shown}", IndexingWarning, stacklevel=3)


def _class_dirs(root: Path) -> tuple[list[Path], set[Identity]]:
    """The class folders of `root` (its non-hidden subfolders, symlinks followed, sorted) and the identities of
    root and of them. A subfolder that is the root itself (a symlink loop) is no class; two names of one folder
    are an error."""
    root_identity = _identity(root)
    claimed: dict[Identity | None, Path] = {root_identity: root}
    class_dirs = []
    for path in sorted(p for p in root.iterdir() if not p.name.startswith(".") and p.is_dir()):
        identity = _identity(path)
        if identity == root_identity:
            continue
        if identity in claimed:
            raise ValueError(f"class folders {str(claimed[identity])!r} and {str(path)!r} are the same folder (a "
                             "symlink); remove one of them")
        claimed[identity] = path
        class_dirs.append(path)
    return class_dirs, {i for i in claimed if i is not None}


def index_class_folder(root: str | Path, extensions: tuple[str, ...]) -> tuple[list[Path], list[int], list[str]]:
    """Index an ImageFolder-style tree: root/<class>/**/<file>, classes sorted by name.

    A root holding files but no (non-hidden) subfolder is an unlabeled set: every label is -1 and classes is [].
    Symlinks are followed, but every folder is entered once (a symlink back to the root or to another class folder
    is not followed) and only regular files are indexed (a FIFO named x.png would block the pre-scan), each real
    file once: one reachable from two class folders (a symlink or hard link) belongs to the first class in sorted
    order; an IndexingWarning counts such files and the entries left out.
    Returns (paths, labels, classes). Raises FileNotFoundError / ValueError naming the path on a missing root,
    a root that is not a folder, a class folder without matching files, or no matching file at all.
    """
    root = Path(root).expanduser()
    exts = _norm_exts(extensions)
    if not root.exists():
        raise FileNotFoundError(f"data root {str(root)!r} does not exist")
    if not root.is_dir():
        raise ValueError(f"data root {str(root)!r} is not a directory")
    class_dirs, claimed = _class_dirs(root)
    files = _RegularFiles()
    if not class_dirs:  # flat folder: unlabeled
        paths = [p for p in sorted(root.iterdir()) if _wanted(p.name, exts) and not p.is_dir() and files.add(p)]
        files.warn(root)
        if not paths:
            raise ValueError(f"no file with extension in {exts} found in {str(root)!r}")
        return paths, [UNLABELED] * len(paths), []
    paths, labels = [], []
    for label, class_dir in enumerate(class_dirs):
        found = [p for p in _files_under(class_dir, exts, excluded=claimed) if files.add(p)]
        if not found:
            raise ValueError(
                f"class folder {str(class_dir)!r} holds no regular file with extension in {exts} that an earlier "
                f"class does not already hold (every subfolder of {str(root)!r} is read as a class)"
            )
        paths += found
        labels += [label] * len(found)
    files.warn(root)
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
    check_val_fraction(val_fraction, "val_fraction")
    n_val = int(n * val_fraction + 0.5)
    if val_fraction > 0 and n_val == 0:
        raise ValueError(f"val split would be empty: {n} samples x val_fraction {val_fraction} rounds to 0; "
                         "raise val_fraction or set it to 0 to train without validation")
    if n - n_val < 1:
        raise ValueError(f"train split would be empty: {n} samples, val_fraction {val_fraction}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(perm[n_val:]), perm[:n_val]


def resolve_source(source: str | None, *, root: str | None, list_file: str | None, generated: str,
                   sources: Sequence[str]) -> str:
    """`data.source` of a datamodule with one generated source and "folder": null picks "folder" when data.root or
    data.list is set (else `generated`), and "folder" needs exactly one of the two."""
    if source is None:
        source = "folder" if root is not None or list_file is not None else generated
    if source not in sources:
        raise ValueError(f"data.source must be one of {tuple(sources)} or null, got {source!r}")
    if source == "folder" and (root is None) == (list_file is None):
        raise ValueError(f"data.source='folder' needs exactly one of data.root and data.list, got "
                         f"root={root!r}, list={list_file!r}")
    return source
