"""Forecasting series: an ETT-layout CSV (a date column + numeric channels) read and checked, its chronological
train / val / test borders, missing values filled, the bundled CO2 demo CSV, the ETT download, and the sliding
windows that TimeSeriesDataModule (data.task=forecast) serves.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import Dataset

from datamodules.sampling import SampleKey, split_key

ETT_MONTH_ROWS = {"ett_hour": 30 * 24, "ett_minute": 30 * 24 * 4}  # rows per 30-day month
ETT_URL = "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/{name}.csv"
FLOAT32_MAX = float(np.finfo(np.float32).max)  # ~3.4e38: a raw value beyond it is an error (the model is float32)
MAX_ABS_VALUE = 1e15  # the largest |value| fed to the model (forecast: after the StandardScaler; classify: raw):
# RevIN's float32 variance of a window sums squares, which overflow to inf beyond ~1e19


def first_bad_value(values: np.ndarray, *, limit: float, allow_nan: bool) -> tuple[int, int, int] | None:
    """(row, column, how many) of the first value of (T, C) `values` in row-major order that is infinite, beyond
    +-limit, or NaN (unless allow_nan: a missing value, filled or refused by data.on_nan); None if none is."""
    bad = np.isinf(values) | (np.abs(np.nan_to_num(values)) > limit)
    if not allow_nan:
        bad |= np.isnan(values)
    if not bad.any():
        return None
    row, col = np.argwhere(bad)[0]
    return int(row), int(col), int(bad.sum())


def check_values(scaled: np.ndarray, *, limit: float, where: str, names: Sequence[str], raw: np.ndarray,
                 what: str) -> None:
    """ValueError naming the file, column, line and value of the first (T, C) `scaled` value (of CSV `raw`) that
    is not finite or beyond +-limit; `what` says what was done to the raw values."""
    found = first_bad_value(scaled, limit=limit, allow_nan=False)
    if found is not None:
        row, col, count = found
        raise ValueError(f"{where} column {names[col]!r}, line {row + 2}: {float(raw[row, col])!r} is "
                         f"{scaled[row, col]:.3g} {what}, beyond +-{limit:g} ({count} such values; RevIN's float32 "
                         f"variance overflows): the train rows do not show this column's scale; fix the cell or "
                         f"rescale the column")


def quoted(path: str | Path) -> str:
    """The path as error messages name it: 'data/ETTh1.csv'."""
    return repr(str(path))


def read_forecast_csv(path: str | Path, *, date_column: str, columns: Sequence[str] | None) -> tuple[np.ndarray, list[str]]:
    """ETT-layout CSV -> ((T, C) float64 values with NaN where missing, channel names). Rows must be in time order.

    Errors name the file and column: a missing file, a missing date column, unparseable or unsorted dates, a
    non-numeric cell, an infinite value or one beyond the float32 range (with its line), an unknown `columns`
    entry, or no channel at all."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"data.root {quoted(path)} does not exist or is not a file (a CSV with a "
                                f"{date_column!r} column and numeric channels)")
    try:
        frame = pd.read_csv(path)
    except Exception as err:  # pandas raises EmptyDataError / ParserError / UnicodeDecodeError ...
        raise ValueError(f"{quoted(path)} is not a readable CSV: {type(err).__name__}: {err}") from err
    if date_column not in frame.columns:
        raise ValueError(f"{quoted(path)} has no date column {date_column!r} (columns: {list(frame.columns)}); "
                         f"set data.date_column to the name of its time stamp column")
    try:
        dates = pd.to_datetime(frame[date_column])
    except Exception as err:
        raise ValueError(f"{quoted(path)} column {date_column!r}: dates that do not parse: {err}") from err
    if not dates.is_monotonic_increasing:
        bad = int(np.flatnonzero(np.diff(dates.values.astype("datetime64[ns]").astype(np.int64)) < 0)[0]) + 3
        raise ValueError(f"{quoted(path)} column {date_column!r}: dates are not in increasing order (line {bad}); "
                         f"sort the file by time, the chronological split relies on it")
    names = [c for c in frame.columns if c != date_column] if columns is None else list(columns)
    unknown = [c for c in names if c not in frame.columns or c == date_column]
    if unknown:
        raise ValueError(f"{quoted(path)}: data.columns {unknown} are not channels of the file "
                         f"(channels: {[c for c in frame.columns if c != date_column]})")
    if not names:
        raise ValueError(f"{quoted(path)} holds no channel besides the date column {date_column!r}")
    for name in names:
        if not pd.api.types.is_numeric_dtype(frame[name]):
            cells = pd.to_numeric(frame[name], errors="coerce")
            bad = frame[name][cells.isna() & frame[name].notna()]
            if len(bad):
                line = int(bad.index[0]) + 2  # 1-based, after the header
                raise ValueError(f"{quoted(path)} column {name!r} is not numeric: {bad.iloc[0]!r} at line {line}; "
                                 f"drop the column or list the numeric ones in data.columns")
            frame[name] = cells
    values = frame[names].to_numpy(dtype=np.float64, copy=True)  # (T, C)
    found = first_bad_value(values, limit=FLOAT32_MAX, allow_nan=True)
    if found is not None:
        row, col, count = found
        value = float(values[row, col])
        problem = "not finite" if np.isinf(value) else f"beyond the float32 range +-{FLOAT32_MAX:.3g}"
        raise ValueError(f"{quoted(path)} column {names[col]!r}, line {row + 2}: {value!r} is {problem} ({count} "
                         f"such cells in the file); the model computes in float32: fix the cell or rescale the "
                         f"column (an empty cell is a missing value, see data.on_nan)")
    return values, names


