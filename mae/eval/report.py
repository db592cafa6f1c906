"""All frozen-feature metrics in one call, and the end-of-run summary table."""
from __future__ import annotations

import math

from torch import Tensor

from mae.eval.features import UNLABELED
from mae.eval.knn import knn_accuracy, standardize_features
from mae.eval.linear import linear_probe_accuracy
from mae.eval.rankme import rankme

RANDOM_INIT_SUFFIX = "_random_init"
"""Suffix of the metrics computed with a randomly initialised encoder (the baseline column)."""
RAW_INPUT_SUFFIX = "_raw_input"
"""Suffix of the metrics computed on the raw input itself, no encoder (eval.raw_input: the other baseline column)."""
BASELINES = {RANDOM_INIT_SUFFIX: "random init", RAW_INPUT_SUFFIX: "raw input"}
"""Baseline suffix -> its column in `format_summary`, in column order."""


def evaluate_features(
    train_x: Tensor,
    train_y: Tensor,
    val_x: Tensor,
    val_y: Tensor,
    *,
    k: int = 20,
    temperature: float = 0.07,
    prefix: str = "eval/",
    suffix: str = "",
    knn_standardize: bool = False,
) -> dict[str, float]:
    """Linear-probe accuracy, kNN accuracy and RankMe of frozen features. knn_standardize: the kNN runs on features
    standardised with the TRAIN statistics (`standardize_features`; the linear probe standardises anyway).

    train_x: (N, D), train_y: (N,) int labels; val_x: (M, D), val_y: (M,) int labels, -1 = unlabeled.
    Samples labelled -1 are left out of the probes; if the train or val side has no labelled sample
    (unlabeled data), only RankMe is returned. RankMe is computed on the TRAIN features (all of them,
    labelled or not): it needs no labels and more rows give a steadier estimate.

    Returns {prefix}linear_acc{suffix}, {prefix}knn_acc{suffix}, {prefix}rankme{suffix}.
    """
    metrics = {f"{prefix}rankme{suffix}": rankme(train_x)}
    train_keep = train_y != UNLABELED  # (N,)
    val_keep = val_y != UNLABELED  # (M,)
    if not bool(train_keep.any()) or not bool(val_keep.any()):
        return metrics
    tx, ty, vx, vy = train_x[train_keep], train_y[train_keep], val_x[val_keep], val_y[val_keep]
    metrics[f"{prefix}linear_acc{suffix}"] = linear_probe_accuracy(tx, ty, vx, vy)
    kx, kvx = standardize_features(tx, vx) if knn_standardize else (tx, vx)
    metrics[f"{prefix}knn_acc{suffix}"] = knn_accuracy(kx, ty, kvx, vy, k=k, temperature=temperature)
    return metrics


COUNT_PREFIXES = ("data/skipped",)
"""Keys that are counts, printed as integers."""


def _fmt(value: float) -> str:
    """A number in a fixed-width friendly form: 4 decimals, or 4 significant digits when large/small."""
    if math.isfinite(value) and value != 0 and not 1e-3 <= abs(value) < 1e5:
        return f"{value:.4g}"
    return f"{value:.4f}"


def _beats(key: str, metrics: dict[str, float]) -> bool:
    """Whether the raw-input baseline scores a higher accuracy than the pretrained encoder on `key` (an accuracy:
    "acc" in its name, not a spread "_std")."""
    raw, name = metrics.get(key + RAW_INPUT_SUFFIX), key.rsplit("/", 1)[-1]
    accuracy = "acc" in name and not name.endswith("_std")
    return accuracy and raw is not None and float(raw) > float(metrics[key])


def format_summary(metrics: dict[str, float]) -> str:
    """An aligned text table of `metrics` for the end of a run.

    Keys with a `<key>_random_init` or `<key>_raw_input` twin become rows of a table with the columns "pretrained",
    "random init" and (when any raw-input metric is there) "raw input", "-" where a row has no such twin; an
    accuracy row on which the raw input beats the pretrained encoder ends in "<- raw input wins". Every other key
    (train/loss, val/loss, ...) follows as a plain `key  value` line. Rows keep the insertion order of `metrics`.
    """
    columns = [suffix for suffix in BASELINES if any(key.endswith(suffix) for key in metrics)]
    paired = [key for key in metrics if any(key + suffix in metrics for suffix in BASELINES)]
    twins = {key + suffix for key in paired for suffix in BASELINES}
    others = [key for key in metrics if key not in twins and key not in paired]
    width = max([len("metric"), *(len(key) for key in [*paired, *others])])
    lines: list[str] = []
    if paired:
        col = len("random init")
        names = ["pretrained", *(BASELINES[suffix] for suffix in columns)]
        lines.append(f"{'metric':<{width}}" + "".join(f"  {name:>{col}}" for name in names))
        lines.append("-" * (width + len(names) * (col + 2)))
        for key in paired:
            cells = [_fmt(float(metrics[key]))]
            cells += [_fmt(float(metrics[key + s])) if key + s in metrics else "-" for s in columns]
            flag = "  <- raw input wins" if _beats(key, metrics) else ""
            lines.append(f"{key:<{width}}" + "".join(f"  {cell:>{col}}" for cell in cells) + flag)
        if others:
            lines.append("")
    for key in others:
        value = float(metrics[key])
        count = key.startswith(COUNT_PREFIXES) and value.is_integer()  # data/skipped: a number of files
        lines.append(f"{key:<{width}}  {int(value) if count else _fmt(value)}")
    return "\n".join(lines)
