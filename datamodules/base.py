"""The base datamodule: (train, train-without-augmentation, val) splits, class metadata, the three kinds of loaders,
and the core's `EvalData` interface (eval_tasks, has_labels, eval_dataloaders, denormalize) with its defaults.
Subclasses pass their checked options (`cfg`, a frozen `<M>DataConfig` with at least the LoaderOptions fields) to
`__init__` and implement an idempotent `_prepare()` that sets train_set, train_eval_set, val_set and _classes.
Files a subclass drops under `data.on_error="skip"` go to `self.skips` (a `SkipCounter`)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import lightning as L
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from datamodules.errors import SkipCounter
from datamodules.sampling import SampleKey, SeededSampler, split_key


class LoaderOptions(Protocol):
    """The options every datamodule config has: what the loaders and the seeded shuffle read."""

    batch_size: int
    num_workers: int
    pin_memory: bool
    seed: int


@runtime_checkable
class Labelled(Protocol):
    """A dataset that lists its samples' labels without loading them (for `limit_train`'s class-balanced subsets)."""

    def sample_labels(self) -> list[int]: ...


class PositionSubset(Dataset):
    """The samples of `dataset` at `positions`, keyed as the seeded sampler keys them ((sample_seed, i) or i)."""

    def __init__(self, dataset: Dataset, positions: Sequence[int]) -> None:
        self.dataset, self.positions = dataset, list(positions)

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, key: SampleKey):
        sample_seed, i = split_key(key)
        position = self.positions[i]
        return self.dataset[position if sample_seed is None else (sample_seed, position)]

    def sample_labels(self) -> list[int]:
        labels = self.dataset.sample_labels()
        return [labels[p] for p in self.positions]


class SplitDataModule(L.LightningDataModule):
    unit: str = "samples"  # what one sample is called in error messages ("images", "clips", "clouds")
    eval_tasks: tuple[str, ...] = ("probe",)  # evaluation protocols this data serves (EvalProtocol.task)

    def __init__(self, cfg: LoaderOptions) -> None:
        super().__init__()
        self.cfg = cfg
        self.batch_size, self.num_workers, self.pin_memory, self.seed = (cfg.batch_size, cfg.num_workers,
                                                                        cfg.pin_memory, cfg.seed)
        # files dropped under data.on_error="skip"; mae.train.skips.SkippedFiles gives it a log folder at set-up so
        # that the skips of every DataLoader worker and rank are counted (data/skipped in metrics.json)
        self.skips = SkipCounter()

    def _prepare(self) -> None:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        self._prepare()

    @property
    def classes(self) -> list[str]:
        """Class names (label i is classes[i]); [] for an unlabeled set."""
        self._prepare()
        return self._classes

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def has_labels(self) -> bool:
        return self.num_classes > 0

    def denormalize(self, x: Tensor) -> Tensor:
        """Undo the input normalisation of (B, C, H, W) images for pictures. Default: the identity."""
        return x

    @property
    def num_train(self) -> int:
        self._prepare()
        return len(self.train_set)

    def train_labels(self) -> list[int]:
        """The label of every train sample, in order (-1 = unlabeled); ValueError when the train set cannot list them."""
        self._prepare()
        if not isinstance(self.train_set, Labelled):
            raise ValueError(f"{type(self).__name__}'s train split ({type(self.train_set).__name__}) does not list its "
                             "labels: finetune.label_fraction < 1 is not available for this data")
        return self.train_set.sample_labels()

    def limit_train(self, positions: Sequence[int]) -> None:
        """Keep only the train samples at `positions` (both the augmented and the plain train split): the labelled
        share of a label-efficiency run. The val split is untouched."""
        self._prepare()
        self.train_set = PositionSubset(self.train_set, positions)
        self.train_eval_set = PositionSubset(self.train_eval_set, positions)

    def test_dataloader(self) -> DataLoader:
        """What a fine-tuned model is finally scored on. Default: the val split (held out from pre-training and
        fine-tuning alike); a datamodule with multi-view testing (video clips x crops) returns its views here."""
        return self.val_dataloader()

    def inferred_options(self) -> dict[str, object]:
        """`data` options left null that the data decides (e.g. the graph feature width); the runner writes them into
        cfg.data before it builds the model. Default: none."""
        return {}

    def fit_batch_to_split(self, world_size: int) -> int:
        """Lower the per-rank training batch to what the train split holds when it holds less than one batch per rank
        (drop_last would leave no step: a user's first run on a small folder); returns the batch now used."""
        self.batch_size = min(self.batch_size, max(1, self.num_train // world_size))
        return self.batch_size

    def _loader(self, dataset: Dataset, *, sampler: SeededSampler | None = None, drop_last: bool) -> DataLoader:
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, drop_last=drop_last,
                          num_workers=self.num_workers, pin_memory=self.pin_memory,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        """Augmented, seeded shuffle (SeededSampler), drop_last=True for static shapes."""
        self._prepare()
        if len(self.train_set) < self.batch_size:
            raise ValueError(f"the train split holds {len(self.train_set)} {self.unit}, fewer than one batch of "
                             f"data.batch_size={self.batch_size} (drop_last=True); use a smaller data.batch_size")
        sampler = SeededSampler(len(self.train_set), seed=self.seed, shuffle=True)
        return self._loader(self.train_set, sampler=sampler, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        """Val split in a fixed order, no augmentation (empty when val_fraction is 0: Lightning skips it)."""
        self._prepare()
        return self._loader(self.val_set, drop_last=False)

    def eval_dataloaders(self) -> tuple[DataLoader, DataLoader]:
        """(train split without augmentation, val split): for linear probe / kNN on frozen features."""
        self._prepare()
        return self._loader(self.train_eval_set, drop_last=False), self._loader(self.val_set, drop_last=False)
