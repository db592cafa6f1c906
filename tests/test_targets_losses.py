"""Targets (pixels, norm_pix, HOG) and losses on hidden tokens only."""
import pytest
import torch

from mae.core.losses import masked_l1, masked_mse
from mae.core.masking import RandomMasker
from mae.core.targets import NormPixTarget, PixelTarget
from mae.core.tokens import gather_tokens
from mae.modalities.image.targets import HOGTarget
from mae.modalities.image.tokenizer import ImageTokenizer
from mae.modalities.video.targets import TubeletNormPixTarget


def image_tokens(c=3, size=32, patch=8, b=2):
    tok = ImageTokenizer(image_size=size, channels=c, patch_size=patch)
    return tok, tok({"image": torch.rand(b, c, size, size)})


def test_norm_pix_uses_each_patch_statistics():
    _, tokens = image_tokens()
    t = NormPixTarget(eps=1e-6)(tokens)
    assert torch.allclose(t.mean(-1), torch.zeros(t.shape[:2]), atol=1e-5)
    assert torch.allclose(t.var(-1), torch.ones(t.shape[:2]), atol=1e-3)  # unbiased var, as MAE
    # the same patch in a brighter image gives the same target
    shifted = type(tokens)(values=tokens.values * 3 + 2, pos=tokens.pos, grid=tokens.grid)
    assert torch.allclose(NormPixTarget()(shifted), t, atol=1e-4)


def test_norm_pix_invert_with_true_stats_gives_pixels_back():
    _, tokens = image_tokens()
    target = NormPixTarget()
    assert torch.allclose(target.invert(target(tokens), tokens.values), tokens.values, atol=1e-5)
    assert torch.equal(PixelTarget()(tokens), tokens.values)


def test_hog_shape_and_orientation():
    tok, _ = image_tokens(c=1, size=32, patch=8)
    hog = HOGTarget(channels=1, patch_size=8, cell_size=4, bins=9)
    assert hog.out_dim(tok.token_dim) == 1 * 9 * 4
    vertical = torch.zeros(1, 1, 32, 32)
    vertical[..., 16:] = 1.0  # a vertical edge: horizontal gradient
    horizontal = vertical.transpose(-1, -2)
    hv = hog(tok({"image": vertical}))
    hh = hog(tok({"image": horizontal}))
    assert hv.shape == (1, 16, 36)
    bins_v = hv.reshape(1, 16, 9, 4).sum((0, 1, 3))
    bins_h = hh.reshape(1, 16, 9, 4).sum((0, 1, 3))
    assert bins_v.argmax() != bins_h.argmax()  # edge direction changes the dominant bin
    flat = hog(tok({"image": torch.ones(1, 1, 32, 32)}))
    assert torch.isfinite(flat).all() and flat.abs().sum() == 0  # no gradient, no NaN
    assert hog.invert(hv, hv) is None


def test_hog_cell_must_divide_patch():
    with pytest.raises(ValueError, match="cell_size"):
        HOGTarget(channels=1, patch_size=4, cell_size=8)


@pytest.mark.parametrize("loss", [masked_mse, masked_l1])
def test_loss_ignores_visible_tokens(loss):
    _, tokens = image_tokens()
    mask = RandomMasker(ratio=0.75)(tokens, torch.Generator().manual_seed(0))
    full_target = NormPixTarget()(tokens)
    pred = torch.randn(2, mask.masked.shape[1], full_target.shape[-1])
    base = loss(pred, gather_tokens(full_target, mask.masked))
    changed = full_target.clone()
    changed.scatter_(1, mask.keep.unsqueeze(-1).expand(-1, -1, changed.shape[-1]), 100.0)  # visible only
    assert torch.equal(loss(pred, gather_tokens(changed, mask.masked)), base)
    changed.scatter_(1, mask.masked[:, :1].unsqueeze(-1).expand(-1, -1, changed.shape[-1]), 100.0)
    assert loss(pred, gather_tokens(changed, mask.masked)) > base


def test_loss_values_and_padding_weight():
    pred, target = torch.zeros(1, 2, 4), torch.ones(1, 2, 4)
    target[0, 1] = 3.0
    assert masked_mse(pred, target).item() == pytest.approx((1 + 9) / 2)
    assert masked_l1(pred, target).item() == pytest.approx((1 + 3) / 2)
    assert masked_mse(pred, target, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(1.0)


@pytest.mark.parametrize("target", [PixelTarget(), NormPixTarget(), TubeletNormPixTarget(),
                                    HOGTarget(patch_size=8, channels=3)])
def test_targets_at_equals_the_full_target_gathered(target):
    """Token-wise targets (`tokenwise`, `of_values`) are computed on the predicted tokens only: same values as
    computing them on every token and gathering; HOG (needs neighbouring pixels) takes the gather path."""
    _, tokens = image_tokens()
    mask = RandomMasker(ratio=0.75)(tokens, torch.Generator().manual_seed(0))
    assert target.tokenwise != isinstance(target, HOGTarget)
    torch.testing.assert_close(target.at(tokens, mask.masked), gather_tokens(target(tokens), mask.masked),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("loss, per_element", [(masked_mse, lambda d: d.pow(2)), (masked_l1, lambda d: d.abs())])
def test_fused_losses_match_the_per_token_formula(loss, per_element):
    """The fused F.mse_loss / F.l1_loss paths give MAE's per-token mean, then the (weighted) mean over tokens,
    values and gradients."""
    gen = torch.Generator().manual_seed(0)
    pred, target, weight = torch.randn(3, 5, 7, generator=gen), torch.randn(3, 5, 7, generator=gen), torch.rand(3, 5)
    for w in (None, weight):
        p1, p2 = pred.clone().requires_grad_(), pred.clone().requires_grad_()
        per_token = per_element(p2 - target).mean(-1)  # (B, M)
        ref = per_token.mean() if w is None else (per_token * w).sum() / w.sum()
        out = loss(p1, target, w)
        out.backward()
        ref.backward()
        torch.testing.assert_close(out, ref)
        torch.testing.assert_close(p1.grad, p2.grad)
