"""Reconstruction panels of any modality, and the drawing helpers the modalities' `Pictures` share.

The prediction is taken back to token-value space with the target's `invert`, which for norm_pix uses the true
mean/variance of each hidden patch (stated in the picture's title); each modality's `Pictures` draws the panels.
Figures are plain `matplotlib.figure.Figure` objects (no pyplot state, no backend switch at import).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from mae.core.tokens import Tokens, gather_tokens

if TYPE_CHECKING:
    from mae.core.module import MAEModule


def scatter_tokens(base: Tensor, index: Tensor, values: Tensor) -> Tensor:
    """Write values (B, M, C) into base (B, N, C) at token indices (B, M)."""
    return base.scatter(1, index.unsqueeze(-1).expand(-1, -1, base.shape[-1]), values.to(base.dtype))


@torch.no_grad()
def reconstruction_panels(module: MAEModule, batch: dict, seed: int) -> tuple[dict[str, Tensor], Tokens, str]:
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


def show_image(ax: Axes, img: np.ndarray) -> None:
    """Draw one (H, W, C) image in [0, 1] without ticks; NaN (hidden) pixels grey, one channel in grey scale."""
    img = np.where(np.isnan(img), 0.5, img).clip(0, 1)
    ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([]), ax.set_yticks([])


def save_figure(fig: Figure, path: Path, *, title: str, fontsize: float = 8, top: float | None = None,
                dpi: int = 80) -> Figure:
    """Title the figure, lay it out below the title (`top`: the layout's upper edge; None: no tight layout) and
    write it as a PNG at `path` (folders created)."""
    fig.suptitle(title, fontsize=fontsize)
    if top is not None:
        fig.tight_layout(rect=(0, 0, 1, top))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return fig
