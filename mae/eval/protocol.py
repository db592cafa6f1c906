"""Evaluation protocols, chosen by config (`eval._target_`): what runs on the frozen encoders after fit.

`EvalProtocol` holds the options every protocol shares (the `eval.*` keys) and builds the encoders to compare:
the pretrained one and, with `random_init`, a randomly initialised twin of the same architecture (metric
suffix `_random_init`); with `raw_input`, protocols that have a raw-input baseline (`has_raw_input`: FrozenProbe
and its subclasses) also score the raw input itself (suffix `_raw_input`; the others do not read the key).
A protocol names its `task`; a datamodule lists the tasks it serves in `eval_tasks` (`mae.core.interfaces.EvalData`),
and `check` refuses a mismatch at start-up, before any training, as well as an objective that needs labels
(`label_metrics`) on data without them, or a raw-input objective the protocol will not compute.

`FrozenProbe` (eval=default) is the shared protocol: pooled features -> linear probe, kNN, RankMe.
Modalities add theirs: eval=graph and the paper's eval=graphmae (mae/modalities/graph/), eval=forecast
(mae/modalities/timeseries/), Point-MAE's linear SVM eval=pointcloud_svm (mae/modalities/pointcloud/eval.py).
"""
from __future__ import annotations

from typing import ClassVar

from torch import nn

from mae.core.interfaces import EvalData
from mae.core.module import MAEModule
from mae.eval.encoders import (
    RAW_INPUT_WIDTH,
    Embed,
    encoder_embeds,
    frozen_encoders,
    probe_embeds,
    rankme_embeds,
    raw_input_embed,
)
from mae.eval.report import RANDOM_INIT_SUFFIX, RAW_INPUT_SUFFIX

BASELINE_SUFFIXES = (RANDOM_INIT_SUFFIX, RAW_INPUT_SUFFIX)


class EvalProtocol:
    """Base of every protocol. Subclasses set `task` and implement `evaluate`."""

    task: ClassVar[str]
    label_metrics: ClassVar[tuple[str, ...]] = ()
    """Metrics (names without `eval/` and the baseline suffix) computed only on labelled data. Default: none."""
    has_raw_input: ClassVar[bool] = False
    """Whether `raw_input=True` adds `_raw_input` metrics (FrozenProbe: yes); elsewhere the key is not read."""

    def __init__(self, *, enabled: bool = True, random_init: bool = True, raw_input: bool = True, knn_k: int = 20,
                 knn_temperature: float = 0.07, knn_standardize: bool = False, max_samples: int | None = None,
                 seed: int = 0) -> None:
        if max_samples is not None and max_samples < 1:
            raise ValueError(f"eval.max_samples must be null or >= 1, got {max_samples}")
        self.enabled, self.random_init, self.raw_input, self.seed = enabled, random_init, raw_input, seed
        self.knn_k, self.knn_temperature, self.knn_standardize = knn_k, knn_temperature, knn_standardize
        self.max_samples = max_samples

    def check(self, data: EvalData, *, objective: str | None = None) -> None:
        """Raise ValueError at start-up when this protocol cannot evaluate `data`, or cannot produce `objective`
        (a label metric) because `data` has no labels. Reads `data.has_labels` only for such an objective."""
        if not self.enabled:
            return
        if self.task not in data.eval_tasks:
            raise ValueError(f"eval={self.task} cannot evaluate {type(data).__name__}, which serves eval="
                             f"{' / '.join(data.eval_tasks)}: choose one of those (or eval.enabled=false)")
        if objective is not None and objective.startswith("eval/") and objective.endswith(RAW_INPUT_SUFFIX) and not (
                self.raw_input and self.has_raw_input):
            why = "eval.raw_input=false turns off" if self.has_raw_input else f"eval={self.task} does not compute"
            raise ValueError(f"objective={objective} is measured on the raw input, which {why}: set objective="
                             f"{objective.removesuffix(RAW_INPUT_SUFFIX)}" + (" or eval.raw_input=true"
                                                                               if self.has_raw_input else ""))
        if objective is not None and self.needs_labels(objective) and not data.has_labels:
            suffix = next((s for s in BASELINE_SUFFIXES if objective.endswith(s)), "")
            raise ValueError(f"objective={objective} needs class labels and the data has none ({type(data).__name__}, "
                             "e.g. data.root=DIR of images without class subfolders): set "
                             f"objective=eval/rankme{suffix} (RankMe needs no labels) or objective=val/loss")

    def needs_labels(self, objective: str) -> bool:
        """Whether `objective` is one of this protocol's `label_metrics` (with or without a baseline suffix)."""
        name = objective.removeprefix("eval/")
        for suffix in BASELINE_SUFFIXES:
            name = name.removesuffix(suffix)
        return objective.startswith("eval/") and name in self.label_metrics

    def applies(self, data: EvalData) -> bool:
        """Whether there is anything to evaluate after fit. Default: yes when enabled."""
        return self.enabled

    def __call__(self, module: MAEModule, data: EvalData) -> dict[str, float]:
        """Metrics of the pretrained encoder and its random-init twin (and the raw input, where the protocol has that
        baseline), module in eval mode."""
        module.eval()
        return self.evaluate(module, data, frozen_encoders(module, random_init=self.random_init, seed=self.seed))

    def evaluate(self, module: MAEModule, data: EvalData, encoders: dict[str, nn.Module]) -> dict[str, float]:
        raise NotImplementedError


class FrozenProbe(EvalProtocol):
    """eval/linear_acc, eval/knn_acc, eval/rankme (+ the *_random_init twins) of pooled features (`module.embed`)
    of `data.eval_dataloaders()` = (train split without augmentation, val split). On data without labels (a flat
    image folder) only eval/rankme (+ twin), which needs none, with a printed note.

    raw_input (eval.raw_input, conf/eval/default.yaml: true): the same probes on the raw input of each sample, no
    encoder (eval/linear_acc_raw_input, eval/knn_acc_raw_input, eval/rankme_raw_input): `Tokenizer.raw_features`
    (the flattened token values, padding zeroed; time series: every channel's normalised patches), inputs wider
    than RAW_INPUT_WIDTH = 4096 values hashed down to 4096 by a fixed random projection seeded by eval.seed
    (`mae.eval.encoders.SignHashProjection`: a dense Gaussian one would not fit in memory for images and clips).
    The encoder should beat it: an encoder below its raw input has learned nothing a linear probe can use.
    """

    task = "probe"
    label_metrics = ("linear_acc", "knn_acc")
    has_raw_input = True

    def embeds(self, module: MAEModule, encoders: dict[str, nn.Module]) -> dict[str, Embed]:
        """Metric suffix -> embedding function: each encoder's pooled features, then the raw input (raw_input)."""
        embeds = encoder_embeds(module, encoders)
        if self.raw_input:
            embeds[RAW_INPUT_SUFFIX] = raw_input_embed(module, seed=self.seed, width=RAW_INPUT_WIDTH)
        return embeds

    def evaluate(self, module: MAEModule, data: EvalData, encoders: dict[str, nn.Module]) -> dict[str, float]:
        train_loader, val_loader = data.eval_dataloaders()
        embeds = self.embeds(module, encoders)
        if not data.has_labels:
            print("\neval: the data has no labels: RankMe only (the linear probe and kNN need class labels)",
                  flush=True)
            return rankme_embeds(module, embeds, train_loader, max_samples=self.max_samples)
        return probe_embeds(module, embeds, train_loader, val_loader, k=self.knn_k,
                            temperature=self.knn_temperature, max_samples=self.max_samples,
                            knn_standardize=self.knn_standardize)
