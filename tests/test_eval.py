"""Frozen-feature evaluation: features, linear probe, kNN, RankMe, report."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor

from mae.eval import (
    evaluate_features,
    extract_features,
    format_summary,
    knn_accuracy,
    linear_probe_accuracy,
    rankme,
)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _clusters(*, n_per: int, classes: int, dim: int, spread: float, seed: int) -> tuple[Tensor, Tensor]:
    """(classes * n_per, dim) Gaussian blobs around random unit-ish centres, and their labels."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g) * 5.0  # (C, D)
    y = torch.arange(classes).repeat_interleave(n_per)  # (N,)
    x = centres[y] + spread * torch.randn(y.numel(), dim, generator=g)  # (N, D)
    return x, y


def _knn_reference(train_x, train_y, test_x, *, k: int, temperature: float) -> np.ndarray:
    """Per-sample loop kNN, the obvious way, for checking the vectorised one."""
    tr = train_x.numpy().astype(np.float64)
    te = test_x.numpy().astype(np.float64)
    tr = tr / np.linalg.norm(tr, axis=1, keepdims=True)
    te = te / np.linalg.norm(te, axis=1, keepdims=True)
    labels = train_y.numpy()
    preds = []
    for row in te:
        sims = tr @ row
        order = np.argsort(-sims)[: min(k, len(tr))]
        votes: dict[int, float] = {}
        for j in order:
            votes[int(labels[j])] = votes.get(int(labels[j]), 0.0) + math.exp(sims[j] / temperature)
        best = max(votes.values())
        preds.append(min(c for c, v in votes.items() if v == best))
    return np.array(preds)


# ----------------------------------------------------------------------------- extract_features


def test_extract_features_stacks_batches_and_keeps_non_tensors():
    seen_names = []

    def embed(batch: dict) -> Tensor:
        seen_names.append(batch["name"])
        return batch["x"].double().sum(dim=(2, 3))  # (B, 3) float64 -> must come back float32

    loader = [
        {"x": torch.full((4, 3, 2, 2), float(i)), "label": torch.arange(4) + i, "name": f"b{i}"} for i in range(3)
    ]
    x, y = extract_features(embed, loader)
    assert x.shape == (12, 3) and x.dtype == torch.float32 and x.device.type == "cpu"
    assert y.shape == (12,) and y.dtype == torch.int64
    assert torch.equal(y[:4], torch.arange(4)) and torch.equal(y[-4:], torch.arange(4) + 2)
    assert torch.allclose(x[4:8], torch.full((4, 3), 4.0))
    assert seen_names == ["b0", "b1", "b2"]
    assert not x.requires_grad


def test_extract_features_max_samples_and_missing_labels():
    loader = [{"x": torch.randn(4, 5)} for _ in range(5)]
    x, y = extract_features(lambda b: b["x"], loader, max_samples=6)
    assert x.shape == (6, 5)
    assert torch.equal(y, torch.full((6,), -1))


def test_extract_features_runs_without_grad():
    lin = torch.nn.Linear(5, 2)
    x, _ = extract_features(lambda b: lin(b["x"]), [{"x": torch.randn(3, 5), "label": [0, 1, 0]}])
    assert x.shape == (3, 2) and not x.requires_grad


# ----------------------------------------------------------------------------- kNN


def test_knn_separated_clusters_is_perfect():
    train_x, train_y = _clusters(n_per=50, classes=4, dim=16, spread=0.3, seed=0)
    test_x, test_y = _clusters(n_per=20, classes=4, dim=16, spread=0.3, seed=0)
    assert knn_accuracy(train_x, train_y, test_x, test_y, k=10, chunk=7) == 1.0


def test_knn_random_labels_near_chance():
    g = torch.Generator().manual_seed(1)
    train_x, test_x = torch.randn(1000, 16, generator=g), torch.randn(500, 16, generator=g)
    train_y, test_y = torch.randint(0, 5, (1000,), generator=g), torch.randint(0, 5, (500,), generator=g)
    assert 0.1 < knn_accuracy(train_x, train_y, test_x, test_y) < 0.35


@pytest.mark.parametrize("k", [1, 5])
def test_knn_matches_loop_reference(k: int):
    g = torch.Generator().manual_seed(2)
    train_x, test_x = torch.randn(60, 8, generator=g), torch.randn(25, 8, generator=g)
    train_y = torch.randint(0, 4, (60,), generator=g) * 3 - 2  # non-contiguous, negative labels
    test_y = torch.randint(0, 4, (25,), generator=g) * 3 - 2
    expected = float(np.mean(_knn_reference(train_x, train_y, test_x, k=k, temperature=0.07) == test_y.numpy()))
    assert knn_accuracy(train_x, train_y, test_x, test_y, k=k, chunk=4) == pytest.approx(expected)


def test_knn_clamps_k_to_train_size():
    train_x, train_y = _clusters(n_per=3, classes=2, dim=4, spread=0.1, seed=3)
    acc = knn_accuracy(train_x, train_y, train_x, train_y, k=100)
    assert 0.0 <= acc <= 1.0


# ----------------------------------------------------------------------------- linear probe


def test_linear_probe_separable():
    train_x, train_y = _clusters(n_per=50, classes=3, dim=10, spread=0.5, seed=4)
    test_x, test_y = _clusters(n_per=30, classes=3, dim=10, spread=0.5, seed=4)
    assert linear_probe_accuracy(train_x, train_y, test_x, test_y) > 0.95


