"""Label efficiency: `finetune.label_fraction` keeps a class-balanced, seeded share of the train labels."""
from __future__ import annotations

from collections import defaultdict

import torch

from datamodules.base import Labelled, SplitDataModule
from mae.core.seeding import mix_seed


def balanced_subset(labels: list[int], *, fraction: float, seed: int) -> list[int]:
    """Positions of a class-balanced share of `labels`: round(fraction x n_c) samples of each class c (at least one),
    drawn without replacement under `seed`, returned in increasing order. Unlabeled samples (-1) are dropped."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"finetune.label_fraction must be in (0, 1], got {fraction}")
    by_class: dict[int, list[int]] = defaultdict(list)
    for position, label in enumerate(labels):
        if label >= 0:
            by_class[label].append(position)
    chosen: list[int] = []
    for label in sorted(by_class):
        members = by_class[label]
        g = torch.Generator().manual_seed(mix_seed(seed, 7, label))
        take = max(1, round(fraction * len(members)))
        chosen += [members[i] for i in torch.randperm(len(members), generator=g)[:take].tolist()]
    return sorted(chosen)


def apply_label_fraction(datamodule: SplitDataModule, *, fraction: float, seed: int) -> str | None:
    """Restrict the datamodule's train split to a balanced `fraction` of its labels (1.0: unchanged); returns the
    note printed with the results, or None."""
    if fraction == 1.0:
        return None
    labels = datamodule.train_labels()
    positions = balanced_subset(labels, fraction=fraction, seed=seed)
    datamodule.limit_train(positions)
    classes = len({labels[p] for p in positions})
    return (f"finetune.label_fraction={fraction}: {len(positions)} of {len(labels)} train samples keep their labels "
            f"({classes} classes, balanced, seed {seed}); the val split is unchanged")


def check_labels(datamodule: SplitDataModule) -> None:
    """Start-up checks of a single-label task's labels: every train sample labelled, every label a class index,
    no class present only in the val split. ValueError naming the sample position and the class."""
    classes = datamodule.classes
    train = datamodule.train_labels()
    for position, label in enumerate(train):
        if label < 0:
            raise ValueError(f"train sample #{position} has no label (-1): fine-tuning needs a label for every train "
                             "sample (a flat folder of images has none; node-level graphs: use eval=graphmae)")
        if label >= len(classes):
            raise ValueError(f"train sample #{position} has label {label}, outside the {len(classes)} classes "
                             f"{classes[:10]}")
    val_set = datamodule.val_set
    if isinstance(val_set, Labelled):
        only_val = sorted({y for y in val_set.sample_labels() if y >= 0} - set(train))
        if only_val:
            names = [classes[y] if 0 <= y < len(classes) else str(y) for y in only_val]
            raise ValueError(f"class(es) {names} occur in the val split but in no train sample: the head could never "
                             "learn them; raise finetune.label_fraction or data.val_fraction, or move samples")
