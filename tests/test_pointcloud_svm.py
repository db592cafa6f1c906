"""eval=pointcloud_svm: Point-MAE's LinearSVC on frozen max+mean pooled features."""
from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from mae.modalities.pointcloud.eval import POINT_MAE_SVM_C, PointCloudSVM, linear_svm_accuracy, max_mean_embed
from tests.conftest import FAST, PROBE_KEYS, compose_cfg, fit_and_read

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

SHRINK = ["modality=pointcloud", "data.synthetic_size=48", "data.batch_size=8", "data.num_points=256",
          "tokenizer.num_groups=16", "tokenizer.group_size=16", "callbacks.reconstruction.num_samples=2"]
TINY = ["model.encoder.dim=16", "model.encoder.depth=1", "model.encoder.num_heads=2", "model.decoder.dim=16",
        "model.decoder.depth=1", "model.decoder.num_heads=2"]
SVM_KEYS = ("eval/svm_acc", "eval/svm_acc_random_init", "eval/svm_acc_raw_input")


def blobs(n_per: int, *, classes: int = 3, dim: int = 12, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g) * 5.0  # (C, D)
    y = torch.arange(classes).repeat_interleave(n_per)  # (N,)
    return centres[y] + 0.3 * torch.randn(len(y), dim, generator=g), y


def test_linear_svm_on_separable_features_is_perfect():
    train_x, train_y = blobs(30)
    test_x, test_y = blobs(10, seed=0)
    assert linear_svm_accuracy(train_x, train_y, test_x, test_y) == 1.0
    shuffled = test_y[torch.randperm(len(test_y), generator=torch.Generator().manual_seed(1))]
    assert linear_svm_accuracy(train_x, train_y, test_x, shuffled) < 0.7  # it reads the labels it is given


def test_linear_svm_refuses_one_class_and_mismatched_widths():
    x, y = blobs(5)
    with pytest.raises(ValueError, match="at least 2 classes"):
        linear_svm_accuracy(x, torch.zeros_like(y), x, y)
    with pytest.raises(ValueError, match="widths differ"):
        linear_svm_accuracy(x, y, x[:, :4], y)


def test_features_are_max_mean_pooled_whatever_the_model_pools(tmp_path):
    module = instantiate(compose_cfg([*SHRINK, *TINY], tmp_path).module).eval()  # pointmae_cpu: pool=max_mean
    batch = {"points": torch.randn(3, 256, 3)}
    with torch.no_grad():
        x = max_mean_embed(module, module.encoder)(batch)
        assert x.shape == (3, 32) and torch.allclose(x, module.embed(batch), atol=1e-5)
        mean_module = instantiate(compose_cfg([*SHRINK, *TINY, "model.encoder.pool=mean"], tmp_path).module).eval()
        assert max_mean_embed(mean_module, mean_module.encoder)(batch).shape == (3, 32)  # still (B, 2D)
        assert mean_module.embed(batch).shape == (3, 16)


def test_protocol_adds_svm_acc_and_its_twins_to_the_default_probe(tmp_path):
    cfg = compose_cfg([*SHRINK, *TINY, "eval=pointcloud_svm", "eval.knn_k=5"], tmp_path)
    assert cfg.eval.svm_c == POINT_MAE_SVM_C == 1.0 and cfg.eval.raw_input is True
    data, module, evaluation = instantiate(cfg.data), instantiate(cfg.module), instantiate(cfg.eval)
    assert isinstance(evaluation, PointCloudSVM) and evaluation.needs_labels("eval/svm_acc_random_init")
    data.setup()
    metrics = evaluation(module, data)
    for key in (*SVM_KEYS, "eval/linear_acc", "eval/knn_acc_raw_input", "eval/rankme_random_init"):
        assert key in metrics and 0.0 <= metrics[key] <= (1.0 if "acc" in key else 1e6), key
    off = PointCloudSVM(raw_input=False, random_init=False, knn_k=5)(module, data)
    assert sorted(k for k in off if k.startswith("eval/svm")) == ["eval/svm_acc"]
    with pytest.raises(ValueError, match="eval.svm_c must be > 0"):
        PointCloudSVM(svm_c=0.0)


@pytest.mark.e2e
def test_pointcloud_svm_end_to_end(tmp_path):
    run_dir = tmp_path / "run"
    cfg = compose_cfg([*FAST, *SHRINK, "eval=pointcloud_svm"], run_dir)
    _, saved = fit_and_read(cfg, run_dir, (*PROBE_KEYS, *SVM_KEYS))
    assert 0.0 <= saved["eval/svm_acc"] <= 1.0