def forecast_borders(n: int, *, split: str, context: int, ratios: Sequence[float]) -> list[tuple[int, int]]:
    """[(start, end)] row ranges of train / val / test. Val and test begin `context` rows before their own first
    row (so their first window predicts their first row), as the PatchTST / Informer loaders do."""
    if split in ETT_MONTH_ROWS:
        month = ETT_MONTH_ROWS[split]
        train, val, test = 12 * month, 4 * month, 4 * month
        if n < train + val + test:
            raise ValueError(f"data.split={split} needs {train + val + test} rows (12/4/4 months), the file has {n}")
    else:
        train, test = int(n * ratios[0]), int(n * ratios[2])
        val = n - train - test
    ends = [train, train + val, train + val + test]
    return [(0, ends[0]), (ends[0] - context, ends[1]), (ends[1] - context, ends[2])]


def fill_missing(values: np.ndarray, *, on_nan: str, where: str, names: Sequence[str]) -> np.ndarray:
    """(T, C) with NaN -> linearly interpolated along time (edges: nearest value) under on_nan="interpolate";
    a ValueError naming the file, column and first missing row under "raise" or for a channel without any value."""
    missing = np.isnan(values)
    if not missing.any():
        return values
    first = np.argwhere(missing)[0]
    if on_nan == "raise":
        raise ValueError(f"{where}: missing / NaN value in column {names[first[1]]!r} at row {first[0]} "
                         f"({int(missing.sum())} in all); set data.on_nan=interpolate to fill them")
    empty = [names[c] for c in range(values.shape[1]) if missing[:, c].all()]
    if empty:
        raise ValueError(f"{where}: column(s) {empty} hold no value at all in this part; drop them (data.columns)")
    return pd.DataFrame(values).interpolate(method="linear", limit_direction="both").to_numpy()


def write_demo_csv(folder: str | Path) -> Path:
    """statsmodels' weekly Mauna Loa CO2 series (1958-2001, 2284 rows, 59 missing) as `date,co2` CSV in the ETT
    layout, written once (atomically) and then read through the normal CSV path."""
    import statsmodels.api as sm

    path = Path(folder).expanduser() / "co2_weekly.csv"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    data = sm.datasets.co2.load_pandas().data  # DatetimeIndex, column co2 with NaN
    frame = pd.DataFrame({"date": data.index.strftime("%Y-%m-%d %H:%M:%S"), "co2": data["co2"].to_numpy()})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return path


def download_ett(name: str = "ETTh1", folder: str | Path = "data") -> Path:
    """Fetch an ETT CSV (ETTh1, ETTh2, ETTm1, ETTm2) from the ETDataset GitHub repository (for users; never
    called by tests or default runs). Returns the file path."""
    import urllib.request

    if name not in ("ETTh1", "ETTh2", "ETTm1", "ETTm2"):
        raise ValueError(f"unknown ETT set {name!r}: choose ETTh1, ETTh2, ETTm1 or ETTm2")
    path = Path(folder).expanduser() / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    urllib.request.urlretrieve(ETT_URL.format(name=name), path)
    return path


class WindowDataset(Dataset):
    """Sliding windows over a (T, C) series: {"series": (context, C)} and, with horizon > 0, {"future":
    (horizon, C)} NaN-padded past the end. Window i starts at row i*stride; with horizon > 0 every window whose
    context fits is kept, so the windows valid for a shorter horizon are a prefix (mae/modalities/timeseries/forecast.py uses that)."""

    def __init__(self, data: Tensor, *, context: int, horizon: int = 0, stride: int = 1,
                 min_future: int = 0) -> None:
        self.data, self.context, self.horizon, self.stride = data, context, horizon, stride
        last = data.shape[0] - context - min_future  # last start with at least min_future future rows
        self.count = max(0, last // stride + 1) if last >= 0 else 0

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, key: SampleKey) -> dict[str, Tensor]:
        _, i = split_key(key)
        start = i * self.stride
        item = {"series": self.data[start : start + self.context]}  # (context, C)
        if self.horizon:
            future = self.data[start + self.context : start + self.context + self.horizon]  # (<=H, C)
            pad = self.horizon - future.shape[0]
            if pad:
                future = torch.cat([future, future.new_full((pad, future.shape[1]), float("nan"))])
            item["future"] = future  # (H, C)
        return item
