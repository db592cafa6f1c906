"""Audio section of `make bench`: feature extraction throughput and the Audio-MAE training step.

Features: decode + resample/down-mix + Kaldi fbank (128 bins, 25/10 ms) of 10 s generated demo clips
(FLAC 16 kHz and WAV 22.05 kHz stereo), clips/s without a cache, filling the on-disk cache (cold) and from
it (warm: sha256 of the file + torch.load). Training step: a tiny Audio-MAE (1024 x 128 fbank, 16x16 patches
= 512 tokens, ratio 0.8, encoder 128 x 2, decoder 128 x 2, norm_pix, AdamW) with global decoder attention vs
local 4x4-token windows (shifted every other block), interleaved, clips/s. Medians over clean steps when >= 3
(benchmarks/noise.py).
"""
from __future__ import annotations

import shutil
import tempfile
from functools import partial
from pathlib import Path

import torch

from benchmarks.noise import Sample, measure, median_clean
from datamodules.audio.demo import write_demo
from datamodules.audio.features import FbankFeatures
from mae.core.decoder import Decoder
from mae.core.encoder import Encoder
from mae.core.losses import masked_mse
from mae.core.masking import RandomMasker
from mae.core.module import MAEModule
from mae.core.optim import param_groups
from mae.core.pos_embed import SinCosPosEmbed
from mae.core.targets import NormPixTarget
from mae.modalities.audio.tokenizer import SpectrogramTokenizer


def feature_throughput(*, quick: bool) -> dict:
    work = Path(tempfile.mkdtemp(prefix="mae_audio_bench_"))
    try:
        root = write_demo(work / "demo", clips_per_class=2 if quick else 4, seconds=10.0, seed=0)
        files = sorted(p for p in root.rglob("*") if p.suffix in (".flac", ".wav"))
        settings = {"sample_rate": 16000, "mel_bins": 128, "frame_length_ms": 25.0, "frame_shift_ms": 10.0}
        plain = FbankFeatures(cache_dir=None, **settings)
        cached = FbankFeatures(cache_dir=str(work / "cache"), **settings)
        res = {"clips": len(files), "clip_seconds": 10.0}
        rounds = 1 if quick else 3
        for name, fn in (("no cache", lambda: [plain(f) for f in files]),
                         ("cache cold (compute + write)", None),
                         ("cache warm (hash + load)", lambda: [cached(f) for f in files])):
            if fn is None:  # one cold pass fills the cache
                s = measure(lambda: [cached(f) for f in files])
                samples = [s]
            else:
                samples = [measure(fn) for _ in range(rounds)]
            med, clean = median_clean(samples)
            res[name] = {"median_s": med, "clips_per_s": len(files) / med, "clean": clean, "runs": len(samples)}
        return res
    finally:
        shutil.rmtree(work, ignore_errors=True)


def build_audiomae(batch: int, window: list[int] | None) -> tuple[MAEModule, torch.optim.Optimizer]:
    torch.manual_seed(0)
    module = MAEModule(
        tokenizer=SpectrogramTokenizer(frames=1024, mel_bins=128, patch_size=16),
        masker=RandomMasker(ratio=0.8),
        encoder=partial(Encoder, dim=128, depth=2, num_heads=4, pos_embed=SinCosPosEmbed),
        decoder=partial(Decoder, dim=128, depth=2, num_heads=4, pos_embed=SinCosPosEmbed, window=window),
        target=NormPixTarget(), loss=masked_mse, optimizer=torch.optim.AdamW, batch_size=batch,
    ).train()
    return module, torch.optim.AdamW(param_groups(module, weight_decay=0.05), lr=1e-3)


def train_step_throughput(*, quick: bool) -> dict:
    batch = 2 if quick else 4
    spec = torch.randn(batch, 1024, 128)
    gen = torch.Generator()
    runners = {}
    for name, window in (("global attention", None), ("local 4x4 windows", [4, 4])):
        module, opt = build_audiomae(batch, window)

        def step(module=module, opt=opt) -> None:
            loss = module({"fbank": spec}, gen.manual_seed(0))["loss"]
            loss.backward()
            opt.step()
            opt.zero_grad()

        step()  # warm-up
        runners[name] = step
    samples: dict[str, list[Sample]] = {k: [] for k in runners}
    for r in range(2 if quick else 5):
        names = list(runners)[r % 2:] + list(runners)[: r % 2]  # alternate which runs first
        for name in names:
            samples[name].append(measure(runners[name]))
    out = {"batch": batch, "tokens": 512, "ratio": 0.8}
    for name, s in samples.items():
        med, clean = median_clean(s)
        out[name] = {"median_s": med, "clips_per_s": batch / med, "clean": clean, "steps": len(s)}
    return out


def run(*, quick: bool) -> dict:
    print("[bench] audio feature extraction", flush=True)
    features = feature_throughput(quick=quick)
    print("[bench] Audio-MAE training step, global vs local decoder attention", flush=True)
    return {"features": features, "train_step": train_step_throughput(quick=quick)}


def report(res: dict) -> list[str]:
    f, t = res["features"], res["train_step"]
    out = ["", "## Audio (Audio-MAE)", "",
           f"Feature extraction: decode + mono + resample + Kaldi fbank (128 bins, 25/10 ms) of {f['clips']} "
           f"generated {f['clip_seconds']:.0f} s clips (FLAC 16 kHz and WAV 22.05 kHz stereo).", "",
           "| features | median s | clips/s | clean/all runs |", "|---|---:|---:|---:|"]
    for name in ("no cache", "cache cold (compute + write)", "cache warm (hash + load)"):
        m = f[name]
        out.append(f"| {name} | {m['median_s']:.3f} | {m['clips_per_s']:.1f} | {m['clean']}/{m['runs']} |")
    out += ["", f"Training step (forward + backward + AdamW), tiny Audio-MAE on 1024x128 fbank, {t['tokens']} "
            f"tokens, ratio {t['ratio']}, encoder 128 x 2, decoder 128 x 2, batch {t['batch']}. Local attention "
            "is a block-diagonal boolean mask over the restored grid: same FLOPs as global attention in this "
            "implementation (no window gather), so any difference is the masked-attention kernel's cost.", "",
            "| decoder attention | median s/step | clips/s | clean/all steps |", "|---|---:|---:|---:|"]
    for name in ("global attention", "local 4x4 windows"):
        m = t[name]
        out.append(f"| {name} | {m['median_s']:.3f} | {m['clips_per_s']:.2f} | {m['clean']}/{m['steps']} |")
    return out