def test_linear_probe_constant_column_no_nan():
    train_x, train_y = _clusters(n_per=30, classes=2, dim=6, spread=0.5, seed=5)
    train_x[:, 2] = 3.0
    test_x = train_x.clone()
    acc = linear_probe_accuracy(train_x, train_y, test_x, train_y)
    assert math.isfinite(acc) and acc > 0.95


def test_linear_probe_one_class_raises():
    x = torch.randn(20, 4)
    with pytest.raises(ValueError, match="at least 2 classes"):
        linear_probe_accuracy(x, torch.zeros(20, dtype=torch.long), x, torch.zeros(20, dtype=torch.long))


def test_linear_probe_non_finite_raises():
    x, y = torch.randn(20, 4), torch.arange(20) % 2
    bad = x.clone()
    bad[0, 0], bad[3, 1] = float("nan"), float("inf")
    with pytest.raises(ValueError, match="2 non-finite"):
        linear_probe_accuracy(bad, y, x, y)
    with pytest.raises(ValueError, match="non-finite"):
        linear_probe_accuracy(x, y, bad, y)


# ----------------------------------------------------------------------------- RankMe


def test_rankme_isotropic_gaussian_is_full_rank():
    x = torch.randn(2000, 32, generator=torch.Generator().manual_seed(6))
    r = rankme(x)
    assert 28 < r <= 32


def test_rankme_rank_one():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(500, 1, generator=g) @ torch.randn(1, 32, generator=g)
    assert 1.0 <= rankme(x) < 1.5


def test_rankme_rank_four():
    g = torch.Generator().manual_seed(8)
    left, _ = torch.linalg.qr(torch.randn(500, 4, generator=g, dtype=torch.float64))  # (N, 4) orthonormal
    right, _ = torch.linalg.qr(torch.randn(32, 4, generator=g, dtype=torch.float64))  # (D, 4) orthonormal
    x = (left @ right.T).float()  # (N, D), four equal singular values
    assert rankme(x) == pytest.approx(4.0, abs=0.05)
    assert rankme(torch.zeros(10, 4)) == 1.0


# ----------------------------------------------------------------------------- report


def test_evaluate_features_keys():
    train_x, train_y = _clusters(n_per=30, classes=3, dim=8, spread=0.5, seed=9)
    val_x, val_y = _clusters(n_per=10, classes=3, dim=8, spread=0.5, seed=9)
    m = evaluate_features(train_x, train_y, val_x, val_y, k=5, suffix="_random_init")
    assert set(m) == {"eval/linear_acc_random_init", "eval/knn_acc_random_init", "eval/rankme_random_init"}
    assert all(isinstance(v, float) and math.isfinite(v) for v in m.values())
    assert m["eval/knn_acc_random_init"] == 1.0


def test_evaluate_features_unlabeled_returns_only_rankme():
    x = torch.randn(40, 8)
    m = evaluate_features(x, torch.full((40,), -1), x[:10], torch.full((10,), -1), prefix="p/")
    assert list(m) == ["p/rankme"]


def test_format_summary_side_by_side():
    metrics = {
        "eval/linear_acc": 0.91,
        "eval/knn_acc": 0.88,
        "eval/rankme": 27.5,
        "eval/linear_acc_random_init": 0.40,
        "eval/knn_acc_random_init": 0.35,
        "eval/rankme_random_init": 12.25,
        "train/loss": 0.123456,
        "val/loss": 0.2,
        "data/skipped": 4.0,
        "data/skipped/OSError": 3.0,
    }
    text = format_summary(metrics)
    lines = text.splitlines()
    assert "pretrained" in lines[0] and "random init" in lines[0]
    row = next(line for line in lines if line.startswith("eval/linear_acc"))
    assert "0.9100" in row and "0.4000" in row
    assert any(line.startswith("train/loss") and "0.1235" in line for line in lines)
    assert any(line.split() == ["data/skipped", "4"] for line in lines)  # counts print as whole numbers
    assert any(line.split() == ["data/skipped/OSError", "3"] for line in lines)
    assert not any(line.startswith("eval/rankme_random_init") for line in lines)
    rows = [line for line in lines if line.startswith("eval/")]
    assert len({len(r) for r in rows}) == 1  # aligned


def test_knn_standardize_runs_the_knn_on_train_standardised_features(tmp_path):
    """A large shared component makes every raw cosine ~1 (kNN near chance); eval.knn_standardize removes it with
    the TRAIN statistics. Off by default; conf/modality/timeseries.yaml turns it on."""
    from mae.eval.knn import standardize_features
    from tests.conftest import compose_cfg

    x, y = _clusters(n_per=40, classes=4, dim=16, spread=0.3, seed=0)
    x = x * 1e-3 + 100.0  # (160, 16): next to the common offset the class signal is near float32 resolution
    tx, ty, vx, vy = x[::2], y[::2], x[1::2], y[1::2]
    raw = evaluate_features(tx, ty, vx, vy, k=5)
    std = evaluate_features(tx, ty, vx, vy, k=5, knn_standardize=True)
    sx, svx = standardize_features(tx, vx)
    assert std["eval/knn_acc"] == knn_accuracy(sx, ty, svx, vy, k=5) == 1.0 and raw["eval/knn_acc"] < 0.7
    assert std["eval/linear_acc"] == raw["eval/linear_acc"] and std["eval/rankme"] == raw["eval/rankme"]
    assert compose_cfg(["modality=timeseries"], tmp_path).eval.knn_standardize is True
    assert compose_cfg([], tmp_path).eval.knn_standardize is False
