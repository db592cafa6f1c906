"""Weighted k-nearest-neighbour classifier on cosine similarity (the DINO evaluation protocol)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mae.eval.features import check_pair


def knn_accuracy(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    *,
    k: int = 20,
    temperature: float = 0.07,
    chunk: int = 1024,
) -> float:
    """Accuracy in [0, 1] of a temperature-weighted kNN vote.

    train_x: (N, D), train_y: (N,) integer labels; test_x: (M, D), test_y: (M,).
    Both sides are L2-normalised; each test row takes its top-k train rows by cosine similarity s and
    each neighbour votes for its class with weight exp(s / temperature); the class with the largest
    summed weight wins (ties: the smallest label). k is clamped to N. Test rows are processed `chunk` at a
    time so memory is O(chunk * (N + C)) with C the number of classes.
    """
    check_pair(train_x, train_y, name="train")
    check_pair(test_x, test_y, name="test")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"train and test feature widths differ: {train_x.shape[1]} vs {test_x.shape[1]}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")

    k = min(k, train_x.shape[0])
    train = F.normalize(train_x.float(), dim=1)  # (N, D)
    test = F.normalize(test_x.float(), dim=1)  # (M, D)
    classes, train_idx = torch.unique(train_y, return_inverse=True)  # (C,), (N,) in 0..C-1
    test_y = test_y.to(classes.device)
    correct = 0
    for start in range(0, test.shape[0], chunk):
        sim = test[start : start + chunk] @ train.T  # (B, N)
        top_sim, top_idx = sim.topk(k, dim=1)  # (B, k)
        # Subtracting the row max leaves the argmax unchanged and keeps exp finite for tiny temperatures.
        weight = ((top_sim - top_sim[:, :1]) / temperature).exp()  # (B, k)
        votes = torch.zeros(top_idx.shape[0], classes.numel(), dtype=weight.dtype, device=weight.device)
        votes.scatter_add_(1, train_idx[top_idx], weight)  # (B, C)
        pred = classes[votes.argmax(dim=1)]  # (B,)
        correct += int((pred == test_y[start : start + chunk]).sum())
    return correct / test.shape[0]


def standardize_features(train_x: Tensor, val_x: Tensor) -> tuple[Tensor, Tensor]:
    """(N, D), (M, D) -> both standardised with the TRAIN columns' mean and std (zero std -> 1, StandardScaler's
    rule). Mean-pooled transformer features share a large common component, so raw cosine similarities are all
    close to 1 and a kNN vote is near chance; centring and scaling per feature makes cosine kNN meaningful."""
    mean = train_x.mean(dim=0, keepdim=True)  # (1, D)
    std = train_x.std(dim=0, unbiased=False, keepdim=True)  # (1, D)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return (train_x - mean) / std, (val_x - mean) / std
