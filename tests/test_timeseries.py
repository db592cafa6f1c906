"""Time series (PatchTST): patching, RevIN, channel independence, masks, chronological splits, bad input, ridge head."""
from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import pytest
import torch

from datamodules.timeseries.datamodule import TimeSeriesDataModule
from datamodules.timeseries.forecast import forecast_borders
from datamodules.timeseries.ucr import bundled_ucr_names, fit_length, read_ts
from mae.core.encoder import Encoder
from mae.core.masking import BlockMasker, RandomMasker, num_masked
from mae.core.pos_embed import SinCosPosEmbed
from mae.eval.knn import standardize_features
from mae.modalities.timeseries.forecast import PrefixGram, quadratic_mse, ridge_path
from mae.modalities.timeseries.pos_embed import LearnedPosEmbed
from mae.modalities.timeseries.tokenizer import (
    PatchTSTTokenizer,
    fold_channels,
    patchify_1d,
    revin_denorm,
    revin_norm,
    revin_stats,
    unfold_channels,
    unpatchify_1d,
)


def write_csv(path, values: np.ndarray, *, names=None, date_column="date", start="2020-01-01") -> str:
    names = names or [f"c{i}" for i in range(values.shape[1])]
    frame = pd.DataFrame(values, columns=names)
    frame.insert(0, date_column, pd.date_range(start, periods=len(values), freq="h").strftime("%Y-%m-%d %H:%M:%S"))
    frame.to_csv(path, index=False)
    return str(path)


