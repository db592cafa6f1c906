"""The audio dataset: normalised fbank crops of a subset of files (Normalizer, AudioDataset), used by
AudioDataModule."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from datamodules.audio.features import FbankFeatures, SpecAugment, crop_or_pad
from datamodules.errors import FileSubset, SkipCounter, try_load

AudioNorm = Literal["standard", "audiomae"]
STD_SCALE = {"standard": 1.0, "audiomae": 2.0}  # the divisor in units of std (Audio-MAE: `self.norm_std * 2`)


class Normalizer:
    """Shared (mean, std) set once the statistics are known; datasets read it at __getitem__ time.
    (x - mean) / (std_scale x std): std_scale 1 (norm=standard) or 2 (norm=audiomae, Audio-MAE's dataset.py)."""

    def __init__(self, std_scale: float = 1.0) -> None:
        self.mean: float | None = None
        self.std: float | None = None
        self.std_scale = std_scale

    def __call__(self, x: Tensor) -> Tensor:
        if self.mean is None or self.std is None:
            raise RuntimeError("feature statistics are not set yet (AudioDataModule computes them on first use)")
        return (x - self.mean) / (self.std * self.std_scale)


class AudioDataset(FileSubset):
    """The `indices` subset of `paths` as normalised fbank crops; a file that fails raises LoadError
    (on_error="raise") or is skipped with a warning and replaced by the next one (on_error="skip").
    label_sets (multi-label sources): each clip's class indices, giving item["labels"] (K,) multi-hot float;
    spec_augment: SpecAugment of the crop (the fine-tuning train split only); normalize_last: normalise after the
    crop / pad and SpecAugment (norm=audiomae, Audio-MAE's order) instead of before; wave_augment: a waveform
    augmentation before the fbank (roll_mag_aug, the train split only)."""

    what = "clips"

    def __init__(self, *, paths: Sequence[Path], labels: Sequence[int], indices: Sequence[int],
                 features: FbankFeatures, normalize: Normalizer | None, frames: int, random_crop: bool,
                 on_error: str, skips: SkipCounter, label_sets: Sequence[Sequence[int]] | None = None,
                 num_classes: int = 0, spec_augment: SpecAugment | None = None, normalize_last: bool = False,
                 wave_augment: Callable[[Tensor], Tensor] | None = None) -> None:
        super().__init__(labels=labels, indices=indices, on_error=on_error, skips=skips)
        self.paths = list(paths)
        self.features, self.normalize, self.frames, self.random_crop = features, normalize, frames, random_crop
        self.label_sets, self.num_classes = label_sets, num_classes
        self.spec_augment = spec_augment if spec_augment is not None and spec_augment.active else None
        self.normalize_last, self.wave_augment = normalize_last, wave_augment

    def _load(self, index: int) -> Tensor:
        return self.features(self.paths[index], augment=self.wave_augment)  # (T', F); LoadError on a bad file

    def raw(self, position: int) -> Tensor | None:
        """Full-file features of the sample at `position` ((T', F)), None if the file is bad and skipped."""
        return try_load(self.indices[position], self._load, bad=self.bad, on_error=self.on_error, skips=self.skips)

    def _item(self, index: int, loaded: Tensor) -> dict[str, Tensor | int]:
        norm = self.normalize if self.normalize is not None else (lambda x: x)
        feats = loaded if self.normalize_last else norm(loaded)
        fbank = crop_or_pad(feats, self.frames, random=self.random_crop)  # (T, F)
        if self.spec_augment is not None:
            fbank = self.spec_augment(fbank)
        if self.normalize_last:
            fbank = norm(fbank)  # Audio-MAE: padding and SpecAugment bands hold (0 - mean) / (2 std)
        item: dict[str, Tensor | int] = {"fbank": fbank, "label": self.labels[index]}
        if self.label_sets is not None:
            hot = torch.zeros(self.num_classes)  # (K,)
            hot[list(self.label_sets[index])] = 1.0
            item["labels"] = hot
        return item
