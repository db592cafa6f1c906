"""Files dropped under `data.on_error=skip`, counted over every DataLoader worker and DDP rank.

`SkippedFiles` (callbacks.skipped_files) gives the datamodule's `SkipCounter` a log folder at set-up, before any
worker starts: every process then appends its skips there (`datamodules.errors.read_skip_log` reads them back,
distinct by path). With `max_fraction` set it stops the run once more than that share of the indexed files was
skipped. `skipped_files_metrics` gives `data/skipped` and `data/skipped/<kind>` for metrics.json.
"""
from __future__ import annotations

import logging
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L

from datamodules.base import SplitDataModule
from datamodules.errors import SkipCounter, SkipRecord, read_skip_log

log = logging.getLogger(__name__)


class TooManySkippedFiles(RuntimeError):
    """More than callbacks.skipped_files.max_fraction of the indexed files were skipped."""


@dataclass(frozen=True)
class SkipReport:
    """The distinct files skipped by every process, and how many files the pre-scan indexed (0: not known)."""

    records: list[SkipRecord]
    indexed: int

    @property
    def fraction(self) -> float | None:
        return len(self.records) / self.indexed if self.indexed else None

    def metrics(self) -> dict[str, float]:
        """{"data/skipped": n, "data/skipped/<kind>": n per kind, most frequent first}."""
        kinds = Counter(r.kind for r in self.records).most_common()
        return {"data/skipped": float(len(self.records)), **{f"data/skipped/{k}": float(n) for k, n in kinds}}

    def first(self, n: int) -> str:
        return "; ".join(f"{r.path!r} ({r.reason})" for r in self.records[:n])


class SkippedFiles(L.Callback):
    """Counts the files the datamodule skips in every process (see the module docstring).

    dirpath: the log folder (conf: ${run_dir}/skipped), emptied at the start of each fit. max_fraction: stop with
    TooManySkippedFiles when skipped / indexed files exceeds it, checked at set-up (the pre-scan), every
    `check_every_n_steps` training batches and at the end of each training epoch; None: never stop.
    """

    def __init__(self, *, dirpath: str, max_fraction: float | None = None, check_every_n_steps: int = 100,
                 show: int = 5) -> None:
        if max_fraction is not None and not 0.0 <= max_fraction < 1.0:
            raise ValueError(f"callbacks.skipped_files.max_fraction must be in [0, 1) or null, got {max_fraction}")
        if check_every_n_steps < 1:
            raise ValueError(f"callbacks.skipped_files.check_every_n_steps must be >= 1, got {check_every_n_steps}")
        self.dirpath, self.max_fraction, self.every, self.show = Path(dirpath), max_fraction, check_every_n_steps, show
        self.skips: SkipCounter | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        datamodule = trainer.datamodule
        if not isinstance(datamodule, SplitDataModule):
            raise TypeError(f"callbacks.skipped_files needs a datamodule derived from datamodules.base.SplitDataModule "
                            f"(it reads its `skips`), got {type(datamodule).__name__}; or set callbacks.skipped_files=null")
        if self.skips is None:  # first set-up of this run: drop the logs of an earlier run in this folder
            if trainer.is_global_zero and self.dirpath.exists():
                shutil.rmtree(self.dirpath)
            trainer.strategy.barrier("skipped_files_cleared")
        self.skips = datamodule.skips
        self.skips.set_log_dir(self.dirpath)
        self._check(trainer)

    def report(self) -> SkipReport:
        return SkipReport(read_skip_log(self.dirpath), self.skips.indexed if self.skips is not None else 0)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        if (batch_idx + 1) % self.every == 0:
            self._check(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer)

    def _check(self, trainer: L.Trainer) -> None:
        """Rank 0 reads the logs and decides; every rank gets the decision, so all of them stop together."""
        if self.max_fraction is None:
            return
        message = self._over_threshold() if trainer.is_global_zero else None
        message = trainer.strategy.broadcast(message, src=0)
        if message is not None:
            raise TooManySkippedFiles(message)

    def _over_threshold(self) -> str | None:
        report = self.report()
        if report.fraction is None or report.fraction <= self.max_fraction:
            return None
        return (f"{len(report.records)} of {report.indexed} files ({report.fraction:.1%}) were skipped under "
                f"data.on_error=skip, more than callbacks.skipped_files.max_fraction={self.max_fraction}; first: "
                f"{report.first(self.show)}. Fix or remove these files (the full list: {self.dirpath}/*.tsv), or "
                "raise callbacks.skipped_files.max_fraction (null: never stop)")


def skipped_files_metrics(callbacks: Sequence[L.Callback]) -> dict[str, float]:
    """data/skipped and data/skipped/<kind> from the SkippedFiles callback among `callbacks` ({} without one);
    logs the first skipped files."""
    found = [c for c in callbacks if isinstance(c, SkippedFiles)]
    if not found:
        return {}
    report = found[0].report()
    if report.records:
        share = f" ({report.fraction:.1%} of {report.indexed})" if report.fraction is not None else ""
        log.warning("%d file(s) skipped%s, listed in %s; first: %s", len(report.records), share, found[0].dirpath,
                    report.first(found[0].show))
    return report.metrics()
