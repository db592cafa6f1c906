"""Time series for PatchTST-style masked pre-training: forecasting CSVs and UCR/UEA classification sets.

task="forecast": `root` = a CSV in the ETT / Electricity / Weather layout (a date column + numeric channels), or
by default the weekly Mauna Loa CO2 series bundled in statsmodels, written once to CSV in that layout. The rows
are split chronologically (ETT's 12/4/4 months for ETTh*/ETTm* files, else PatchTST's 0.7/0.1/0.2 ratios;
val/test windows start `context` rows before their border, as the reference loaders), missing values are
interpolated inside each split only (or raise), and a StandardScaler is fitted on the train rows only. Batches are
sliding windows {"series": (B, context, C), "future": (B, H_max, C)} (the future NaN after the end of the split;
pre-training reads the series only, fine-tuning trains on the complete futures and tests on the test windows). The readers and windows are in datamodules/timeseries/forecast.py; the
frozen-encoder forecast evaluation is `evaluate_frozen` (mae/modalities/timeseries/forecast.py).

task="classify": `name` = a UCR/UEA set bundled with sktime (GunPoint, BasicMotions, JapaneseVowels, ...), or
`train_file` (+ `test_file`) = `.ts` files of the archive (datamodules/timeseries/ucr.py). Univariate or
multivariate; unequal lengths are padded at the end with an `observed` mask (-> Tokens.pad) or resampled to
`context` (`unequal`). Batches are {"series": (B, context, C), "observed": (B, context) bool, "label": (B,)}. The
official TRAIN split pre-trains and fits the probes, TEST is the validation split the probes are scored on (the
UCR protocol).

An option the chosen task does not read is an error naming it (datamodules/timeseries/options.py). Values the float32
model cannot take are errors at load time naming the file, column and line (CSV: infinite or beyond the float32
range, or beyond +-1e15 after the scaler) or series, dim and step (.ts: infinite or beyond +-1e15).
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import torch
from sklearn.preprocessing import StandardScaler
from torch.utils.data import DataLoader

from datamodules.base import SplitDataModule
from datamodules.checks import build_config, check_fields, check_val_fraction
from datamodules.indexing import split_indices
from datamodules.timeseries.forecast import (
    MAX_ABS_VALUE,
    WindowDataset,
    check_values,
    fill_missing,
    forecast_borders,
    quoted,
    read_forecast_csv,
    write_demo_csv,
)
from datamodules.timeseries.options import unread_options
from datamodules.timeseries.ucr import SeriesDataset, bundled_ucr_dir, bundled_ucr_names, clean_series, read_ts

Task = Literal["classify", "forecast"]
Split = Literal["auto", "ett_hour", "ett_minute", "ratios"]
OnNaN = Literal["interpolate", "raise"]
Unequal = Literal["pad", "resample"]
TASKS, SPLITS = get_args(Task), get_args(Split)
EVAL_BATCH = 256  # windows per batch in the forecast evaluation


# ---------------------------------------------------------------------------------------------- config
@dataclass(kw_only=True, frozen=True)
class TimeSeriesDataConfig:
    """The `data` options of TimeSeriesDataModule (conf/modality/timeseries.yaml), checked when built: an error
    names the key (`data.<field>`), what it got and what to write. Lists are stored as tuples, paths as str."""

    task: Task = "classify"  # classify (UCR/UEA series + labels) | forecast (windows of a CSV)
    name: str | None = "OSULeaf"  # classify: a UCR/UEA set bundled with sktime (bundled_ucr_names())
    train_file: str | None = None  # classify: an archive _TRAIN.ts file (overrides name)
    test_file: str | None = None  # classify: its _TEST.ts file (null: a val_fraction split of the train file)
    unequal: Unequal = "pad"  # classify, unequal lengths: pad (+ observed mask) | resample (linear, to context)
    root: str | None = None  # forecast: the CSV path; null: the bundled CO2 demo written to demo_dir
    date_column: str = "date"  # forecast: the CSV's time stamp column
    columns: tuple[str, ...] | None = None  # forecast: the channels to use (null: every column but the date)
    split: Split = "auto"  # forecast: auto (ETT months for ETTh*/ETTm* files, else ratios) | ett_hour | ...
    ratios: tuple[float, float, float] = (0.7, 0.1, 0.2)  # forecast, split=ratios: train/val/test, positive, sum 1
    context: int | None = None  # steps per sample, >= patch_len; null: 512 (forecast), the longest series (classify)
    channels: int | None = None  # C of the (B, L, C) series; null: read from the data at start-up (what it must be)
    patch_len: int = 12  # the tokenizer's patch length (classify rounds context up to a multiple of it), >= 1
    horizons: tuple[int, ...] = (96,)  # forecast horizons evaluated, each >= 1 (used sorted: sorted_horizons)
    window_stride: int = 1  # forecast: rows between pre-training windows, >= 1
    on_nan: OnNaN = "interpolate"  # missing values: interpolate (inside each split) | raise
    batch_size: int = 64  # series / windows per batch
    num_workers: int = 0  # DataLoader worker processes
    val_fraction: float = 0.2  # classify without test_file: share of the train file held out
    seed: int = 0  # the val_fraction split and the shuffle
    pin_memory: bool = False  # DataLoader pin_memory
    demo_dir: str | None = None  # where the CO2 demo CSV is written (null: $TMPDIR/mae_timeseries_demo)
    plot_dir: str | None = None  # forecast: where the forecast picture goes (null: none)
    ridge_alphas: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # forecast head: ridge strengths tried on val

    def __post_init__(self) -> None:
        check_fields(self, minimum={"patch_len": 1, "window_stride": 1, "batch_size": 1, "num_workers": 0})
        check_val_fraction(self.val_fraction)
        if min(self.ratios) <= 0 or abs(sum(self.ratios) - 1) > 1e-6:
            raise ValueError(f"data.ratios must be three positive fractions (train, val, test) summing to 1, "
                             f"got {[*self.ratios]}")
        if self.context is not None and self.context < self.patch_len:
            raise ValueError(f"data.context must be >= {self.patch_len} (data.patch_len), got {self.context}")
        for i, h in enumerate(self.horizons):
            if h < 1:
                raise ValueError(f"data.horizons[{i}] must be >= 1, got {h}")
        if not self.horizons:
            raise ValueError("data.horizons must hold at least one horizon, e.g. [96]")
        unread = unread_options(self)
        if unread:
            raise ValueError(f"options data.task={self.task} does not read (they would be ignored): "
                             + "; ".join(unread))

    @property
    def resolved_split(self) -> str:
        """split, auto resolved: ett_hour / ett_minute for a data.root named ETTh* / ETTm*, else ratios (the demo)."""
        if self.split != "auto":
            return self.split
        stem = Path(self.root).stem.lower() if self.root is not None else ""
        return "ett_hour" if stem.startswith("etth") else "ett_minute" if stem.startswith("ettm") else "ratios"

    @property
    def sorted_horizons(self) -> list[int]:
        """horizons in increasing order: the shortest decides which windows fit, the longest their future."""
        return sorted(self.horizons)


# ----------------------------------------------------------------------------------------- datamodule
class TimeSeriesDataModule(SplitDataModule):
    """Forecasting windows or labelled UCR/UEA series (module docstring); `data.task` picks which. The options are
    TimeSeriesDataConfig's fields; `horizons` is kept sorted, `context_len` is the context in use after setup."""

    unit = "series"
    cfg: TimeSeriesDataConfig

    def __init__(self, **options: object) -> None:
        super().__init__(build_config(TimeSeriesDataConfig, options, owner="TimeSeriesDataModule"))
        cfg = self.cfg
        self.task, self.horizons = cfg.task, cfg.sorted_horizons  # ForecastData: horizons, ridge_alphas, plot_dir
        self.ridge_alphas, self.plot_dir = [*cfg.ridge_alphas], cfg.plot_dir
        self._ready = False

    # ---------------------------------------------------------------------------------- forecasting
    def csv_path(self) -> Path:
        if self.cfg.root is not None:
            return Path(self.cfg.root).expanduser()
        folder = self.cfg.demo_dir or Path(tempfile.gettempdir()) / "mae_timeseries_demo"
        return write_demo_csv(folder)

    def _prepare_forecast(self) -> None:
        path = self.csv_path()
        where = quoted(path)
        raw, self.channel_names = read_forecast_csv(path, date_column=self.cfg.date_column, columns=self.cfg.columns)
        context = self.cfg.context if self.cfg.context is not None else 512
        self.context_len = context
        borders = forecast_borders(raw.shape[0], split=self.cfg.resolved_split, context=context, ratios=self.cfg.ratios)
        own = [(borders[0][0], borders[0][1]), (borders[0][1], borders[1][1]), (borders[1][1], borders[2][1])]
        for (lo, hi), part in zip(own, ("train", "val", "test")):  # interpolate inside each split only: no leak
            raw[lo:hi] = fill_missing(raw[lo:hi], on_nan=self.cfg.on_nan, where=f"{where} ({part} rows {lo}-{hi})",
                                      names=self.channel_names)
        self.scaler = StandardScaler().fit(raw[: borders[0][1]])  # train rows only; zero variance -> scale 1
        scaled = self.scaler.transform(raw)  # (T, C) float64
        check_values(scaled, limit=MAX_ABS_VALUE, where=where, names=self.channel_names, raw=raw,
                     what=f"after the StandardScaler fitted on the train rows 0-{borders[0][1]}")
        data = torch.from_numpy(scaled).float()  # (T, C)
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
        # Every train / val window carries its future (B, H_max, C), NaN past the end of the split, as PatchTST's
        # Dataset_ETT_* returns (seq_x, seq_y) in pre-training too: pre-training reads "series" only, fine-tuning
        # (mae/modalities/timeseries/finetune.py) trains on the windows whose future is complete. Same windows
        # as without futures (every start whose context fits).
        self.train_set = WindowDataset(part("train"), context=context, horizon=h, stride=self.cfg.window_stride)
        self.val_set = WindowDataset(part("val"), context=context, horizon=h)
        self.forecast_sets = {name: WindowDataset(part(name), context=context, horizon=h, min_future=self.horizons[0])
                              for name in ("train", "val", "test")}
        self.train_eval_set = self.forecast_sets["train"]
        self._classes = []

    # ------------------------------------------------------------------------------- classification
    def _ucr_files(self) -> tuple[Path, Path | None]:
        if self.cfg.train_file is not None:
            return Path(self.cfg.train_file), None if self.cfg.test_file is None else Path(self.cfg.test_file)
        names = bundled_ucr_names()
        if self.cfg.name not in names:
            raise ValueError(f"data.name={self.cfg.name!r} is not bundled with sktime (bundled: {names}); give the "
                             f"archive's .ts files with data.train_file=..._TRAIN.ts data.test_file=..._TEST.ts")
        folder = bundled_ucr_dir() / self.cfg.name
        return folder / f"{self.cfg.name}_TRAIN.ts", folder / f"{self.cfg.name}_TEST.ts"

    def _prepare_classify(self) -> None:
        train_path, test_path = self._ucr_files()
        train_x, train_y = read_ts(train_path)
        train_x = clean_series(train_x, on_nan=self.cfg.on_nan, where=quoted(train_path))
        if test_path is not None:
            test_x, test_y = read_ts(test_path)
            test_x = clean_series(test_x, on_nan=self.cfg.on_nan, where=quoted(test_path))
        else:
            tr, va = split_indices(len(train_x), val_fraction=self.cfg.val_fraction, seed=self.seed)
            test_x, test_y = [train_x[i] for i in va], [train_y[i] for i in va]
            train_x, train_y = [train_x[i] for i in tr], [train_y[i] for i in tr]
        channels = {s.shape[1] for s in train_x + test_x}
        if len(channels) != 1:
            raise ValueError(f"{quoted(train_path)}: series have different channel counts {sorted(channels)}")
        self._classes = sorted(set(train_y) | set(test_y))
        lookup = {c: i for i, c in enumerate(self._classes)}
        longest = max(s.shape[0] for s in train_x + test_x)
        p = self.cfg.patch_len
        context = self.cfg.context if self.cfg.context is not None else max(p, -(-longest // p) * p)
        self.context_len, self.channel_names = context, [f"dim_{c}" for c in range(channels.pop())]
        make = lambda xs, ys: SeriesDataset(xs, [lookup[y] for y in ys], context=context,  # noqa: E731
                                            unequal=self.cfg.unequal)
        self.train_set = make(train_x, train_y)
        self.train_eval_set = self.train_set  # no augmentation
        self.val_set = make(test_x, test_y)  # also the fine-tuning test split (test_dataloader): the UCR protocol

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

    def test_dataloader(self) -> DataLoader:
        """What a fine-tuned model is scored on: forecasting, the test windows in time order (each with its future,
        NaN past the end of the split; a horizon scores the windows complete for it, as `forecast_loaders`);
        classification, the official TEST split (= the val split, the UCR protocol)."""
        self._prepare()
        if self.task != "forecast":
            return self.val_dataloader()
        return self._loader(self.forecast_sets["test"], drop_last=False)

    def inferred_options(self) -> dict[str, object]:
        """data.context and data.channels when left null: what the data decided (forecast: 512; classify: the longest
        series rounded up to patch_len; the channel count), so that `${data.context}` (the flatten head's patch count)
        and `${data.channels}` (the tokenizer's merged width) resolve."""
        self._prepare()
        inferred: dict[str, object] = {}
        if self.cfg.context is None:
            inferred["context"] = self.context_len
        if self.cfg.channels is None:
            inferred["channels"] = self.num_channels
        elif self.cfg.channels != self.num_channels:
            raise ValueError(f"data.channels={self.cfg.channels}, but the data has {self.num_channels} channels "
                             f"({', '.join(self.channel_names[:8])}): set data.channels=null (read from the data)")
        return inferred

    @property
    def num_channels(self) -> int:
        """C of the (B, L, C) series (after setup): what tokenizer.channels must be."""
        self._prepare()
        return len(self.channel_names)

    def forecast_loaders(self) -> dict[str, DataLoader]:
        """Forecasting: train / val / test windows in time order, in batches of at least EVAL_BATCH windows."""
        self._prepare()
        batch = max(self.batch_size, EVAL_BATCH)  # no gradients: bigger batches, fewer calls
        return {name: DataLoader(ds, batch_size=batch, num_workers=self.num_workers)
                for name, ds in self.forecast_sets.items()}
