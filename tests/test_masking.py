"""Masking invariants shared by every masker: exact ratio, partition, inverse, determinism, contiguity."""
import pytest
import torch
from scipy import ndimage

from mae.core.masking import BlockMasker, RandomMasker, num_masked
from mae.core.tokens import Tokens


def grid_tokens(b: int, grid: tuple[int, ...], c: int = 3) -> Tokens:
    n = 1
    for s in grid:
        n *= s
    return Tokens(values=torch.randn(b, n, c), pos=torch.zeros(1, n, len(grid)), grid=grid)


MASKERS = [RandomMasker(ratio=0.75), RandomMasker(ratio=0.4), BlockMasker(ratio=0.75), BlockMasker(ratio=0.5, num_blocks=1)]


@pytest.mark.parametrize("masker", MASKERS, ids=lambda m: f"{type(m).__name__}-{m.ratio}")
@pytest.mark.parametrize("grid", [(7, 7), (6, 10), (14, 14)])
def test_exact_ratio_partition_and_restore(masker, grid):
    tokens = grid_tokens(16, grid)
    n = tokens.num_tokens
    mask = masker(tokens, torch.Generator().manual_seed(0))
    m = num_masked(n, masker.ratio)
    assert mask.keep.shape == (16, n - m) and mask.masked.shape == (16, m)
    # keep and masked partition all tokens
    both = torch.cat([mask.keep, mask.masked], 1).sort(1).values
    assert torch.equal(both, torch.arange(n).expand(16, n))
    # restore inverts the shuffle
    assert torch.equal(torch.gather(mask.shuffle, 1, mask.restore), torch.arange(n).expand(16, n))
    assert mask.hidden_bool().sum(1).eq(m).all()


@pytest.mark.parametrize("masker", MASKERS, ids=lambda m: f"{type(m).__name__}-{m.ratio}")
def test_reproducible_under_seed_and_varies_across_samples(masker):
    tokens = grid_tokens(8, (8, 8))
    a = masker(tokens, torch.Generator().manual_seed(3))
    b = masker(tokens, torch.Generator().manual_seed(3))
    c = masker(tokens, torch.Generator().manual_seed(4))
    assert torch.equal(a.masked, b.masked)
    assert not torch.equal(a.hidden_bool(), c.hidden_bool())
    hidden = a.hidden_bool()
    assert not all(torch.equal(hidden[0], hidden[i]) for i in range(1, 8))  # per-sample masks


def test_ratio_validation():
    with pytest.raises(ValueError, match="ratio"):
        RandomMasker(ratio=1.0)
    with pytest.raises(ValueError, match="ratio"):
        BlockMasker(ratio=0.0)


def test_exact_count_matches_mae_rule():
    assert num_masked(196, 0.75) == 196 - 49
    assert num_masked(49, 0.75) == 49 - 12


def test_single_block_is_one_contiguous_region():
    masker = BlockMasker(ratio=0.4, num_blocks=1)
    tokens = grid_tokens(64, (14, 14))
    hidden = masker(tokens, torch.Generator().manual_seed(0)).hidden_bool().reshape(64, 14, 14)
    for h in hidden.numpy():
        _, count = ndimage.label(h)  # 4-connectivity
        assert count == 1


def test_block_masks_are_blocky_not_scattered():
    """Hidden tokens of block masks touch many hidden neighbours; random masks do not."""

    def neighbour_share(hidden):  # share of 4-neighbour pairs that are both hidden, among hidden tokens
        h = hidden.float()
        pairs = (h[:, 1:, :] * h[:, :-1, :]).sum() + (h[:, :, 1:] * h[:, :, :-1]).sum()
        return pairs / h.sum()

    tokens = grid_tokens(64, (14, 14))
    gen = torch.Generator().manual_seed(0)
    block = BlockMasker(ratio=0.5, num_blocks=4)(tokens, gen).hidden_bool().reshape(64, 14, 14)
    rand = RandomMasker(ratio=0.5)(tokens, gen).hidden_bool().reshape(64, 14, 14)
    assert neighbour_share(block) > 1.5 * neighbour_share(rand)


def test_block_without_grid_hides_the_tokens_nearest_a_seed():
    # tokens without a grid (point groups): block masking hides a ball around a random seed token
    pos = torch.rand(2, 10, 3)
    tokens = Tokens(values=torch.randn(2, 10, 3), pos=pos, grid=None)
    mask = BlockMasker(ratio=0.5, num_blocks=1)(tokens, torch.Generator().manual_seed(0))
    assert mask.masked.shape == (2, 5)
    for b in range(2):
        hidden = mask.hidden_bool()[b]
        # some hidden token is the seed: every hidden token is closer to it than every visible one
        d = torch.cdist(pos[b], pos[b])  # (N, N)
        assert any(d[s, hidden].max() <= d[s, ~hidden].min() for s in torch.nonzero(hidden).flatten())
    RandomMasker(ratio=0.5)(tokens)  # fine without a grid
