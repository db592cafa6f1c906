"""Sweeps: a summary table of every run of a multirun at the sweep root (a Hydra callback), and a start-up
check that an optimising sweeper goes the right way for the objective."""
from __future__ import annotations

import csv
import io
import json
import logging
import os
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

STATUS_FILE = "job_status.json"
MARKDOWN_METRICS = ("train/loss", "val/loss", "eval/linear_acc", "eval/knn_acc", "eval/rankme",
                    "finetune/label_fraction", "finetune/top1", "finetune/top1_scratch")
LOWER_IS_BETTER = ("loss", "error", "mse", "mae", "seconds")


def objective_direction(objective: str) -> str:
    """'minimize' for losses/errors/times, 'maximize' for accuracies, ranks, throughput."""
    name = objective.rsplit("/", 1)[-1].lower()
    return "minimize" if any(word in name for word in LOWER_IS_BETTER) else "maximize"


def check_sweeper_direction(objective: str) -> None:
    """Inside a Hydra job whose sweeper has a `direction` (optuna): raise ValueError when it contradicts the
    objective (maximising val/loss, minimising eval/linear_acc)."""
    if not HydraConfig.initialized():
        return
    direction = HydraConfig.get().sweeper.get("direction")
    if direction is None or isinstance(direction, (list, tuple)) or OmegaConf.is_list(direction):
        return
    direction = str(getattr(direction, "name", direction)).lower()
    expected = objective_direction(objective)
    if direction != expected:
        raise ValueError(
            f"objective={objective} should be {expected}d but hydra.sweeper.direction={direction}; "
            f"add hydra.sweeper.direction={expected} (conf/hparams_search/optuna.yaml)"
        )


# ------------------------------------------------------------------------------------------------ summary
def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def collect_runs(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job folder of the sweep (a folder holding .hydra/overrides.yaml): job, status, overrides (those
    that differ between the runs), error, all_overrides, and the metrics of its metrics.json. Status: completed (metrics.json), failed (the job raised),
    preempted, or incomplete (killed, or still running)."""
    rows = []
    for overrides_file in sorted(sweep_dir.glob("**/.hydra/overrides.yaml")):
        job_dir = overrides_file.parent.parent
        if job_dir == sweep_dir:
            continue
        overrides = [str(o) for o in OmegaConf.load(overrides_file)]
        metrics = _read_json(job_dir / "metrics.json") or {}
        status = _read_json(job_dir / STATUS_FILE) or {}
        state = "completed" if metrics else status.get("status", "incomplete")
        if not metrics and (job_dir / "checkpoints" / "preempted.txt").is_file():
            state = "preempted"
        rel = job_dir.relative_to(sweep_dir).as_posix()
        rows.append({"job": rel, "status": state, "overrides": overrides, "error": status.get("error", ""), **metrics})
    common = set.intersection(*(set(r["overrides"]) for r in rows)) if len(rows) > 1 else set()
    for r in rows:  # `overrides`: what this run changed among the sweep's runs; `all_overrides`: the command line
        r["all_overrides"] = " ".join(r["overrides"])
        r["overrides"] = " ".join(o for o in r["overrides"] if o not in common)
    return sorted(rows, key=lambda r: [int(p) if p.isdigit() else p for p in r["job"].split("/")])


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def summary_tables(rows: list[dict[str, Any]], objective: str | None) -> tuple[str, str]:
    """(CSV with every metric, Markdown with the objective and the main metrics)."""
    fixed = ["job", "status", "overrides", "error", "all_overrides"]
    metric_keys = sorted({k for r in rows for k in r} - set(fixed))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fixed + metric_keys, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    shown = [k for k in dict.fromkeys([objective, *MARKDOWN_METRICS]) if k and any(k in r for r in rows)]
    lines = ["| job | status | overrides | " + " | ".join(shown) + " |",
             "|---|---|---|" + "---:|" * len(shown)]
    for r in rows:
        status = r["status"] + (f": {r['error'][:80]}" if r.get("error") else "")
        cells = [_fmt(r[k]) if k in r else "—" for k in shown]
        lines.append(f"| {r['job']} | {status} | `{r['overrides']}` | " + " | ".join(cells) + " |")
    done = sum(r["status"] == "completed" for r in rows)
    lines += ["", f"{done} of {len(rows)} runs completed" + (f"; objective: {objective}" if objective else "")]
    return buf.getvalue(), "\n".join(lines) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_summary(sweep_dir: str | Path, objective: str | None = None) -> list[dict[str, Any]]:
    """Write summary.csv and summary.md at the sweep root; returns the rows."""
    sweep_dir = Path(sweep_dir)
    rows = collect_runs(sweep_dir)
    text_csv, text_md = summary_tables(rows, objective)
    _write_atomic(sweep_dir / "summary.csv", text_csv)
    _write_atomic(sweep_dir / "summary.md", text_md)
    from mae.finetune.label_curve import write_label_curve  # a sweep over finetune.label_fraction: the curve

    write_label_curve(sweep_dir, rows, objective)
    return rows


class SweepSummary(Callback):
    """Hydra callback (conf/train.yaml `hydra.callbacks`): after every job, the job's status (and error) goes to
    its folder's job_status.json and the sweep's summary.csv / summary.md are rewritten from the job folders, so
    the table lists failed runs too, is current while the sweep runs, and is complete at the end whatever the
    launcher (basic, submitit_local, slurm: jobs run in other processes or machines)."""

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if not HydraConfig.initialized() or HydraConfig.get().mode.name != "MULTIRUN":
            return
        job_dir = Path(HydraConfig.get().runtime.output_dir)
        status = {"status": job_return.status.name.lower()}
        if status["status"] == "failed":
            err = job_return._return_value
            while err.__cause__ is not None:  # the root cause, not hydra's "Error in call to target ..."
                err = err.__cause__
            status["error"] = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
        _write_atomic(job_dir / STATUS_FILE, json.dumps(status))
        self._summarise(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        rows = self._summarise(config)
        log.info("sweep summary of %d runs: %s", len(rows), Path(config.hydra.sweep.dir) / "summary.md")

    @staticmethod
    def _summarise(config: DictConfig) -> list[dict[str, Any]]:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_absolute():
            sweep_dir = Path(config.hydra.runtime.cwd) / sweep_dir
        return write_summary(sweep_dir, config.get("objective"))
