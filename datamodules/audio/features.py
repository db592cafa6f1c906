"""Audio features: decoding (soundfile), the header pre-scan, Kaldi log-mel filterbanks with an optional on-disk
cache (`FbankFeatures`), and the crop / pad to a fixed number of frames."""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio
from torch import Tensor

from datamodules.errors import LoadError

FEATURE_VERSION = 2  # bump when the feature code changes: old cache entries are never reused (2: MAX_ABS_SAMPLE
# refuses files whose features version 1 cached)
MAX_ABS_SAMPLE = 1e3
"""The largest |sample| a decoded file may hold. soundfile decodes PCM to [-1, 1) and float files as stored; a float
file may exceed full scale a little (unnormalised mixes, inter-sample overs: a few dB), but 1e3 is +60 dBFS, which no
recording reaches (a float file written in int16 scale, +-32768, is mis-scaled and refused too). The log-mel features
of a sine at that amplitude peak near 19 (at full scale: 5); at 1e10 they sit near 50 and at 1e16 near 80, finite
but far from every real clip, which skews the dataset mean / std; at 1e30 the float32 power spectrum overflows and
they are NaN."""


def decode(path: str | Path) -> tuple[Tensor, int]:
    """Any soundfile format -> ((C, S) float32 waveform, sample rate); LoadError naming the file otherwise, also for
    non-finite samples or samples beyond +-MAX_ABS_SAMPLE."""
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (S, C)
    except Exception as err:  # libsndfile raises LibsndfileError / RuntimeError / TypeError on bad files
        raise LoadError(path, f"{type(err).__name__}: {err}") from err
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise LoadError(path, "no audio samples (empty file)")
    if not np.isfinite(data).all():
        raise LoadError(path, f"{int((~np.isfinite(data)).sum())} non-finite sample(s)", kind="non_finite")
    peak = float(np.abs(data).max())
    if peak > MAX_ABS_SAMPLE:
        raise LoadError(path, f"samples reach {peak:.3g}, beyond +-{MAX_ABS_SAMPLE:g} (decoded audio lies in [-1, 1]); "
                              "rescale the file to [-1, 1] (float samples in int16 scale: divide by 32768)",
                        kind="out_of_range")
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(sr)


def check_audio(path: Path) -> None:
    """Cheap pre-scan: the header parses and announces at least one frame."""
    try:
        info = sf.info(str(path))
    except Exception as err:
        raise LoadError(path, f"{type(err).__name__}: {err}") from err
    if info.frames <= 0 or info.samplerate <= 0:
        raise LoadError(path, "no audio samples (empty file)")


