"""Time-series section of `make bench`: PatchTST training throughput against context length, and the loader.

Training step (forward + backward + AdamW) of the PatchTST-sized MAE (encoder 3 x 128, 16 heads, decoder
128 x 1, patch 12, ratio 0.4, RevIN, channel independence) on 7-channel series (ETT-like), batch 8 series
(= 56 channel sequences), for each context length of a curve; one step of every context per round, order
rotated, so load from other processes hits them alike. Reported: series/s per context and, per round, the
ratio to context 336 (the PatchTST/64 setting), whose median stays meaningful on a busy machine.

Loader: a generated CSV of 100k rows x 7 channels (+ date): `TimeSeriesDataModule.setup()` (pandas read + date
checks + chronological split + interpolation + StandardScaler) next to a bare `pandas.read_csv` of the same
file (the peer), and windows/s of the training DataLoader (context 512, batch 64).
"""
from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.noise import Sample, measure, median_clean
from datamodules.timeseries.datamodule import TimeSeriesDataModule
from mae.core.decoder import Decoder
from mae.core.encoder import Encoder
from mae.core.losses import masked_mse
from mae.core.masking import RandomMasker
from mae.core.module import MAEModule
from mae.core.optim import param_groups
from mae.modalities.timeseries.pos_embed import LearnedPosEmbed
from mae.modalities.timeseries.targets import RevINPatchTarget
from mae.modalities.timeseries.tokenizer import PatchTSTTokenizer

CHANNELS = 7


def build_patchtst(batch: int) -> tuple[MAEModule, torch.optim.Optimizer]:
    torch.manual_seed(0)
    pos = partial(LearnedPosEmbed, max_len=128)
    module = MAEModule(
        tokenizer=PatchTSTTokenizer(patch_len=12), masker=RandomMasker(ratio=0.4),
        encoder=partial(Encoder, dim=128, depth=3, num_heads=16, cls_token=False, pos_embed=pos),
        decoder=partial(Decoder, dim=128, depth=1, num_heads=16, pos_embed=pos),
        target=RevINPatchTarget(), loss=masked_mse, optimizer=torch.optim.AdamW, batch_size=batch,
    ).train()
    return module, torch.optim.AdamW(param_groups(module, weight_decay=0.0), lr=1e-4)


def train_throughput(*, quick: bool) -> dict:
    batch = 8
    contexts = [336, 512] if quick else [96, 192, 336, 512, 720, 1024]
    module, opt = build_patchtst(batch)
    gen = torch.Generator()
    data = {c: torch.randn(batch, c, CHANNELS) for c in contexts}

    def step(c: int) -> None:
        loss = module({"series": data[c]}, gen.manual_seed(0))["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad()

    for c in contexts:  # warm-up
        step(c)
    samples: dict[int, list[Sample]] = {c: [] for c in contexts}
    ratios: dict[int, list[float]] = {c: [] for c in contexts}
    for r in range(3 if quick else 8):
        shift = r % len(contexts)
        rnd = {}
        for c in contexts[shift:] + contexts[:shift]:
            rnd[c] = measure(partial(step, c))
            samples[c].append(rnd[c])
        for c in contexts:
            ratios[c].append(rnd[336].seconds / rnd[c].seconds)  # series/s relative to context 336
    out = {"batch_series": batch, "channels": CHANNELS, "contexts": {}}
    for c in contexts:
        med, clean = median_clean(samples[c])
        out["contexts"][str(c)] = {"patches": c // 12, "median_s": med, "series_per_s": batch / med,
                                   "ratio_to_336": statistics.median(ratios[c]), "clean": clean,
                                   "steps": len(samples[c])}
    return out


def loader_throughput(*, quick: bool) -> dict:
    rows = 100_000
    work = Path(tempfile.mkdtemp(prefix="mae_ts_bench_"))
    try:
        rng = np.random.default_rng(0)
        frame = pd.DataFrame(rng.standard_normal((rows, CHANNELS)).cumsum(0), columns=[f"c{i}" for i in range(CHANNELS)])
        frame.insert(0, "date", pd.date_range("2016-07-01", periods=rows, freq="15min").strftime("%Y-%m-%d %H:%M:%S"))
        path = work / "big.csv"
        frame.to_csv(path, index=False)
        setup_s, pandas_s = [], []
        dm = None
        for r in range(2 if quick else 4):
            def setup() -> None:
                nonlocal dm
                dm = TimeSeriesDataModule(task="forecast", root=str(path), context=512, batch_size=64, split="ratios")
                dm.setup()
            pair = [("setup", setup), ("pandas", lambda: pd.read_csv(path))]
            for name, fn in (pair if r % 2 == 0 else pair[::-1]):
                (setup_s if name == "setup" else pandas_s).append(measure(fn))
        loader = dm.train_dataloader()
        limit = 20 if quick else 100
        start, n = time.perf_counter(), 0
        for i, b in enumerate(loader):
            n += b["series"].shape[0]
            if i + 1 >= limit:
                break
        window_s = time.perf_counter() - start
        s_med, s_clean = median_clean(setup_s)
        p_med, _ = median_clean(pandas_s)
        return {"rows": rows, "channels": CHANNELS, "csv_mb": path.stat().st_size / 1e6,
                "setup_s": s_med, "setup_rows_per_s": rows / s_med, "pandas_read_s": p_med,
                "setup_over_pandas": statistics.median(a.seconds / b.seconds for a, b in zip(setup_s, pandas_s)),
                "clean": s_clean, "runs": len(setup_s), "windows": n, "windows_per_s": n / window_s}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(*, quick: bool) -> dict:
    print("[bench] PatchTST training throughput vs context", flush=True)
    train = train_throughput(quick=quick)
    print("[bench] time-series CSV loader", flush=True)
    return {"train": train, "loader": loader_throughput(quick=quick)}


def report(res: dict) -> list[str]:
    t, ld = res["train"], res["loader"]
    out = ["", "## Time series (PatchTST)", "",
           f"Training step (forward + backward + AdamW) of the PatchTST-sized MAE (encoder 3 x 128, 16 heads, decoder "
           f"128 x 1, patch 12, ratio 0.4), batch {t['batch_series']} series x {t['channels']} channels (channels "
           "folded into the batch). Ratio = median over rounds of (step time at 336) / (step time at this context).", "",
           "| context | patches | median s/step | series/s | speed vs 336 | clean/all steps |", "|---:|---:|---:|---:|---:|---:|"]
    for c, m in t["contexts"].items():
        out.append(f"| {c} | {m['patches']} | {m['median_s']:.3f} | {m['series_per_s']:.1f} | {m['ratio_to_336']:.2f}x | "
                   f"{m['clean']}/{m['steps']} |")
    out += ["", f"Loader: CSV of {ld['rows']:,} rows x {ld['channels']} channels ({ld['csv_mb']:.1f} MB). "
            f"`setup()` (read, date checks, split, interpolation, scaler) {ld['setup_s']:.2f} s = "
            f"{ld['setup_rows_per_s']:,.0f} rows/s, {ld['setup_over_pandas']:.2f}x a bare `pandas.read_csv` "
            f"({ld['pandas_read_s']:.2f} s; clean {ld['clean']}/{ld['runs']}); training windows (context 512, batch 64) "
            f"{ld['windows_per_s']:,.0f} windows/s."]
    return out
