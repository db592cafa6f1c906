"""Classification series of the UCR/UEA archive: the sets bundled with sktime, `.ts` files read and cleaned,
and the labelled series padded / resampled to `context` that TimeSeriesDataModule (data.task=classify) serves.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from datamodules.sampling import SampleKey, split_key
from datamodules.timeseries.forecast import MAX_ABS_VALUE, fill_missing, first_bad_value, quoted


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
        raise FileNotFoundError(f"{quoted(path)} does not exist (a .ts file of the UCR/UEA archive)")
    try:
        x, y = load_from_tsfile(str(path), return_data_type="nested_univ")  # DataFrame of pd.Series cells
    except Exception as err:
        raise ValueError(f"{quoted(path)} is not a readable .ts file: {type(err).__name__}: {err}") from err
    series = []
    for row in range(len(x)):
        cols = [np.asarray(x.iloc[row, c], dtype=np.float64) for c in range(x.shape[1])]
        length = max(len(c) for c in cols)
        series.append(np.stack([np.pad(c, (0, length - len(c)), constant_values=np.nan) for c in cols], axis=1))
    return series, [str(v) for v in y]


def fit_length(x: np.ndarray, *, context: int, unequal: str) -> tuple[np.ndarray, np.ndarray]:
    """(L, C) -> ((context, C) float32, (context,) observed). "pad": zeros after the end, observed False there
    (a longer series keeps its last `context` steps); "resample": linear interpolation to `context` steps."""
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

    def sample_labels(self) -> list[int]:
        """Every series' class index, in order (datamodules.base.Labelled: finetune.label_fraction's balanced subsets)."""
        return list(self.labels)

    def __getitem__(self, key: SampleKey) -> dict[str, Tensor | int]:
        _, i = split_key(key)
        return {"series": self.series[i], "observed": self.observed[i], "label": self.labels[i]}


def clean_series(series: list[np.ndarray], *, on_nan: str, where: str) -> list[np.ndarray]:
    """Trailing NaN of every channel (unequal-length padding in the file) is cut; NaN inside a series is
    interpolated or raises (on_nan); an empty series raises, and so does a value that is infinite or beyond
    +-MAX_ABS_VALUE (the model sees the raw values; RevIN's float32 variance would overflow), naming it."""
    out = []
    for i, s in enumerate(series):
        rows = np.flatnonzero(~np.isnan(s).all(axis=1))
        if rows.size == 0:
            raise ValueError(f"{where}: series {i} holds no value")
        s = s[: rows[-1] + 1]
        found = first_bad_value(s, limit=MAX_ABS_VALUE, allow_nan=True)
        if found is not None:
            step, dim, count = found
            value = float(s[step, dim])
            raise ValueError(f"{where} series {i} (data line {i + 1} after @data), dim_{dim}, step {step}: {value!r} "
                             f"is {'not finite' if np.isinf(value) else 'too large'}: values must be finite and within "
                             f"+-{MAX_ABS_VALUE:g} ({count} such values in the series; series are fed unscaled and "
                             f"RevIN's float32 variance overflows); fix or rescale the file")
        out.append(fill_missing(s, on_nan=on_nan, where=f"{where} series {i}", names=[f"dim_{c}" for c in range(s.shape[1])]))
    return out
