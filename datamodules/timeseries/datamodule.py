"""Time series for PatchTST-style masked pre-training: forecasting CSVs and UCR/UEA classification sets.

task="forecast": `root` = a CSV in the ETT / Electricity / Weather layout (a date column + numeric channels), or
by default the weekly Mauna Loa CO2 series bundled in statsmodels, written once to CSV in that layout. The rows
are split chronologically (ETT's 12/4/4 months for ETTh*/ETTm* files, else PatchTST's 0.7/0.1/0.2 ratios;
val/test windows start `context` rows before their border, as the reference loaders), missing values are
interpolated inside each split only (or raise), and a StandardScaler is fitted on the train rows only. Training
batches are sliding windows {"series": (B, context, C)}; evaluation windows add {"future": (B, H_max, C)}
(NaN after the end of the split). The frozen-encoder forecast evaluation is `evaluate_frozen` (mae/modalities/timeseries/forecast.py).

task="classify": `name` = a UCR/UEA set bundled with sktime (GunPoint, BasicMotions, JapaneseVowels, ...), or
`train_file` (+ `test_file`) = `.ts` files of the archive. Univariate or multivariate; unequal lengths are padded
at the end with an `observed` mask (-> Tokens.pad) or resampled to `context` (`unequal`). Batches are
{"series": (B, context, C), "observed": (B, context) bool, "label": (B,)}. The official TRAIN split pre-trains
and fits the probes, TEST is the validation split the probes are scored on (the UCR protocol).
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.preprocessing import StandardScaler
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from datamodules.base import SplitDataModule
from datamodules.checks import check_bool, check_float, check_floats, check_int, check_optional_str
from datamodules.indexing import split_indices
from datamodules.sampling import SampleKey, split_key

TASKS = ("classify", "forecast")
SPLITS = ("auto", "ett_hour", "ett_minute", "ratios")
ETT_MONTH_ROWS = {"ett_hour": 30 * 24, "ett_minute": 30 * 24 * 4}  # rows per 30-day month
EVAL_BATCH = 256  # windows per batch in the forecast evaluation
ETT_URL = "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/{name}.csv"


# ------------------------------------------------------------------------------------- forecasting CSV
def _where(path: str | Path) -> str:
    return repr(str(path))


def read_forecast_csv(path: str | Path, *, date_column: str, columns: Sequence[str] | None) -> tuple[np.ndarray, list[str]]:
    """ETT-layout CSV -> ((T, C) float64 values with NaN where missing, channel names). Rows must be in time order.

    Errors name the file and column: a missing file, a missing date column, unparseable or unsorted dates, a
    non-numeric cell, an unknown `columns` entry, or no channel at all."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"data.root {_where(path)} does not exist or is not a file (a CSV with a "
                                f"{date_column!r} column and numeric channels)")
    try:
        frame = pd.read_csv(path)
    except Exception as err:  # pandas raises EmptyDataError / ParserError / UnicodeDecodeError ...
        raise ValueError(f"{_where(path)} is not a readable CSV: {type(err).__name__}: {err}") from err
    if date_column not in frame.columns:
        raise ValueError(f"{_where(path)} has no date column {date_column!r} (columns: {list(frame.columns)}); "
                         f"set data.date_column to the name of its time stamp column")
    try:
        dates = pd.to_datetime(frame[date_column])
    except Exception as err:
        raise ValueError(f"{_where(path)} column {date_column!r}: dates that do not parse: {err}") from err
    if not dates.is_monotonic_increasing:
        bad = int(np.flatnonzero(np.diff(dates.values.astype("datetime64[ns]").astype(np.int64)) < 0)[0]) + 3
        raise ValueError(f"{_where(path)} column {date_column!r}: dates are not in increasing order (line {bad}); "
                         f"sort the file by time, the chronological split relies on it")
    names = [c for c in frame.columns if c != date_column] if columns is None else list(columns)
    unknown = [c for c in names if c not in frame.columns or c == date_column]
    if unknown:
        raise ValueError(f"{_where(path)}: data.columns {unknown} are not channels of the file "
                         f"(channels: {[c for c in frame.columns if c != date_column]})")
    if not names:
        raise ValueError(f"{_where(path)} holds no channel besides the date column {date_column!r}")
    for name in names:
        if not pd.api.types.is_numeric_dtype(frame[name]):
            cells = pd.to_numeric(frame[name], errors="coerce")
            bad = frame[name][cells.isna() & frame[name].notna()]
            if len(bad):
                line = int(bad.index[0]) + 2  # 1-based, after the header
                raise ValueError(f"{_where(path)} column {name!r} is not numeric: {bad.iloc[0]!r} at line {line}; "
                                 f"drop the column or list the numeric ones in data.columns")
            frame[name] = cells
    return frame[names].to_numpy(dtype=np.float64, copy=True), names


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


