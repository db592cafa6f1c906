"""The shared targets: raw token values and MAE's per-token normalised values (`mae.core.interfaces.Target`).

`invert` maps predictions back to token-value space for pictures, using the *true* statistics of each hidden
token. Modalities add their own (HOG: mae/modalities/image/targets.py, tubelets, point groups, ...).
"""
from __future__ import annotations

from torch import Tensor

from mae.core.interfaces import Target


class PixelTarget(Target):
    """Raw token values (pixels, tubelets, points, node features, ...) as they are."""

    inverse_note = "target=pixels: reconstruction drawn as predicted"

    def of_values(self, values: Tensor) -> Tensor:
        return values


def patch_stats(values: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """(B, N, C) -> per-token mean and std (B, N, 1); unbiased variance + eps as in MAE's norm_pix_loss."""
    mean = values.mean(dim=-1, keepdim=True)
    std = (values.var(dim=-1, keepdim=True) + eps).sqrt()
    return mean, std


class NormPixTarget(Target):
    """MAE's norm_pix: every token normalised by its own mean and variance."""

    inverse_note = "target=norm_pix: reconstruction un-normalised with each hidden patch's TRUE mean/std"

    def __init__(self, *, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps

    def of_values(self, values: Tensor) -> Tensor:
        mean, std = patch_stats(values.float(), self.eps)
        return (values - mean) / std

    def invert(self, pred: Tensor, true_values: Tensor) -> Tensor | None:
        """Undo the normalisation with the true statistics of the same tokens (B, M, C)."""
        mean, std = patch_stats(true_values.float(), self.eps)
        return pred * std + mean
