"""Masking respects `Tokens.pad` (issue 16): every masker that can see padding hides exactly `ratio` of each row's
REAL tokens (MAE's rounding per row), never lets padding reach the encoder, and the loss ignores padding."""
from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from mae.core.encoder import Encoder
from mae.core.masking import BlockMasker, RandomMasker, mask_from_scores, mask_real, num_masked
from mae.core.pos_embed import SinCosPosEmbed
from mae.core.tokens import Tokens
from mae.modalities.audio.masking import TimeFreqMasker, TimeFreqTokenDrop
from mae.modalities.graph.masking import GraphMasker
from mae.modalities.video.masking import FrameMasker, TubeMasker
from tests.conftest import compose_cfg, tiny_fit


def mae_len_keep(length: int, mask_ratio: float) -> int:
    """Reference, facebookresearch/mae models_mae.py `random_masking`, applied per row to its real length L:
        N, L, D = x.shape  # batch, length, dim
        len_keep = int(L * (1 - mask_ratio))
    plus this framework's clamp (at least one visible and, for L >= 2, one hidden token; L = 1 keeps its token)."""
    len_keep = int(length * (1 - mask_ratio))
    return min(max(len_keep, 1), max(length - 1, 1))


REAL = [10, 7, 3, 2, 1, 5, 10]  # real tokens per row of a 10-token batch; row 5 has interior padding


def padded_tokens(grid: tuple[int, ...] | None = (10,), *, seed: int = 0) -> Tokens:
    g = torch.Generator().manual_seed(seed)
    n = 10  # every grid below has 10 tokens
    pad = torch.zeros(len(REAL), n, dtype=torch.bool)
    for row, real in enumerate(REAL):
        pad[row, real:] = True
    pad[5] = torch.arange(n) % 2 == 1  # interior padding: real tokens 0, 2, 4, 6, 8
    values = torch.randn(len(REAL), n, 4, generator=g)
    pos = torch.randn(len(REAL), n, 3, generator=g) if grid is None else torch.arange(n, dtype=torch.float32).reshape(1, n, 1)
    return Tokens(values=values, pos=pos, grid=grid, pad=pad)


MASKERS = {
    "random": (lambda: RandomMasker(ratio=0.4), (10,)),
    "random_ratio_0.75": (lambda: RandomMasker(ratio=0.75), (10,)),
    "block_1d": (lambda: BlockMasker(ratio=0.4), (10,)),
    "block_2d": (lambda: BlockMasker(ratio=0.6), (2, 5)),
    "block_points": (lambda: BlockMasker(ratio=0.6), None),
    "timefreq": (lambda: TimeFreqMasker(ratio=0.5), (5, 2)),
}


@pytest.mark.parametrize("name", list(MASKERS))
def test_exact_real_counts_per_row_and_padding_never_visible_content(name):
    make, grid = MASKERS[name]
    masker, tokens = make(), padded_tokens(grid)
    mask = masker(tokens, torch.Generator().manual_seed(1))
    b, n = tokens.pad.shape
    real = ~tokens.pad
    hidden = mask.hidden_bool()
    num_real = real.sum(1).tolist()
    want_keep = [mae_len_keep(r, masker.ratio) for r in num_real]
    assert (hidden & real).sum(1).tolist() == [r - k for r, k in zip(num_real, want_keep)]
    assert (~hidden & real).sum(1).tolist() == want_keep
    # static shapes: K = the largest visible real count; the permutation is complete
    assert mask.keep.shape == (b, max(want_keep)) and mask.masked.shape == (b, n - max(want_keep))
    assert torch.equal(torch.sort(mask.shuffle, 1).values, torch.arange(n).expand(b, n))
    # a padding token sits in `keep` only to fill a shorter row's spare visible slots; hidden real tokens come first
    assert (torch.gather(tokens.pad, 1, mask.keep).sum(1) == max(want_keep) - torch.tensor(want_keep)).all()
    first = torch.gather(real, 1, mask.masked)
    for row, r in enumerate(num_real):
        assert first[row, : r - want_keep[row]].all() and not first[row, r - want_keep[row]:].any()


