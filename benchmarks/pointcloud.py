"""Point-cloud section of `make bench`: grouping (FPS + kNN) throughput and the Point-MAE training step.

Grouping: `mae.pointops.group_points` (64 FPS centres, 32-NN groups) on random clouds of 1024 and 8192
points, clouds/s. Training step: the Point-MAE config (mini-PointNet group embedding, encoder 384 x 12,
6 heads, decoder 384 x 4, ratio 0.6, Chamfer-L2, AdamW) on 1024-point clouds at a shrunk batch, clouds/s.
Medians over steps during which other processes took < CLEAN_OTHER_CORES (benchmarks/noise.py) when >= 3.
"""
from __future__ import annotations

import statistics
import time
from functools import partial

import torch

from benchmarks.noise import Sample, measure
from mae.decoder import Decoder
from mae.encoder import Encoder
from mae.losses import masked_chamfer
from mae.masking import RandomMasker
from mae.module import MAEModule
from mae.optim import param_groups
from mae.pointops import group_points
from mae.pos_embed import MLPPosEmbed
from mae.tokenizers.pointcloud import PointCloudTokenizer, PointGroupTarget, PointNetEmbed


def median_clean(samples: list[Sample]) -> tuple[float, int]:
    clean = [s.seconds for s in samples if s.clean]
    used = clean if len(clean) >= 3 else [s.seconds for s in samples]
    return statistics.median(used), len(clean)


def timed(fn, *, steps: int, budget_s: float) -> list[Sample]:
    fn()  # warm-up
    out, start = [], time.perf_counter()
    while len(out) < steps and (len(out) < 3 or time.perf_counter() - start < budget_s):
        out.append(measure(fn))
    return out


def build_pointmae(batch: int) -> tuple[MAEModule, torch.optim.Optimizer]:
    torch.manual_seed(0)
    module = MAEModule(
        tokenizer=PointCloudTokenizer(num_groups=64, group_size=32),
        masker=RandomMasker(ratio=0.6),
        encoder=partial(Encoder, dim=384, depth=12, num_heads=6, cls_token=False, pool="max_mean",
                        pos_embed=MLPPosEmbed, token_embed=PointNetEmbed),
        decoder=partial(Decoder, dim=384, depth=4, num_heads=6, pos_embed=MLPPosEmbed),
        target=PointGroupTarget(), loss=masked_chamfer, optimizer=torch.optim.AdamW, batch_size=batch,
    ).train()
    return module, torch.optim.AdamW(param_groups(module, weight_decay=0.05), lr=1e-3)


def run(*, quick: bool) -> dict:
    res: dict = {"grouping": {}, "train_step": {}}
    for n, batch in ((1024, 32), (8192, 8)):
        clouds = torch.rand(batch, n, 3)
        print(f"[bench] point grouping, {n} points x batch {batch}", flush=True)
        samples = timed(lambda: group_points(clouds, 64, 32), steps=2 if quick else 10, budget_s=15.0)
        med, clean = median_clean(samples)
        res["grouping"][str(n)] = {"batch": batch, "median_s": med, "clouds_per_s": batch / med,
                                   "clean": clean, "steps": len(samples)}
    batch = 4 if quick else 16
    module, opt = build_pointmae(batch)
    points = torch.rand(batch, 1024, 3) * 2 - 1
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        loss = module({"points": points}, gen)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad()

    print(f"[bench] Point-MAE training step, batch {batch}", flush=True)
    samples = timed(step, steps=2 if quick else 8, budget_s=40.0)
    med, clean = median_clean(samples)
    res["train_step"] = {"batch": batch, "median_s": med, "clouds_per_s": batch / med, "clean": clean,
                         "steps": len(samples),
                         "trainable_params": sum(p.numel() for p in module.parameters() if p.requires_grad)}
    return res


def report(res: dict) -> list[str]:
    out = ["", "## Point clouds (Point-MAE)", "",
           "Grouping = `mae.pointops.group_points` (plain-torch FPS to 64 centres + 32-NN), random clouds; "
           "training step = Point-MAE config (mini-PointNet, encoder 384 x 12, decoder 384 x 4, ratio 0.6, "
           "Chamfer-L2, AdamW; forward + backward + step) on 1024-point clouds.", "",
           "| measurement | batch | median s | clouds/s | clean/all steps |", "|---|---:|---:|---:|---:|"]
    for n, g in res["grouping"].items():
        out.append(f"| grouping, {n} points | {g['batch']} | {g['median_s']:.4f} | {g['clouds_per_s']:.1f} | "
                   f"{g['clean']}/{g['steps']} |")
    t = res["train_step"]
    out.append(f"| training step ({t['trainable_params']:,} params) | {t['batch']} | {t['median_s']:.3f} | "
               f"{t['clouds_per_s']:.2f} | {t['clean']}/{t['steps']} |")
    return out