# -------------------------------------------------------------------------------------- classification
def bundled_ucr_dir() -> Path:
    import sktime.datasets

    return Path(sktime.datasets.__file__).parent / "data"


def bundled_ucr_names() -> list[str]:
    """UCR/UEA sets that ship inside sktime (no download)."""
    root = bundled_ucr_dir()
    return sorted(p.name for p in root.iterdir() if (p / f"{p.name}_TRAIN.ts").is_file())


def read_ts(path: str | Path) -> tuple[list[np.ndarray], list[str]]:
    """A `.ts` file of the UCR/UEA archive -> ([(L_i, C) float64 arrays], [class strings]); lengths may differ."""
    from sktime.datasets import load_from_tsfile

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{_where(path)} does not exist (a .ts file of the UCR/UEA archive)")
    try:
        x, y = load_from_tsfile(str(path), return_data_type="nested_univ")  # DataFrame of pd.Series cells
    except Exception as err:
        raise ValueError(f"{_where(path)} is not a readable .ts file: {type(err).__name__}: {err}") from err
    series = []
    for row in range(len(x)):
        cols = [np.asarray(x.iloc[row, c], dtype=np.float64) for c in range(x.shape[1])]
        length = max(len(c) for c in cols)
        series.append(np.stack([np.pad(c, (0, length - len(c)), constant_values=np.nan) for c in cols], axis=1))
    return series, [str(v) for v in y]


def fit_length(x: np.ndarray, *, context: int, unequal: str) -> tuple[np.ndarray, np.ndarray]:
    """(L, C) -> ((context, C) float32, (context,) observed). "pad": zeros after the end, observed False there
    (a longer series keeps its last `context` steps); "resample": linear interpolation to `context` steps."""
    length = x.shape[0]
    if unequal == "resample":
        t = torch.from_numpy(x.T[None]).float()  # (1, C, L)
        out = torch.nn.functional.interpolate(t, size=context, mode="linear", align_corners=True)[0].T
        return out.numpy(), np.ones(context, dtype=bool)
    x = x[-context:]
    out = np.zeros((context, x.shape[1]), dtype=np.float32)
    out[: x.shape[0]] = x
    observed = np.zeros(context, dtype=bool)
    observed[: x.shape[0]] = True
    return out, observed


class SeriesDataset(Dataset):
    """Labelled series padded / resampled to `context`: {"series", "observed", "label"}."""

    def __init__(self, series: Sequence[np.ndarray], labels: Sequence[int], *, context: int, unequal: str) -> None:
        fitted = [fit_length(s, context=context, unequal=unequal) for s in series]
        self.series = torch.from_numpy(np.stack([f[0] for f in fitted]))  # (n, context, C)
        self.observed = torch.from_numpy(np.stack([f[1] for f in fitted]))  # (n, context)
        self.labels = list(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key: SampleKey) -> dict[str, Tensor | int]:
        _, i = split_key(key)
        return {"series": self.series[i], "observed": self.observed[i], "label": self.labels[i]}


def clean_series(series: list[np.ndarray], *, on_nan: str, where: str) -> list[np.ndarray]:
    """Trailing NaN of every channel (unequal-length padding in the file) is cut; NaN inside a series is
    interpolated or raises (on_nan); an empty series raises."""
    out = []
    for i, s in enumerate(series):
        rows = np.flatnonzero(~np.isnan(s).all(axis=1))
        if rows.size == 0:
            raise ValueError(f"{where}: series {i} holds no value")
        s = s[: rows[-1] + 1]
        out.append(fill_missing(s, on_nan=on_nan, where=f"{where} series {i}", names=[f"dim_{c}" for c in range(s.shape[1])]))
    return out


