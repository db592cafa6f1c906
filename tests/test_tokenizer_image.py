"""Image patchify/unpatchify and sin-cos positions."""
import numpy as np
import pytest
import torch

from mae.core.grid import patchify, unpatchify
from mae.core.pos_embed import sincos_embed
from mae.modalities.image.tokenizer import ImageTokenizer


@pytest.mark.parametrize("c,h,w,p", [(1, 28, 28, 4), (3, 32, 48, 8), (2, 16, 24, 4), (3, 224, 224, 16)])
def test_patchify_round_trip_any_channels_non_square(c, h, w, p):
    images = torch.randn(2, c, h, w)
    tok = ImageTokenizer(image_size=[h, w], channels=c, patch_size=p)
    tokens = tok({"image": images})
    assert tokens.values.shape == (2, (h // p) * (w // p), c * p * p)
    assert tokens.grid == (h // p, w // p)
    assert tokens.pos.shape == (1, tokens.num_tokens, 2)
    assert torch.equal(tok.unpatchify(tokens.values), images)


def test_patch_content_is_the_image_block():
    images = torch.arange(2 * 3 * 8 * 12, dtype=torch.float32).reshape(2, 3, 8, 12)
    values = patchify(images, 4)  # grid (2, 3)
    # token 4 = row 1, col 1 -> pixels [4:8, 4:8], flattened (C, p, p)
    assert torch.equal(values[1, 4], images[1, :, 4:8, 4:8].reshape(-1))
    assert torch.equal(unpatchify(values, (2, 3), 4), images)


def test_patch_size_must_divide_image():
    with pytest.raises(ValueError, match="does not divide"):
        ImageTokenizer(image_size=28, channels=1, patch_size=5)


def test_wrong_batch_shape_is_a_clear_error():
    tok = ImageTokenizer(image_size=28, channels=1, patch_size=4)
    with pytest.raises(ValueError, match="data.channels"):
        tok({"image": torch.randn(2, 3, 28, 28)})


def mae_2d_sincos(embed_dim: int, grid_size: int) -> np.ndarray:
    """The reference implementation from facebookresearch/mae util/pos_embed.py (no cls row)."""

    def one_d(dim, pos):
        omega = np.arange(dim // 2, dtype=np.float64) / (dim / 2.0)
        omega = 1.0 / 10000**omega
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid_h = np.arange(grid_size, dtype=np.float32)
    grid_w = np.arange(grid_size, dtype=np.float32)
    grid = np.meshgrid(grid_w, grid_h)
    grid = np.stack(grid, axis=0).reshape([2, 1, grid_size, grid_size])
    emb_h = one_d(embed_dim // 2, grid[0])
    emb_w = one_d(embed_dim // 2, grid[1])
    return np.concatenate([emb_h, emb_w], axis=1)


def test_sincos_matches_official_mae():
    tok = ImageTokenizer(image_size=56, channels=1, patch_size=4)  # 14 x 14 grid
    ours = sincos_embed(tok.pos, 64)[0].numpy()
    ref = mae_2d_sincos(64, 14)
    np.testing.assert_allclose(ours, ref, atol=1e-6)
