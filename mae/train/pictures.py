"""The reconstruction-pictures callback: original / masked / reconstruction / reconstruction + visible, drawn by
the modality's `Pictures` (config key `pictures`, passed as `callbacks.reconstruction.pictures`)."""
from __future__ import annotations

from pathlib import Path

import lightning as L
from matplotlib.figure import Figure
from torch import Tensor

from mae.core.interfaces import EvalData, Pictures
from mae.core.module import MAEModule
from mae.core.pictures import reconstruction_panels


class ReconstructionPictures(L.Callback):
    """Every `every_n_epochs` validation epochs (and after the last), on rank 0: a PNG of the first
    `num_samples` validation samples under `dirpath`, also sent to TensorBoard / wandb if present."""

    def __init__(self, *, pictures: Pictures, dirpath: str, every_n_epochs: int = 1, num_samples: int = 8,
                 seed: int = 1234) -> None:
        self.pictures = pictures
        self.dirpath, self.every_n_epochs, self.num_samples, self.seed = Path(dirpath), every_n_epochs, num_samples, seed
        self.batch: dict | None = None
        self.last_path: Path | None = None

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if batch_idx == 0:
            self.batch = {k: v[: self.num_samples] if isinstance(v, Tensor) else v for k, v in batch.items()}

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: MAEModule) -> None:
        epoch = trainer.current_epoch
        last = trainer.max_epochs is not None and epoch + 1 >= trainer.max_epochs
        if trainer.sanity_checking or not trainer.is_global_zero or self.batch is None:
            return
        if (epoch + 1) % self.every_n_epochs and not last:
            return
        panels, tokens, note = reconstruction_panels(pl_module, self.batch, self.seed)
        path = self.dirpath / f"epoch_{epoch:04d}.png"
        data: EvalData = trainer.datamodule
        fig = self.pictures.draw(panels, tokens, note, path, tokenizer=pl_module.tokenizer, data=data)
        self.last_path = path
        log_figure(trainer, fig, step=trainer.global_step)


def log_figure(trainer: L.Trainer, fig: Figure, *, step: int, tag: str = "reconstructions") -> None:
    """Send a figure to the TensorBoard and wandb loggers that are attached (CSV has no pictures)."""
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure(tag, fig, global_step=step, close=False)
        elif isinstance(logger, WandbLogger):
            logger.log_image(key=tag, images=[fig], step=step)
