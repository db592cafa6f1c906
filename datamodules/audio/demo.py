"""The demo data: five classes of generated sound events written as real FLAC / WAV files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from datamodules.demo import build_folder_once

DEMO_CLASSES = ("tone", "chirp", "noise_burst", "harmonic", "clicks")


def demo_clip(label: int, *, seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One synthetic sound event of class `label` (see DEMO_CLASSES) at random pitch, length, place, loudness
    and background-noise level: (S,) float32 in [-1, 1]."""
    n = int(seconds * sr)
    length = rng.uniform(0.3, 0.8) * seconds
    start = rng.uniform(0, seconds - length)
    t = np.arange(int(length * sr)) / sr
    if label == 0:  # pure tone
        ev = np.sin(2 * np.pi * rng.uniform(300, 3000) * t)
    elif label == 1:  # linear chirp, up or down
        f0, f1 = rng.uniform(200, 4000, size=2)
        ev = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * length)))
    elif label == 2:  # white-noise burst
        ev = rng.standard_normal(t.size) * 0.5
    elif label == 3:  # harmonic stack, 1/k amplitudes
        f0 = rng.uniform(100, 400)
        ev = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 7)) / 2
    else:  # click train
        ev = np.zeros(t.size)
        ev[:: max(1, int(sr / rng.uniform(4, 20)))] = 1.0
    envelope = np.minimum(1.0, np.minimum(t, length - t) / 0.01)  # 10 ms fades
    clip = rng.standard_normal(n) * 10 ** rng.uniform(-3.5, -2)  # background noise
    i = int(start * sr)
    clip[i : i + t.size] += ev * envelope * 10 ** rng.uniform(-1.2, -0.1)
    return np.clip(clip, -1, 1).astype(np.float32)


def write_demo(folder: Path, *, clips_per_class: int, seconds: float, seed: int) -> Path:
    """Write the demo set as real audio files: folder/<class>/<i>.flac (16 kHz mono) and, every third clip,
    .wav at 22.05 kHz stereo (so resampling and down-mixing run too). Written once (`build_folder_once`)."""

    def fill(tmp: Path) -> None:
        rng = np.random.default_rng(seed)
        for label, name in enumerate(DEMO_CLASSES):
            (tmp / name).mkdir()
            for i in range(clips_per_class):
                if i % 3 == 2:
                    sr = 22050
                    mono = demo_clip(label, seconds=seconds, sr=sr, rng=rng)
                    sf.write(tmp / name / f"{i:04d}.wav", np.stack([mono, mono * 0.8], axis=1), sr)
                else:
                    sr = 16000
                    sf.write(tmp / name / f"{i:04d}.flac", demo_clip(label, seconds=seconds, sr=sr, rng=rng), sr)

    return build_folder_once(folder, fill)