def test_block_masks_grow_from_real_tokens_and_stay_contiguous_on_real_series():
    tokens = padded_tokens((10,))
    for seed in range(20):
        mask = BlockMasker(ratio=0.4)(tokens, torch.Generator().manual_seed(seed))
        hidden = mask.hidden_bool()
        for row in (0, 1, 2, 6):  # trailing padding: the hidden span is one run of real patches
            idx = hidden[row].nonzero().flatten()
            idx = idx[~tokens.pad[row, idx]]
            assert len(idx) == 0 or int(idx.max() - idx.min()) + 1 == len(idx)


def test_padding_content_never_reaches_the_encoder():
    """Changing what padding holds changes nothing the encoder outputs for real visible tokens (attention mask)."""
    tokens = padded_tokens((10,))
    mask = RandomMasker(ratio=0.4)(tokens, torch.Generator().manual_seed(3))
    enc = Encoder(token_dim=4, dim=16, depth=1, num_heads=2, cls_token=False, pos_embed=SinCosPosEmbed).eval()
    noisy = Tokens(values=tokens.values.masked_fill(tokens.pad[..., None], 1e3), pos=tokens.pos, grid=tokens.grid,
                   pad=tokens.pad)
    a, b = enc(tokens, mask), enc(noisy, mask)  # (B, K, D)
    real_kept = ~torch.gather(tokens.pad, 1, mask.keep)
    assert real_kept.all(1).logical_not().any()  # some rows do carry padding in `keep`
    torch.testing.assert_close(a[real_kept], b[real_kept])


def test_same_seed_same_mask_and_unpadded_path_unchanged():
    tokens = padded_tokens((10,))
    for masker in (RandomMasker(ratio=0.4), BlockMasker(ratio=0.4)):
        m1 = masker(tokens, torch.Generator().manual_seed(7))
        m2 = masker(tokens, torch.Generator().manual_seed(7))
        assert torch.equal(m1.keep, m2.keep) and torch.equal(m1.masked, m2.masked)
    scores = torch.rand(4, 12, generator=torch.Generator().manual_seed(0))
    for pad in (None, torch.zeros(4, 12, dtype=torch.bool)):  # no padding: the old masks, bit for bit
        a, b = mask_real(scores, pad, 0.4), mask_from_scores(scores, num_masked(12, 0.4))
        assert torch.equal(a.keep, b.keep) and torch.equal(a.masked, b.masked) and torch.equal(a.restore, b.restore)


def test_all_padding_row_and_structured_maskers_refuse_with_a_clear_message():
    tokens = padded_tokens((10,))
    tokens.pad[2] = True
    with pytest.raises(ValueError, match="all padding"):
        RandomMasker(ratio=0.4)(tokens)
    video = Tokens(values=torch.randn(2, 8, 3), pos=torch.zeros(1, 8, 3), grid=(2, 2, 2),
                   pad=torch.tensor([[False] * 7 + [True]] * 2))
    for masker in (TubeMasker(ratio=0.5), FrameMasker(ratio=0.5)):
        with pytest.raises(ValueError, match="mask=random"):
            masker(video)
    audio = Tokens(values=torch.randn(2, 8, 3), pos=torch.zeros(1, 8, 2), grid=(4, 2), pad=video.pad)
    with pytest.raises(ValueError, match="Tokens.pad"):
        TimeFreqTokenDrop()(audio)


def test_graph_masker_counts_real_nodes_only():
    """GraphMasker was padding-aware already (its own rule: a one-node graph hides its node); checked here too."""
    tokens = padded_tokens(None)
    mask = GraphMasker(ratio=0.5)(tokens, torch.Generator().manual_seed(0))
    real = ~tokens.pad
    num_real = real.sum(1)
    want = [r - min(max(int(r * 0.5), 1), r - 1) if r > 1 else 1 for r in num_real.tolist()]
    assert (mask.hidden_bool() & real).sum(1).tolist() == want


