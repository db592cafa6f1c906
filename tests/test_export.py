"""The exported encoder loads into timm with strict=True and gives the same features."""
from functools import partial

import pytest
import timm
import torch

from mae.core.encoder import Encoder
from mae.core.pos_embed import SinCosPosEmbed
from mae.modalities.image.export import timm_kwargs, to_timm_state_dict
from mae.modalities.image.tokenizer import ImageTokenizer


@pytest.mark.parametrize("cls_token,pool", [(True, "mean"), (True, "cls"), (False, "mean")])
@pytest.mark.parametrize("channels,size,patch", [(1, 28, 4), (3, [32, 48], 16)])
def test_timm_strict_load_same_features(cls_token, pool, channels, size, patch):
    torch.manual_seed(0)
    tok = ImageTokenizer(image_size=size, channels=channels, patch_size=patch)
    enc = Encoder(token_dim=tok.token_dim, dim=48, depth=2, num_heads=3, cls_token=cls_token, pool=pool,
                  pos_embed=partial(SinCosPosEmbed)).eval()
    for p in enc.parameters():  # make every weight matter (LayerNorms are 1/0 at init)
        p.data.add_(torch.randn_like(p) * 0.05)
    name, kwargs = timm_kwargs(enc, tok)
    model = timm.create_model(name, pretrained=False, num_classes=0, **kwargs).eval()
    model.load_state_dict(to_timm_state_dict(enc, tok), strict=True)
    images = torch.randn(3, channels, *tok.image_size)
    with torch.no_grad():
        ours = enc.pool(tok({"image": images}))
        theirs = model(images)
    assert theirs.shape == ours.shape
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-4)