def sines(rows: int, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(rows)[:, None]
    return np.sin(2 * np.pi * t / rng.uniform(10, 40, channels)) * rng.uniform(1, 5, channels) + rng.normal(0, 0.1, (rows, channels))


def forecast_dm(root, **kw) -> TimeSeriesDataModule:
    args = dict(task="forecast", root=str(root), context=48, patch_len=12, horizons=[12], batch_size=8) | kw
    return TimeSeriesDataModule(**args)


# ------------------------------------------------------------------------------------- tokens
def test_patching_and_channel_folding_round_trip():
    x = torch.randn(3, 50, 4)  # (B, L, C), 50 = 4 patches of 12 + 2 oldest steps dropped
    rows = fold_channels(x)  # (B*C, L)
    assert rows.shape == (12, 50) and torch.equal(rows[1], x[0, :, 1]) and torch.equal(rows[4], x[1, :, 0])
    assert torch.equal(unfold_channels(rows, 4), x.permute(0, 2, 1))
    patches = patchify_1d(rows, 12)
    assert patches.shape == (12, 4, 12)
    assert torch.equal(unpatchify_1d(patches), rows[:, 2:])  # the last 48 steps, as PatchTST's create_patch
    assert torch.equal(patches[0, 1], x[0, 14:26, 0])


def test_revin_round_trip_constant_channel_and_observed_steps():
    x = torch.randn(2, 40, 3) * 5 + 3
    x[1, :, 2] = 7.0  # a constant channel
    mean, std = revin_stats(x, None)
    normed = revin_norm(x, mean, std)
    assert torch.isfinite(normed).all() and torch.all(normed[1, :, 2] == 0)
    torch.testing.assert_close(revin_denorm(normed, mean, std), x, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(normed[0].mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    observed = torch.ones(2, 40, dtype=torch.bool)
    observed[:, 30:] = False
    y = x.clone()
    y[:, 30:] = 1e6  # padding garbage must not move the statistics
    m2, s2 = revin_stats(y, observed)
    m3, s3 = revin_stats(x[:, :30], None)
    torch.testing.assert_close(m2, m3)
    torch.testing.assert_close(s2, s3)
    assert torch.all(revin_norm(y, m2, s2, observed)[:, 30:] == 0)


def test_tokenizer_shapes_positions_and_padding():
    tok = PatchTSTTokenizer(patch_len=12)
    x = torch.randn(2, 48, 3)
    observed = torch.ones(2, 48, dtype=torch.bool)
    observed[1, 20:] = False  # series 1 ends after 20 steps: patches 2 and 3 hold no observed step
    tokens = tok({"series": x, "observed": observed})
    assert tokens.values.shape == (6, 4, 12) and tokens.grid == (4,) and tokens.pos.shape == (1, 4, 1)
    assert tokens.pos[0, :, 0].tolist() == [0, 1, 2, 3]
    expected = torch.tensor([[False] * 4] * 3 + [[False, False, True, True]] * 3)
    assert torch.equal(tokens.pad, expected)
    assert tok({"series": x}).pad is None
    with pytest.raises(ValueError, match="shorter than one patch"):
        tok({"series": torch.randn(2, 5, 1)})


def tiny_encoder() -> Encoder:
    torch.manual_seed(0)
    return Encoder(token_dim=12, dim=32, depth=2, num_heads=2, pos_embed=SinCosPosEmbed, cls_token=True).eval()


def test_channel_independence_permuting_channels_permutes_outputs():
    tok, enc = PatchTSTTokenizer(patch_len=12), tiny_encoder()
    x = torch.randn(2, 48, 4) * torch.tensor([1.0, 10.0, 0.1, 3.0])
    perm = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        a = unfold_channels(enc.pool(tok({"series": x})), 4)  # (B, C, D)
        b = unfold_channels(enc.pool(tok({"series": x[:, :, perm]})), 4)
        torch.testing.assert_close(b, a[:, perm], atol=1e-5, rtol=1e-5)
        y = x.clone()
        y[:, :, 1] = torch.randn(2, 48)  # another channel changes: channel 0's features do not
        c = unfold_channels(enc.pool(tok({"series": y})), 4)
        torch.testing.assert_close(c[:, 0], a[:, 0], atol=1e-5, rtol=1e-5)
        assert not torch.allclose(c[:, 1], a[:, 1])
        merged = tok.merge_pooled(enc.pool(tok({"series": x})), {"series": x})
        assert merged.shape == (2, 4 * 32) and torch.equal(merged[:, 32:64], a[:, 1])
    mean_tok = PatchTSTTokenizer(patch_len=12, merge="mean")
    assert mean_tok.merge_pooled(torch.randn(8, 32), {"series": x}).shape == (2, 32)


def test_learned_positions_are_looked_up_by_patch_index():
    pe = LearnedPosEmbed(dim=16, max_len=8)
    pos = torch.arange(5.0).reshape(1, 5, 1)
    assert torch.equal(pe(pos)[0, 3], pe.weight[3])
    with pytest.raises(ValueError, match="max_len"):
        pe(torch.arange(9.0).reshape(1, 9, 1))


# -------------------------------------------------------------------------------------- masks
@pytest.mark.parametrize("ratio", [0.4, 0.75])
def test_random_and_block_masks_are_exact_and_blocks_contiguous(ratio):
    tokens = PatchTSTTokenizer(patch_len=12)({"series": torch.randn(4, 42 * 12, 7)})  # (28, 42, 12)
    m = num_masked(42, ratio)
    gen = torch.Generator().manual_seed(0)
    rand = RandomMasker(ratio=ratio)(tokens, gen)
    assert rand.masked.shape == (28, m) and rand.keep.shape == (28, 42 - m)
    assert not torch.equal(rand.masked[0].sort().values, rand.masked[1].sort().values)  # channels masked independently
    block = BlockMasker(ratio=ratio, num_blocks=1)(tokens, gen)
    hidden = block.masked.sort(dim=1).values  # (28, M)
    assert hidden.shape == (28, m)
    assert torch.all(hidden[:, -1] - hidden[:, 0] == m - 1)  # one contiguous span of exactly M patches
    assert len({tuple(h.tolist()) for h in hidden}) > 1  # span positions vary


# ----------------------------------------------------------------------------------- forecasting
def test_ett_and_ratio_borders():
    assert forecast_borders(17420, split="ett_hour", context=512, ratios=[0.7, 0.1, 0.2]) == [
        (0, 8640), (8640 - 512, 11520), (11520 - 512, 14400)]
    assert forecast_borders(1000, split="ratios", context=96, ratios=[0.7, 0.1, 0.2]) == [
        (0, 700), (604, 800), (704, 1000)]
    with pytest.raises(ValueError, match="12/4/4 months"):
        forecast_borders(5000, split="ett_hour", context=512, ratios=[0.7, 0.1, 0.2])


def test_split_never_leaks_the_future_into_training_statistics(tmp_path):
    values = sines(400, 3)
    values[150, 1] = np.nan  # a gap in the train rows
    dm = forecast_dm(write_csv(tmp_path / "a.csv", values))
    dm.setup()
    future = values.copy()
    future[280:] = future[280:] * 100 + 1e4  # rewrite val + test rows (train = first 280 rows)
    future[281, 1] = np.nan  # a gap right after the border: interpolated from val rows only
    dm2 = forecast_dm(write_csv(tmp_path / "b.csv", future))
    dm2.setup()
    np.testing.assert_allclose(dm.scaler.mean_, dm2.scaler.mean_)
    np.testing.assert_allclose(dm.scaler.scale_, dm2.scaler.scale_)
    train_a, train_b = dm.train_set.data, dm2.train_set.data
    assert train_a.shape[0] == 280 and torch.equal(train_a, train_b)
    assert len(dm.train_set) == 280 - 48 + 1 and dm.train_set[0]["series"].shape == (48, 3)
    assert dm.val_set.data.shape[0] == 48 + 40  # the val split starts `context` rows early
    np.testing.assert_allclose(dm.scaler.mean_, np.nanmean(np.where(np.isnan(values[:280]), np.nan, values[:280]), 0),
                               atol=0.05)


def test_eval_windows_are_in_order_and_padded_past_the_end(tmp_path):
    dm = forecast_dm(write_csv(tmp_path / "a.csv", sines(400, 2)), horizons=[12, 24])
    dm.setup()
    test = dm.forecast_sets["test"]
    assert len(test) == 80 + 48 - 48 - 12 + 1  # every window with a complete 12-step future
    last = test[len(test) - 1]
    assert last["future"].shape == (24, 2) and torch.isnan(last["future"][12:]).all()
    assert torch.isfinite(test[0]["future"]).all()


def test_bad_csv_inputs_give_clear_errors(tmp_path):
    values = sines(300, 2)
    with pytest.raises(ValueError, match=r"no date column 'date'.*data.date_column"):
        forecast_dm(write_csv(tmp_path / "nodate.csv", values, date_column="time")).setup()
    frame = pd.read_csv(write_csv(tmp_path / "txt.csv", values))
    frame["c1"] = frame["c1"].astype(object)
    frame.loc[7, "c1"] = "n/a!"
    frame.to_csv(tmp_path / "txt.csv", index=False)
    with pytest.raises(ValueError, match=r"txt.csv.*column 'c1' is not numeric: 'n/a!' at line 9"):
        forecast_dm(tmp_path / "txt.csv").setup()
    with pytest.raises(ValueError, match=r"short.csv.*fewer than data.context"):
        forecast_dm(write_csv(tmp_path / "short.csv", values[:100])).setup()
    gappy = values.copy()
    gappy[20, 1] = np.nan
    with pytest.raises(ValueError, match=r"gappy.csv.*column 'c1' at row 20.*data.on_nan=interpolate"):
        forecast_dm(write_csv(tmp_path / "gappy.csv", gappy), on_nan="raise").setup()
    with pytest.raises(ValueError, match="not channels of the file"):
        forecast_dm(write_csv(tmp_path / "cols.csv", values), columns=["OT"]).setup()
    shuffled = pd.read_csv(write_csv(tmp_path / "order.csv", values)).iloc[::-1]
    shuffled.to_csv(tmp_path / "order.csv", index=False)
    with pytest.raises(ValueError, match="not in increasing order"):
        forecast_dm(tmp_path / "order.csv").setup()
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        forecast_dm(tmp_path / "missing.csv").setup()
    with pytest.raises(ValueError, match="data.task"):
        TimeSeriesDataModule(task="regress")


def test_interpolation_and_constant_channels(tmp_path):
    values = sines(300, 3)
    values[:, 2] = 5.0  # constant channel: scaler std 0 -> 1, RevIN std sqrt(eps)
    values[10:13, 0] = np.nan
    dm = forecast_dm(write_csv(tmp_path / "a.csv", values))
    dm.setup()
    data = dm.train_set.data
    assert torch.isfinite(data).all() and torch.all(data[:, 2] == 0)
    lo, hi = data[9, 0], data[13, 0]
    torch.testing.assert_close(data[11, 0], (lo + hi) / 2, atol=1e-5, rtol=1e-5)  # linear in time
    tokens = PatchTSTTokenizer(patch_len=12)({"series": dm.train_set[0]["series"][None]})
    assert torch.isfinite(tokens.values).all()


# -------------------------------------------------------------------------------- classification
def test_bundled_ucr_sets_univariate_multivariate_and_unequal_lengths():
    assert {"GunPoint", "BasicMotions", "JapaneseVowels"} <= set(bundled_ucr_names())
    dm = TimeSeriesDataModule(task="classify", name="JapaneseVowels", patch_len=12)
    dm.setup()
    item = dm.train_set[0]
    assert dm.context_len == 36 and item["series"].shape == (36, 12) and dm.num_classes == 9
    assert not item["observed"].all() and item["observed"][0]  # shorter than 36 steps: padded at the end
    obs = dm.train_set.observed
    assert torch.equal(dm.train_set.series[~obs], torch.zeros_like(dm.train_set.series[~obs]))
    rs = TimeSeriesDataModule(task="classify", name="JapaneseVowels", patch_len=12, unequal="resample")
    rs.setup()
    assert rs.train_set.observed.all()
    gp = TimeSeriesDataModule(task="classify", name="GunPoint", patch_len=12)
    gp.setup()
    assert (gp.context_len, gp.num_train, len(gp.val_set), gp.num_classes) == (156, 50, 150, 2)
    with pytest.raises(ValueError, match="not bundled with sktime"):
        TimeSeriesDataModule(task="classify", name="NoSuchSet").setup()


def test_standardize_features_uses_train_statistics_only():
    train = torch.tensor([[1.0, 5.0, 3.0], [3.0, 5.0, 7.0]])  # column 1 is constant
    val = torch.tensor([[2.0, 6.0, 5.0]])
    st, sv = standardize_features(train, val)
    torch.testing.assert_close(st, torch.tensor([[-1.0, 0.0, -1.0], [1.0, 0.0, 1.0]]))
    torch.testing.assert_close(sv, torch.tensor([[0.0, 1.0, 0.0]]))  # val centred/scaled by TRAIN, std 0 -> 1


def test_ts_files_with_missing_values_and_unequal_lengths(tmp_path):
    text = ("@problemName toy\n@timeStamps false\n@missing true\n@univariate true\n@equalLength false\n"
            "@classLabel true a b\n@data\n1,2,3,4,5,6,7,8,9,10,11,12,13:a\n1,NaN,3,4,5:b\n5,4,3,2,1,0,1,2:a\n"
            "2,2,2,2,2,2,2,2,2,2:b\n")
    (tmp_path / "toy_TRAIN.ts").write_text(text)
    series, labels = read_ts(tmp_path / "toy_TRAIN.ts")
    assert [s.shape for s in series] == [(13, 1), (5, 1), (8, 1), (10, 1)] and labels == ["a", "b", "a", "b"]
    dm = TimeSeriesDataModule(task="classify", train_file=str(tmp_path / "toy_TRAIN.ts"), patch_len=4,
                              val_fraction=0.5, batch_size=2)
    dm.setup()
    assert dm.context_len == 16 and torch.isfinite(dm.train_set.series).all()
    strict = TimeSeriesDataModule(task="classify", train_file=str(tmp_path / "toy_TRAIN.ts"), patch_len=4,
                                  val_fraction=0.5, on_nan="raise")
    with pytest.raises(ValueError, match=r"toy_TRAIN.ts.*series 1.*NaN"):
        strict.setup()
    out, observed = fit_length(np.arange(3.0)[:, None], context=8, unequal="pad")
    assert observed.tolist() == [True] * 3 + [False] * 5 and out[:3, 0].tolist() == [0, 1, 2]
    out, observed = fit_length(np.arange(3.0)[:, None], context=5, unequal="resample")
    assert observed.all() and np.allclose(out[:, 0], [0, 0.5, 1, 1.5, 2])


# ----------------------------------------------------------------------------------- ridge head
def test_prefix_gram_freezes_each_horizon_at_its_complete_rows():
    torch.manual_seed(0)
    x, y = torch.randn(50, 6), torch.randn(50, 8)
    y[40:, 4:] = float("nan")  # rows 40+ lack steps 5-8: complete for h=4 only
    y[45:, :] = float("nan")  # rows 45+ lack everything
    gram = PrefixGram([4, 8])
    for chunk in range(0, 50, 7):  # batch boundaries that do not match the prefixes
        gram.add(x[chunk : chunk + 7], y[chunk : chunk + 7])
    frozen = gram.finish()
    for h, rows in ((4, 45), (8, 40)):
        xtx, xty, yy, n = frozen[h]
        assert n == rows
        xd, yd = x[:rows].double(), y[:rows, :h].double()
        torch.testing.assert_close(xtx, xd.T @ xd, rtol=1e-5, atol=1e-4)  # per-batch products are float32
        torch.testing.assert_close(xty, xd.T @ yd, rtol=1e-5, atol=1e-4)
        assert abs(yy - float(yd.pow(2).sum())) < 1e-3


def test_ridge_recovers_a_linear_map_and_scores_it_from_statistics():
    torch.manual_seed(0)
    x = torch.randn(500, 10, dtype=torch.float64)
    w_true = torch.randn(10, 3, dtype=torch.float64)
    y = x @ w_true
    (w,) = ridge_path(x.T @ x, x.T @ y, [1e-8])
    torch.testing.assert_close(w, w_true, atol=1e-5, rtol=1e-5)
    w_bad = w_true + 0.1
    stats = (x.T @ x, x.T @ y, float(y.pow(2).sum()), 500)
    assert abs(quadratic_mse(w_bad, stats) - float((x @ w_bad - y).pow(2).mean())) < 1e-8


def test_encoder_factory_partial_builds(tmp_path):
    enc = partial(Encoder, dim=32, depth=1, num_heads=2, pos_embed=partial(LearnedPosEmbed, max_len=8))(token_dim=12)
    tokens = PatchTSTTokenizer(patch_len=12)({"series": torch.randn(2, 96, 3)})
    assert enc(tokens).shape == (6, 1 + 8, 32)


def test_padded_series_without_cls_token_give_finite_losses():
    from mae.core.decoder import Decoder
    from mae.core.losses import masked_mse
    from mae.core.module import MAEModule
    from mae.core.tokens import Mask
    from mae.modalities.timeseries.targets import RevINPatchTarget

    torch.manual_seed(0)
    module = MAEModule(
        tokenizer=PatchTSTTokenizer(patch_len=12), masker=RandomMasker(ratio=0.4),
        encoder=partial(Encoder, dim=32, depth=1, num_heads=2, cls_token=False, pos_embed=SinCosPosEmbed),
        decoder=partial(Decoder, dim=32, depth=1, num_heads=2, pos_embed=SinCosPosEmbed),
        target=RevINPatchTarget(), loss=masked_mse, optimizer=torch.optim.AdamW, batch_size=4,
    )
    observed = torch.zeros(4, 36, dtype=torch.bool)
    observed[:, :7] = True  # 1 real patch of 3: the one visible patch is often padding
    batch = {"series": torch.randn(4, 36, 2), "observed": observed}
    tokens = module.tokenizer(batch)
    keep = torch.full((8, 1), 2)  # every row sees only its padding patch (torch SDPA: zeros, not NaN)
    only_padding = Mask(keep=keep, masked=torch.tensor([[0, 1]]).expand(8, 2), restore=torch.tensor([[1, 2, 0]]).expand(8, 3))
    assert torch.isfinite(module.encoder(tokens, only_padding)).all()
    for seed in range(5):
        out = module(batch, torch.Generator().manual_seed(seed))
        assert torch.isfinite(out["loss"])
