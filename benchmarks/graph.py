"""Graph section of `make bench`: GraphMAE training throughput (nodes/s) of the GAT and the transformer encoders,
and how one epoch's time grows with the number of nodes (1k, 10k, 100k nodes of generated community graphs).

Throughput: full-batch training steps (forward + backward + AdamW step) on one generated graph of 2,000 nodes
(64 features, average degree ~8), `modality=graph` config with `model=gat` (256 wide, 2 layers, 4 heads) and
`model=graph_transformer` (128 wide, 4 blocks, visible nodes only, Laplacian PE), ratio 0.5; interleaved
rounds, so the GAT/transformer ratio stays meaningful on a loaded machine.
Scaling: one epoch = one full-batch step (GAT), or ceil(N / 1024) BFS subgraphs of <= 1024 nodes in batches
of 8 (sampling included), for the GAT and the transformer. The transformer is not run full batch above 10k
nodes: full attention over 50k visible nodes costs ~2.5e9 x width FLOPs per block (and a 50k x 50k score
matrix per head wherever attention is materialised).
Medians over samples during which other processes took < CLEAN_OTHER_CORES (benchmarks/noise.py) when >= 3.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from benchmarks.noise import Sample, measure, median_clean
from datamodules.graph.datasets import NodeItems
from datamodules.graph.ops import collate_graphs, laplacian_pe, num_subgraphs
from mae.core.optim import param_groups

FEATURES, PE_DIM, SUBGRAPH, SUB_BATCH = 64, 8, 1024, 8


def community_graph(n: int, *, degree: int = 8, communities: int = 10, p_in: float = 0.8, seed: int = 0) -> dict:
    """A generated graph item: n nodes in contiguous communities, each node linked to `degree`/2 random nodes
    (a fraction p_in inside its community), undirected; sparse 0/1 features. O(n * degree) memory."""
    g = torch.Generator().manual_seed(seed)
    half = degree // 2
    src = torch.arange(n).repeat_interleave(half)
    size = max(1, n // communities)
    inside = torch.rand(src.numel(), generator=g) < p_in
    local = (src // size) * size + torch.randint(0, size, (src.numel(),), generator=g)
    dst = torch.where(inside, local.clamp_max(n - 1), torch.randint(0, n, (src.numel(),), generator=g))
    keep = src != dst
    edges = torch.stack([src[keep], dst[keep]])
    edge_index = torch.unique(torch.cat([edges, edges.flip(0)], 1), dim=1)
    x = (torch.rand(n, FEATURES, generator=g) < 0.1).float()
    return {"x": x, "pe": torch.zeros(n, PE_DIM), "edge_index": edge_index, "label": -1,
            "node_label": torch.full((n,), -1)}


def build(model: str):
    """(training-step function, trainable params) of the `modality=graph model=MODEL` config."""
    overrides = ["modality=graph", f"model={model}", f"data.num_features={FEATURES}", f"data.pe_dim={PE_DIM}",
                 "run_dir=/tmp/mae_graph_bench"]
    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    torch.manual_seed(0)
    module = instantiate(cfg.module).train()
    opt = torch.optim.AdamW(param_groups(module, weight_decay=0.05), lr=1e-3)
    gen = torch.Generator().manual_seed(0)

    def step(batch: dict) -> None:
        module(batch, gen)["loss"].backward()
        opt.step()
        opt.zero_grad()

    return step, sum(p.numel() for p in module.parameters() if p.requires_grad)


def throughput(quick: bool) -> dict:
    item = community_graph(2000)
    item["pe"] = laplacian_pe(item["edge_index"], 2000, PE_DIM)
    batch = collate_graphs([item])
    runners = {m: build(m) for m in ("gat", "graph_transformer")}
    samples: dict[str, list[Sample]] = {m: [] for m in runners}
    for step, _ in runners.values():
        step(batch)  # warm-up
    rounds = 2 if quick else 12
    for r in range(rounds):
        order = list(runners) if r % 2 == 0 else list(reversed(runners))
        for m in order:
            samples[m].append(measure(lambda m=m: runners[m][0](batch)))
    out = {}
    for m, s in samples.items():
        med, clean = median_clean(s)
        out[m] = {"median_s": med, "nodes_per_s": 2000 / med, "clean": clean, "steps": len(s),
                  "trainable_params": runners[m][1]}
    paired = [t.seconds / g.seconds for g, t in zip(samples["gat"], samples["graph_transformer"])]
    out["transformer_over_gat_time"] = statistics.median(paired)
    return out


def epoch_subgraphs(step, item: dict, n: int) -> None:
    from torch_geometric.data import Data

    graph = Data(x=item["x"], edge_index=item["edge_index"], num_nodes=n, y=item["node_label"])
    items = NodeItems(graph, item["pe"], length=num_subgraphs(n, SUBGRAPH), subgraph_nodes=SUBGRAPH, hops=2, flip=False)
    for s in range(0, len(items), SUB_BATCH):
        step(collate_graphs([items[(1, i)] for i in range(s, min(s + SUB_BATCH, len(items)))]))


def scaling(quick: bool) -> dict:
    sizes = (1000, 10000) if quick else (1000, 10000, 100000)
    gat, _ = build("gat")
    transformer, _ = build("graph_transformer")
    res: dict = {}
    for n in sizes:
        item = community_graph(n)
        full = collate_graphs([item])
        runs = {"gat full batch": lambda: gat(full), "gat subgraphs": lambda: epoch_subgraphs(gat, item, n),
                "transformer subgraphs": lambda: epoch_subgraphs(transformer, item, n)}
        if n <= 10000:
            runs["transformer full batch"] = lambda: transformer(full)
        reps = 1 if quick or n >= 100000 else 3
        res[str(n)] = {"edges": int(item["edge_index"].shape[1])}
        for name, fn in runs.items():
            print(f"[bench] graph epoch, {n} nodes, {name}", flush=True)
            start = time.perf_counter()
            fn()  # warm-up (first call allocates)
            warm = time.perf_counter() - start
            samples = [measure(fn) for _ in range(reps)]
            med, clean = median_clean(samples)
            res[str(n)][name] = {"median_s": med, "clean": clean, "reps": reps, "first_s": warm}
    return res


def run(*, quick: bool) -> dict:
    print("[bench] graph throughput: GAT vs transformer", flush=True)
    return {"throughput": throughput(quick), "scaling": scaling(quick)}


def report(res: dict) -> list[str]:
    tp = res["throughput"]
    out = ["", "## Graphs (GraphMAE)", "",
           "Training step (forward + backward + AdamW) on one generated 2,000-node graph (64 features, average "
           "degree ~8), ratio 0.5, SCE; GAT = `model=gat` (256 wide, 2 layers, 4 heads, whole graph), transformer "
           "= `model=graph_transformer` (128 x 4, visible nodes only, Laplacian PE). Interleaved rounds.", "",
           "| encoder | params | median s/step | nodes/s | clean/all steps |", "|---|---:|---:|---:|---:|"]
    for m in ("gat", "graph_transformer"):
        t = tp[m]
        out.append(f"| {m} | {t['trainable_params']:,} | {t['median_s']:.3f} | {t['nodes_per_s']:,.0f} | "
                   f"{t['clean']}/{t['steps']} |")
    ratio = tp["transformer_over_gat_time"]
    out += ["", f"Transformer / GAT step time (median of per-round ratios): {ratio:.2f}x.", "",
            f"Epoch time vs graph size (generated community graphs, average degree ~8): full batch = one step on the "
            f"whole graph; subgraphs = ceil(N / {SUBGRAPH}) BFS subgraphs of <= {SUBGRAPH} nodes (2 hops), batches of "
            f"{SUB_BATCH}, sampling included. Transformer full batch above 10k nodes: not run (full attention over "
            "N/2 = 50k visible nodes: quadratic time, and a 50k x 50k score matrix per head where materialised).", "",
            "| nodes | edges | GAT full batch s | GAT subgraphs s | transformer full batch s "
            "| transformer subgraphs s |",
            "|---:|---:|---:|---:|---:|---:|"]
    for n, r in res["scaling"].items():
        cell = lambda k: f"{r[k]['median_s']:.2f}" if k in r else "not run"  # noqa: E731
        out.append(f"| {int(n):,} | {r['edges']:,} | {cell('gat full batch')} | {cell('gat subgraphs')} | "
                   f"{cell('transformer full batch')} | {cell('transformer subgraphs')} |")
    return out
