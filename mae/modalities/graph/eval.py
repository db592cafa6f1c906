"""eval=graph: frozen-feature evaluation for graphs (`GraphProbe`) and the embedding picture.

Node level: per-node latents of each frozen encoder (`encoder(tokens)` without its prefix tokens) ->
the shared `evaluate_features` (linear probe, kNN, RankMe) from the probe-train nodes to the held-out nodes.
Graph level: pooled graph embeddings (`module.embed`) of the train / val graphs, the same protocol.
Both write `<plot_dir>/embeddings.png` (eval.plot_dir, the run directory by default): a 2-D PCA of the held-out
embeddings coloured by class, one panel per encoder (pretrained, random init).
GraphMAE's own protocols (its Adam-trained linear probe over 20 seeds, its SVM with 10-fold cross-validation) are
eval=graphmae (mae/modalities/graph/protocol.py), which adds them to these metrics.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from mae.core.interfaces import EvalData
from mae.core.module import MAEModule
from mae.core.pictures import save_figure
from mae.eval.features import extract_features, to_device
from mae.eval.protocol import EvalProtocol
from mae.eval.report import evaluate_features


@torch.no_grad()
def node_embeddings(module: nn.Module, encoder: nn.Module, batches: list[dict[str, Tensor]], num_nodes: int,
                    nodes: Tensor) -> Tensor:
    """(len(nodes), D) latents of `nodes`: from one full-graph batch (rows = node ids) or from subgraph batches
    centred at each node in order (row = the centre, `batch["center"]`)."""
    out = []
    for batch in batches:
        batch = to_device(batch, module.device)
        tokens = module.tokenizer(batch)
        h = encoder(tokens)[:, encoder.num_prefix :]  # (B, N, D)
        if len(batches) == 1 and h.shape[0] == 1 and h.shape[1] == num_nodes:  # full graph
            return h[0, nodes.to(h.device)].float().cpu()
        out.append(h[torch.arange(h.shape[0], device=h.device), batch["center"]].float().cpu())  # (B, D)
    return torch.cat(out)


def pca_2d(x: Tensor) -> Tensor:
    """(N, D) -> (N, 2) projection on the two leading principal components."""
    x = x - x.mean(dim=0, keepdim=True)
    _, _, v = torch.pca_lowrank(x, q=min(2, *x.shape), center=False)
    z = x @ v[:, :2]
    return torch.nn.functional.pad(z, (0, 2 - z.shape[1]))


def draw_embeddings(panels: dict[str, tuple[Tensor, Tensor]], metrics: dict[str, float], path: Path) -> None:
    """One scatter per encoder: PCA of its held-out embeddings, coloured by label (grey = unlabeled)."""
    fig = Figure(figsize=(4.5 * len(panels), 4.2))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (suffix, (x, y)) in zip(axes[0], panels.items()):
        z = pca_2d(x).numpy()
        ax.scatter(z[:, 0], z[:, 1], c=y.clamp_min(0).numpy(), cmap="tab10", s=6)
        acc = metrics.get(f"eval/linear_acc{suffix}")
        name = "pretrained" if not suffix else suffix.strip("_").replace("_", " ")
        ax.set_title(f"{name}" + ("" if acc is None else f": linear probe {acc:.3f}"), fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
    save_figure(fig, path, title="held-out embeddings, 2-D PCA, coloured by class", fontsize=9)


class GraphData(EvalData, Protocol):
    """What `GraphProbe` reads of `datamodules.graph.datamodule.GraphDataModule` (after `setup`)."""

    level: str  # "node" (one big graph) or "graph" (many small graphs)
    probe_train: Tensor  # node level: (n_train,) node ids that train the probe
    probe_eval: Tensor  # node level: (n_eval,) held-out node ids
    node_labels: Tensor  # node level: (num_nodes,) labels, -1 = none
    num_nodes: int  # node level: nodes of the graph

    def setup(self, stage: str | None = None) -> None: ...

    def node_batches(self, nodes: Tensor) -> list[dict[str, Tensor]]: ...

    def node_split(self) -> tuple[Tensor, Tensor, Tensor]: ...  # node level: (train, val, test) ids (eval=graphmae)


class GraphProbe(EvalProtocol):
    """eval=graph: eval/linear_acc, eval/knn_acc, eval/rankme (+ twins) of node embeddings (node level) or pooled
    graph embeddings (graph level), and `embeddings.png` in `plot_dir` (null: no picture)."""

    task = "graph"
    label_metrics = ("linear_acc", "knn_acc")  # without labels: RankMe only (evaluate_features)

    def __init__(self, *, plot_dir: str | None = None, **options) -> None:
        super().__init__(**options)
        self.plot_dir = plot_dir

    def evaluate(self, module: MAEModule, data: GraphData, encoders: dict[str, nn.Module]) -> dict[str, float]:
        data.setup()
        metrics: dict[str, float] = {}
        panels: dict[str, tuple[Tensor, Tensor]] = {}
        k, temperature, max_samples = self.knn_k, self.knn_temperature, self.max_samples
        if data.level == "node":
            train_nodes, eval_nodes = data.probe_train, data.probe_eval
            if max_samples is not None:
                train_nodes = train_nodes[:max_samples]
            for suffix, encoder in encoders.items():
                encoder.eval()
                tx = node_embeddings(module, encoder, data.node_batches(train_nodes), data.num_nodes, train_nodes)
                vx = node_embeddings(module, encoder, data.node_batches(eval_nodes), data.num_nodes, eval_nodes)
                ty, vy = data.node_labels[train_nodes], data.node_labels[eval_nodes]
                metrics |= evaluate_features(tx, ty, vx, vy, k=k, temperature=temperature, suffix=suffix)
                panels[suffix] = (vx, vy)
        else:
            train_loader, val_loader = data.eval_dataloaders()
            for suffix, encoder in encoders.items():
                encoder.eval()
                embed = lambda batch, encoder=encoder: module.embed(batch, encoder)  # noqa: E731
                tx, ty = extract_features(embed, train_loader, device=module.device, max_samples=max_samples)
                vx, vy = extract_features(embed, val_loader, device=module.device)
                metrics |= evaluate_features(tx, ty, vx, vy, k=k, temperature=temperature, suffix=suffix)
                panels[suffix] = (vx, vy)
        if self.plot_dir is not None:
            draw_embeddings(panels, metrics, Path(self.plot_dir) / "embeddings.png")
        return metrics
