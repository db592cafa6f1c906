"""Pretrained vs randomly initialised encoder, evaluated on the same frozen-feature protocol."""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from mae.eval.features import extract_features
from mae.eval.rankme import rankme
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
    """The default protocol for every encoder: pooled features (`module.embed`) of the train loader fit
    the linear probe / kNN, scored on the val loader; RankMe of the train features. Keys get the suffix."""
    metrics: dict[str, float] = {}
    for suffix, encoder in encoders.items():
        embed = lambda batch, encoder=encoder: module.embed(batch, encoder)  # noqa: E731
        train_x, train_y = extract_features(embed, train_loader, device=module.device, max_samples=max_samples)
        val_x, val_y = extract_features(embed, val_loader, device=module.device)
        metrics |= evaluate_features(train_x, train_y, val_x, val_y, k=k, temperature=temperature, suffix=suffix,
                                     knn_standardize=knn_standardize)
    return metrics


def rankme_encoders(module: nn.Module, encoders: dict[str, nn.Module], train_loader: Iterable[dict], *,
                    max_samples: int | None) -> dict[str, float]:
    """The label-free part of the default protocol: eval/rankme{suffix} of each encoder's pooled train features
    (unlabeled data: no linear probe, no kNN, and the val split is not read)."""
    metrics: dict[str, float] = {}
    for suffix, encoder in encoders.items():
        embed = lambda batch, encoder=encoder: module.embed(batch, encoder)  # noqa: E731
        train_x, _ = extract_features(embed, train_loader, device=module.device, max_samples=max_samples)
        metrics[f"eval/rankme{suffix}"] = rankme(train_x)
    return metrics
