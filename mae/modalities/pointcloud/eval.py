"""eval=pointcloud_svm: Point-MAE's linear-SVM evaluation of frozen features (`PointCloudSVM`).

Read from the official code, Pang-Yatian/Point-MAE (commit 7445a68), tools/runner_pretrain.py:
`evaluate_svm(train_features, train_labels, test_features, test_labels)` fits `sklearn.svm.LinearSVC()` with its
defaults (C = 1.0, squared hinge, L2 penalty) on the train features and returns the test accuracy
(np.sum(test_labels == pred) / n); `validate` feeds it the frozen features (`base_model(points, noaug=True)`, eval
mode, no augmentation, no scaling of the features) of the ModelNet40 train split (extra_train) and the test split.
The released pre-training model has no feature path (its forward returns the loss, and run_net's call to
`validate` is commented out), so the features here are concat(max, mean) over the encoder's normalised tokens
(`mae.core.encoder.max_mean_pool` of `encoder(tokens)` without prefix tokens, (B, 2D)), the pooling of
model=pointmae / pointmae_cpu (conf/model/pointmae.yaml), whatever `model.encoder.pool` says.

The protocol runs on any data eval=default serves ("probe"): it adds eval/svm_acc (+ `_random_init`, + `_raw_input`
when eval.raw_input: the SVM on the raw input as FrozenProbe builds it) to FrozenProbe's linear probe, kNN and
RankMe. Data without labels: FrozenProbe's RankMe only.
"""
from __future__ import annotations

import numpy as np
from sklearn.svm import LinearSVC
from torch import Tensor, nn

from mae.core.encoder import max_mean_pool
from mae.core.interfaces import EvalData
from mae.core.module import MAEModule
from mae.eval.encoders import Embed, extract_all
from mae.eval.features import UNLABELED, check_pair
from mae.eval.protocol import FrozenProbe
from mae.eval.report import RAW_INPUT_SUFFIX

POINT_MAE_SVM_C = 1.0
"""Point-MAE's `evaluate_svm`: `LinearSVC()`, sklearn's default C."""


def linear_svm_accuracy(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, *,
                        c: float = POINT_MAE_SVM_C, max_iter: int = 1000) -> float:
    """Test accuracy in [0, 1] of `LinearSVC(C=c)` fit on (N, D) train features / (N,) labels, scored on (M, D) /
    (M,): Point-MAE's `evaluate_svm` (no feature scaling). Raises ValueError on bad shapes or < 2 classes."""
    check_pair(train_x, train_y, name="train")
    check_pair(test_x, test_y, name="test")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"train and test feature widths differ: {train_x.shape[1]} vs {test_x.shape[1]}")
    if train_y.unique().numel() < 2:
        raise ValueError("the linear SVM needs at least 2 classes in the train labels, got "
                         f"{train_y.unique().tolist()}")
    clf = LinearSVC(C=c, max_iter=max_iter)
    clf.fit(train_x.double().numpy(), train_y.numpy())
    return float(np.mean(clf.predict(test_x.double().numpy()) == test_y.numpy()))


def max_mean_embed(module: MAEModule, encoder: nn.Module) -> Embed:
    """batch -> (B, 2D) concat(max, mean) of the encoder's normalised latents of every real token (no prefix
    tokens, padding left out), merged per sample by the tokenizer (`merge_pooled`)."""
    def embed(batch: dict) -> Tensor:
        tokens = module.tokenizer(batch)
        latent = encoder(tokens)[:, encoder.num_prefix :]  # (B, N, D)
        return module.tokenizer.merge_pooled(max_mean_pool(latent, tokens.pad), batch)  # (B, 2D)

    return embed


class PointCloudSVM(FrozenProbe):
    """eval=pointcloud_svm: FrozenProbe's metrics plus eval/svm_acc{suffix}, Point-MAE's linear SVM (svm_c: its C,
    1.0 = `LinearSVC()`) on the max+mean pooled features of each encoder, fit on the train split (eval loader,
    no augmentation) and scored on the val split; `_raw_input`: the same SVM on the raw input (eval.raw_input)."""

    label_metrics = (*FrozenProbe.label_metrics, "svm_acc")

    def __init__(self, *, svm_c: float = POINT_MAE_SVM_C, svm_max_iter: int = 1000, **options) -> None:
        super().__init__(**options)
        if svm_c <= 0 or svm_max_iter < 1:
            raise ValueError(f"eval.svm_c must be > 0 and eval.svm_max_iter >= 1, got {svm_c} and {svm_max_iter}")
        self.svm_c, self.svm_max_iter = svm_c, svm_max_iter

    def svm_embeds(self, module: MAEModule, encoders: dict[str, nn.Module]) -> dict[str, Embed]:
        """Metric suffix -> max+mean pooled features of each encoder, then FrozenProbe's raw input (raw_input)."""
        embeds = {suffix: max_mean_embed(module, encoder) for suffix, encoder in encoders.items()}
        raw = self.embeds(module, {}).get(RAW_INPUT_SUFFIX)
        return embeds if raw is None else embeds | {RAW_INPUT_SUFFIX: raw}

    def evaluate(self, module: MAEModule, data: EvalData, encoders: dict[str, nn.Module]) -> dict[str, float]:
        metrics = super().evaluate(module, data, encoders)
        if not data.has_labels:
            return metrics
        for encoder in encoders.values():
            encoder.eval()
        embeds = self.svm_embeds(module, encoders)
        train_loader, val_loader = data.eval_dataloaders()
        train, train_y = extract_all(module, embeds, train_loader, max_samples=self.max_samples)
        val, val_y = extract_all(module, embeds, val_loader)
        tk, vk = train_y != UNLABELED, val_y != UNLABELED  # (N,), (M,)
        for suffix in embeds:
            metrics[f"eval/svm_acc{suffix}"] = linear_svm_accuracy(
                train[suffix][tk], train_y[tk], val[suffix][vk], val_y[vk], c=self.svm_c, max_iter=self.svm_max_iter)
        return metrics
