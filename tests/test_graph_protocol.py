"""eval=graphmae: GraphMAE's Adam linear probe with best-val selection over seeds, and its SVM cross-validation."""
from __future__ import annotations

import copy

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from datamodules.graph.datamodule import GraphDataModule
from mae.modalities.graph.protocol import (
    GRAPHMAE_SVM_C,
    GraphMAEProtocol,
    best_val_test_acc,
    linear_probe_runs,
    seeded_linear,
    svm_cv_accuracy,
)
from tests.conftest import FAST, PROBE_KEYS, compose_cfg, fit_and_read


def blobs(n_per: int, *, classes: int = 2, dim: int = 8, spread: float = 0.2, seed: int = 0):
    """(classes * n_per, dim) tight blobs around far-apart centres, and their labels."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g) * 4.0  # (C, D)
    y = torch.arange(classes).repeat_interleave(n_per)  # (N,)
    return centres[y] + spread * torch.randn(len(y), dim, generator=g), y


def graphmae_reference(train_x, train_y, val_x, val_y, test_x, test_y, *, num_classes, lr, weight_decay, max_epoch,
                       seed):
    """GraphMAE's loop as released (evaluation.py), one seed: deep-copy the model at every val_acc >= best."""
    torch.manual_seed(seed)
    model = nn.Linear(train_x.shape[1], num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    acc = lambda m, x, y: (m(x).argmax(1) == y).double().mean().item()
    best_val, best_epoch, best_model = 0.0, 0, None
    for epoch in range(max_epoch):
        loss = nn.functional.cross_entropy(model(train_x), train_y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            val_acc = acc(model, val_x, val_y)
        if val_acc >= best_val:
            best_val, best_epoch, best_model = val_acc, epoch, copy.deepcopy(model)
    with torch.no_grad():
        return acc(best_model, test_x, test_y), best_epoch


# ------------------------------------------------------------------------------------------- node level
def test_separable_nodes_give_accuracy_one_with_zero_std():
    x, y = blobs(30)
    accs, _ = linear_probe_runs(x[::3], y[::3], x[1::3], y[1::3], x[2::3], y[2::3], num_classes=2, lr=0.01,
                                weight_decay=1e-4, max_epoch=100, seeds=list(range(20)))
    assert accs.shape == (20,) and torch.equal(accs, torch.ones(20, dtype=accs.dtype))
    assert float(accs.std(unbiased=False)) == 0.0


def test_best_val_picks_the_test_accuracy_of_the_best_val_epoch_later_on_ties():
    val = torch.tensor([[0.5, 0.2], [0.8, 0.9], [0.8, 0.1], [0.6, 0.9]])  # (E=4, S=2)
    test = torch.tensor([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6], [0.7, 0.8]])
    acc, epoch = best_val_test_acc(val, test)
    assert epoch.tolist() == [2, 3]  # run 0: 0.8 at epochs 1 and 2 -> 2; run 1: 0.9 at 1 and 3 -> 3
    assert acc.tolist() == pytest.approx([0.5, 0.8])  # not the last epoch's 0.7 for run 0
    with pytest.raises(ValueError, match="same"):
        best_val_test_acc(val, test[:2])


def test_vectorised_runs_equal_graphmaes_loop_seed_by_seed():
    """Overlapping classes, 12 train nodes and a large lr, so that val accuracy goes up and down: every seed's best
    epoch (some well before the last) and its test accuracy match the released loop run on its own."""
    x, y = blobs(40, classes=3, dim=10, spread=3.0, seed=1)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(2))
    x, y = x[perm], y[perm]
    split = {"train_x": x[:12], "train_y": y[:12], "val_x": x[12:70], "val_y": y[12:70], "test_x": x[70:],
             "test_y": y[70:]}
    opts = {"num_classes": 3, "lr": 0.5, "weight_decay": 1e-4, "max_epoch": 60}
    accs, epochs = linear_probe_runs(**split, **opts, seeds=[0, 1, 2, 3])
    reference = [graphmae_reference(**split, **opts, seed=s) for s in range(4)]
    assert epochs.tolist() == [epoch for _, epoch in reference]
    assert accs.tolist() == pytest.approx([acc for acc, _ in reference])
    assert int(epochs.min()) < 10  # one run peaked on val early: the last epoch's test accuracy is not reported


def test_seeded_linear_is_torchs_init_under_each_seed():
    weight, bias = seeded_linear(5, 3, [7, 8])
    torch.manual_seed(8)
    layer = nn.Linear(5, 3)
    assert torch.equal(weight[1], layer.weight.detach().T) and torch.equal(bias[1, 0], layer.bias.detach())
    assert weight.shape == (2, 5, 3) and not torch.equal(weight[0], weight[1])


