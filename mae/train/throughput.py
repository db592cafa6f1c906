"""Training throughput (samples/s over each epoch's training batches), logged as train/samples_per_sec."""
from __future__ import annotations

import time

import lightning as L

from mae.core.module import batch_size_of


class Throughput(L.Callback):
    def __init__(self) -> None:
        self.samples: int = 0
        self.start: float | None = None
        self.samples_per_sec: float | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.samples, self.start = 0, time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        self.samples += batch_size_of(batch) * trainer.world_size

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.start is None or self.samples == 0:
            return
        self.samples_per_sec = self.samples / (time.perf_counter() - self.start)
        pl_module.log("train/samples_per_sec", self.samples_per_sec, rank_zero_only=True)