# ----------------------------------------------------------------------------------------- datamodule
class TimeSeriesDataModule(SplitDataModule):
    """Forecasting windows or labelled UCR/UEA series (module docstring); `data.task` picks which.

    context: steps per sample; null = 512 for forecasting (PatchTST), the longest series rounded up to a multiple
    of `patch_len` for classification. horizons: forecast horizons evaluated (e.g. [96, 192, 336, 720]).
    window_stride: step between pre-training windows. on_nan: "interpolate" or "raise". unequal: "pad" or
    "resample". ridge_alphas: ridge strengths (relative to the mean feature energy) tried on the val split.
    plot_dir: where the forecast picture goes (null: none). debug=fast's image keys (source="synthetic",
    synthetic_size, image_size) are accepted and ignored: the bundled data is already small.
    """

    unit = "series"

    def __init__(
        self,
        *,
        task: str = "classify",
        name: str | None = "GunPoint",
        train_file: str | None = None,
        test_file: str | None = None,
        root: str | None = None,
        date_column: str = "date",
        columns: list[str] | None = None,
        split: str = "auto",
        ratios: list[float] = (0.7, 0.1, 0.2),
        context: int | None = None,
        patch_len: int = 12,
        horizons: list[int] = (96,),
        window_stride: int = 1,
        on_nan: str = "interpolate",
        unequal: str = "pad",
        batch_size: int = 64,
        num_workers: int = 0,
        val_fraction: float = 0.2,
        seed: int = 0,
        pin_memory: bool = False,
        demo_dir: str | None = None,
        plot_dir: str | None = None,
        ridge_alphas: list[float] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0),
        source: str | None = None,
        synthetic_size: int | None = None,  # noqa: ARG002 (debug=fast)
        image_size: object = None,  # noqa: ARG002 (debug=fast)
    ) -> None:
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"data.task must be one of {TASKS}, got {task!r}")
        if source not in (None, "synthetic", "demo", "folder"):
            raise ValueError(f"data.source must be null, 'demo' or 'folder' for time series, got {source!r}")
        if split not in SPLITS:
            raise ValueError(f"data.split must be one of {SPLITS}, got {split!r}")
        if on_nan not in ("interpolate", "raise"):
            raise ValueError(f"data.on_nan must be 'interpolate' or 'raise', got {on_nan!r}")
        if unequal not in ("pad", "resample"):
            raise ValueError(f"data.unequal must be 'pad' or 'resample', got {unequal!r}")
        self.task, self.split, self.on_nan, self.unequal = task, split, on_nan, unequal
        self.name = check_optional_str("data.name", name)
        self.train_file = check_optional_str("data.train_file", train_file)
        self.test_file = check_optional_str("data.test_file", test_file)
        self.root = check_optional_str("data.root", root)
        self.date_column = str(date_column)
        self.columns = None if columns is None else [str(c) for c in columns]
        self.ratios = check_floats("data.ratios", ratios, length=3)
        if min(self.ratios) <= 0 or abs(sum(self.ratios) - 1) > 1e-6:
            raise ValueError(f"data.ratios must be three positive fractions (train, val, test) summing to 1, got {self.ratios}")
        self.patch_len = check_int("data.patch_len", patch_len, minimum=1)
        self.context = None if context is None else check_int("data.context", context, minimum=self.patch_len)
        self.horizons = sorted(check_int(f"data.horizons[{i}]", h, minimum=1) for i, h in enumerate(horizons))
        if not self.horizons:
            raise ValueError("data.horizons must hold at least one horizon, e.g. [96]")
        self.window_stride = check_int("data.window_stride", window_stride, minimum=1)
        self.batch_size = check_int("data.batch_size", batch_size, minimum=1)
        self.num_workers = check_int("data.num_workers", num_workers, minimum=0)
        self.val_fraction = check_float("data.val_fraction", val_fraction)
        self.seed = check_int("data.seed", seed)
        self.pin_memory = check_bool("data.pin_memory", pin_memory)
        self.demo_dir = check_optional_str("data.demo_dir", demo_dir)
        self.plot_dir = check_optional_str("data.plot_dir", plot_dir)
        self.ridge_alphas = check_floats("data.ridge_alphas", ridge_alphas)
        self._ready = False

    # ---------------------------------------------------------------------------------- forecasting
    def csv_path(self) -> Path:
        if self.root is not None:
            return Path(self.root).expanduser()
        folder = self.demo_dir or Path(tempfile.gettempdir()) / "mae_timeseries_demo"
        return write_demo_csv(folder)

    def _prepare_forecast(self) -> None:
        path = self.csv_path()
        where = _where(path)
        raw, self.channel_names = read_forecast_csv(path, date_column=self.date_column, columns=self.columns)
        context = self.context if self.context is not None else 512
        self.context_len = context
        split = self.split
        if split == "auto":
            stem = path.stem.lower()
            split = "ett_hour" if stem.startswith("etth") else "ett_minute" if stem.startswith("ettm") else "ratios"
        borders = forecast_borders(raw.shape[0], split=split, context=context, ratios=self.ratios)
        own = [(borders[0][0], borders[0][1]), (borders[0][1], borders[1][1]), (borders[1][1], borders[2][1])]
        for (lo, hi), part in zip(own, ("train", "val", "test")):  # interpolate inside each split only: no leak
            raw[lo:hi] = fill_missing(raw[lo:hi], on_nan=self.on_nan, where=f"{where} ({part} rows {lo}-{hi})",
                                      names=self.channel_names)
        self.scaler = StandardScaler().fit(raw[: borders[0][1]])  # train rows only; zero variance -> scale 1
        data = torch.from_numpy(self.scaler.transform(raw)).float()  # (T, C)
        self.split_rows = {}
        for (lo, hi), part in zip(borders, ("train", "val", "test")):
            need = context + self.horizons[0]
            if lo < 0 or hi - lo < need:
                raise ValueError(f"{where}: the {part} split holds {max(0, hi - lo)} rows (from {lo} to {hi}), fewer than "
                                 f"data.context + the shortest horizon = {need}; use a longer series or lower "
                                 f"data.context / data.horizons")
            self.split_rows[part] = (lo, hi)
        h = self.horizons[-1]
        part = lambda name: data[slice(*self.split_rows[name])]  # noqa: E731
        self.train_set = WindowDataset(part("train"), context=context, stride=self.window_stride)
        self.val_set = WindowDataset(part("val"), context=context)
        self.forecast_sets = {name: WindowDataset(part(name), context=context, horizon=h, min_future=self.horizons[0])
                              for name in ("train", "val", "test")}
        self.train_eval_set = self.forecast_sets["train"]
        self._classes = []

    # ------------------------------------------------------------------------------- classification
    def _ucr_files(self) -> tuple[Path, Path | None]:
        if self.train_file is not None:
            return Path(self.train_file), None if self.test_file is None else Path(self.test_file)
        names = bundled_ucr_names()
        if self.name not in names:
            raise ValueError(f"data.name={self.name!r} is not bundled with sktime (bundled: {names}); give the archive's "
                             f".ts files with data.train_file=..._TRAIN.ts data.test_file=..._TEST.ts")
        folder = bundled_ucr_dir() / self.name
        return folder / f"{self.name}_TRAIN.ts", folder / f"{self.name}_TEST.ts"

    def _prepare_classify(self) -> None:
        train_path, test_path = self._ucr_files()
        train_x, train_y = read_ts(train_path)
        train_x = clean_series(train_x, on_nan=self.on_nan, where=_where(train_path))
        if test_path is not None:
            test_x, test_y = read_ts(test_path)
            test_x = clean_series(test_x, on_nan=self.on_nan, where=_where(test_path))
        else:
            tr, va = split_indices(len(train_x), val_fraction=self.val_fraction, seed=self.seed)
            test_x, test_y = [train_x[i] for i in va], [train_y[i] for i in va]
            train_x, train_y = [train_x[i] for i in tr], [train_y[i] for i in tr]
        channels = {s.shape[1] for s in train_x + test_x}
        if len(channels) != 1:
            raise ValueError(f"{_where(train_path)}: series have different channel counts {sorted(channels)}")
        self._classes = sorted(set(train_y) | set(test_y))
        lookup = {c: i for i, c in enumerate(self._classes)}
        longest = max(s.shape[0] for s in train_x + test_x)
        p = self.patch_len
        context = self.context if self.context is not None else max(p, -(-longest // p) * p)
        self.context_len, self.channel_names = context, [f"dim_{c}" for c in range(channels.pop())]
        make = lambda xs, ys: SeriesDataset(xs, [lookup[y] for y in ys], context=context, unequal=self.unequal)  # noqa: E731
        self.train_set = make(train_x, train_y)
        self.train_eval_set = self.train_set  # no augmentation
        self.val_set = make(test_x, test_y)

    def _prepare(self) -> None:
        if self._ready:
            return
        self._prepare_forecast() if self.task == "forecast" else self._prepare_classify()
        self._ready = True

    # ----------------------------------------------------------------------------------- evaluation
    def eval_dataloaders(self) -> tuple[DataLoader, DataLoader]:
        """(TRAIN, TEST) in order, in batches of at least EVAL_BATCH series (no gradients: fewer, bigger calls)."""
        self._prepare()
        batch = max(self.batch_size, EVAL_BATCH)
        return (DataLoader(self.train_eval_set, batch_size=batch, num_workers=self.num_workers),
                DataLoader(self.val_set, batch_size=batch, num_workers=self.num_workers))

    @property
    def eval_tasks(self) -> tuple[str, ...]:
        """eval=forecast (mae.modalities.timeseries.forecast.ForecastProbe) for data.task=forecast, else the shared
        probe (eval=default; conf/modality/timeseries.yaml turns on eval.knn_standardize)."""
        return ("forecast",) if self.task == "forecast" else ("probe",)

    def forecast_loaders(self) -> dict[str, DataLoader]:
        """Forecasting: train / val / test windows in time order, in batches of at least EVAL_BATCH windows."""
        self._prepare()
        batch = max(self.batch_size, EVAL_BATCH)  # no gradients: bigger batches, fewer calls
        return {name: DataLoader(ds, batch_size=batch, num_workers=self.num_workers)
                for name, ds in self.forecast_sets.items()}


__all__ = ["TimeSeriesDataModule", "WindowDataset", "SeriesDataset", "read_forecast_csv", "forecast_borders",
           "fill_missing", "fit_length", "read_ts", "write_demo_csv", "download_ett", "bundled_ucr_names"]
