"""Audio-MAE against its official code (facebookresearch/AudioMAE): the data normalisation (x - mean) / (2 std) and
`_roll_mag_aug` (dataset.py), the local decoder's Swin blocks (models_mae.py decoder_mode=1 + timm_patch/
swin_transformer.py), each against a small port of the official lines; and each audiomae_* recipe composed with
its key values asserted."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from datamodules.audio.datamodule import STD_SCALE, AudioDataConfig, AudioDataset, Normalizer
from datamodules.audio.features import FbankFeatures, SpecAugment, roll_mag, roll_mag_aug
from datamodules.errors import SkipCounter

SR = 16000
AS_MEAN, AS_STD = -4.2677393, 4.5689974  # AudioMAE main_pretrain.py norm_stats['audioset']


# ------------------------------------------------------------------ ports of the official code (reference only)
def official_wav2fbank(waveform: torch.Tensor, sr: int, target_length: int) -> torch.Tensor:
    """AudioMAE dataset.py `_wav2fbank` (no mixup, no roll_mag_aug): DC removal, Kaldi fbank, cut and pad."""
    waveform = waveform - waveform.mean()
    fbank = torchaudio.compliance.kaldi.fbank(waveform, htk_compat=True, sample_frequency=sr, use_energy=False,
                                              window_type='hanning', num_mel_bins=128, dither=0.0, frame_shift=10)
    n_frames = fbank.shape[0]
    p = target_length - n_frames
    if p > 0:
        m = torch.nn.ZeroPad2d((0, 0, 0, p))
        fbank = m(fbank)
    elif p < 0:
        fbank = fbank[0:target_length, :]
    return fbank


def official_getitem_norm(fbank: torch.Tensor, norm_mean: float, norm_std: float) -> torch.Tensor:
    """AudioMAE dataset.py `__getitem__` (after SpecAugment): `(fbank - self.norm_mean) / (self.norm_std * 2)`."""
    return (fbank - norm_mean) / (norm_std * 2)


def official_roll_mag_aug(waveform: torch.Tensor, rng: np.random.RandomState) -> torch.Tensor:
    """AudioMAE dataset.py `_roll_mag_aug` (np.random -> a RandomState)."""
    waveform = waveform.numpy()
    idx = rng.randint(len(waveform))
    rolled_waveform = np.roll(waveform, idx)
    mag = rng.beta(10, 10) + 0.5
    return torch.Tensor(rolled_waveform * mag)


# ----------------------------------------------------------------------------------- data: norm, roll_mag_aug
def tone_file(tmp_path, seconds: float = 0.5) -> tuple:
    t = np.arange(int(seconds * SR)) / SR
    noise = np.random.RandomState(0).randn(t.size) * 0.01  # no mel bin at Kaldi's log floor
    wave = (0.3 * np.sin(2 * np.pi * 440.0 * t) + noise).astype(np.float32)
    path = tmp_path / "tone.wav"
    sf.write(path, wave, SR, subtype="FLOAT")
    return path, torch.from_numpy(wave)[None]  # (1, S)


def dataset(path, *, norm: str, frames: int, spec: SpecAugment | None = None, wave_augment=None) -> AudioDataset:
    normalize = Normalizer(STD_SCALE[norm])
    normalize.mean, normalize.std = AS_MEAN, AS_STD
    feats = FbankFeatures(sample_rate=SR, mel_bins=128, frame_length_ms=25.0, frame_shift_ms=10.0, cache_dir=None)
    return AudioDataset(paths=[path], labels=[0], indices=[0], features=feats, normalize=normalize, frames=frames,
                        random_crop=False, on_error="raise", skips=SkipCounter(), spec_augment=spec,
                        normalize_last=norm == "audiomae", wave_augment=wave_augment)


def test_norm_audiomae_equals_dataset_py_padding_included(tmp_path):
    path, wave = tone_file(tmp_path)  # 48 frames, padded to 64
    ours = dataset(path, norm="audiomae", frames=64)[0]["fbank"]
    reference = official_getitem_norm(official_wav2fbank(wave, SR, 64), AS_MEAN, AS_STD)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    assert torch.allclose(ours[-1], torch.full((128,), -AS_MEAN / (2 * AS_STD)))  # padding: raw 0, then normalised
    standard = dataset(path, norm="standard", frames=64)[0]["fbank"]
    torch.testing.assert_close(standard[:48], (reference[:48] * 2), rtol=1e-5, atol=1e-5)  # 2x the audiomae scale
    assert (standard[48:] == 0).all()  # norm=standard: padding is the mean


def test_norm_audiomae_masks_the_raw_log_mel_like_dataset_py(tmp_path):
    path, wave = tone_file(tmp_path, 1.0)
    spec = SpecAugment(freqm=48, timem=20)
    ours = dataset(path, norm="audiomae", frames=100, spec=spec)[(7, 0)]["fbank"]  # seeded key: the train path
    torch.manual_seed(7)  # the sample seed `seeded` sets; the same draws in the same order as dataset.py
    fbank = official_wav2fbank(wave, SR, 100).transpose(0, 1).unsqueeze(0)  # 1, 128, T
    fbank = torchaudio.transforms.TimeMasking(20)(torchaudio.transforms.FrequencyMasking(48)(fbank))
    reference = official_getitem_norm(torch.transpose(fbank.squeeze(), 0, 1), AS_MEAN, AS_STD)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    assert (ours == -AS_MEAN / (2 * AS_STD)).any()  # a masked band holds the normalised raw 0


def test_roll_mag_equals_np_roll_times_gain():
    rng = np.random.RandomState(0)
    for wave in (torch.randn(1, 50), torch.randn(2, 50)):  # mono: len 1 -> idx 0; stereo: a flattened roll
        state = rng.get_state()
        reference = official_roll_mag_aug(wave, rng)
        rng.set_state(state)
        idx, mag = rng.randint(len(wave)), rng.beta(10, 10) + 0.5
        torch.testing.assert_close(roll_mag(wave, shift=idx, gain=mag), reference)
    assert torch.equal(roll_mag(torch.arange(6.0).reshape(2, 3), shift=1, gain=1.0),
                       torch.tensor([[5.0, 0.0, 1.0], [2.0, 3.0, 4.0]]))  # np.roll without axis


def test_roll_mag_aug_draws_the_official_gain_and_no_roll_on_mono():
    torch.manual_seed(0)
    wave = torch.randn(1, 100)
    gains = []
    for _ in range(2000):
        out = roll_mag_aug(wave)
        gain = (out / wave).mean().item()
        torch.testing.assert_close(out, wave * gain)  # unrolled (len of a (1, S) array is 1)
        gains.append(gain)
    gains = np.array(gains)
    reference = np.random.RandomState(0).beta(10, 10, 20000) + 0.5
    assert 0.5 < gains.min() and gains.max() < 1.5
    assert abs(gains.mean() - reference.mean()) < 0.01 and abs(gains.std() - reference.std()) < 0.01  # ~0.109


def test_roll_mag_aug_in_the_train_split_is_a_seeded_log_gain(tmp_path):
    path, _ = tone_file(tmp_path)
    plain = dataset(path, norm="audiomae", frames=48)
    aug = dataset(path, norm="audiomae", frames=48, wave_augment=roll_mag_aug)
    a, b = aug[(3, 0)]["fbank"], aug[(3, 0)]["fbank"]
    torch.testing.assert_close(a, b)  # the same sample seed: the same gain
    assert not torch.allclose(a, aug[(4, 0)]["fbank"])
    offset = (a - plain[(3, 0)]["fbank"]) * 2 * AS_STD  # log-mel offset: 2 ln(gain), the same in every bin
    shift = offset.median()
    assert ((offset - shift).abs() < 1e-3).float().mean() > 0.99  # (bins near Kaldi's log floor move less)
    assert shift.abs() > 1e-3 and 2 * np.log(0.5) < shift < 2 * np.log(1.5)


def test_norm_and_roll_mag_aug_options_are_checked():
    with pytest.raises(ValueError, match=r"data\.norm must be one of \('standard', 'audiomae'\), got 'ast'"):
        AudioDataConfig(seed=0, norm="ast")
    with pytest.raises(TypeError, match=r"data\.roll_mag_aug must be a bool \(true/false\), got 'yes'"):
        AudioDataConfig(seed=0, roll_mag_aug="yes")
