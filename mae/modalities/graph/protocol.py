"""eval=graphmae: GraphMAE's own downstream protocols (Hou et al., KDD 2022) on the frozen encoders.

Read from the official code, THUDM/GraphMAE (commit b14f080):

- Node classification (`graphmae/evaluation.py`, `node_classification_evaluation` ->
  `linear_probing_for_transductive_node_classiifcation`): frozen node embeddings (`model.embed`, no scaling) ->
  `LogisticRegression`, one nn.Linear, trained full batch with Adam (`utils.create_optimizer("adam", ...)`: L2
  weight decay inside Adam) and cross-entropy on the train_mask nodes for max_epoch_f epochs; after each step the
  val and test accuracies are measured and the test accuracy of the epoch with the best val accuracy is kept
  (`if val_acc >= best_val_acc`: on a tie the later epoch; `estp_test_acc`). Repeated over the seeds 0..19
  (`scripts/run_transductive.sh --seeds 0 ... 19`), reported as mean and std (`np.std`, ddof 0):
  eval/node_acc_mean, eval/node_acc_std. GraphMAE repeats pre-training per seed as well; here one pre-trained
  encoder is probed with 20 seeded initialisations of the linear layer. The split: Planetoid's public
  train / val / test masks (`datamodules.graph.datamodule.GraphDataModule.node_split`).
  Values (`configs.yml`): cora lr_f 0.01, weight_decay_f 1e-4, max_epoch_f 300; citeseer 0.01, 0.01, 300;
  pubmed 0.01, 1e-4, 300 (conf/eval/graphmae.yaml: Cora's).
- Graph classification (`main_graph.py`, `graph_classification_evaluation` -> `evaluate_graph_embeddings_using_svm`):
  pooled embeddings of ALL graphs (their eval_loader) -> 10-fold `StratifiedKFold(shuffle=True, random_state=0)`;
  in each fold `GridSearchCV(SVC(random_state=42), {"C": [1e-3, 1e-2, 1e-1, 1, 10]})` (sklearn's default inner
  5-fold CV, RBF kernel) fit on the train folds, micro-F1 (= accuracy for single-label classes) on the test fold;
  mean and std over the folds: eval/graph_svm_acc_mean, eval/graph_svm_acc_std. The C grid stops at 10 in the
  official code (not 1e3).

Each metric has its `_random_init` twin. The protocol adds these to eval=graph's (`GraphProbe`: linear probe, kNN,
RankMe, embeddings.png), so the default objective eval/linear_acc still exists; node-level data gives the node
metrics, graph-level data the SVM metrics.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.svm import SVC
from torch import Tensor, nn

from mae.core.module import MAEModule
from mae.eval.features import UNLABELED, check_pair, extract_features
from mae.modalities.graph.eval import GraphData, GraphProbe, node_embeddings

GRAPHMAE_SVM_C = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
"""GraphMAE's SVC grid (main_graph.py, evaluate_graph_embeddings_using_svm: params = {"C": [...]})."""
FOLD_SEED, SVC_SEED = 0, 42
"""StratifiedKFold(random_state=0) and SVC(random_state=42) in evaluate_graph_embeddings_using_svm."""


# ----------------------------------------------------------------------------------- node classification
def best_val_test_acc(val_acc: Tensor, test_acc: Tensor) -> tuple[Tensor, Tensor]:
    """(E, S) val / test accuracy after each of E epochs of S runs -> ((S,) test accuracy at each run's best-val
    epoch, (S,) that epoch). A tie goes to the LATER epoch, as GraphMAE's `if val_acc >= best_val_acc`."""
    if val_acc.shape != test_acc.shape or val_acc.ndim != 2 or val_acc.shape[0] == 0:
        raise ValueError(f"val_acc and test_acc must be the same (E, S) with E >= 1, got {tuple(val_acc.shape)} "
                         f"and {tuple(test_acc.shape)}")
    last_max = val_acc.shape[0] - 1 - val_acc.flip(0).argmax(dim=0)  # (S,) argmax returns the first maximum
    return test_acc.gather(0, last_max.unsqueeze(0)).squeeze(0), last_max


def seeded_linear(in_dim: int, num_classes: int, seeds: Sequence[int]) -> tuple[Tensor, Tensor]:
    """S nn.Linear(in_dim, num_classes) layers, each initialised under its own seed (torch's default init, as
    GraphMAE's LogisticRegression), stacked: weights (S, D, C) and biases (S, 1, C)."""
    weights, biases = [], []
    with torch.random.fork_rng(devices=[]):
        for seed in seeds:
            torch.manual_seed(seed)
            layer = nn.Linear(in_dim, num_classes)
            weights.append(layer.weight.detach().T)  # (D, C)
            biases.append(layer.bias.detach().unsqueeze(0))  # (1, C)
    return torch.stack(weights), torch.stack(biases)  # (S, D, C), (S, 1, C)


