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

from datamodules.audio.datamodule import AudioDataConfig
from datamodules.audio.dataset import STD_SCALE, AudioDataset, Normalizer
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


# ------------------------------------------------------------------ the local decoder (models_mae.py decoder_mode=1)
# Port of facebookresearch/AudioMAE timm_patch/swin_transformer.py (Mlp, window_partition, window_reverse,
# WindowMultiHeadAttention, SwinTransformerBlock: the lines that run; DropPath(0) -> Identity, to_2tuple inlined).
class OfficialMlp(torch.nn.Module):
    def __init__(self, in_features, hidden_features=None, out_features=None, act_layer=torch.nn.GELU, drop=0.):
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        drop_probs = (drop, drop)
        self.fc1 = torch.nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.drop1 = torch.nn.Dropout(drop_probs[0])
        self.fc2 = torch.nn.Linear(hidden_features, out_features)
        self.drop2 = torch.nn.Dropout(drop_probs[1])

    def forward(self, x):
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


def official_window_partition(x, window_size):
    B, H, W, C = x.shape
    x = x.view(B, H // window_size[0], window_size[0], W // window_size[1], window_size[1], C)
    windows = x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, window_size[0], window_size[1], C)
    return windows


def official_window_reverse(windows, window_size, img_size):
    H, W = img_size
    B = int(windows.shape[0] / (H * W / window_size[0] / window_size[1]))
    x = windows.view(B, H // window_size[0], W // window_size[1], window_size[0], window_size[1], -1)
    x = x.permute(0, 1, 3, 2, 4, 5).contiguous().view(B, H, W, -1)
    return x


class OfficialWindowMultiHeadAttention(torch.nn.Module):
    def __init__(self, dim, num_heads, window_size, drop_attn=0.0, drop_proj=0.0, meta_hidden_dim=384):
        super().__init__()
        self.in_features = dim
        self.window_size = window_size
        self.num_heads = num_heads
        self.qkv = torch.nn.Linear(in_features=dim, out_features=dim * 3, bias=True)
        self.attn_drop = torch.nn.Dropout(drop_attn)
        self.proj = torch.nn.Linear(in_features=dim, out_features=dim, bias=True)
        self.proj_drop = torch.nn.Dropout(drop_proj)
        self.meta_mlp = OfficialMlp(2, hidden_features=meta_hidden_dim, out_features=num_heads,
                                    act_layer=torch.nn.ReLU, drop=0.1)
        self.register_parameter("tau", torch.nn.Parameter(torch.ones(num_heads)))
        self._make_pair_wise_relative_positions()

    def _make_pair_wise_relative_positions(self):
        device = self.tau.device
        coordinates = torch.stack(torch.meshgrid([
            torch.arange(self.window_size[0], device=device),
            torch.arange(self.window_size[1], device=device)], indexing="ij"), dim=0).flatten(1)
        relative_coordinates = coordinates[:, :, None] - coordinates[:, None, :]
        relative_coordinates = relative_coordinates.permute(1, 2, 0).reshape(-1, 2).float()
        relative_coordinates_log = torch.sign(relative_coordinates) * torch.log(1.0 + relative_coordinates.abs())
        self.register_buffer("relative_coordinates_log", relative_coordinates_log, persistent=False)

    def _relative_positional_encodings(self):
        window_area = self.window_size[0] * self.window_size[1]
        relative_position_bias = self.meta_mlp(self.relative_coordinates_log)
        relative_position_bias = relative_position_bias.transpose(1, 0).reshape(self.num_heads, window_area,
                                                                                  window_area)
        return relative_position_bias.unsqueeze(0)

    def forward(self, x, mask=None):
        Bw, L, C = x.shape
        qkv = self.qkv(x).view(Bw, L, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        query, key, value = qkv.unbind(0)
        denom = torch.norm(query, dim=-1, keepdim=True) @ torch.norm(key, dim=-1, keepdim=True).transpose(-2, -1)
        attn = query @ key.transpose(-2, -1) / denom.clamp(min=1e-6)
        attn = attn / self.tau.clamp(min=0.01).reshape(1, self.num_heads, 1, 1)
        attn = attn + self._relative_positional_encodings()
        if mask is not None:
            num_win = mask.shape[0]
            attn = attn.view(Bw // num_win, num_win, self.num_heads, L, L)
            attn = attn + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, L, L)
        attn = attn.softmax(dim=-1)
        attn = self.attn_drop(attn)
        x = (attn @ value).transpose(1, 2).reshape(Bw, L, -1)
        x = self.proj(x)
        x = self.proj_drop(x)
        return x


class OfficialSwinTransformerBlock(torch.nn.Module):
    def __init__(self, dim, num_heads, feat_size, window_size, shift_size=(0, 0), mlp_ratio=4.0,
                 norm_layer=torch.nn.LayerNorm):
        super().__init__()
        self.dim = dim
        self.feat_size = feat_size
        self.target_shift_size = shift_size
        self.window_size, self.shift_size = self._calc_window_shift(window_size)
        self.window_area = self.window_size[0] * self.window_size[1]
        self.attn = OfficialWindowMultiHeadAttention(dim=dim, num_heads=num_heads, window_size=self.window_size)
        self.norm1 = norm_layer(dim)
        self.mlp = OfficialMlp(in_features=dim, hidden_features=int(dim * mlp_ratio), drop=0.0, out_features=dim)
        self.norm2 = norm_layer(dim)
        self._make_attention_mask()

    def _calc_window_shift(self, target_window_size):
        window_size = [f if f <= w else w for f, w in zip(self.feat_size, target_window_size)]
        shift_size = [0 if f <= w else s for f, w, s in zip(self.feat_size, window_size, self.target_shift_size)]
        return tuple(window_size), tuple(shift_size)

    def _make_attention_mask(self):
        if any(self.shift_size):
            H, W = self.feat_size
            img_mask = torch.zeros((1, H, W, 1))  # 1 H W 1
            cnt = 0
            for h in (
                    slice(0, -self.window_size[0]),
                    slice(-self.window_size[0], -self.shift_size[0]),
                    slice(-self.shift_size[0], None)):
                for w in (
                        slice(0, -self.window_size[1]),
                        slice(-self.window_size[1], -self.shift_size[1]),
                        slice(-self.shift_size[1], None)):
                    img_mask[:, h, w, :] = cnt
                    cnt += 1
            mask_windows = official_window_partition(img_mask, self.window_size)
            mask_windows = mask_windows.view(-1, self.window_area)
            attn_mask = mask_windows.unsqueeze(1) - mask_windows.unsqueeze(2)
            attn_mask = attn_mask.masked_fill(attn_mask != 0, float(-100.0)).masked_fill(attn_mask == 0, float(0.0))
        else:
            attn_mask = None
        self.register_buffer("attn_mask", attn_mask, persistent=False)

    def _shifted_window_attn(self, x):
        H, W = self.feat_size
        B, L, C = x.shape
        x = x.view(B, H, W, C)
        sh, sw = self.shift_size
        do_shift = any(self.shift_size)
        if do_shift:
            x = torch.roll(x, shifts=(-sh, -sw), dims=(1, 2))
        x_windows = official_window_partition(x, self.window_size)
        x_windows = x_windows.view(-1, self.window_size[0] * self.window_size[1], C)
        attn_windows = self.attn(x_windows, mask=self.attn_mask)
        attn_windows = attn_windows.view(-1, self.window_size[0], self.window_size[1], C)
        x = official_window_reverse(attn_windows, self.window_size, self.feat_size)
        if do_shift:
            x = torch.roll(x, shifts=(sh, sw), dims=(1, 2))
        x = x.view(B, L, C)
        return x

    def forward(self, x):
        x = x + self.norm1(self._shifted_window_attn(x))
        x = x + self.norm2(self.mlp(x))
        return x


def official_decoder_blocks(dim, feat_size, window_size=(4, 4), depth=16, num_heads=16, no_shift=False):
    """models_mae.py __init__ (decoder_mode == 1): the block list."""
    from functools import partial
    decoder_modules = []
    for index in range(depth):
        if no_shift:
            shift_size = (0, 0)
        else:
            if (index % 2) == 0:
                shift_size = (0, 0)
            else:
                shift_size = (window_size[0] // 2, 0)  # models_mae.py: (2, 0) for its (4, 4) windows
        decoder_modules.append(OfficialSwinTransformerBlock(dim=dim, num_heads=num_heads, feat_size=feat_size,
                                                            window_size=window_size, shift_size=shift_size,
                                                            mlp_ratio=4.0,
                                                            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6)))
    return torch.nn.ModuleList(decoder_modules)


def official_forward_decoder(dec, x, ids_restore, decoder_pos_embed, blocks):
    """models_mae.py forward_decoder with decoder_mode != 0 (no custom patch); `dec` holds our embed / mask token /
    norm / head under the official roles (decoder_embed, mask_token, decoder_norm, decoder_pred)."""
    x = dec.embed(x)
    mask_tokens = dec.mask_token.repeat(x.shape[0], ids_restore.shape[1] + 1 - x.shape[1], 1)
    x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)  # no cls token
    x_ = torch.gather(x_, dim=1, index=ids_restore.unsqueeze(-1).repeat(1, 1, x.shape[2]))  # unshuffle
    x = torch.cat([x[:, :1, :], x_], dim=1)  # append cls token
    x = x + decoder_pos_embed
    x = x[:, 1:, :]
    for blk in blocks:
        x = blk(x)
    x = dec.norm(x)
    return dec.head(x)


def local_decoder(window, *, depth=4, shift=True, dim=32, heads=4):
    from mae.core.decoder import Decoder
    from mae.core.pos_embed import SinCosPosEmbed

    torch.manual_seed(0)
    return Decoder(enc_dim=24, num_prefix=1, out_dim=16, dim=dim, depth=depth, num_heads=heads,
                   pos_embed=SinCosPosEmbed, window=window, window_shift=shift).eval()


def spectrogram_tokens(frames: int, mel_bins: int, patch: int = 4):
    from mae.modalities.audio.tokenizer import SpectrogramTokenizer

    torch.manual_seed(1)
    return SpectrogramTokenizer(frames=frames, mel_bins=mel_bins, patch_size=patch)({"fbank": torch.randn(2, frames,
                                                                                                          mel_bins)})


@pytest.mark.parametrize("grid, window, shift", [((16, 8), [4, 4], True), ((64, 8), [4, 4], True),
                                                 ((8, 4), [4, 8], True), ((16, 8), [4, 4], False)])
def test_local_decoder_equals_audio_mae_forward_decoder(grid, window, shift):
    from mae.core.masking import RandomMasker

    tokens = spectrogram_tokens(grid[0] * 4, grid[1] * 4)
    assert tokens.grid == grid
    mask = RandomMasker(ratio=0.8)(tokens, torch.Generator().manual_seed(0))
    dec = local_decoder(window, shift=shift)
    blocks = official_decoder_blocks(32, grid, tuple(window), depth=4, num_heads=4, no_shift=not shift).eval()
    for ours, theirs in zip(dec.blocks, blocks):
        theirs.load_state_dict(ours.state_dict())  # the official parameter names, strict
    torch.manual_seed(2)
    latent = torch.randn(2, 1 + mask.keep.shape[1], 24)
    pe = dec.pos_embed(tokens.pos)  # (1, N, D): positions are tested elsewhere; the same table for both
    pos = torch.cat([torch.zeros(1, 1, 32), pe], dim=1)  # the cls row of decoder_pos_embed (dropped anyway)
    with torch.no_grad():
        ours = dec(latent, tokens, mask)  # (B, M, out)
        reference = official_forward_decoder(dec, latent, mask.restore, pos, blocks)  # (B, N, out)
    reference = torch.gather(reference, 1, mask.masked[..., None].expand(-1, -1, 16))
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    assert (ours.shape[1], ours.shape[2]) == (mask.masked.shape[1], 16)
    for i, (ours, theirs) in enumerate(zip(dec.blocks, blocks)):  # shift on time only, every odd block
        from mae.core.window_attention import fit_window, shift_attn_mask

        win, sh = fit_window(grid, window, ours.shift)
        assert (win, sh) == (theirs.window_size, theirs.shift_size)
        assert sh[1] == 0 and (sh[0] > 0) == (shift and i % 2 == 1 and grid[0] > window[0])
        expected = theirs.attn_mask
        got = shift_attn_mask(grid, win, sh)
        assert (got is None and expected is None) or torch.equal(got, expected)


def test_local_decoder_relative_coordinates_and_dropout_are_the_official():
    from mae.core.window_attention import WindowAttention, relative_coords_log

    official = OfficialWindowMultiHeadAttention(32, 4, (4, 4))
    assert torch.equal(relative_coords_log((4, 4)), official.relative_coordinates_log)
    ours = WindowAttention(dim=32, num_heads=4)
    assert ours.meta_mlp.drop1.p == ours.meta_mlp.drop2.p == 0.1 and ours.meta_mlp.fc1.out_features == 384
    assert torch.equal(ours.tau, torch.ones(4))  # temperature init 1 (not timm V2-cr's logit scale log 10)


def influence(block, grid, t: int, f: int) -> set[tuple[int, int]]:
    """The grid cells whose output changes when the input token at (t, f) changes."""
    torch.manual_seed(3)
    x = torch.randn(1, grid[0] * grid[1], 32)
    y = x.clone()
    y[0, t * grid[1] + f] += 1.0
    with torch.no_grad():
        diff = (block(x, grid) - block(y, grid)).abs().amax(-1)[0].view(grid)  # (T, F)
    return {(int(a), int(b)) for a, b in (diff > 1e-6).nonzero()}


def test_local_decoder_windows_shift_on_time_only_and_never_see_the_cls():
    dec = local_decoder([4, 4], depth=2)
    grid = (16, 8)
    plain, shifted = dec.blocks
    assert influence(plain, grid, 0, 0) == {(a, b) for a in range(4) for b in range(4)}
    assert influence(shifted, grid, 0, 0) == {(a, b) for a in range(2) for b in range(4)}  # rolled to the end, masked
    assert influence(shifted, grid, 2, 5) == {(a, b) for a in range(2, 6) for b in range(4, 8)}  # freq unshifted
    tokens = spectrogram_tokens(64, 32)
    from mae.core.masking import RandomMasker

    mask = RandomMasker(ratio=0.75)(tokens, torch.Generator().manual_seed(0))
    latent = torch.randn(2, 1 + mask.keep.shape[1], 24)
    other = latent.clone()
    other[:, 0] += 5.0  # the cls latent
    with torch.no_grad():
        torch.testing.assert_close(dec(latent, tokens, mask), dec(other, tokens, mask))  # dropped before the blocks


def test_local_decoder_refuses_grids_it_cannot_partition_and_padding():
    from mae.core.tokens import Tokens

    dec = local_decoder([3, 4], depth=1)
    tokens = spectrogram_tokens(64, 32)
    from mae.core.masking import RandomMasker

    mask = RandomMasker(ratio=0.75)(tokens, torch.Generator().manual_seed(0))
    latent = torch.randn(2, 1 + mask.keep.shape[1], 24)
    with pytest.raises(ValueError, match=r"model\.decoder\.window=\[3, 4\] must divide the token grid \(16, 8\)"):
        dec(latent, tokens, mask)
    with pytest.raises(ValueError, match=r"model\.decoder\.window must hold two sizes"):
        local_decoder([2, 2, 2])
    padded = Tokens(values=tokens.values, pos=tokens.pos, grid=tokens.grid,
                    pad=torch.zeros(2, 128, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"model\.decoder\.window .* does not take padded tokens"):
        local_decoder([4, 4], depth=1)(latent, padded, mask)


# ----------------------------------------------------------------------------------- the recipes' key values
def resolved_lr(cfg) -> tuple[float, int]:
    from mae.train.distributed import describe, resolve_batch

    out = describe(resolve_batch(cfg), blr=float(cfg.optim.blr), lr=cfg.optim.lr)
    return out["lr"], out["effective_batch"]


def test_pretrain_recipe_has_the_official_as2m_values(tmp_path):
    from hydra.utils import instantiate

    from mae.train.config_check import validate
    from tests.conftest import compose_cfg

    cfg = compose_cfg(["experiment=audiomae_vit_base_as2m", "data.root=/data/audioset"], tmp_path)
    validate(cfg)
    lr, batch = resolved_lr(cfg)
    assert batch == 8 * 8 * 8 == 512 and lr == pytest.approx(2e-4 * 512 / 256)  # --batch_size 8, 64 GPUs, --blr 2e-4
    assert (cfg.trainer.max_epochs, cfg.optim.warmup_epochs, cfg.optim.min_lr) == (33, 3, 0.0)
    assert cfg.optim.weight_decay == 1e-4 and list(cfg.optim.optimizer.betas) == [0.9, 0.95]
    assert cfg.optim.decay_tokens  # main_pretrain.py add_weight_decay: cls / mask tokens decayed
    assert cfg.trainer.gradient_clip_val is None and cfg.mask.ratio == 0.8
    assert cfg.mask._target_.endswith("RandomMasker") and cfg.target._target_.endswith("NormPixTarget")
    assert (cfg.model.encoder.dim, cfg.model.encoder.depth, cfg.model.encoder.num_heads) == (768, 12, 12)
    assert cfg.model.encoder.cls_token
    assert (cfg.model.decoder.dim, cfg.model.decoder.depth, cfg.model.decoder.num_heads) == (512, 16, 16)
    assert list(cfg.model.decoder.window) == [4, 4] and cfg.model.decoder.window_shift
    assert (cfg.data.norm, cfg.data.roll_mag_aug, cfg.data.mean, cfg.data.std) == ("audiomae", True, AS_MEAN, AS_STD)
    assert (cfg.data.frames, cfg.data.mel_bins, cfg.data.freqm, cfg.data.timem) == (1024, 128, 0, 0)
    assert cfg.tokenizer.patch_size == 16
    decoder = instantiate(cfg.model.decoder)(enc_dim=16, num_prefix=1, out_dim=256, dim=32, num_heads=4)  # shrunk
    from mae.core.window_attention import WindowBlock, fit_window

    assert len(decoder.blocks) == 16 and all(isinstance(b, WindowBlock) for b in decoder.blocks)
    shifts = [fit_window((64, 8), b.window, b.shift) for b in decoder.blocks]
    assert shifts == [((4, 4), (0, 0)), ((4, 4), (2, 0))] * 8  # models_mae.py decoder_mode 1 on feat_size (64, 8)


def test_finetune_recipes_use_the_official_norm_and_roll_mag_aug(tmp_path):
    from mae.finetune.runner import stage_config
    from tests.conftest import compose_cfg

    cfg = compose_cfg(["experiment=audiomae_vit_base_as2m_finetune", "pretrained=/x", "data.list=/as/train.csv",
                       "data.classes=/as/class_labels_indices.csv"], tmp_path / "as")
    stage_config(cfg)
    lr, batch = resolved_lr(cfg)
    assert batch == 256 and lr == pytest.approx(2e-4)  # --blr 2e-4 x (4 x 8 x 8) / 256
    assert (cfg.trainer.max_epochs, cfg.optim.warmup_epochs, cfg.optim.weight_decay) == (100, 10, 5e-4)
    assert cfg.trainer.gradient_clip_val is None and cfg.optim.min_lr == 1e-6
    assert (cfg.data.norm, cfg.data.roll_mag_aug, cfg.data.mean, cfg.data.std) == ("audiomae", True, AS_MEAN, AS_STD)
    assert (cfg.finetune.layer_decay, cfg.finetune.drop_path) == (0.75, 0.1)
    esc = compose_cfg(["experiment=audiomae_vit_base_esc50_finetune", "pretrained=/x", "data.list=/e/esc50.csv",
                       "data.audio_dir=/e/audio"], tmp_path / "esc")
    stage_config(esc)
    lr, batch = resolved_lr(esc)
    assert batch == 64 and lr == pytest.approx(1e-3 * 64 / 256)  # --blr 1e-3, --batch_size 64, one GPU
    assert (esc.trainer.max_epochs, esc.optim.warmup_epochs, esc.optim.weight_decay) == (50, 5, 0.05)
    assert (esc.data.norm, esc.data.roll_mag_aug, esc.data.mean, esc.data.std) == ("audiomae", False, -6.6268077,
                                                                                   5.358466)


def test_audio_recipe_files_cite_no_memory():
    from tests.conftest import CONF

    for name in ("audiomae_vit_base_as2m", "audiomae_vit_base_as2m_finetune", "audiomae_vit_base_esc50_finetune"):
        text = (CONF / "experiment" / f"{name}.yaml").read_text().lower()
        assert "from memory" not in text and "not re-checked" not in text, name
