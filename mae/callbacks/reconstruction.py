"""Reconstruction pictures: original / masked / reconstruction / reconstruction + visible, per sample.

The prediction is taken back to token-value space with the target's `invert`, which for norm_pix uses
the true mean/variance of each hidden patch (stated in the picture's title), then to pixels with the
tokenizer's `unpatchify` and the datamodule's `denormalize`.
"""
from __future__ import annotations

from pathlib import Path

import lightning as L
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from mae.types import Tokens, gather_tokens  # noqa: E402


def scatter_tokens(base: Tensor, index: Tensor, values: Tensor) -> Tensor:
    """Write values (B, M, C) into base (B, N, C) at token indices (B, M)."""
    return base.scatter(1, index.unsqueeze(-1).expand(-1, -1, base.shape[-1]), values.to(base.dtype))


@torch.no_grad()
def reconstruction_panels(module: L.LightningModule, batch: dict, seed: int) -> tuple[dict[str, Tensor], Tokens, str]:
    """Token-value panels (B, N, C), the tokens they came from, and a note on how the reconstruction was
    un-normalised."""
    gen = torch.Generator(device=module.device).manual_seed(seed)
    out = module(batch, gen)
    tokens, mask, pred = out["tokens"], out["mask"], out["pred"]
    values = tokens.values.float()
    true_hidden = gather_tokens(values, mask.masked)
    predicted = mask.predicted  # (B, M') = mask.masked unless the decoder reconstructs a subset (dual masking)
    pixels = module.target.invert(pred.float(), gather_tokens(values, predicted))
    panels = {"original": values, "masked": scatter_tokens(values, mask.masked, torch.full_like(true_hidden, float("nan")))}
    note = f"hidden {mask.masked.shape[1]}/{values.shape[1]} tokens; {module.target.inverse_note}"
    if mask.decode is not None:
        note += f"; decoder reconstructs {predicted.shape[1]} of them"
    if pixels is None:
        return panels, tokens, note
    panels["reconstruction"] = scatter_tokens(torch.full_like(values, float("nan")), predicted, pixels)
    panels["reconstruction + visible"] = scatter_tokens(panels["masked"], predicted, pixels)  # undecoded: grey
    return panels, tokens, note


def image_panels(module: L.LightningModule, trainer: L.Trainer, panels: dict[str, Tensor]) -> dict[str, np.ndarray]:
    """Token panels (B, N, C) -> (B, H, W, C) pixel arrays via tokenizer.unpatchify and datamodule.denormalize."""
    denormalize = getattr(trainer.datamodule, "denormalize", None)
    images = {}
    for name, values in panels.items():
        x = module.tokenizer.unpatchify(values)  # (B, C, H, W), NaN where hidden
        x = denormalize(x) if denormalize is not None else x
        images[name] = x.permute(0, 2, 3, 1).float().cpu().numpy()
    return images


def show_image(ax: plt.Axes, img: np.ndarray) -> None:
    """Draw one (H, W, C) image in [0, 1] without ticks; NaN (hidden) pixels grey, one channel in grey scale."""
    img = np.where(np.isnan(img), 0.5, img).clip(0, 1)
    ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([]), ax.set_yticks([])


def save_figure(fig: plt.Figure, path: Path, *, title: str, fontsize: float = 8, top: float | None = None,
                dpi: int = 80) -> plt.Figure:
    """Title the figure, lay it out below the title (`top`: the layout's upper edge; None: no tight layout) and
    write it as a PNG at `path` (folders created)."""
    fig.suptitle(title, fontsize=fontsize)
    if top is not None:
        fig.tight_layout(rect=(0, 0, 1, top))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return fig


def draw_image_panels(images: dict[str, np.ndarray], note: str, path: Path) -> plt.Figure:
    """images: name -> (B, H, W, C) in [0, 1] (NaN = hidden, drawn grey). One row per sample."""
    names = list(images)
    b = next(iter(images.values())).shape[0]
    fig, axes = plt.subplots(b, len(names), figsize=(2.0 * len(names), 2.0 * b + 0.6), squeeze=False)
    for col, name in enumerate(names):
        for row in range(b):
            ax = axes[row, col]
            show_image(ax, images[name][row])
            if row == 0:
                ax.set_title(name, fontsize=9)
    return save_figure(fig, path, title=note, top=0.97)


class ReconstructionPictures(L.Callback):
    """Every `every_n_epochs` validation epochs (and after the last), on rank 0: a PNG of the first
    `num_samples` validation samples under `dirpath`, also sent to TensorBoard / wandb if present."""

    def __init__(self, *, dirpath: str, every_n_epochs: int = 1, num_samples: int = 8, seed: int = 1234) -> None:
        self.dirpath, self.every_n_epochs, self.num_samples, self.seed = Path(dirpath), every_n_epochs, num_samples, seed
        self.batch: dict | None = None
        self.last_path: Path | None = None

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if batch_idx == 0:
            self.batch = {k: v[: self.num_samples] if isinstance(v, Tensor) else v for k, v in batch.items()}

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        last = trainer.max_epochs is not None and epoch + 1 >= trainer.max_epochs
        if trainer.sanity_checking or not trainer.is_global_zero or self.batch is None:
            return
        if (epoch + 1) % self.every_n_epochs and not last:
            return
        panels, tokens, note = reconstruction_panels(pl_module, self.batch, self.seed)
        path = self.dirpath / f"epoch_{epoch:04d}.png"
        draw = getattr(pl_module.tokenizer, "draw_reconstruction", None)
        if draw is not None:  # a modality with its own picture (point clouds, graphs, series, ...)
            fig = draw(panels, tokens, note, path)
        else:  # grid tokens that unpatchify to (B, C, H, W) images
            fig = draw_image_panels(image_panels(pl_module, trainer, panels), note, path)
        self.last_path = path
        log_figure(trainer, fig, step=trainer.global_step)
        plt.close(fig)


def log_figure(trainer: L.Trainer, fig: plt.Figure, *, step: int, tag: str = "reconstructions") -> None:
    """Send a figure to the TensorBoard and wandb loggers that are attached (CSV has no pictures)."""
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure(tag, fig, global_step=step, close=False)
        elif isinstance(logger, WandbLogger):
            logger.log_image(key=tag, images=[fig], step=step)
