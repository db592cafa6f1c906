"""Frozen-feature evaluation for graphs (the datamodule's `evaluate_frozen` hook) and the embedding picture.

Node level: per-node latents of each frozen encoder (`encoder(tokens, None)` without its prefix tokens) ->
the shared `evaluate_features` (linear probe, kNN, RankMe) from the probe-train nodes to the held-out nodes.
Graph level: pooled graph embeddings (`module.embed_with`) of the train / val graphs, the same protocol.
Both write `<run dir>/embeddings.png`: a 2-D PCA of the held-out embeddings coloured by class, one panel per
encoder (pretrained, random init), when the module is attached to a trainer.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from mae.callbacks.reconstruction import save_figure  # noqa: E402
from mae.eval.features import extract_features, to_device  # noqa: E402
from mae.eval.report import evaluate_features  # noqa: E402


@torch.no_grad()
def node_embeddings(module: nn.Module, encoder: nn.Module, batches: list[dict[str, Tensor]], num_nodes: int,
                    nodes: Tensor) -> Tensor:
    """(len(nodes), D) latents of `nodes`: from one full-graph batch (rows = node ids) or from subgraph batches
    centred at each node in order (row = the centre, `batch["center"]`)."""
    out = []
    for batch in batches:
        batch = to_device(batch, module.device)
        tokens = module.tokenizer(batch)
        h = encoder(tokens, None)[:, encoder.num_prefix :]  # (B, N, D)
        if len(batches) == 1 and h.shape[0] == 1 and h.shape[1] == num_nodes:  # full graph
            return h[0, nodes.to(h.device)].float().cpu()
        out.append(h[torch.arange(h.shape[0], device=h.device), batch["center"]].float().cpu())  # (B, D)
    return torch.cat(out)


def run_dir_of(module: nn.Module) -> Path | None:
    trainer = getattr(module, "_trainer", None)
    return None if trainer is None else Path(trainer.default_root_dir)


def pca_2d(x: Tensor) -> Tensor:
    """(N, D) -> (N, 2) projection on the two leading principal components."""
    x = x - x.mean(dim=0, keepdim=True)
    _, _, v = torch.pca_lowrank(x, q=min(2, *x.shape), center=False)
    z = x @ v[:, :2]
    return torch.nn.functional.pad(z, (0, 2 - z.shape[1]))


def draw_embeddings(panels: dict[str, tuple[Tensor, Tensor]], metrics: dict[str, float], path: Path) -> None:
    """One scatter per encoder: PCA of its held-out embeddings, coloured by label (grey = unlabeled)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4.2), squeeze=False)
    for ax, (suffix, (x, y)) in zip(axes[0], panels.items()):
        z = pca_2d(x).numpy()
        ax.scatter(z[:, 0], z[:, 1], c=y.clamp_min(0).numpy(), cmap="tab10", s=6)
        acc = metrics.get(f"eval/linear_acc{suffix}")
        name = "pretrained" if not suffix else suffix.strip("_").replace("_", " ")
        ax.set_title(f"{name}" + ("" if acc is None else f": linear probe {acc:.3f}"), fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
    plt.close(save_figure(fig, path, title="held-out embeddings, 2-D PCA, coloured by class", fontsize=9))


def evaluate_graph_encoders(dm, module: nn.Module, encoders: dict[str, nn.Module], *, k: int, temperature: float,
                            max_samples: int | None, seed: int) -> dict[str, float]:
    """Metrics for every encoder (suffix -> encoder) on a prepared `datamodules.graph.GraphDataModule`."""
    module.eval()
    metrics: dict[str, float] = {}
    panels: dict[str, tuple[Tensor, Tensor]] = {}
    if dm.level == "node":
        train_nodes, eval_nodes = dm.probe_train, dm.probe_eval
        if max_samples is not None:
            train_nodes = train_nodes[:max_samples]
        num_nodes = dm.graphs[0].num_nodes
        for suffix, encoder in encoders.items():
            encoder.eval()
            tx = node_embeddings(module, encoder, dm.node_batches(train_nodes), num_nodes, train_nodes)
            vx = node_embeddings(module, encoder, dm.node_batches(eval_nodes), num_nodes, eval_nodes)
            ty, vy = dm.node_labels[train_nodes], dm.node_labels[eval_nodes]
            metrics |= evaluate_features(tx, ty, vx, vy, k=k, temperature=temperature, suffix=suffix)
            panels[suffix] = (vx, vy)
    else:
        train_loader, val_loader = dm.eval_dataloaders()
        for suffix, encoder in encoders.items():
            encoder.eval()
            embed = lambda batch, encoder=encoder: module.embed_with(encoder, batch)  # noqa: E731
            tx, ty = extract_features(embed, train_loader, device=module.device, max_samples=max_samples)
            vx, vy = extract_features(embed, val_loader, device=module.device)
            metrics |= evaluate_features(tx, ty, vx, vy, k=k, temperature=temperature, suffix=suffix)
            panels[suffix] = (vx, vy)
    run_dir = run_dir_of(module)
    if run_dir is not None:
        draw_embeddings(panels, metrics, run_dir / "embeddings.png")
    return metrics
