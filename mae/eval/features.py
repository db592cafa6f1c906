"""Frozen-feature extraction: run an embedding function over a loader, collect (N, D) features and (N,) labels."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

UNLABELED = -1
"""Label value that means "no label" (unlabeled data sets); evaluation skips such samples."""


def to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """Move the tensor values of a batch dict to `device`; other values are left as they are."""
    return {
        key: value.to(device, non_blocking=True) if isinstance(value, Tensor) else value
        for key, value in batch.items()
    }


def _batch_labels(batch: Mapping[str, Any], *, label_key: str, size: int) -> Tensor:
    """(B,) int64 CPU labels of a batch; all `UNLABELED` when the batch has no `label_key`."""
    if label_key not in batch:
        return torch.full((size,), UNLABELED, dtype=torch.int64)
    labels = torch.as_tensor(batch[label_key]).detach().to("cpu", torch.int64).reshape(-1)  # (B,)
    if labels.numel() != size:
        raise ValueError(f"batch[{label_key!r}] holds {labels.numel()} labels but embed returned {size} rows")
    return labels


def check_features(x: Tensor, *, name: str) -> None:
    """Raise ValueError unless `x` is a non-empty (N, D) matrix of finite values."""
    if x.ndim != 2:
        raise ValueError(f"{name} must be an (N, D) matrix, got shape {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)}")
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise ValueError(f"{name} holds {bad} non-finite values (NaN or inf) out of {x.numel()}")


def check_pair(x: Tensor, y: Tensor, *, name: str) -> None:
    """Validate (N, D) features `x` and their (N,) integer labels `y`."""
    check_features(x, name=f"{name}_x")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"{name}_y must have shape ({x.shape[0]},), got {tuple(y.shape)}")
    if y.is_floating_point() or y.is_complex():
        raise ValueError(f"{name}_y must hold integer labels, got dtype {y.dtype}")


@torch.no_grad()
def extract_features(
    embed: Callable[[dict], Tensor],
    loader: Iterable[dict],
    *,
    device: torch.device | str = "cpu",
    label_key: str = "label",
    max_samples: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Embed every batch of `loader` and stack the results.

    embed:  batch dict (tensors already on `device`) -> (B, D) features. The caller puts modules in eval mode.
    loader: iterable of batch dicts; non-tensor values are passed through untouched.
    label_key: key of the (B,) integer labels; batches without it get label -1 (unlabeled).
    max_samples: stop once this many rows are collected (the last batch is trimmed).

    Returns (N, D) float32 CPU features and (N,) int64 CPU labels.
    """
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples must be >= 1 or None, got {max_samples}")
    device = torch.device(device)
    feats: list[Tensor] = []
    labels: list[Tensor] = []
    collected = 0
    for batch in loader:
        out = embed(to_device(batch, device))
        if out.ndim != 2:
            raise ValueError(f"embed must return (B, D) features, got shape {tuple(out.shape)}")
        feats.append(out.detach().to("cpu", torch.float32))  # (B, D)
        labels.append(_batch_labels(batch, label_key=label_key, size=out.shape[0]))  # (B,)
        collected += out.shape[0]
        if max_samples is not None and collected >= max_samples:
            break
    if not feats:
        raise ValueError("loader yielded no batches: nothing to evaluate")
    x = torch.cat(feats)  # (N, D)
    y = torch.cat(labels)  # (N,)
    if max_samples is not None:
        x, y = x[:max_samples], y[:max_samples]
    return x, y