# ------------------------------------------------------------------ the module: loss and the real data path
def timeseries_module(tmp_path, *overrides: str):
    from mae.train.runner import adapt_to_data

    cfg = compose_cfg([*tiny_fit("timeseries", train_batches=1, val_batches=1), *overrides], tmp_path / "run")
    dm = instantiate(cfg.data)
    adapt_to_data(cfg, dm, tmp_path / "run")
    dm.setup()
    return cfg, dm, instantiate(cfg.module)


def test_loss_ignores_padding_and_real_japanese_vowels_hide_the_ratio(tmp_path):
    cfg, dm, module = timeseries_module(tmp_path, "data.name=JapaneseVowels", "data.batch_size=64")
    assert cfg.mask.ratio == 0.4
    batch = next(iter(dm.train_dataloader()))
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    out = module(batch, g())
    tokens, mask = out["tokens"], out["mask"]
    assert tokens.pad is not None and tokens.pad.any()
    # padding content changed -> loss unchanged (weight 0 on padding, padding never attended)
    noisy = dict(batch, series=batch["series"].masked_fill(~batch["observed"][..., None], 50.0))
    torch.manual_seed(0)  # model=patchtst has dropout 0.2: the same dropout draws in both passes
    clean_loss = module(batch, g())["loss"]
    torch.manual_seed(0)
    torch.testing.assert_close(module(noisy, g())["loss"], clean_loss)
    # the whole TRAIN split: no row without a real visible patch, hidden share of real patches as the rule says
    hidden_real = real = rows_blind = rows = 0
    for batch in dm.train_dataloader():
        tokens = module.tokenizer(batch)
        mask = module.masker(tokens, g())
        pad = tokens.pad if tokens.pad is not None else torch.zeros(tokens.values.shape[:2], dtype=torch.bool)
        hid = mask.hidden_bool()
        per_row = (~pad).sum(1)
        hidden_real += int((hid & ~pad).sum())
        real += int(per_row.sum())
        rows_blind += int(((~hid & ~pad).sum(1) == 0).sum())
        rows += pad.shape[0]
        want = sum(r - mae_len_keep(r, 0.4) for r in per_row.tolist())
        assert int((hid & ~pad).sum()) == want
    share = hidden_real / real
    print(f"JapaneseVowels patch_len 12: hidden share of real patches {share:.3f}, rows without a visible real "
          f"patch {rows_blind}/{rows}")
    assert rows_blind == 0
    assert 0.2 <= share <= 0.5  # 1-3 real patches per row: int(n x 0.6) visible rounds the share to 0, 1/2 or 2/3


def test_patchtst_batchnorm_statistics_come_from_real_tokens_only():
    """model=patchtst's post-norm BatchNorm on padded rows: the batch statistics and the running averages are those
    of BatchNorm1d over the real tokens alone, so a padding token's value never reaches a real token's output."""
    from mae.modalities.timeseries.encoder import BatchNormTokens

    torch.manual_seed(0)
    x = torch.randn(3, 5, 4)
    pad = torch.zeros(3, 5, dtype=torch.bool)
    pad[0, 3:] = True
    pad[2, 1:] = True
    ours, reference = BatchNormTokens(4), torch.nn.BatchNorm1d(4)
    out = ours(x, pad)
    expect = reference(x[~pad])  # (R, D): BatchNorm1d on the real tokens only
    torch.testing.assert_close(out[~pad], expect)
    torch.testing.assert_close(ours.bn.running_mean, reference.running_mean)
    torch.testing.assert_close(ours.bn.running_var, reference.running_var)
    noisy = x.masked_fill(pad[..., None], 1e3)
    torch.testing.assert_close(BatchNormTokens(4)(noisy, pad)[~pad], out[~pad])
    torch.testing.assert_close(BatchNormTokens(4)(x, None), torch.nn.BatchNorm1d(4)(x.transpose(1, 2)).transpose(1, 2))