def _accuracy(weight: Tensor, bias: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """(S,) accuracy of each of the S linear layers on (N, D) features with (N,) labels."""
    logits = torch.baddbmm(bias, x.expand(weight.shape[0], -1, -1), weight)  # (S, N, C)
    return (logits.argmax(dim=-1) == y).double().mean(dim=1)


def linear_probe_runs(train_x: Tensor, train_y: Tensor, val_x: Tensor, val_y: Tensor, test_x: Tensor,
                      test_y: Tensor, *, num_classes: int, lr: float, weight_decay: float, max_epoch: int,
                      seeds: Sequence[int]) -> tuple[Tensor, Tensor]:
    """GraphMAE's linear probe, once per seed: ((S,) test accuracy at the best-val epoch, (S,) that epoch).

    (N, D) features and (N,) labels per split. Each run: a seeded nn.Linear(D, num_classes), Adam(lr,
    weight_decay), `max_epoch` full-batch steps of cross-entropy on the train nodes, val / test accuracy after each
    step. The S runs are trained together as one (S, D, C) weight: their losses are summed, so each gets its own
    gradient, and Adam (weight decay included) acts element-wise, so this equals S separate runs.
    """
    for name, (x, y) in {"train": (train_x, train_y), "val": (val_x, val_y), "test": (test_x, test_y)}.items():
        check_pair(x, y, name=name)
    if max_epoch < 1 or not seeds:
        raise ValueError(f"eval.max_epoch_f must be >= 1 and eval.num_seeds >= 1, got {max_epoch} and {len(seeds)}")
    weight, bias = seeded_linear(train_x.shape[1], num_classes, seeds)
    weight, bias = weight.requires_grad_(), bias.requires_grad_()
    optimizer = torch.optim.Adam([weight, bias], lr=lr, weight_decay=weight_decay)
    x = train_x.float().expand(len(seeds), -1, -1)  # (S, N, D)
    val_acc, test_acc = [], []
    for _ in range(max_epoch):
        logits = torch.baddbmm(bias, x, weight)  # (S, N, C)
        loss = F.cross_entropy(logits.flatten(0, 1), train_y.repeat(len(seeds)), reduction="none")  # (S*N,)
        optimizer.zero_grad()
        loss.reshape(len(seeds), -1).mean(dim=1).sum().backward()  # each run's mean loss, summed over runs
        optimizer.step()
        with torch.no_grad():
            val_acc.append(_accuracy(weight, bias, val_x.float(), val_y))
            test_acc.append(_accuracy(weight, bias, test_x.float(), test_y))
    return best_val_test_acc(torch.stack(val_acc), torch.stack(test_acc))  # from (E, S)


# ---------------------------------------------------------------------------------- graph classification
def svm_cv_accuracy(x: Tensor, y: Tensor, *, folds: int = 10, c_grid: Sequence[float] = GRAPHMAE_SVM_C
                    ) -> tuple[float, float]:
    """GraphMAE's `evaluate_graph_embeddings_using_svm`: (N, D) graph embeddings, (N,) labels -> (mean, std) over
    `folds` stratified folds of the test-fold accuracy of an RBF SVC whose C is picked from `c_grid` by an inner
    5-fold grid search on the train folds. Folds shuffled with random_state 0, SVC random_state 42."""
    check_pair(x, y, name="graph")
    counts = torch.bincount(y - y.min())
    smallest = int(counts[counts > 0].min())
    if folds < 2 or smallest < folds:
        raise ValueError(f"eval.svm_folds={folds} stratified folds need at least that many graphs of every class "
                         f"(and >= 2 folds); the smallest class has {smallest}: lower eval.svm_folds or use more "
                         "graphs (data.synthetic_size)")
    xs, ys = x.double().numpy(), y.numpy()
    accs = []
    for train, test in StratifiedKFold(n_splits=folds, shuffle=True, random_state=FOLD_SEED).split(xs, ys):
        search = GridSearchCV(SVC(random_state=SVC_SEED), {"C": list(c_grid)})
        search.fit(xs[train], ys[train])
        accs.append(float(np.mean(search.predict(xs[test]) == ys[test])))
    return float(np.mean(accs)), float(np.std(accs))


# ----------------------------------------------------------------------------------------------- protocol
class GraphMAEProtocol(GraphProbe):
    """eval=graphmae: eval=graph's metrics plus GraphMAE's own (module docstring). Node level:
    eval/node_acc_mean, eval/node_acc_std; graph level: eval/graph_svm_acc_mean, eval/graph_svm_acc_std; each with
    its `_random_init` twin. Without labels (or one class only) the paper metrics are left out with a note.

    lr_f, weight_decay_f, max_epoch_f: the linear probe's Adam and epochs (GraphMAE's names; configs.yml, Cora:
    0.01, 1e-4, 300); num_seeds: runs (seeds eval.seed .. eval.seed + num_seeds - 1; GraphMAE: 0..19);
    svm_folds: outer stratified folds (10); svm_c: the SVC's C grid (GraphMAE: 1e-3 .. 10).
    """

    label_metrics = (*GraphProbe.label_metrics, "node_acc_mean", "node_acc_std", "graph_svm_acc_mean",
                     "graph_svm_acc_std")

    def __init__(self, *, lr_f: float = 0.01, weight_decay_f: float = 1e-4, max_epoch_f: int = 300,
                 num_seeds: int = 20, svm_folds: int = 10, svm_c: Sequence[float] = GRAPHMAE_SVM_C,
                 **options) -> None:
        super().__init__(**options)
        if max_epoch_f < 1 or num_seeds < 1:
            raise ValueError(f"eval.max_epoch_f and eval.num_seeds must be >= 1, got {max_epoch_f} and {num_seeds}")
        if svm_folds < 2 or not svm_c:
            raise ValueError(f"eval.svm_folds must be >= 2 and eval.svm_c a non-empty list of C values, got "
                             f"{svm_folds} and {list(svm_c)}")
        self.lr_f, self.weight_decay_f, self.max_epoch_f, self.num_seeds = lr_f, weight_decay_f, max_epoch_f, num_seeds
        self.svm_folds, self.svm_c = svm_folds, tuple(float(c) for c in svm_c)

    def evaluate(self, module: MAEModule, data: GraphData, encoders: dict[str, nn.Module]) -> dict[str, float]:
        metrics = super().evaluate(module, data, encoders)  # calls data.setup()
        paper = self.node_metrics if data.level == "node" else self.graph_metrics
        return metrics | paper(module, data, encoders)

    def node_metrics(self, module: MAEModule, data: GraphData, encoders: dict[str, nn.Module]) -> dict[str, float]:
        """eval/node_acc_mean{suffix}, eval/node_acc_std{suffix}: GraphMAE's linear probe on the node split."""
        labels = data.node_labels
        train, val, test = (nodes[labels[nodes] != UNLABELED] for nodes in data.node_split())
        if min(len(train), len(val), len(test)) == 0 or labels[train].unique().numel() < 2:
            print("\neval=graphmae: no labelled train / val / test nodes of 2 classes or more: no node_acc", flush=True)
            return {}
        nodes = torch.cat([train, val, test])  # one pass of the encoder for the three splits
        seeds = [self.seed + i for i in range(self.num_seeds)]
        metrics: dict[str, float] = {}
        for suffix, encoder in encoders.items():
            encoder.eval()
            x = node_embeddings(module, encoder, data.node_batches(nodes), data.num_nodes, nodes)  # (n, D)
            tx, vx, sx = torch.split(x, [len(train), len(val), len(test)])
            accs, _ = linear_probe_runs(tx, labels[train], vx, labels[val], sx, labels[test],
                                        num_classes=int(labels.max()) + 1, lr=self.lr_f,
                                        weight_decay=self.weight_decay_f, max_epoch=self.max_epoch_f, seeds=seeds)
            metrics[f"eval/node_acc_mean{suffix}"] = float(accs.mean())
            metrics[f"eval/node_acc_std{suffix}"] = float(accs.std(unbiased=False))  # np.std, as GraphMAE
        return metrics

    def graph_metrics(self, module: MAEModule, data: GraphData, encoders: dict[str, nn.Module]) -> dict[str, float]:
        """eval/graph_svm_acc_mean{suffix}, eval/graph_svm_acc_std{suffix}: the SVM on the pooled embeddings of all
        the graphs (train and val split together, without augmentation, as GraphMAE's eval_loader)."""
        train_loader, val_loader = data.eval_dataloaders()
        metrics: dict[str, float] = {}
        for suffix, encoder in encoders.items():
            encoder.eval()
            embed = lambda batch, encoder=encoder: module.embed(batch, encoder)
            x, y = extract_features(embed, itertools.chain(train_loader, val_loader), device=module.device)
            keep = y != UNLABELED  # (N,)
            if y[keep].unique().numel() < 2:
                print("\neval=graphmae: fewer than 2 labelled classes of graphs: no graph_svm_acc", flush=True)
                return {}
            mean, std = svm_cv_accuracy(x[keep], y[keep], folds=self.svm_folds, c_grid=self.svm_c)
            metrics[f"eval/graph_svm_acc_mean{suffix}"], metrics[f"eval/graph_svm_acc_std{suffix}"] = mean, std
        return metrics
