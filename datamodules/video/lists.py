"""Video list files: a CSV or space-separated list of paths and labels (Kinetics / SSv2 style), checked with errors that
name the file and line."""
from __future__ import annotations

import csv
from pathlib import Path

from datamodules.indexing import UNLABELED


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
