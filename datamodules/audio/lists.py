"""Audio source lists: ESC-50's meta CSV, multi-label (AudioSet-style) CSVs and their class names, read and checked
with errors that name the file, line and column."""
from __future__ import annotations

import csv
from pathlib import Path

PATH_COLUMNS = ("path", "filename")  # the path column of a multi-label CSV


def read_esc50_csv(path: str | Path, *, audio_dir: str | None) -> tuple[list[Path], list[int], list[int]]:
    """ESC-50-style `filename,target,fold[,...]` CSV (header required; other columns ignored) -> (paths,
    labels, folds). Paths are relative to `audio_dir` (default: the CSV's folder). Class names: `esc50_classes`."""
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


def esc50_classes(path: str | Path, num_classes: int) -> list[str]:
    """Class names of an ESC-50-style CSV: its `category` column (ESC-50's esc50.csv: "dog", "rooster", ...) by
    target, where every target has one category; else "0", "1", ..."""
    names: dict[int, set[str]] = {}
    with Path(path).expanduser().open(newline="") as f:
        for row in csv.DictReader(f):
            if row.get("category"):
                names.setdefault(int(row["target"]), set()).add(row["category"].strip())
    if set(names) == set(range(num_classes)) and all(len(v) == 1 for v in names.values()):
        categories = [next(iter(names[i])) for i in range(num_classes)]
        if len(set(categories)) == num_classes:  # one distinct name per target
            return categories
    return [str(i) for i in range(num_classes)]


def csv_header(path: str | Path) -> list[str]:
    """The first row of a CSV file (its column names), stripped."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"list file {str(path)!r} does not exist or is not a file")
    with path.open(newline="") as f:
        return [c.strip() for c in next(csv.reader(f), [])]


def is_multilabel_csv(path: str | Path) -> bool:
    """A CSV with a `labels` column and a path column (`read_multilabel_csv`), not ESC-50's filename,target."""
    header = csv_header(path)
    return "labels" in header and any(c in header for c in PATH_COLUMNS)


def read_class_names(path: str | Path) -> list[str]:
    """data.classes: AudioSet's class_labels_indices.csv (`index,mid,display_name`; the mids, ordered by `index`) or
    any CSV with a `mid` column, else a text file of one class name per line (blank lines ignored)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"data.classes={str(path)!r} does not exist or is not a file")
    header = csv_header(path)
    if "mid" in header:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        if "index" in header:
            rows.sort(key=lambda row: int(row["index"]))
        names = [row["mid"].strip() for row in rows]
    else:
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise ValueError(f"data.classes={str(path)!r} holds no class names")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"data.classes={str(path)!r} lists the class {name!r} twice")
        seen.add(name)
    return names


def read_multilabel_csv(path: str | Path, *, audio_dir: str | None, delimiter: str
                        ) -> tuple[list[Path], list[list[str]], list[int], list[int]]:
    """A multi-label CSV (module docstring) -> (paths, class names per clip in row order, line numbers, folds (0
    without a `fold` column)). Paths are relative to `audio_dir` (default: the CSV's folder). A row with an
    empty `labels` cell is a clip without a class (label -1, multi-hot all zeros)."""
    path = Path(path).expanduser()
    base = Path(audio_dir).expanduser() if audio_dir else path.parent
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        fields = [c.strip() for c in reader.fieldnames or []]
        reader.fieldnames = fields
        column = next((c for c in PATH_COLUMNS if c in fields), None)
        if column is None or "labels" not in fields:
            raise ValueError(f"list file {str(path)!r}: a multi-label CSV needs a header with path (or filename) and "
                             f"labels, got {fields}")
        paths, names, lines, folds = [], [], [], []
        for n, row in enumerate(reader, start=2):
            if None in row:
                raise ValueError(f"{str(path)!r} line {n}: more cells than the header's {len(fields)} columns: quote "
                                 f"the labels cell when it holds the delimiter {delimiter!r} (\"a{delimiter}b\")")
            file = (row[column] or "").strip()
            if not file:
                raise ValueError(f"{str(path)!r} line {n}: empty {column} cell")
            paths.append(Path(file).expanduser() if Path(file).expanduser().is_absolute() else base / file)
            names.append([x.strip() for x in (row["labels"] or "").split(delimiter) if x.strip()])
            lines.append(n)
            try:
                folds.append(int(row["fold"]) if row.get("fold") not in (None, "") else 0)
            except ValueError as err:
                raise ValueError(f"{str(path)!r} line {n}: fold must be an integer: {err}") from err
    if not paths:
        raise ValueError(f"list file {str(path)!r} holds no entries")
    return paths, names, lines, folds


def class_sets(names: list[list[str]], classes: list[str], *, where: str, lines: list[int], source: str
               ) -> list[list[int]]:
    """Per-clip class names -> sorted class indices; a name outside `classes` is a ValueError naming the row."""
    lookup = {name: i for i, name in enumerate(classes)}
    out = []
    for row, line in zip(names, lines):
        unknown = [x for x in row if x not in lookup]
        if unknown:
            raise ValueError(f"{where} line {line}: unknown class name(s) {unknown} (the classes are {source}; "
                             f"{len(classes)} names, e.g. {classes[:5]})")
        out.append(sorted({lookup[x] for x in row}))
    return out
