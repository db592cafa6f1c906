"""Which `TimeSeriesDataConfig` options each task reads. An option given (different from its default) that the
chosen task does not read would be silently ignored (`modality=timeseries data.root=FILE.csv` trained the bundled
OSULeaf demo): `unread_options` names each such option and what to write instead; the config raises them."""
from __future__ import annotations

from typing import TYPE_CHECKING

from datamodules.checks import changed_options

if TYPE_CHECKING:  # the config calls this module from its __post_init__
    from datamodules.timeseries.datamodule import TimeSeriesDataConfig

FORECAST_ONLY = ("date_column", "columns", "split", "ratios", "horizons", "window_stride", "demo_dir", "ridge_alphas")
CLASSIFY_ONLY = ("name", "train_file", "test_file", "unequal")  # and val_fraction (its own message)
# plot_dir is left out: conf/modality/timeseries.yaml sets it for both tasks (the forecast pictures' folder)


def given(cfg: TimeSeriesDataConfig, key: str) -> bool:
    """The option differs from its default (so someone set it)."""
    return bool(changed_options(cfg, (key,)))


def unread_options(cfg: TimeSeriesDataConfig) -> list[str]:
    """One message per option that `cfg.task` (and, for forecasting, the resolved split) does not read."""
    out = []
    if cfg.task == "classify":
        if cfg.root is not None:
            out.append("data.root is a forecast option; use modality=timeseries_forecast data.root=FILE.csv "
                       "(classification reads data.name=<a bundled UCR/UEA set> or data.train_file=..._TRAIN.ts)")
        out += [f"data.{key} is a forecast option that data.task=classify does not read: use "
                f"modality=timeseries_forecast, or drop data.{key}" for key in FORECAST_ONLY if given(cfg, key)]
        if cfg.test_file is not None and cfg.train_file is None:
            out.append(f"data.test_file needs data.train_file (the bundled data.name={cfg.name} comes with its own "
                       f"TEST split): give data.train_file=..._TRAIN.ts too, or drop data.test_file")
        if cfg.train_file is not None and given(cfg, "name"):
            out.append(f"data.name={cfg.name} and data.train_file are both given: the file is read and the name "
                       f"ignored; drop one")
        if given(cfg, "val_fraction") and (cfg.train_file is None or cfg.test_file is not None):
            held_out = "data.test_file" if cfg.test_file is not None else f"the TEST split of data.name={cfg.name}"
            out.append(f"data.val_fraction splits a data.train_file given without data.test_file only; here "
                       f"{held_out} is the held-out set: drop data.val_fraction")
        return out
    out += [f"data.{key} is a classification option that data.task=forecast does not read: a forecast CSV goes to "
            f"data.root=FILE.csv (classification: modality=timeseries), or drop data.{key}"
            for key in CLASSIFY_ONLY if given(cfg, key)]
    if given(cfg, "val_fraction"):
        out.append("data.val_fraction is a classification option: forecasting splits the rows chronologically by "
                   "data.split / data.ratios; drop data.val_fraction")
    if given(cfg, "ratios") and cfg.resolved_split != "ratios":
        out.append(f"data.ratios is read with data.split=ratios only, but the split is {cfg.resolved_split} "
                   f"(data.split={cfg.split}): set data.split=ratios or drop data.ratios")
    return out
