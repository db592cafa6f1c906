"""The mask-token family (SimMIM, MaskFeat) against the official code: SimMIM's MaskGenerator, SlowFast's block-wise
MaskingGenerator and the [MASK]-token blend of simmim.py / masked.py, each ported below as the reference; the two
ViT-B recipes composed and their key values asserted; the start-up check of encoder / decoder pairs; tiny runs of
both methods end to end with the probes."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from mae.core.encoder import Encoder
from mae.core.group_masking import BlockwiseMasker, GroupMasker, blockwise_mask, group_index, group_order_scores
from mae.core.linear_decoder import LinearDecoder
from mae.core.mask_token_encoder import MaskTokenEncoder
from mae.core.masking import mask_from_scores
from mae.core.optim import param_groups, resolve_lr
from mae.core.pos_embed import SinCosPosEmbed
from mae.core.tokens import Tokens
from mae.train.config_check import validate
from mae.train.distributed import resolve_batch
from tests.conftest import compose_cfg, fit_and_read


# ------------------------------------------------------------------ ports of the official code (reference only)
class OfficialSimMIMMaskGenerator:
    """microsoft/SimMIM data/data_simmim.py MaskGenerator, verbatim but for the rng argument."""

    def __init__(self, input_size=192, mask_patch_size=32, model_patch_size=4, mask_ratio=0.6):
        self.rand_size = input_size // mask_patch_size
        self.scale = mask_patch_size // model_patch_size
        self.token_count = self.rand_size ** 2
        self.mask_count = int(np.ceil(self.token_count * mask_ratio))

    def __call__(self, perm):
        mask_idx = perm[:self.mask_count]  # official: np.random.permutation(self.token_count)[:self.mask_count]
        mask = np.zeros(self.token_count, dtype=int)
        mask[mask_idx] = 1
        mask = mask.reshape((self.rand_size, self.rand_size))
        return mask.repeat(self.scale, axis=0).repeat(self.scale, axis=1)


class OfficialMaskingGenerator:
    """facebookresearch/SlowFast slowfast/datasets/transform.py MaskingGenerator (module-level `random`)."""

    def __init__(self, mask_window_size, num_masking_patches, min_num_patches=16, max_num_patches=None,
                 min_aspect=0.3, max_aspect=None):
        self.height, self.width = (mask_window_size,) * 2 if isinstance(mask_window_size, int) else mask_window_size
        self.num_masking_patches = num_masking_patches
        self.min_num_patches = min_num_patches
        self.max_num_patches = num_masking_patches if max_num_patches is None else max_num_patches
        max_aspect = max_aspect or 1 / min_aspect
        self.log_aspect_ratio = (math.log(min_aspect), math.log(max_aspect))

    def _mask(self, mask, max_mask_patches):
        delta = 0
        for _ in range(10):
            target_area = random.uniform(self.min_num_patches, max_mask_patches)
            aspect_ratio = math.exp(random.uniform(*self.log_aspect_ratio))
            h = int(round(math.sqrt(target_area * aspect_ratio)))
            w = int(round(math.sqrt(target_area / aspect_ratio)))
            if w < self.width and h < self.height:
                top = random.randint(0, self.height - h)
                left = random.randint(0, self.width - w)
                num_masked = mask[top: top + h, left: left + w].sum()
                if 0 < h * w - num_masked <= max_mask_patches:
                    for i in range(top, top + h):
                        for j in range(left, left + w):
                            if mask[i, j] == 0:
                                mask[i, j] = 1
                                delta += 1
                if delta > 0:
                    break
        return delta

    def __call__(self):
        mask = np.zeros(shape=(self.height, self.width), dtype=int)
        mask_count = 0
        while mask_count < self.num_masking_patches:
            max_mask_patches = min(self.num_masking_patches - mask_count, self.max_num_patches)
            delta = self._mask(mask, max_mask_patches)
            if delta == 0:
                break
            mask_count += delta
        return mask


def official_blend(x, mask, mask_token):
    """simmim.py VisionTransformerForSimMIM.forward (masked.py _maskfeat_forward is the same): after patch_embed."""
    B, L, _ = x.shape
    mask_token = mask_token.expand(B, L, -1)
    w = mask.flatten(1).unsqueeze(-1).type_as(mask_token)
    return x * (1 - w) + mask_token * w


def grid_tokens(b: int, grid: tuple[int, ...], c: int = 6) -> Tokens:
    coords = torch.stack(torch.meshgrid(*[torch.arange(s) for s in grid], indexing="ij"), -1)
    return Tokens(values=torch.randn(b, math.prod(grid), c), pos=coords.reshape(1, -1, len(grid)).float(), grid=grid)


# ------------------------------------------------------------------ SimMIM's group masking
def test_group_masker_equals_simmim_mask_generator_for_the_same_permutation():
    official = OfficialSimMIMMaskGenerator(input_size=224, mask_patch_size=32, model_patch_size=16, mask_ratio=0.6)
    masker = GroupMasker(ratio=0.6, group=2)
    assert masker.num_hidden((14, 14)) == official.mask_count * 4 == 120  # ceil(49 x 0.6) = 30 groups, not MAE's 118
    index, groups = group_index((14, 14), (2, 2), device=torch.device("cpu"))
    assert groups == 49
    rng = np.random.default_rng(0)
    for _ in range(5):
        perm = rng.permutation(49)
        scores = group_order_scores(torch.from_numpy(perm)[None], index, torch.rand(1, 196))
        ours = mask_from_scores(scores, masker.num_hidden((14, 14))).hidden_bool()[0].reshape(14, 14)
        assert np.array_equal(ours.numpy().astype(int), official(perm))


def test_group_masker_hides_whole_groups_at_the_official_count_and_covers_video_and_odd_grids():
    mask = GroupMasker(ratio=0.6, group=2)(grid_tokens(8, (14, 14)), torch.Generator().manual_seed(0))
    hidden = mask.hidden_bool().reshape(8, 7, 2, 7, 2).float()  # (B, gh, 2, gw, 2)
    per_group = hidden.sum(dim=(2, 4))
    assert ((per_group == 0) | (per_group == 4)).all() and (per_group == 4).sum(dim=(1, 2)).eq(30).all()
    assert not torch.equal(hidden[0], hidden[1])  # a new draw per sample
    video = GroupMasker(ratio=0.5, group=[1, 2, 2])(grid_tokens(2, (4, 4, 4)), torch.Generator().manual_seed(1))
    assert video.masked.shape[1] == 32  # 64 tokens / (1 x 2 x 2) = 16 groups; ceil(16 x 0.5) = 8 groups x 4 tokens
    odd = GroupMasker(ratio=0.6, group=2)(grid_tokens(3, (7, 7)), torch.Generator().manual_seed(2))
    assert odd.masked.shape[1] == 49 - int(49 * 0.4)  # smaller border groups: MAE's count
    with pytest.raises(ValueError, match="mask.group must be an integer >= 1 or a list of 2"):
        GroupMasker(ratio=0.6, group=[2, 2, 2]).check_grid((14, 14))
    with pytest.raises(ValueError, match="mask=group .* choose mask=random"):
        GroupMasker(ratio=0.6).check_grid(None)


# ------------------------------------------------------------------ MaskFeat's block-wise masking
@pytest.mark.parametrize("seed", range(6))
def test_blockwise_mask_equals_slowfast_masking_generator(seed):
    num_mask = round(14 * 14 * 0.4)  # slowfast/datasets/imagenet.py
    random.seed(seed)
    reference = OfficialMaskingGenerator(14, num_mask, min_num_patches=num_mask // 5)()
    ours = blockwise_mask(14, 14, num_masking=num_mask, min_patches=num_mask // 5, max_patches=None, min_aspect=0.3,
                          rng=random.Random(seed))
    assert np.array_equal(ours, reference)


def test_blockwise_masker_hides_the_official_count_and_refuses_video():
    masker = BlockwiseMasker(ratio=0.4)
    assert masker.num_hidden((14, 14)) == 78
    mask = masker(grid_tokens(6, (14, 14)), torch.Generator().manual_seed(0))
    assert mask.masked.shape == (6, 78) and mask.keep.shape == (6, 118)
    assert torch.equal(torch.cat([mask.keep, mask.masked], 1).sort(1).values, torch.arange(196).expand(6, -1))
    again = masker(grid_tokens(6, (14, 14)), torch.Generator().manual_seed(0))
    assert torch.equal(mask.masked, again.masked)  # a pure function of the generator's seed
    with pytest.raises(ValueError, match="mask=blockwise .* choose mask=tube or mask=random on video"):
        masker.check_grid((4, 14, 14))


# ------------------------------------------------------------------ the [MASK]-token encoder
def tiny_encoder(**kw) -> MaskTokenEncoder:
    return MaskTokenEncoder(token_dim=6, dim=16, depth=2, num_heads=2, pos_embed=SinCosPosEmbed, **kw)


def test_mask_token_blend_and_order_equal_simmim_forward():
    torch.manual_seed(0)
    enc = tiny_encoder().eval()
    tokens = grid_tokens(3, (4, 4))
    mask = GroupMasker(ratio=0.5, group=2)(tokens, torch.Generator().manual_seed(0))
    # reference: simmim.py's order: patch_embed -> blend -> cat(cls) -> + pos_embed -> blocks -> norm (our cls row
    # has no position, as MAE's sin-cos table gives it zeros)
    x = official_blend(enc.embed(tokens.values), mask.hidden_bool().float(), enc.mask_token)
    x = torch.cat([enc.cls_token.expand(3, -1, -1), x], 1) + torch.nn.functional.pad(enc.pos_embed(tokens.pos),
                                                                                    (0, 0, 1, 0))
    for block in enc.blocks:
        x = block(x)
    torch.testing.assert_close(enc(tokens, mask), enc.norm(x))
    assert enc(tokens, mask).shape == (3, 1 + 16, 16)  # prefix + every token, for the linear head


def test_hidden_tokens_content_never_reaches_the_encoder_and_positions_stay():
    torch.manual_seed(0)
    enc = tiny_encoder(cls_token=False).eval()
    tokens = grid_tokens(2, (4, 4))
    mask = GroupMasker(ratio=0.5, group=2)(tokens, torch.Generator().manual_seed(3))
    changed = tokens.values.clone()
    hidden = mask.hidden_bool()
    changed[hidden] = torch.randn(int(hidden.sum()), 6) * 10
    out = enc(tokens, mask)
    torch.testing.assert_close(enc(Tokens(values=changed, pos=tokens.pos, grid=tokens.grid), mask), out)
    assert not torch.allclose(enc(tokens, None), out)  # without a mask every token is its own
    h = hidden[0].nonzero()[:2, 0]  # two hidden tokens: same [MASK] input, different positions -> different latents
    assert not torch.allclose(out[0, h[0]], out[0, h[1]])


def test_no_decay_and_layer_scale_follow_the_config():
    assert tiny_encoder().no_weight_decay() == {"cls_token", "mask_token"}
    enc = tiny_encoder(no_decay=["cls_token"], layer_scale=0.1)
    groups = param_groups(torch.nn.ModuleList([enc]), weight_decay=0.05)
    decayed = {id(p) for p in groups[0]["params"]}
    assert id(enc.mask_token) in decayed and id(enc.cls_token) not in decayed  # SimMIM's ViT
    assert torch.allclose(enc.blocks[0].ls1.gamma, torch.full((16,), 0.1))
    with pytest.raises(ValueError, match="model.encoder.no_decay names unknown parameters"):
        tiny_encoder(no_decay=["pos_embed"])
    with pytest.raises(ValueError, match="model.encoder.layer_scale must be null or a number > 0"):
        tiny_encoder(layer_scale=-1.0)


def test_linear_head_reads_the_hidden_tokens_of_the_full_sequence():
    enc = tiny_encoder()
    head = LinearDecoder(enc_dim=16, num_prefix=1, out_dim=6)
    tokens = grid_tokens(2, (4, 4))
    mask = BlockwiseMasker(ratio=0.4)(tokens, torch.Generator().manual_seed(0))
    latent = enc(tokens, mask)
    pred = head(latent, tokens, mask)
    expected = head.head(torch.gather(latent[:, 1:], 1, mask.masked[..., None].expand(-1, -1, 16)))
    torch.testing.assert_close(pred, expected)
    with pytest.raises(ValueError, match="model=simmim / maskfeat"):  # the plain MAE encoder: visible latents only
        head(Encoder(token_dim=6, dim=16, depth=1, num_heads=2, pos_embed=SinCosPosEmbed)(tokens, mask), tokens, mask)


# ------------------------------------------------------------------ start-up check of encoder / decoder pairs
def test_startup_check_refuses_mismatched_encoder_and_decoder(tmp_path):
    bad_head = compose_cfg(["model.decoder._target_=mae.core.linear_decoder.LinearDecoder"], tmp_path)
    with pytest.raises(ValueError, match=r"model\.decoder\._target_=mae\.core\.linear_decoder\.LinearDecoder reads "
                                         r"the latents of every token.*use model=simmim or model=maskfeat"):
        validate(bad_head)
    bad_decoder = compose_cfg(["model=simmim", "+model.decoder.dim=8", "model.decoder._target_=mae.core.decoder.Decoder"],
                              tmp_path)
    with pytest.raises(ValueError, match=r"mae\.core\.decoder\.Decoder reads the latents of the visible tokens.*"
                                         r"MaskTokenEncoder returns the latents of every token"):
        validate(bad_decoder)
    validate(compose_cfg(["experiment=simmim_mnist"], tmp_path))  # the pairs as shipped pass


# ------------------------------------------------------------------ the recipes' key values
RECIPES = {
    # name: (lr at the script's batch, lr batch, divisor, epochs, warm-up, clip, mask, ratio, head out, betas, min_lr)
    "simmim_vit_base_in1k": (1e-4 * 2048 / 512, 2048, 2, 800, 10, 5.0, "GroupMasker", 0.6, 3 * 16 * 16, 0.999, 0.0),
    "maskfeat_vit_base_in1k": (2e-4 * 256 / 256, 256, 1, 300, 30, 0.02, "BlockwiseMasker", 0.4, 9 * 4 * 3, 0.999,
                               1e-6),
}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_composes_with_the_official_values(name, tmp_path):
    lr, batch, divisor, epochs, warmup, clip, masker, ratio, out_dim, beta2, min_lr = RECIPES[name]
    cfg = compose_cfg([f"experiment={name}", "data.root=/data/imagenet/train"], tmp_path)
    validate(cfg)
    plan = resolve_batch(cfg)
    assert plan.effective == batch and cfg.optim.lr_batch_divisor == divisor
    assert resolve_lr(blr=cfg.optim.blr, lr=cfg.optim.lr, effective_batch=plan.effective // divisor) == pytest.approx(lr)
    assert (cfg.trainer.max_epochs, cfg.optim.warmup_epochs, cfg.trainer.gradient_clip_val) == (epochs, warmup, clip)
    assert cfg.optim.weight_decay == 0.05 and list(cfg.optim.optimizer.betas) == [0.9, beta2]
    assert cfg.optim.min_lr == pytest.approx(min_lr)
    assert cfg.mask._target_.endswith(masker) and cfg.mask.ratio == ratio
    enc = cfg.model.encoder
    assert enc._target_.endswith("MaskTokenEncoder") and (enc.dim, enc.depth, enc.num_heads) == (768, 12, 12)
    assert cfg.model.decoder._target_.endswith("LinearDecoder")
    assert (cfg.data.image_size, cfg.tokenizer.patch_size) == (224, 16)
    assert instantiate(cfg.target).out_dim(3 * 16 * 16) == out_dim  # the head's width: pixels of a patch, or its HOG


def test_recipe_parts_specific_to_each_paper(tmp_path):
    simmim = compose_cfg(["experiment=simmim_vit_base_in1k", "data.root=/x"], tmp_path)
    assert list(simmim.mask.group) == [2, 2] and GroupMasker(ratio=0.6, group=2).num_hidden((14, 14)) == 120
    assert (simmim.model.encoder.drop_path, simmim.model.encoder.layer_scale) == (0.1, 0.1)
    assert list(simmim.model.encoder.no_decay) == ["cls_token"] and list(simmim.data.crop_scale) == [0.67, 1.0]
    assert simmim.loss._target_.endswith("masked_l1") and simmim.target._target_.endswith("PixelTarget")
    maskfeat = compose_cfg(["experiment=maskfeat_vit_base_in1k", "data.root=/x"], tmp_path)
    assert maskfeat.target._target_.endswith("HOGTarget") and maskfeat.loss._target_.endswith("masked_mse")
    assert (maskfeat.target.cell_size, maskfeat.target.bins, maskfeat.model.encoder.drop_path) == (8, 9, 0.0)
    assert list(maskfeat.model.encoder.no_decay) == [] and list(maskfeat.data.crop_scale) == [0.5, 1.0]
    assert (maskfeat.data.batch_size, maskfeat.trainer.devices) == (32, 8)


# ------------------------------------------------------------------ tiny runs end to end, with the probes
TINY = ["data.source=synthetic", "data.synthetic_size=64", "data.batch_size=16", "trainer.max_epochs=1",
        "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "trainer.log_every_n_steps=1",
        "trainer.enable_progress_bar=false", "model.encoder.dim=32", "model.encoder.depth=1",
        "model.encoder.num_heads=2", "callbacks.reconstruction.every_n_epochs=1", "eval.raw_input=false"]


@pytest.mark.parametrize("name", ["simmim_mnist", "maskfeat_mnist"])
def test_tiny_run_end_to_end(name, tmp_path):
    run_dir = tmp_path / "run"
    cfg = compose_cfg([f"experiment={name}", *TINY], run_dir)
    _, saved = fit_and_read(cfg, run_dir)
    assert np.isfinite(saved["train/loss"]) and 0.0 <= saved["eval/linear_acc"] <= 1.0
