"""What a fine-tuned model is trained and scored on: a `Task` owns the head's output width, the loss, and the metrics.

    Classification  batch["label"] (B,) class indices: cross-entropy (label smoothing; timm's soft-target
                    cross-entropy under mixup), top-1 / top-5, per-class accuracy and the confusion matrix.
    MultiLabel      batch["labels"] (B, K) multi-hot: binary cross-entropy, mAP (macro average precision over the
                    classes that occur, as Audio-MAE's `calculate_stats`).

Multi-view testing (VideoMAE's clips x crops, Point-MAE's voting): a batch with `views` = V holds V consecutive rows
per sample (B*V rows, sample-major) and one label per sample; `aggregate` averages the V outputs (softmax mean:
VideoMAE's `merge`; logit mean: Point-MAE's `validate_vote`), before the metrics.
"""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from timm.loss import SoftTargetCrossEntropy
from torch import Tensor, nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MultilabelAveragePrecision,
)

ViewReduce = Literal["softmax_mean", "logit_mean"]


def views_of(batch: dict) -> int:
    """The number of views per sample in a batch (1 unless the loader set batch["views"])."""
    views = batch.get("views", 1)
    return int(views[0]) if isinstance(views, Tensor) and views.ndim else int(views)


def check_task_options(label_smoothing: float, view_reduce: str) -> None:
    """The options every classification-like task shares, checked at construction."""
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"finetune.task.label_smoothing must be in [0, 1), got {label_smoothing}")
    if view_reduce not in ("softmax_mean", "logit_mean"):
        raise ValueError(f"finetune.task.view_reduce must be softmax_mean or logit_mean, got {view_reduce!r}")


def reduce_views(out: Tensor, views: int, how: ViewReduce) -> Tensor:
    """(B*V, K) outputs of V views per sample -> (B, K) one score row per sample."""
    if views == 1:
        return out
    grouped = out.reshape(-1, views, out.shape[-1])  # (B, V, K)
    if how == "softmax_mean":
        return grouped.softmax(dim=-1).mean(dim=1).log()  # (B, K) log of the mean probability
    return grouped.mean(dim=1)


class Task(nn.Module):
    """The base of every task. Subclasses set `name`, `monitor` (the metric that picks the best checkpoint) and
    `metric_names` (what metrics.json gets as finetune/<name>), and implement the methods below."""

    name: ClassVar[str]
    monitor: ClassVar[str]
    monitor_mode: ClassVar[str] = "max"
    metric_names: ClassVar[tuple[str, ...]]
    uses_mixup: ClassVar[bool] = False
    multi_label: ClassVar[bool] = False
    label_smoothing: float = 0.0
    view_reduce: ViewReduce = "softmax_mean"

    def figures(self, dirpath: Path | None, classes: list[str]) -> list[Path]:
        """Pictures of the accumulated test metrics (before `reset`), saved under `dirpath`. Called on every rank
        (metric states are gathered collectively); only rank 0 passes a `dirpath`, the others None (draw nothing).
        Default: none."""
        return []

    def setup(self, *, num_classes: int) -> None:
        """Size the metrics once the data is known (called before the head is built)."""
        raise NotImplementedError

    @property
    def out_dim(self) -> int:
        raise NotImplementedError

    def target(self, batch: dict) -> Tensor:
        """The batch's labels in the form the loss takes."""
        raise NotImplementedError

    def loss(self, out: Tensor, target: Tensor, *, train: bool) -> Tensor:
        raise NotImplementedError

    def update(self, out: Tensor, batch: dict) -> None:
        """Accumulate the metrics of one evaluation batch (views reduced here)."""
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError

    def aggregate(self, out: Tensor, batch: dict) -> Tensor:
        return reduce_views(out, views_of(batch), self.view_reduce)


