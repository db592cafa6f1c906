"""`make bench`: training-step throughput of ours vs HF ViTMAE, achieved FLOP rate, and the FLOP saving
of encoding visible tokens only. Prints a Markdown report, writes results.md and results.json.

    .venv/bin/python benchmarks/run.py [--quick] [--no-compile] [--out DIR]

Timings are taken in one process, interleaved (one step of each model per round, order rotated), so
load from other processes on a shared machine hits every model alike; we report medians and bests.
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

from benchmarks.flops import count_flops, encoder_flops, matmul_gflops, matmul_rate  # noqa: E402
from benchmarks.models import Runner, build_hf, build_ours  # noqa: E402


@dataclass
class Settings:
    batch: int
    warmup: int  # untimed steps per model after the FLOP-counting step
    min_rounds: int
    max_rounds: int
    budget_s: float  # stop adding rounds after this many seconds of timing (once min_rounds are done)
    compile: bool


@dataclass
class Timed:
    runner: Runner
    flops: int | None = None  # per training step, forward + backward
    first_step_s: float | None = None
    step_s: list[float] = field(default_factory=list)
    error: str | None = None

    def img_s(self, batch: int, how: str) -> float:
        t = statistics.median(self.step_s) if how == "median" else min(self.step_s)
        return batch / t


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def timed_step(t: Timed, images: torch.Tensor) -> float:
    start = time.perf_counter()
    t.runner.step(images)
    return time.perf_counter() - start


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
        t.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"
        traceback.print_exc(limit=3)


def throughput(s: Settings) -> dict:
    """Build the models, count FLOPs, warm up, then time interleaved rounds."""
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
    matmul: list[float] = []
    start, rounds = time.perf_counter(), 0
    while rounds < s.max_rounds and (rounds < s.min_rounds or time.perf_counter() - start < s.budget_s):
        shift = rounds % len(live)
        for t in live[shift:] + live[:shift]:  # rotate the order so no model always runs first
            t.step_s.append(timed_step(t, images))
        matmul.append(matmul_gflops())
        rounds += 1
        print(f"[bench] round {rounds}: " + ", ".join(f"{t.runner.name} {t.step_s[-1]:.2f}s" for t in live), flush=True)
    ours, hf = models[0], models[1]
    paired = [h / o for o, h in zip(ours.step_s, hf.step_s)]  # per-round speed ratio ours/HF
    return {
        "batch": s.batch, "rounds": rounds, "hf_attn_implementation": attn,
        "matmul_gflops_samples": matmul, "matmul_gflops_median": statistics.median(matmul),
        "paired_ratio_ours_over_hf_median": statistics.median(paired) if paired else None,
        "models": {
            t.runner.name: {
                "trainable_params": t.runner.trainable_params(), "flops_per_step": t.flops,
                "first_step_s": t.first_step_s, "step_s": t.step_s, "error": t.error,
                "median_img_s": t.img_s(s.batch, "median") if t.step_s else None,
                "best_img_s": t.img_s(s.batch, "best") if t.step_s else None,
            }
            for t in models
        },
    }


def fmt(x: float | None, spec: str = ".1f") -> str:
    return "—" if x is None else format(x, spec)


def report(res: dict) -> str:
    tp, env = res["throughput"], res["env"]
    models, b = tp["models"], tp["batch"]
    ours, hf = models["ours"], models["HF ViTMAE"]
    out = [
        "# Benchmarks", "",
        f"{env['date']} · {env['cpu']} · {env['threads']} threads · torch {env['torch']} · "
        f"transformers {env['transformers']} · timm {env['timm']} · load avg before/after "
        f"{env['loadavg_start']:.2f}/{env['loadavg_end']:.2f}", "",
        f"## Training step, ViT-Tiny/16 MAE at 224 px (batch {b}, fp32, mask 0.75, norm_pix, AdamW)", "",
        "Plain Python loop `module(batch)` → `loss.backward()` → `opt.step()` → `opt.zero_grad()`, no "
        f"Lightning Trainer overhead. HF attention: `{tp['hf_attn_implementation']}`. "
        f"{tp['rounds']} interleaved rounds after warm-up.", "",
        "| model | trainable params | GFLOP/step | median img/s | best img/s | median s/step | first step s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in models.items():
        if m["error"]:
            out.append(f"| {name} | {m['trainable_params']:,} | — | failed: `{m['error']}` | | | |")
            continue
        gf = None if m["flops_per_step"] is None else m["flops_per_step"] / 1e9
        med = statistics.median(m["step_s"]) if m["step_s"] else None
        out.append(
            f"| {name} | {m['trainable_params']:,} | {fmt(gf)} | {fmt(m['median_img_s'], '.2f')} | "
            f"{fmt(m['best_img_s'], '.2f')} | {fmt(med, '.3f')} | {fmt(m['first_step_s'], '.1f')} |"
        )
    ratio = ours["median_img_s"] / hf["median_img_s"]
    out += ["", f"**ours / HF = {ratio:.2f}×** (ratio of medians; median of per-round ratios "
            f"{tp['paired_ratio_ours_over_hf_median']:.2f}×)."]
    comp = models.get("ours (compiled)")
    if comp and comp["median_img_s"]:
        out.append(f"Compiled / eager (ours) = {comp['median_img_s'] / ours['median_img_s']:.2f}×.")
    mm = tp["matmul_gflops_median"]
    out += ["", "## Achieved FLOP rate", "",
            "FLOPs of one training step counted with `FlopCounterMode` (forward + backward, matmul-like ops "
            "incl. CPU SDPA), divided by the median step time; reference: fp32 2048×2048 @ 2048×2048 matmul, "
            "median of the samples taken between rounds.", "",
            "| | GFLOP/s | share of matmul rate |", "|---|---:|---:|",
            f"| matmul 2048³ fp32 | {mm:.1f} | 100% |"]
    for name, m in models.items():
        flops = m["flops_per_step"] or ours["flops_per_step"]  # compiled: same math as eager
        if m["step_s"] and flops:
            rate = flops / statistics.median(m["step_s"]) / 1e9
            out.append(f"| {name} | {rate:.1f} | {100 * rate / mm:.0f}% |")
    out += ["", "## Encoder forward FLOPs, batch 1, 224 px / 16 px patches (visible tokens only)", "",
            "| encoder | tokens all / visible | GFLOP mask 0.0 | GFLOP mask 0.75 | saving |",
            "|---|---:|---:|---:|---:|"]
    for name, e in res["encoder_flops"].items():
        full, vis = e["flops_ratio_0.0"], e["flops_ratio_0.75"]
        out.append(f"| {name} | {e['tokens_all']}+cls / {e['tokens_visible']}+cls | {full / 1e9:.2f} | "
                   f"{vis / 1e9:.2f} | {full / vis:.2f}× |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="batch 8, 2 rounds, no compile: a smoke test (<60 s)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks", help="where results.md/json go")
    args = p.parse_args(argv)
    if args.quick:
        s = Settings(batch=8, warmup=1, min_rounds=2, max_rounds=2, budget_s=0.0, compile=False)
    else:
        s = Settings(batch=32, warmup=2, min_rounds=8, max_rounds=30, budget_s=150.0, compile=not args.no_compile)
    env = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_model(), "threads": torch.get_num_threads(), "python": platform.python_version(),
        "torch": torch.__version__, "transformers": transformers.__version__, "timm": timm.__version__,
        "loadavg_start": os.getloadavg()[0], "quick": args.quick,
    }
    res: dict = {"env": env, "settings": s.__dict__}
    res["encoder_flops"] = {
        "ViT-Tiny/16": encoder_flops(dim=192, depth=12, heads=3),
        "ViT-Base/16": encoder_flops(dim=768, depth=12, heads=12),
    }
    res["matmul_gflops_before"] = matmul_rate()
    res["throughput"] = throughput(s)
    env["loadavg_end"] = os.getloadavg()[0]
    md = report(res)
    print(md)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(md)
    (args.out / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    print(f"[bench] wrote {args.out / 'results.md'} and {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