# ------------------------------------------------------------------------------------------ graph level
def test_svm_ten_fold_on_separable_blobs_is_perfect():
    x, y = blobs(20, classes=3)
    assert svm_cv_accuracy(x, y, folds=10, c_grid=GRAPHMAE_SVM_C) == (1.0, 0.0)


def test_svm_refuses_more_folds_than_the_smallest_class_has():
    x, y = blobs(6, classes=2)
    with pytest.raises(ValueError, match=r"eval.svm_folds=10 .* smallest class has 6: lower eval.svm_folds"):
        svm_cv_accuracy(x, y, folds=10)


# ------------------------------------------------------------------------------------------- data, config
def test_node_split_is_planetoids_masks_or_the_held_out_nodes_halved():
    dm = GraphDataModule(source="karate", num_features=34, probe_per_class=2)
    dm.setup()
    train, val, test = dm.node_split()
    assert torch.equal(train, dm.probe_train) and len(val) + len(test) == len(dm.probe_eval)
    assert torch.equal(torch.cat([val, test]).sort().values, dm.probe_eval.sort().values)
    graph = dm.graphs[0]  # a public split, as Planetoid's (train_mask / val_mask / test_mask)
    graph.train_mask, graph.val_mask, graph.test_mask = (torch.arange(34) % 3 == r for r in range(3))
    dm._prepare_nodes(graph, dm.pes[0], flip=False)
    assert [t.tolist() for t in dm.node_split()] == [list(range(r, 34, 3)) for r in range(3)]
    with pytest.raises(ValueError, match="node-level data"):
        GraphDataModule(source="motifs", synthetic_size=12, num_features=8, val_fraction=0.25).node_split()


def test_eval_graphmae_composes_with_the_official_values(tmp_path):
    cfg = compose_cfg(["modality=graph", "eval=graphmae"], tmp_path)
    assert (cfg.eval.lr_f, cfg.eval.weight_decay_f, cfg.eval.max_epoch_f, cfg.eval.num_seeds) == (0.01, 1e-4, 300, 20)
    assert cfg.eval.svm_folds == 10 and list(cfg.eval.svm_c) == list(GRAPHMAE_SVM_C)
    evaluation = instantiate(cfg.eval)
    assert isinstance(evaluation, GraphMAEProtocol) and evaluation.plot_dir == str(tmp_path)
    assert evaluation.needs_labels("eval/node_acc_mean_random_init")
    with pytest.raises(ValueError, match="eval.svm_folds must be >= 2"):
        GraphMAEProtocol(svm_folds=1)


# ------------------------------------------------------------------------------------------- end to end
NODE_KEYS = ("eval/node_acc_mean", "eval/node_acc_std", "eval/node_acc_mean_random_init",
             "eval/node_acc_std_random_init")


@pytest.mark.e2e
def test_graphmae_protocol_end_to_end_on_karate(tmp_path):
    run_dir = tmp_path / "run"
    cfg = compose_cfg([*FAST, "modality=graph", "eval=graphmae", "data.source=karate", "data.num_features=34",
                       "data.pe_dim=4", "eval.max_epoch_f=100"], run_dir)
    _, saved = fit_and_read(cfg, run_dir, (*PROBE_KEYS, *NODE_KEYS))
    assert 0.0 <= saved["eval/node_acc_mean"] <= 1.0 and 0.0 <= saved["eval/node_acc_std"] <= 0.5
    assert not any(key.startswith("eval/graph_svm") for key in saved)


@pytest.mark.e2e
def test_graphmae_protocol_end_to_end_on_motifs(tmp_path):
    run_dir = tmp_path / "run"
    cfg = compose_cfg([*FAST, "modality=graph", "eval=graphmae", "model=graph_transformer", "data.source=motifs",
                       "data.synthetic_size=48", "data.batch_size=8", "data.num_features=8", "data.pe_dim=4",
                       "eval.svm_folds=4", "callbacks.reconstruction.num_samples=4"], run_dir)
    keys = ("eval/graph_svm_acc_mean", "eval/graph_svm_acc_std", "eval/graph_svm_acc_mean_random_init")
    _, saved = fit_and_read(cfg, run_dir, (*PROBE_KEYS, *keys))
    assert 1 / 6 <= saved["eval/graph_svm_acc_mean"] <= 1.0  # 6 motif kinds: above chance on clear shapes