class Classification(Task):
    """Single-label classification: cross-entropy with `label_smoothing` (MAE fine-tuning: 0.1); under mixup the
    mixed soft targets (label smoothing already inside them, timm `Mixup`) go through `SoftTargetCrossEntropy`.
    Metrics: top1, top5 (when there are more than 5 classes), and the confusion matrix for the picture."""

    name = "classification"
    monitor = "top1"
    metric_names = ("top1", "top5")
    uses_mixup = True

    def __init__(self, *, label_smoothing: float = 0.0, view_reduce: ViewReduce = "softmax_mean") -> None:
        super().__init__()
        check_task_options(label_smoothing, view_reduce)
        self.label_smoothing, self.view_reduce = label_smoothing, view_reduce
        self.soft_ce = SoftTargetCrossEntropy()
        self.num_classes = 0

    def setup(self, *, num_classes: int) -> None:
        if num_classes < 2:
            raise ValueError(f"classification fine-tuning needs at least 2 classes, the data has {num_classes}")
        self.num_classes = num_classes
        metrics: dict[str, Metric] = {"top1": MulticlassAccuracy(num_classes, top_k=1, average="micro")}
        if num_classes > 5:
            metrics["top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
        self.metrics = MetricCollection(metrics)
        self.per_class = MulticlassAccuracy(num_classes, average=None)
        self.confusion = MulticlassConfusionMatrix(num_classes)

    @property
    def out_dim(self) -> int:
        return self.num_classes

    def target(self, batch: dict) -> Tensor:
        return batch["label"].long()  # (B,)

    def loss(self, out: Tensor, target: Tensor, *, train: bool) -> Tensor:
        if target.ndim == 2:  # (B, K) soft targets from mixup
            return self.soft_ce(out.float(), target)
        return F.cross_entropy(out.float(), target, label_smoothing=self.label_smoothing if train else 0.0)

    def update(self, out: Tensor, batch: dict) -> None:
        scores, labels = self.aggregate(out.float(), batch), self.target(batch)  # (B, K), (B,)
        self.metrics.update(scores, labels)
        self.per_class.update(scores, labels)
        self.confusion.update(scores, labels)

    def compute(self) -> dict[str, float]:
        return {name: float(value) for name, value in self.metrics.compute().items()}

    def figures(self, dirpath: Path | None, classes: list[str]) -> list[Path]:
        """confusion.png: the confusion matrix (rows = true class, normalised per row) and the per-class accuracy."""
        from mae.finetune.pictures import draw_confusion

        confusion, per_class = self.confusion.compute().cpu(), self.per_class.compute().cpu()  # collective under DDP
        if dirpath is None:
            return []
        path = dirpath / "confusion.png"
        draw_confusion(confusion, per_class, classes, path)
        return [path]

    def reset(self) -> None:
        self.metrics.reset()
        self.per_class.reset()
        self.confusion.reset()


class MultiLabel(Task):
    """Multi-label classification (AudioSet): binary cross-entropy on batch["labels"] (B, K) multi-hot (soft under
    mixup: Audio-MAE mixes the label vectors with the same lambda); mAP = mean over classes of the average
    precision (classes without a positive in the evaluated set are left out, as sklearn's per-class AP would be
    undefined there; their count is in `map_classes`)."""

    name = "multilabel"
    monitor = "map"
    metric_names = ("map",)
    uses_mixup = True
    multi_label = True

    def __init__(self, *, label_smoothing: float = 0.0, view_reduce: ViewReduce = "logit_mean") -> None:
        super().__init__()
        check_task_options(label_smoothing, view_reduce)
        self.label_smoothing = label_smoothing  # under mixup: timm smooths each label towards 0.5
        self.view_reduce = view_reduce
        self.num_classes = 0

    def setup(self, *, num_classes: int) -> None:
        if num_classes < 1:
            raise ValueError("multi-label fine-tuning needs class names (data.classes or the CSV's label column)")
        self.num_classes = num_classes
        self.ap = MultilabelAveragePrecision(num_classes, average=None)
        self.positives = PositiveCounts(num_classes)

    @property
    def out_dim(self) -> int:
        return self.num_classes

    def target(self, batch: dict) -> Tensor:
        return batch["labels"].float()  # (B, K)

    def loss(self, out: Tensor, target: Tensor, *, train: bool) -> Tensor:
        return F.binary_cross_entropy_with_logits(out.float(), target)

    def update(self, out: Tensor, batch: dict) -> None:
        target = self.target(batch).round().long()  # (B, K)
        self.ap.update(self.aggregate(out.float(), batch).sigmoid(), target)
        self.positives.update(target)

    def compute(self) -> dict[str, float]:
        per_class = self.ap.compute()  # (K,)
        present = (self.positives.compute() > 0) & torch.isfinite(per_class)  # (K,) classes with a positive
        if not bool(present.any()):
            return {"map": float("nan"), "map_classes": 0.0}
        return {"map": float(per_class[present].mean()), "map_classes": float(present.sum())}

    def reset(self) -> None:
        self.ap.reset()
        self.positives.reset()


class PositiveCounts(Metric):
    """(K,) positives per class over the evaluated set (summed over ranks)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.add_state("count", default=torch.zeros(num_classes), dist_reduce_fx="sum")

    def update(self, target: Tensor) -> None:
        self.count += target.sum(dim=0).to(self.count.dtype)

    def compute(self) -> Tensor:
        return self.count
