"""Pretrained vs randomly initialised encoder, evaluated on the same frozen-feature protocol."""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from mae.eval.features import extract_features
from mae.eval.report import RANDOM_INIT_SUFFIX, evaluate_features


def random_init_encoder(module: nn.Module, *, seed: int) -> nn.Module:
    """A fresh encoder of the module's architecture (same factory, fixed seed), in eval mode on its device."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = module.encoder_factory(token_dim=module.tokenizer.token_dim)
    return encoder.to(module.device).eval()


def frozen_encoders(module: nn.Module, *, random_init: bool, seed: int) -> dict[str, nn.Module]:
    """Metric-name suffix -> encoder: "" = the pretrained one, RANDOM_INIT_SUFFIX = the random-init twin."""
    encoders = {"": module.encoder}
    if random_init:
        encoders[RANDOM_INIT_SUFFIX] = random_init_encoder(module, seed=seed)
    return encoders


def evaluate_module(
    module: nn.Module,
    datamodule,
    *,
    k: int,
    temperature: float,
    random_init: bool,
    max_samples: int | None,
    seed: int,
    knn_standardize: bool = False,
) -> dict[str, float]:
    """eval/linear_acc, eval/knn_acc, eval/rankme (+ the *_random_init twins) on the datamodule's
    `eval_dataloaders()` = (train split without augmentation, val split), with `module.embed_with`.

    A datamodule whose task is not "one label per sample" (forecasting, node classification) defines
    `evaluate_frozen(module, encoders, *, k, temperature, max_samples, seed) -> dict | None` and gets the same
    pretrained / random-init encoders to evaluate its own way (None: the default protocol after all).
    """
    module.eval()
    encoders = frozen_encoders(module, random_init=random_init, seed=seed)
    custom = getattr(datamodule, "evaluate_frozen", None)
    if custom is not None:
        metrics = custom(module, encoders, k=k, temperature=temperature, max_samples=max_samples, seed=seed)
        if metrics is not None:
            return metrics
    train_loader, val_loader = datamodule.eval_dataloaders()
    return probe_encoders(module, encoders, train_loader, val_loader, k=k, temperature=temperature,
                          max_samples=max_samples, knn_standardize=knn_standardize)


def probe_encoders(
    module: nn.Module,
    encoders: dict[str, nn.Module],
    train_loader: Iterable[dict],
    val_loader: Iterable[dict],
    *,
    k: int,
    temperature: float,
    max_samples: int | None,
    knn_standardize: bool = False,
) -> dict[str, float]:
    """The default protocol for every encoder: pooled features (`module.embed_with`) of the train loader fit
    the linear probe / kNN, scored on the val loader; RankMe of the train features. Keys get the suffix."""
    metrics: dict[str, float] = {}
    for suffix, encoder in encoders.items():
        embed = lambda batch, encoder=encoder: module.embed_with(encoder, batch)  # noqa: E731
        train_x, train_y = extract_features(embed, train_loader, device=module.device, max_samples=max_samples)
        val_x, val_y = extract_features(embed, val_loader, device=module.device)
        metrics |= evaluate_features(train_x, train_y, val_x, val_y, k=k, temperature=temperature, suffix=suffix,
                                     knn_standardize=knn_standardize)
    return metrics
