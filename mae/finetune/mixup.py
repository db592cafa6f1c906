"""Mixup / CutMix for any grid input, through timm's `Mixup` (the implementation MAE, VideoMAE and Audio-MAE use).

timm mixes (B, C, H, W) tensors and cuts boxes on the last two axes. Inputs of other ranks are viewed so that the
last two axes stay the spatial ones: video (B, C, T, H, W) -> (B, C*T, H, W), the same box in every frame as
VideoMAE's fine-tuning; a spectrogram (B, T, F) -> (B, 1, T, F) (Audio-MAE mixes spectrograms, mixup only).
timm draws lambda and the box from numpy's global RNG: each call runs under a numpy seed derived from (seed, step),
and restores the previous numpy state, so a resumed run mixes exactly as the uninterrupted one.
"""
from __future__ import annotations

import numpy as np
from timm.data import Mixup
from torch import Tensor


class BatchMixup:
    """mixup_alpha / cutmix_alpha / prob / switch_prob / mode: timm `Mixup`'s arguments (MAE fine-tuning: 0.8 / 1.0 /
    1.0 / 0.5 / batch); `label_smoothing` is applied inside the mixed targets (timm's `mixup_target`)."""

    def __init__(self, *, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0, prob: float = 1.0,
                 switch_prob: float = 0.5, mode: str = "batch") -> None:
        if mixup_alpha <= 0 and cutmix_alpha <= 0:
            raise ValueError("finetune.mixup needs mixup_alpha > 0 or cutmix_alpha > 0 (or finetune.mixup=null)")
        if mode not in ("batch", "pair", "elem"):
            raise ValueError(f"finetune.mixup.mode must be batch, pair or elem, got {mode!r}")
        if not 0.0 <= prob <= 1.0 or not 0.0 <= switch_prob <= 1.0:
            raise ValueError(f"finetune.mixup.prob and switch_prob must be in [0, 1], got {prob}, {switch_prob}")
        self.mixup_alpha, self.cutmix_alpha, self.prob, self.switch_prob, self.mode = (
            mixup_alpha, cutmix_alpha, prob, switch_prob, mode)

    def __call__(self, x: Tensor, target: Tensor, *, num_classes: int, label_smoothing: float, multi_label: bool,
                 seed: int) -> tuple[Tensor, Tensor]:
        """x: (B, ..., H, W) or (B, T, F) inputs, target: (B,) class indices or (B, K) multi-hot ->
        (mixed x of the same shape, (B, K) soft targets). B must be even (timm mixes sample i with B-1-i)."""
        if x.shape[0] % 2:
            raise ValueError(f"mixup needs an even batch, got {x.shape[0]}: set data.batch_size to an even number")
        mixer = Mixup(mixup_alpha=self.mixup_alpha, cutmix_alpha=self.cutmix_alpha, prob=self.prob,
                      switch_prob=self.switch_prob, mode=self.mode, label_smoothing=label_smoothing,
                      num_classes=num_classes, multi_label=multi_label)
        shape = x.shape
        grid = x.reshape(shape[0], 1, *shape[1:]) if x.ndim == 3 else x.reshape(shape[0], -1, *shape[-2:])
        grid = grid.clone()  # (B, C', H, W): timm mixes in place
        state = np.random.get_state()
        np.random.seed(seed % 2**32)
        try:
            mixed, soft = mixer(grid, target)
        finally:
            np.random.set_state(state)
        return mixed.reshape(shape), soft
