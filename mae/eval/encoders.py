"""Pretrained vs randomly initialised encoder, evaluated on the same frozen-feature protocol."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from mae.eval.features import extract_features
from mae.eval.report import RANDOM_INIT_SUFFIX, evaluate_features


def random_init_embedder(module: nn.Module, *, seed: int) -> Callable[[dict], Tensor]:
    """embed(batch) with a fresh encoder of the same architecture (same factory, fixed seed)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = module.encoder_factory(token_dim=module.tokenizer.token_dim)
    encoder = encoder.to(module.device).eval()
    return lambda batch: encoder.pool(module.tokenizer(batch))


def evaluate_module(
    module: nn.Module,
    datamodule,
    *,
    k: int,
    temperature: float,
    random_init: bool,
    max_samples: int | None,
    seed: int,
) -> dict[str, float]:
    """eval/linear_acc, eval/knn_acc, eval/rankme (+ the *_random_init twins) on the datamodule's
    `eval_dataloaders()` = (train split without augmentation, val split)."""
    module.eval()
    train_loader, val_loader = datamodule.eval_dataloaders()
    embedders = {"": module.embed}
    if random_init:
        embedders[RANDOM_INIT_SUFFIX] = random_init_embedder(module, seed=seed)
    metrics: dict[str, float] = {}
    for suffix, embed in embedders.items():
        train_x, train_y = extract_features(embed, train_loader, device=module.device, max_samples=max_samples)
        val_x, val_y = extract_features(embed, val_loader, device=module.device)
        metrics |= evaluate_features(train_x, train_y, val_x, val_y, k=k, temperature=temperature, suffix=suffix)
    return metrics
