"""`make bench`: training-step throughput of ours vs HF ViTMAE, achieved FLOP rate, and the FLOP saving
of encoding visible tokens only. Prints a Markdown report, writes results.md and results.json.

    .venv/bin/python benchmarks/run.py [--quick] [--no-compile] [--out DIR]

Timings are taken in one process, interleaved (one step of each model per round, order rotated), so
load from other processes on a shared machine hits every model alike; each step also records how much
CPU other processes took meanwhile (benchmarks/noise.py) and the statistics use the clean steps. About
1-2 min on an idle 2-core machine; the first torch.compile adds ~100 s unless the inductor cache
(/tmp/torchinductor_$USER) already holds the graphs.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import timm  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from benchmarks import audio as audio_bench  # noqa: E402
from benchmarks import ddp as ddp_bench  # noqa: E402
from benchmarks import graph as graph_bench  # noqa: E402
from benchmarks import pointcloud as pointcloud_bench  # noqa: E402
from benchmarks import timeseries as timeseries_bench  # noqa: E402
from benchmarks import video as video_bench  # noqa: E402
from benchmarks.flops import count_flops, encoder_flops  # noqa: E402
from benchmarks.models import Runner, build_hf, build_ours  # noqa: E402
from benchmarks.noise import CLEAN_OTHER_CORES, Sample, measure  # noqa: E402

# Per-modality sections after the image throughput benchmark: name -> module with
# `run(quick: bool) -> dict` and `report(res: dict) -> list[str]` (Markdown lines).
SECTIONS = {
    "pointcloud": pointcloud_bench,
    "audio": audio_bench,
    "graph": graph_bench,
    "ddp": ddp_bench,
    "timeseries": timeseries_bench,
    "video": video_bench,
}


@dataclass
class Settings:
    batch: int
    warmup: int  # untimed steps per model after the first (FLOP-counting / compiling) step
    min_rounds: int
    max_rounds: int
    enough_clean: int  # stop once every model has this many clean steps (after min_rounds) ...
    budget_s: float  # ... or once the timed rounds have taken this long
    compile: bool


def summary(samples: list[Sample]) -> dict:
    """Median/best over the clean samples when there are at least 3, else over all of them."""
    clean = [x.seconds for x in samples if x.clean]
    used = clean if len(clean) >= 3 else [x.seconds for x in samples]
    return {
        "seconds": [x.seconds for x in samples], "other_cores": [round(x.other_cores, 3) for x in samples],
        "clean": len(clean), "stats_over": "clean" if used is clean else "all",
        "median_s": statistics.median(used) if used else None, "best_s": min(used) if used else None,
    }


@dataclass
class Timed:
    runner: Runner
    flops: int | None = None  # per training step, forward + backward
    first_step_s: float | None = None
    samples: list[Sample] = field(default_factory=list)
    error: str | None = None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def prepare(t: Timed, images: torch.Tensor, s: Settings, count: bool) -> None:
    """First step (compiles if compiled; FLOP-counted if `count`), then warm-up; errors are recorded."""
    try:
        start = time.perf_counter()
        if count:
            t.flops = count_flops(lambda: t.runner.step(images))
        else:
            t.runner.step(images)
        t.first_step_s = time.perf_counter() - start
        for _ in range(s.warmup):
            t.runner.step(images)
    except Exception as exc:  # noqa: BLE001 - a failed compile is a result, not a crash
        msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        t.error = f"{type(exc).__name__}: {msg}"
        traceback.print_exc(limit=3)


def throughput(s: Settings) -> dict:
    """Build the models, count FLOPs, warm up, then time interleaved rounds (one step of each + a matmul)."""
    torch.manual_seed(0)
    images = torch.randn(s.batch, 3, 224, 224)  # (B, 3, H, W)
    hf_runner, attn = build_hf()
    models = [Timed(build_ours()), Timed(hf_runner)]
    if s.compile:
        models.append(Timed(build_ours(compile=True)))
    for t in models:
        print(f"[bench] first step + warm-up: {t.runner.name}", flush=True)
        prepare(t, images, s, count="compiled" not in t.runner.name)
    live = [t for t in models if t.error is None]
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    matmul: list[Sample] = []
    start, rounds = time.perf_counter(), 0
    while rounds < s.max_rounds:
        enough = all(sum(x.clean for x in t.samples) >= s.enough_clean for t in live)
        if rounds >= s.min_rounds and (enough or time.perf_counter() - start > s.budget_s):
            break
        shift = rounds % len(live)
        for t in live[shift:] + live[:shift]:  # rotate the order so no model always runs first
            t.samples.append(measure(lambda: t.runner.step(images)))
        matmul.append(measure(lambda: torch.mm(a, b)))
        rounds += 1
        print(f"[bench] round {rounds}: " + ", ".join(
            f"{t.runner.name} {t.samples[-1].seconds:.2f}s (others {t.samples[-1].other_cores:.2f} cores)"
            for t in live), flush=True)
    ours, hf = models[0], models[1]
    both_clean = [h.seconds / o.seconds for o, h in zip(ours.samples, hf.samples) if o.clean and h.clean]
    mm = summary(matmul)
    return {
        "batch": s.batch, "rounds": rounds, "hf_attn_implementation": attn,
        "clean_threshold_other_cores": CLEAN_OTHER_CORES,
        "matmul_2048": {**mm, "gflops": 2 * 2048**3 / mm["median_s"] / 1e9},
        "paired_ratio_ours_over_hf": statistics.median(both_clean) if both_clean else None,
        "paired_rounds": len(both_clean),
        "models": {
            t.runner.name: {
                "trainable_params": t.runner.trainable_params(), "flops_per_step": t.flops,
                "first_step_s": t.first_step_s, "error": t.error, **summary(t.samples),
            }
            for t in models
        },
    }


def fmt(x: float | None, spec: str = ".1f") -> str:
    return "—" if x is None else format(x, spec)


def report(res: dict) -> str:
    env = res["env"]
    out = [
        "# Benchmarks", "",
        f"{env['date']} · {env['cpu']} · {env['threads']} threads · torch {env['torch']} · "
        f"transformers {env['transformers']} · timm {env['timm']} · load avg before/after "
        f"{env['loadavg_start']:.2f}/{env['loadavg_end']:.2f}",
    ]
    if "throughput" in res:
        out += image_report(res)
    for name, section in SECTIONS.items():
        if name in res:
            out += section.report(res[name])
    return "\n".join(out) + "\n"


def image_report(res: dict) -> list[str]:
    tp = res["throughput"]
    models, b = tp["models"], tp["batch"]
    ours, hf = models["ours"], models["HF ViTMAE"]
    out = [
        "",
        f"## Training step, ViT-Tiny/16 MAE at 224 px (batch {b}, fp32, mask 0.75, norm_pix, AdamW)", "",
        "Plain Python loop `module(batch)` → `loss.backward()` → `opt.step()` → `opt.zero_grad()` (no "
        f"Lightning Trainer overhead). HF attention: `{tp['hf_attn_implementation']}`. {tp['rounds']} "
        "interleaved rounds after warm-up; median/best over the *clean* steps (other processes used < "
        f"{tp['clean_threshold_other_cores']} cores meanwhile) when there are ≥ 3, else over all steps.", "",
        "| model | trainable params | GFLOP/step | median img/s | best img/s | median s/step | clean/all steps "
        "| first step s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in models.items():
        if m["error"]:
            out.append(f"| {name} | {m['trainable_params']:,} | — | failed: `{m['error']}` | | | | |")
            continue
        gf = None if m["flops_per_step"] is None else m["flops_per_step"] / 1e9
        med, best = m["median_s"], m["best_s"]
        out.append(
            f"| {name} | {m['trainable_params']:,} | {fmt(gf)} | {fmt(med and b / med, '.2f')} | "
            f"{fmt(best and b / best, '.2f')} | {fmt(med, '.3f')} | {m['clean']}/{len(m['seconds'])} | "
            f"{fmt(m['first_step_s'], '.1f')} |"
        )
    out += ["", f"**ours / HF = {hf['median_s'] / ours['median_s']:.2f}×** (ratio of medians; median of "
            f"per-round ratios over {tp['paired_rounds']} rounds clean for both: "
            f"{fmt(tp['paired_ratio_ours_over_hf'], '.2f')}×)."]
    if any(m["stats_over"] == "all" for m in models.values() if not m["error"]):
        out.append("**Warning:** fewer than 3 clean steps for some model: its numbers include slow-downs from "
                   "other processes (see `other_cores` in results.json).")
    comp = models.get("ours (compiled)")
    if comp and comp["median_s"]:
        out.append(f"Compiled / eager (ours) = {ours['median_s'] / comp['median_s']:.2f}×; its first step "
                   "includes compilation (~100 s with a cold inductor cache, seconds with a warm one).")
    mm = tp["matmul_2048"]
    out += ["", "## Achieved FLOP rate", "",
            "FLOPs of one training step counted with `FlopCounterMode` (forward + backward; matmul, conv and "
            "attention ops, optimizer not counted) divided by the median step time; reference: fp32 "
            "2048×2048 @ 2048×2048 matmul sampled once per round (median).", "",
            "| | GFLOP/s | share of matmul rate |", "|---|---:|---:|",
            f"| matmul 2048³ fp32 ({mm['clean']}/{len(mm['seconds'])} clean) | {mm['gflops']:.1f} | 100% |"]
    for name, m in models.items():
        flops = m["flops_per_step"] or ours["flops_per_step"]  # compiled: same math as eager
        if m["median_s"] and flops:
            rate = flops / m["median_s"] / 1e9
            out.append(f"| {name} | {rate:.1f} | {100 * rate / mm['gflops']:.0f}% |")
    out += ["", "## Encoder forward FLOPs, batch 1, 224 px / 16 px patches (visible tokens only)", "",
            "| encoder | tokens all / visible | GFLOP mask 0.0 | GFLOP mask 0.75 | saving |",
            "|---|---:|---:|---:|---:|"]
    for name, e in res["encoder_flops"].items():
        full, vis = e["flops_ratio_0.0"], e["flops_ratio_0.75"]
        out.append(f"| {name} | {e['tokens_all']}+cls / {e['tokens_visible']}+cls | {full / 1e9:.2f} | "
                   f"{vis / 1e9:.2f} | {full / vis:.2f}× |")
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="batch 8, 2 rounds, no compile: a smoke test (<60 s)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks", help="where results.md/json go")
    p.add_argument("--only", default=None,
                   help=f"comma-separated sections to run, of: image, {', '.join(SECTIONS)} (default: all)")
    args = p.parse_args(argv)
    only = set(args.only.split(",")) if args.only else {"image", *SECTIONS}
    unknown = only - {"image", *SECTIONS}
    if unknown:
        p.error(f"--only: unknown section(s) {sorted(unknown)}; choose from image, {', '.join(SECTIONS)}")
    if args.quick:
        s = Settings(batch=8, warmup=0, min_rounds=2, max_rounds=2, enough_clean=0, budget_s=0.0, compile=False)
    else:
        s = Settings(batch=32, warmup=2, min_rounds=5, max_rounds=60, enough_clean=20, budget_s=240.0,
                     compile=not args.no_compile)
    env = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_model(), "threads": torch.get_num_threads(), "python": platform.python_version(),
        "torch": torch.__version__, "transformers": transformers.__version__, "timm": timm.__version__,
        "loadavg_start": os.getloadavg()[0], "quick": args.quick,
    }
    res: dict = {"env": env, "settings": s.__dict__}
    if "image" in only:
        res["encoder_flops"] = {
            "ViT-Tiny/16": encoder_flops(dim=192, depth=12, heads=3),
            "ViT-Base/16": encoder_flops(dim=768, depth=12, heads=12),
        }
        res["throughput"] = throughput(s)
    for name, section in SECTIONS.items():
        if name in only:
            print(f"[bench] section {name}", flush=True)
            extra = {"compile": s.compile} if name == "video" else {}  # the video step also runs compiled
            res[name] = section.run(quick=args.quick, **extra)
    env["loadavg_end"] = os.getloadavg()[0]
    md = report(res)
    print(md)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(md)
    (args.out / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    print(f"[bench] wrote {args.out / 'results.md'} and {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
