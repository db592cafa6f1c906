"""Audio modality: features, bad input, cache, statistics on resume, tokenizer, time/freq masks, local attention."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from datamodules.audio.datamodule import AudioDataModule
from datamodules.audio.demo import write_demo
from datamodules.audio.features import FbankFeatures, crop_or_pad
from datamodules.errors import LoadError, SkippedFileWarning
from mae.core.decoder import Decoder
from mae.core.masking import num_masked
from mae.core.pos_embed import SinCosPosEmbed
from mae.core.tokens import Tokens
from mae.modalities.audio.masking import TimeFreqMasker
from mae.modalities.audio.tokenizer import SpectrogramTokenizer

SR = 16000


def features(cache_dir=None, **kw) -> FbankFeatures:
    args = {"sample_rate": SR, "mel_bins": 128, "frame_length_ms": 25.0, "frame_shift_ms": 10.0} | kw
    return FbankFeatures(cache_dir=cache_dir, **args)


def tone(freq: float, seconds: float, sr: int = SR) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


def mel_bin_of(freq: float, bins: int = 128, sr: int = SR) -> float:
    """Fractional index of the kaldi mel bin centred at `freq` (bins spaced evenly in mel from 20 Hz to Nyquist)."""
    mel = lambda f: 1127.0 * math.log(1 + f / 700.0)  # noqa: E731
    lo, hi = mel(20.0), mel(sr / 2)
    return (mel(freq) - lo) / ((hi - lo) / (bins + 1)) - 1


# --------------------------------------------------------------------------------------- features
def test_fbank_of_a_tone_matches_torchaudio_and_peaks_at_its_mel_bin(tmp_path):
    wave = tone(1000.0, 1.0)
    sf.write(tmp_path / "tone.wav", wave, SR, subtype="FLOAT")
    feats = features()(tmp_path / "tone.wav")
    x = torch.from_numpy(wave)[None]
    ref = torchaudio.compliance.kaldi.fbank(x - x.mean(), htk_compat=True, sample_frequency=SR, use_energy=False,
                                            window_type="hanning", num_mel_bins=128, dither=0.0,
                                            frame_length=25.0, frame_shift=10.0)
    assert feats.shape == (1 + (SR - 400) // 160, 128) == ref.shape  # 98 frames of 128 bins
    torch.testing.assert_close(feats, ref)
    peak = feats.mean(0).argmax().item()
    assert abs(peak - mel_bin_of(1000.0)) <= 1.5


def test_other_rates_and_channels_are_resampled_and_down_mixed(tmp_path):
    mono = tone(1000.0, 1.0)
    sf.write(tmp_path / "ref.flac", mono, SR)
    stereo = tone(1000.0, 1.0, sr=44100)
    sf.write(tmp_path / "st.wav", np.stack([stereo, stereo], 1), 44100)
    sf.write(tmp_path / "low.ogg", tone(1000.0, 1.0, sr=8000), 8000)
    f = features()
    ref = f(tmp_path / "ref.flac")
    for name in ("st.wav", "low.ogg"):
        other = f(tmp_path / name)
        assert other.shape == ref.shape and torch.isfinite(other).all()
        assert abs(other.mean(0).argmax().item() - ref.mean(0).argmax().item()) <= 1


def test_silence_and_clips_shorter_than_one_window_give_finite_features(tmp_path):
    sf.write(tmp_path / "silence.wav", np.zeros(SR, np.float32), SR)
    sf.write(tmp_path / "short.wav", tone(440.0, 0.005), SR)  # 80 samples < 400-sample window
    f = features()
    silent, short = f(tmp_path / "silence.wav"), f(tmp_path / "short.wav")
    assert torch.isfinite(silent).all() and silent.shape == (98, 128)
    assert short.shape == (1, 128) and torch.isfinite(short).all()
    assert crop_or_pad(short, 16, random=False).shape == (16, 128)


def test_crop_is_random_in_train_and_centred_in_eval():
    x = torch.arange(100.0)[:, None].expand(100, 4)
    assert crop_or_pad(x, 10, random=False)[0, 0] == 45
    starts = {crop_or_pad(x, 10, random=True)[0, 0].item() for _ in range(20)}
    assert len(starts) > 1


# ------------------------------------------------------------------------------------------- cache
def test_cache_reuses_features_and_invalidates_on_settings_or_content_change(tmp_path):
    sf.write(tmp_path / "a.wav", tone(500.0, 0.5), SR)
    cache = tmp_path / "cache"
    f = features(cache_dir=str(cache))
    first = f(tmp_path / "a.wav")
    second = f(tmp_path / "a.wav")
    assert f.computed == 1 and torch.equal(first, second)
    g = features(cache_dir=str(cache), mel_bins=64)  # other settings: never the stale 128-bin entry
    assert g(tmp_path / "a.wav").shape[1] == 64 and g.computed == 1
    h = features(cache_dir=str(cache), frame_shift_ms=20.0)
    assert h(tmp_path / "a.wav").shape[0] != first.shape[0] and h.computed == 1
    sf.write(tmp_path / "a.wav", tone(2000.0, 0.5), SR)  # same name, new content
    assert not torch.equal(f(tmp_path / "a.wav"), first) and f.computed == 2
    assert len(list(cache.iterdir())) == 3  # one folder per settings


# --------------------------------------------------------------------------------------- bad input
def make_folder(root, *, bad: bool):
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(4):
            sf.write(root / cls / f"{i}.wav", tone(300.0 * (1 + i), 0.5), SR)
    if bad:
        (root / "a" / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
        (root / "b" / "empty.flac").write_bytes(b"")
        sf.write(root / "b" / "zero.wav", np.zeros(0, np.float32), SR)


def dm(root, **kw) -> AudioDataModule:
    args = {"root": None if root is None else str(root), "frames": 32, "mel_bins": 32, "batch_size": 2, "val_fraction": 0.25} | kw
    return AudioDataModule(**args)


def test_bad_files_are_skipped_with_a_warning_and_a_count(tmp_path):
    make_folder(tmp_path / "d", bad=True)
    data = dm(tmp_path / "d")
    with pytest.warns(SkippedFileWarning):
        data.setup()
    assert data.skips.count == 3 and data.classes == ["a", "b"]
    batch = next(iter(data.train_dataloader()))
    assert batch["fbank"].shape == (2, 32, 32) and torch.isfinite(batch["fbank"]).all()
    assert data.stats_computations == 1


def test_on_error_raise_names_the_file(tmp_path):
    make_folder(tmp_path / "d", bad=True)
    with pytest.raises(LoadError, match="corrupt.wav|empty.flac|zero.wav"):
        dm(tmp_path / "d", on_error="raise").setup()


def test_a_folder_where_everything_fails_is_a_clear_error(tmp_path):
    (tmp_path / "d").mkdir()
    for i in range(3):
        (tmp_path / "d" / f"{i}.wav").write_bytes(b"not audio")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError, match="all 3 files"):
            dm(tmp_path / "d").setup()


def test_esc50_csv_with_fold_choice(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    rows = ["filename,fold,target,category"]
    for i in range(10):
        sf.write(audio / f"{i}.wav", tone(200.0 + 100 * i, 0.4), SR)
        rows.append(f"{i}.wav,{1 + i % 5},{i % 2},x")
    (tmp_path / "meta.csv").write_text("\n".join(rows) + "\n")
    data = dm(None, list=str(tmp_path / "meta.csv"), audio_dir=str(audio), val_fold=2, val_fraction=0.2)
    data.setup()
    assert sorted(data.val_set.indices) == [1, 6] and len(data.train_set) == 8 and data.num_classes == 2


def test_demo_data_is_real_audio_files_of_five_classes(tmp_path):
    root = write_demo(tmp_path / "demo", clips_per_class=3, seconds=1.0, seed=0)
    files = sorted(p for p in root.rglob("*") if p.suffix in (".flac", ".wav"))
    assert len(files) == 15 and {p.parent.name for p in files} == {"tone", "chirp", "noise_burst", "harmonic", "clicks"}
    assert {sf.info(str(p)).samplerate for p in files} == {16000, 22050}
    data = AudioDataModule(demo_dir=str(root), frames=64, mel_bins=32, batch_size=4, demo_clips_per_class=3)
    data.setup()
    assert data.source == "demo" and data.num_classes == 5


def test_statistics_are_stored_in_the_state_dict_and_not_recomputed(tmp_path):
    make_folder(tmp_path / "d", bad=False)
    a = dm(tmp_path / "d")
    a.train_dataloader()
    state = a.state_dict()
    assert a.stats_computations == 1 and state["feature_std"] > 0
    b = dm(tmp_path / "d")
    b.setup()
    b.load_state_dict(state)
    b.train_dataloader()
    assert b.stats_computations == 0 and b.normalizer.mean == a.normalizer.mean
    c = dm(tmp_path / "d", mel_bins=16)  # statistics of other features are not reused
    c.load_state_dict(state)
    c.train_dataloader()
    assert c.stats_computations == 1


# ------------------------------------------------------------------------------------ tokenizer
def test_tokenizer_grid_positions_and_inverse():
    tok = SpectrogramTokenizer(frames=64, mel_bins=32, patch_size=16)
    spec = torch.randn(2, 64, 32)
    tokens = tok({"fbank": spec})
    assert tokens.values.shape == (2, 8, 256) and tokens.grid == (4, 2) and tokens.pos.shape == (1, 8, 2)
    assert tokens.pos[0, 1].tolist() == [0.0, 1.0]  # second token: first time step, second frequency patch
    torch.testing.assert_close(tok.unpatchify(tokens.values)[:, 0], spec)
    torch.testing.assert_close(tokens.values[0, 1], spec[0, :16, 16:32].reshape(-1))
    with pytest.raises(ValueError, match="patch_size"):
        SpectrogramTokenizer(frames=64, mel_bins=30, patch_size=16)


# --------------------------------------------------------------------------------------- masking
@pytest.mark.parametrize("grid", [(64, 8), (16, 8), (5, 3)])
@pytest.mark.parametrize("ratio", [0.8, 0.5, 0.3])
@pytest.mark.parametrize("time,freq", [(True, False), (False, True), (True, True)])
def test_time_freq_masks_hide_whole_lines_at_the_exact_ratio(grid, ratio, time, freq):
    t, f = grid
    masker = TimeFreqMasker(ratio=ratio, time=time, freq=freq)
    tokens = Tokens(values=torch.zeros(6, t * f, 1), pos=torch.zeros(1, t * f, 2), grid=grid)
    mask = masker(tokens, torch.Generator().manual_seed(1))
    hidden = mask.hidden_bool().reshape(6, t, f)
    m = num_masked(t * f, ratio)
    assert (hidden.sum((1, 2)) == m).all()
    full_cols, full_rows = hidden.all(2), hidden.all(1)  # (B, T), (B, F)
    covered = full_cols[:, :, None] | full_rows[:, None, :]  # (B, T, F) tokens of whole hidden lines
    rest = hidden & ~covered  # the remainder
    if not freq:
        assert (full_cols.sum(1) == m // f).all()
        assert ((rest.any(2)).sum(1) <= 1).all()  # remainder inside one more column
    elif not time:
        assert (full_rows.sum(1) == m // t).all()
        assert ((rest.any(1)).sum(1) <= 1).all()
    else:  # remainder inside one column or one row
        assert ((rest.any(2).sum(1) <= 1) | (rest.any(1).sum(1) <= 1)).all()
        assert (full_cols.sum(1) > 0).all() or (full_rows.sum(1) > 0).all()
    assert any(not torch.equal(hidden[0], h) for h in hidden[1:])  # per-sample randomness
    again = masker(tokens, torch.Generator().manual_seed(1))
    assert torch.equal(again.masked, mask.masked)  # Generator-driven


def test_time_freq_mask_needs_a_2d_grid():
    with pytest.raises(ValueError, match="mask=random"):
        TimeFreqMasker(ratio=0.8).check_grid(None)


# ----------------------------------------------------------------------------- local attention
def decoder(**kw) -> Decoder:
    torch.manual_seed(0)
    return Decoder(enc_dim=16, num_prefix=1, out_dim=4, dim=16, depth=2, num_heads=2,
                   pos_embed=SinCosPosEmbed, **kw)


def test_local_attention_decoder_predicts_the_hidden_tokens_and_differs_from_global():
    """The windowed blocks themselves are tested against Audio-MAE's in tests/test_recipes_audio.py."""
    glob, local = decoder(), decoder(window=[2, 2])
    assert any(".attn.meta_mlp." in k for k in local.state_dict()) and not any("meta_mlp" in k for k in glob.state_dict())
    tokens = Tokens(values=torch.zeros(2, 16, 4), pos=SpectrogramTokenizer(frames=16, mel_bins=16, patch_size=4).pos,
                    grid=(4, 4))
    mask = TimeFreqMasker(ratio=0.5)(tokens, torch.Generator().manual_seed(0))
    latent = torch.randn(2, 1 + mask.keep.shape[1], 16)
    a, b = glob(latent, tokens, mask), local(latent, tokens, mask)
    assert a.shape == b.shape == (2, 8, 4) and not torch.allclose(a, b) and torch.isfinite(b).all()