class FbankFeatures:
    """waveform -> (frames, mel_bins) Kaldi-compatible log-mel filterbank (Audio-MAE / AST settings:
    htk_compat, hanning window, no energy, no dither), with an optional on-disk cache.

    The cache path is `cache_dir/<settings hash>/<sha256 of the file's bytes>.pt`: changing any setting
    (or FEATURE_VERSION) changes the folder, so stale features are never reused; `computed` counts fbank
    computations in this process (for tests and benchmarks)."""

    def __init__(self, *, sample_rate: int, mel_bins: int, frame_length_ms: float, frame_shift_ms: float,
                 cache_dir: str | None) -> None:
        self.sample_rate, self.mel_bins = sample_rate, mel_bins
        self.frame_length_ms, self.frame_shift_ms = frame_length_ms, frame_shift_ms
        self.cache_dir = None if cache_dir is None else Path(cache_dir).expanduser()
        self.computed = 0
        self._digests: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256 of its bytes

    @property
    def settings(self) -> dict:
        return {"sample_rate": self.sample_rate, "mel_bins": self.mel_bins, "frame_length_ms": self.frame_length_ms,
                "frame_shift_ms": self.frame_shift_ms, "window": "hanning", "htk_compat": True, "dither": 0.0,
                "version": FEATURE_VERSION}

    def settings_key(self) -> str:
        return hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()[:16]

    def from_waveform(self, wave: Tensor, sr: int, augment: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """(C, S) at sr -> (frames, mel_bins). Multi-channel is averaged, other rates resampled; a clip shorter
        than one window is zero-padded to one window (one frame). augment: a waveform augmentation applied after the
        DC removal, where Audio-MAE's dataset.py `_wav2fbank` applies `_roll_mag_aug` (`roll_mag_aug`)."""
        wave = wave.float().mean(dim=0, keepdim=True)  # (1, S) mono
        if sr != self.sample_rate:
            wave = torchaudio.functional.resample(wave, sr, self.sample_rate)
        wave = wave - wave.mean()
        if augment is not None:
            wave = augment(wave)  # (1, S)
        window = int(self.sample_rate * self.frame_length_ms / 1000)
        if wave.shape[1] < window:
            wave = torch.nn.functional.pad(wave, (0, window - wave.shape[1]))
        self.computed += 1
        return torchaudio.compliance.kaldi.fbank(
            wave, htk_compat=True, sample_frequency=self.sample_rate, use_energy=False, window_type="hanning",
            num_mel_bins=self.mel_bins, dither=0.0, frame_length=self.frame_length_ms,
            frame_shift=self.frame_shift_ms,
        )  # (frames, mel_bins)

    def digest(self, path: str | Path) -> str:
        """sha256 of the file's bytes, hashed once per process while its size and mtime stay the same (a cache
        hit then reads only the features, not the audio file too)."""
        try:
            stat = os.stat(path)
            key = (str(path), stat.st_size, stat.st_mtime_ns)
            if key not in self._digests:
                self._digests[key] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError as err:
            raise LoadError(path, f"{type(err).__name__}: {err}") from err
        return self._digests[key]

    def __call__(self, path: str | Path, augment: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """Full-file features of `path`. With a waveform `augment` the features are computed afresh (never cached:
        they differ at every call), as Audio-MAE computes them on the fly."""
        if self.cache_dir is None or augment is not None:
            return self.from_waveform(*decode(path), augment=augment)
        file = self.cache_dir / self.settings_key() / f"{self.digest(path)}.pt"
        if file.is_file():
            try:
                return torch.load(file)
            except Exception:  # a torn or foreign file: recompute and overwrite
                pass
        feats = self.from_waveform(*decode(path))
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
        torch.save(feats.clone(), tmp)
        os.replace(tmp, file)
        return feats


def roll_mag(wave: Tensor, *, shift: int, gain: float) -> Tensor:
    """(C, S) -> (C, S): `np.roll(waveform, shift) * mag` of Audio-MAE's `_roll_mag_aug` (dataset.py): the array is
    rolled flattened (np.roll without an axis), then scaled."""
    return torch.roll(wave.reshape(-1), shift).reshape(wave.shape) * gain


def roll_mag_aug(wave: Tensor) -> Tensor:
    """Audio-MAE's `_roll_mag_aug` (dataset.py, `--roll_mag_aug True`) of a (C, S) waveform, drawn from torch's global
    generator (which the datasets seed per sample):

        idx = np.random.randint(len(waveform)); rolled = np.roll(waveform, idx); mag = np.random.beta(10, 10) + 0.5

    `len` of the (C, S) array is C, the channel count, so the roll is by a uniform shift in [0, C) samples of the
    flattened array: 0 (no roll) for the mono waveform it sees here (and in Audio-MAE for a mono file); what acts is
    the gain, Beta(10, 10) + 0.5 in (0.5, 1.5), mean 1, std 0.109 (an offset of 2 ln(gain) of the log-mel)."""
    shift = int(torch.randint(wave.shape[0], ()))
    gain = float(torch.distributions.Beta(10.0, 10.0).sample()) + 0.5
    return roll_mag(wave, shift=shift, gain=gain)


def crop_or_pad(feats: Tensor, frames: int, *, random: bool) -> Tensor:
    """(T', F) -> (frames, F): a random (train) or centred crop, or zero padding at the end (0 is the dataset mean
    with data.norm=standard, which normalises first; raw 0 with data.norm=audiomae, as Audio-MAE's ZeroPad2d)."""
    t = feats.shape[0]
    if t > frames:
        start = int(torch.randint(0, t - frames + 1, ())) if random else (t - frames) // 2
        return feats[start : start + frames]
    return torch.nn.functional.pad(feats, (0, 0, 0, frames - t))


class SpecAugment:
    """SpecAugment (Park et al. 2019) as Audio-MAE / AST apply it to fine-tuning train clips (dataset.py
    `AudiosetDataset.__getitem__`): torchaudio's `FrequencyMasking(freqm)` then `TimeMasking(timem)` on the
    (1, freq, time) spectrogram, one band each of a width uniform in [0, param) at a uniform place (0 = off).

    The band is set to 0 of the features it is given: with data.norm=standard the normalised ones, i.e. the dataset
    mean (padding is the mean too); with data.norm=audiomae the raw log-mel, normalised afterwards as Audio-MAE does,
    so its bands hold (0 - mean) / (2 std) (+0.47 on AudioSet). Draws come from torch's global generator, which the
    datasets seed per sample."""

    def __init__(self, *, freqm: int, timem: int) -> None:
        self.freqm, self.timem = freqm, timem
        self.freq = torchaudio.transforms.FrequencyMasking(freqm) if freqm > 0 else None
        self.time = torchaudio.transforms.TimeMasking(timem) if timem > 0 else None

    @property
    def active(self) -> bool:
        return self.freq is not None or self.time is not None

    def __call__(self, feats: Tensor) -> Tensor:
        """(T, F) -> (T, F) with one frequency band and one time band set to 0."""
        x = feats.t()[None]  # (1, F, T): torchaudio's (..., freq, time)
        if self.freq is not None:
            x = self.freq(x)
        if self.time is not None:
            x = self.time(x)
        return x[0].t().contiguous()  # (T, F)
