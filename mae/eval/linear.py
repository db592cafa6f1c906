"""Linear probe: multinomial logistic regression on standardised frozen features."""
from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import Tensor

from mae.eval.features import check_pair


def linear_probe_accuracy(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    *,
    max_iter: int = 1000,
    c: float = 1.0,
) -> float:
    """Test accuracy in [0, 1] of an L2-regularised multinomial logistic regression (lbfgs).

    train_x: (N, D) features, train_y: (N,) integer labels; test_x: (M, D), test_y: (M,).
    Features are standardised with the mean/std of the TRAIN set only; a zero-variance column keeps
    scale 1 (StandardScaler's rule), so constant features give no NaN. `c` is the inverse regularisation
    strength (sklearn's C).

    Raises ValueError on non-finite features, mismatched shapes, or fewer than 2 classes in train.
    """
    check_pair(train_x, train_y, name="train")
    check_pair(test_x, test_y, name="test")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"train and test feature widths differ: {train_x.shape[1]} vs {test_x.shape[1]}")
    classes = train_y.unique()
    if classes.numel() < 2:
        raise ValueError(
            f"linear probe needs at least 2 classes in the train labels, got {classes.numel()} "
            f"({classes.tolist()})"
        )
    xtr = train_x.detach().cpu().double().numpy()  # (N, D)
    xte = test_x.detach().cpu().double().numpy()  # (M, D)
    ytr = train_y.detach().cpu().numpy()  # (N,)
    yte = test_y.detach().cpu().numpy()  # (M,)

    scaler = StandardScaler().fit(xtr)
    clf = LogisticRegression(C=c, solver="lbfgs", max_iter=max_iter)
    clf.fit(scaler.transform(xtr), ytr)
    pred = clf.predict(scaler.transform(xte))  # (M,)
    return float(np.mean(pred == yte))
