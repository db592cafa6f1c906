"""The label-efficiency curve of a sweep over `finetune.label_fraction`: pretrained vs from scratch against the share
of train labels, as a table (label_efficiency.csv) and a plot (label_efficiency.png) at the sweep root."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from mae.finetune.report import SCRATCH_SUFFIX, gain

FRACTION = "finetune/label_fraction"


def curve_points(rows: list[dict[str, Any]], metric: str) -> list[tuple[float, float, float | None]]:
    """(fraction, metric, metric from scratch or None) of the completed runs that have both, sorted by fraction;
    runs with the same fraction (other seeds, other overrides) are averaged."""
    by_fraction: dict[float, list[tuple[float, float | None]]] = {}
    for row in rows:
        if row.get("status") != "completed" or FRACTION not in row or metric not in row:
            continue
        by_fraction.setdefault(float(row[FRACTION]), []).append((float(row[metric]), row.get(metric + SCRATCH_SUFFIX)))
    points = []
    for fraction in sorted(by_fraction):
        values = by_fraction[fraction]
        scratch = [float(s) for _, s in values if s is not None]
        points.append((fraction, sum(v for v, _ in values) / len(values),
                       sum(scratch) / len(scratch) if scratch else None))
    return points


def write_label_curve(sweep_dir: Path, rows: list[dict[str, Any]], objective: str | None) -> Path | None:
    """label_efficiency.csv / .png when the sweep ran at least two label fractions; returns the png path or None."""
    metric = objective.removesuffix(SCRATCH_SUFFIX) if objective and objective.startswith("finetune/") else \
        "finetune/top1"
    points = curve_points(rows, metric)
    if len(points) < 2:
        return None
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["label_fraction", metric, metric + SCRATCH_SUFFIX, "gain"])
    for fraction, value, scratch in points:
        writer.writerow([fraction, value, "" if scratch is None else scratch,
                         "" if scratch is None else gain(metric, value, scratch)])
    (sweep_dir / "label_efficiency.csv").write_text(buf.getvalue())
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    fractions = [p[0] for p in points]
    ax.plot(fractions, [p[1] for p in points], "o-", label="pretrained")
    with_scratch = [p for p in points if p[2] is not None and math.isfinite(p[2])]
    if with_scratch:
        ax.plot([p[0] for p in with_scratch], [p[2] for p in with_scratch], "s--", label="from scratch")
    ax.set(xscale="log", xlabel="share of train labels (finetune.label_fraction)", ylabel=metric,
           title="label efficiency")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = sweep_dir / "label_efficiency.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
