"""Point-cloud section of `make bench`: grouping (FPS + kNN), the Point-MAE training step, positions once vs
before every block, and the mesh cache.

- Grouping: `mae.modalities.pointcloud.ops.group_points` (64 FPS centres, 32-NN groups) on random clouds of 1024 ... 8192 points.
- Training step (forward + backward + AdamW step, 1024-point clouds, ratio 0.6, Chamfer-L2): Point-MAE's size
  (mini-PointNet 128-256/512, encoder 384 x 12, decoder 384 x 4) and the CPU default of modality=pointcloud
  (conf/model/pointmae_cpu.yaml: PointNet 32-64/128, encoder 128 x 4, decoder 64 x 2) at 1024 and 4096 points
  (the tokens stay 64 groups: only the grouping grows with the points).
- pos_every_block: the CPU model with positions added before every block vs once at the input, interleaved
  step by step; reported as the median ratio of neighbouring steps (stays meaningful under load).
- Mesh cache: loading a 20k-face mesh (`read_points_cached`) sampled at every load vs read from the cache,
  interleaved, median ratio.
Medians over steps during which other processes took < CLEAN_OTHER_CORES (benchmarks/noise.py) when >= 3.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

from benchmarks.noise import Sample, measure, median_clean
from datamodules.pointcloud.io import read_points_cached
from mae.core.decoder import Decoder
from mae.core.encoder import Encoder
from mae.core.masking import RandomMasker
from mae.core.module import MAEModule
from mae.core.optim import param_groups
from mae.core.pos_embed import MLPPosEmbed
from mae.modalities.pointcloud.embed import PointNetEmbed
from mae.modalities.pointcloud.losses import masked_chamfer
from mae.modalities.pointcloud.ops import group_points
from mae.modalities.pointcloud.targets import PointGroupTarget
from mae.modalities.pointcloud.tokenizer import PointCloudTokenizer

SIZES = {  # name -> (PointNet widths, encoder dim, depth, heads, decoder dim, depth, heads)
    "Point-MAE": ((128, 256, 512), 384, 12, 6, 384, 4, 6),
    "CPU default": ((32, 64, 128), 128, 4, 4, 64, 2, 2),
}


def timed(fn, *, steps: int, budget_s: float) -> list[Sample]:
    fn()  # warm-up
    out, start = [], time.perf_counter()
    while len(out) < steps and (len(out) < 3 or time.perf_counter() - start < budget_s):
        out.append(measure(fn))
    return out


def interleaved_ratio(slow, fast, *, pairs: int, budget_s: float) -> dict:
    """Median of time(slow) / time(fast) over neighbouring calls (A B A B ...), with both medians."""
    slow(), fast()  # warm-up
    ratios, a, b, start = [], [], [], time.perf_counter()
    while len(ratios) < pairs and (len(ratios) < 3 or time.perf_counter() - start < budget_s):
        sa, sb = measure(slow), measure(fast)
        a.append(sa.seconds), b.append(sb.seconds), ratios.append(sa.seconds / sb.seconds)
    return {"ratio": statistics.median(ratios), "slow_s": statistics.median(a), "fast_s": statistics.median(b),
            "pairs": len(ratios)}


def build_pointmae(batch: int, size: str = "Point-MAE", *, pos_every_block: bool = True
                   ) -> tuple[MAEModule, torch.optim.Optimizer]:
    widths, dim, depth, heads, ddim, ddepth, dheads = SIZES[size]
    torch.manual_seed(0)
    module = MAEModule(
        tokenizer=PointCloudTokenizer(num_groups=64, group_size=32),
        masker=RandomMasker(ratio=0.6),
        encoder=partial(Encoder, dim=dim, depth=depth, num_heads=heads, cls_token=False, pool="max_mean",
                        pos_embed=MLPPosEmbed, token_embed=partial(PointNetEmbed, widths=widths),
                        pos_every_block=pos_every_block),
        decoder=partial(Decoder, dim=ddim, depth=ddepth, num_heads=dheads, pos_embed=MLPPosEmbed,
                        pos_every_block=pos_every_block),
        target=PointGroupTarget(), loss=masked_chamfer, optimizer=torch.optim.AdamW, batch_size=batch,
    ).train()
    return module, torch.optim.AdamW(param_groups(module, weight_decay=0.05), lr=1e-3)


def train_step(module: MAEModule, opt: torch.optim.Optimizer, points: torch.Tensor):
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        loss = module({"points": points}, gen)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad()

    return step


def run(*, quick: bool) -> dict:
    res: dict = {"grouping": {}, "train_step": {}}
    for n, batch in ((1024, 32), (2048, 16), (4096, 8), (8192, 8)):
        if quick and n in (2048, 4096):
            continue
        clouds = torch.rand(batch, n, 3)
        print(f"[bench] point grouping, {n} points x batch {batch}", flush=True)
        samples = timed(lambda: group_points(clouds, 64, 32), steps=2 if quick else 10, budget_s=15.0)
        med, clean = median_clean(samples)
        res["grouping"][str(n)] = {"batch": batch, "median_s": med, "clouds_per_s": batch / med,
                                   "clean": clean, "steps": len(samples)}
    cases = [("Point-MAE", 1024, 4 if quick else 16), ("CPU default", 1024, 8 if quick else 32),
             ("CPU default", 4096, 8 if quick else 32)]
    for size, n, batch in cases:
        module, opt = build_pointmae(batch, size)
        print(f"[bench] {size} training step, {n} points x batch {batch}", flush=True)
        samples = timed(train_step(module, opt, torch.rand(batch, n, 3) * 2 - 1), steps=2 if quick else 8,
                        budget_s=40.0)
        med, clean = median_clean(samples)
        res["train_step"][f"{size}, {n} points"] = {
            "batch": batch, "median_s": med, "clouds_per_s": batch / med, "clean": clean, "steps": len(samples),
            "trainable_params": sum(p.numel() for p in module.parameters() if p.requires_grad)}
    batch = 8 if quick else 32
    points = torch.rand(batch, 1024, 3) * 2 - 1
    every, once = (train_step(*build_pointmae(batch, "CPU default", pos_every_block=flag), points) for flag in (True, False))
    print("[bench] CPU default: positions before every block vs once", flush=True)
    res["pos_every_block"] = {"batch": batch, **interleaved_ratio(every, once, pairs=3 if quick else 8, budget_s=30.0)}
    res["mesh_cache"] = mesh_cache(quick=quick)
    return res


def mesh_cache(*, quick: bool) -> dict:
    import trimesh

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mesh.off"
        trimesh.creation.icosphere(subdivisions=5).export(path)  # 20,480 faces (ModelNet meshes: 1e3 to 1e5)
        cache = Path(tmp) / "cache"
        uncached = lambda: read_points_cached(path, num_points=1024, seed=0, cache_dir=None, mesh_points=8192)  # noqa: E731
        cached = lambda: read_points_cached(path, num_points=1024, seed=0, cache_dir=cache, mesh_points=8192)  # noqa: E731
        print("[bench] mesh load: sampled at every load vs cached", flush=True)
        out = interleaved_ratio(uncached, cached, pairs=3 if quick else 10, budget_s=20.0)
        return {"faces": 20480, "mesh_points": 8192, "file_kb": path.stat().st_size / 1024, **out}


def report(res: dict) -> list[str]:
    out = ["", "## Point clouds (Point-MAE)", "",
           "Grouping = `mae.modalities.pointcloud.ops.group_points` (plain-torch FPS to 64 centres + 32-NN), random clouds; "
           "training step = forward + backward + AdamW step, ratio 0.6, Chamfer-L2, 64 groups of 32 "
           "(Point-MAE: mini-PointNet 128-256/512, encoder 384 x 12, decoder 384 x 4; CPU default = "
           "`modality=pointcloud`'s model: PointNet 32-64/128, encoder 128 x 4, decoder 64 x 2).", "",
           "| measurement | batch | median s | clouds/s | clean/all steps |", "|---|---:|---:|---:|---:|"]
    for n, g in res["grouping"].items():
        out.append(f"| grouping, {n} points | {g['batch']} | {g['median_s']:.4f} | {g['clouds_per_s']:.1f} | "
                   f"{g['clean']}/{g['steps']} |")
    for name, t in res["train_step"].items():
        out.append(f"| training step, {name} ({t['trainable_params']:,} params) | {t['batch']} | "
                   f"{t['median_s']:.3f} | {t['clouds_per_s']:.2f} | {t['clean']}/{t['steps']} |")
    p, m = res.get("pos_every_block"), res.get("mesh_cache")
    if p:
        out += ["", f"Positions before every block vs once at the input (CPU default, batch {p['batch']}, interleaved, "
                    f"{p['pairs']} pairs): {p['ratio']:.3f}x the step time ({p['slow_s']:.3f} s vs {p['fast_s']:.3f} s)."]
    if m:
        out += [f"Mesh load ({m['faces']:,}-face .off, {m['file_kb']:.0f} KB, {m['mesh_points']} surface points): "
                f"sampled at every load {m['slow_s'] * 1e3:.1f} ms vs from the cache {m['fast_s'] * 1e3:.1f} ms "
                f"(sha256 of the file + np.load): {m['ratio']:.1f}x faster ({m['pairs']} interleaved pairs)."]
    return out
