"""The video paper recipes (MAE-ST, VideoMAE, VideoMAE V2) against their official code: each recipe composed and its
key values (lr after scaling at the script's batch, epochs, warm-up, weight decay, clip, masks, decoder, lr divisor)
asserted; MAE-ST's pred_t_dim target, its separable positions, VideoMAE's 1-D sinusoid and tube count tested against
small ports of the official functions; a tiny run showing the lr divisor and pred_t_dim take effect."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mae.core.tokens import Tokens
from mae.modalities.video.masking import TubeMasker, tube_masked
from mae.modalities.video.pos_embed import SeparablePosEmbed, Sinusoid1DPosEmbed
from mae.modalities.video.targets import PredFramesTarget, pred_frame_index
from mae.modalities.video.tokenizer import VideoTokenizer
from mae.train.config_check import validate
from mae.train.distributed import describe, resolve_batch
from tests.conftest import compose_cfg, tiny_fit


# ------------------------------------------------------------------ ports of the official code (reference only)
def official_mae_st_target(imgs: torch.Tensor, *, t_patch_size: int, pred_t_dim: int, patch: int,
                           norm_pix_loss: bool) -> torch.Tensor:
    """facebookresearch/mae_st models_mae.py: forward_loss's frame selection + patchify (+ norm_pix_loss)."""
    num_frames = imgs.shape[2]
    t_pred_patch_size = t_patch_size * pred_t_dim // num_frames
    _imgs = torch.index_select(imgs, 2, torch.linspace(0, imgs.shape[2] - 1, pred_t_dim).long())
    N, _, T, H, W = _imgs.shape
    p, u = patch, t_pred_patch_size
    h = w = H // p
    t = T // u
    x = _imgs.reshape(shape=(N, 3, t, u, h, p, w, p))
    x = torch.einsum("nctuhpwq->nthwupqc", x)
    target = x.reshape(shape=(N, t * h * w, u * p**2 * 3))
    if norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1.0e-6) ** 0.5
    return target


def official_sep_pos_embed(spatial: torch.Tensor, temporal: torch.Tensor, input_size: tuple[int, int, int]):
    """mae_st models_mae.py forward_encoder (sep_pos_embed): the (1, T*H*W, D) table before the gather."""
    return spatial.repeat(1, input_size[0], 1) + torch.repeat_interleave(temporal, input_size[1] * input_size[2], dim=1)


def official_sinusoid_table(n_position: int, d_hid: int) -> np.ndarray:
    """MCG-NJU/VideoMAE modeling_finetune.py get_sinusoid_encoding_table (numpy part)."""
    def get_position_angle_vec(position):
        return [position / np.power(10000, 2 * (hid_j // 2) / d_hid) for hid_j in range(d_hid)]
    table = np.array([get_position_angle_vec(pos_i) for pos_i in range(n_position)])
    table[:, 0::2] = np.sin(table[:, 0::2])
    table[:, 1::2] = np.cos(table[:, 1::2])
    return table[None]


def official_tube_mask(input_size: tuple[int, int, int], mask_ratio: float, rng: np.random.Generator) -> np.ndarray:
    """VideoMAE / VideoMAEv2 masking_generator.py TubeMaskingGenerator.__call__ (np.random -> a Generator)."""
    frames, height, width = input_size
    per_frame = height * width
    num_masks_per_frame = int(mask_ratio * per_frame)
    mask_per_frame = np.hstack([np.zeros(per_frame - num_masks_per_frame), np.ones(num_masks_per_frame)])
    rng.shuffle(mask_per_frame)
    return np.tile(mask_per_frame, (frames, 1))


def video_tokens(video: torch.Tensor, tubelet: int, patch: int) -> Tokens:
    b, c, t, h, w = video.shape
    tok = VideoTokenizer(num_frames=t, image_size=[h, w], tubelet_size=tubelet, patch_size=patch, channels=c,
                         mean=[0.0] * c, std=[1.0] * c)
    return tok({"video": video})


def ours_in_official_order(values: torch.Tensor, channels: int, u: int, p: int) -> torch.Tensor:
    """(B, N, C*u*p*p) in our (C, u, p, p) order -> MAE-ST's (u, p, p, C) order."""
    b, n, _ = values.shape
    return values.reshape(b, n, channels, u, p, p).permute(0, 1, 3, 4, 5, 2).reshape(b, n, -1)


# ----------------------------------------------------------------------------------- MAE-ST pred_t_dim target
def test_pred_frames_are_mae_st_linspace_frames():
    assert pred_frame_index(16, 8).tolist() == [0, 2, 4, 6, 8, 10, 12, 15]  # the last tubelet's second frame
    assert pred_frame_index(16, 16).tolist() == list(range(16))


@pytest.mark.parametrize("frames, tubelet, pred_t_dim, norm_pix", [(16, 2, 8, True), (16, 2, 8, False),
                                                                    (8, 4, 4, True), (8, 2, 8, True)])
def test_pred_frames_target_equals_mae_st_forward_loss_target(frames, tubelet, pred_t_dim, norm_pix):
    torch.manual_seed(0)
    video = torch.randn(2, 3, frames, 16, 16)
    tokens = video_tokens(video, tubelet, 8)
    target = PredFramesTarget(num_frames=frames, tubelet_size=tubelet, pred_t_dim=pred_t_dim,
                              norm="token" if norm_pix else "none")
    ours = target(tokens)
    u = tubelet * pred_t_dim // frames
    assert ours.shape[-1] == target.out_dim(tokens.values.shape[-1]) == 3 * u * 8 * 8  # out_dim shrinks by t / u
    reference = official_mae_st_target(video, t_patch_size=tubelet, pred_t_dim=pred_t_dim, patch=8,
                                       norm_pix_loss=norm_pix)
    torch.testing.assert_close(ours_in_official_order(ours, 3, u, 8), reference, rtol=1e-5, atol=1e-5)
    index = torch.tensor([[0, 3, 5], [1, 2, 7]])
    gathered = torch.gather(ours, 1, index[..., None].expand(-1, -1, ours.shape[-1]))  # (B, M, C*u*p*p)
    torch.testing.assert_close(target.at(tokens, index), gathered)
    back = target.invert(ours[:, :3], tokens.values[:, :3])
    assert back.shape == tokens.values[:, :3].shape and torch.isfinite(back).all()


def test_pred_frames_target_refuses_a_frame_count_that_does_not_split_and_image_tokens():
    with pytest.raises(ValueError, match=r"target.pred_t_dim=5.*choose one of \[8, 16\]"):
        PredFramesTarget(num_frames=16, tubelet_size=2, pred_t_dim=5)
    with pytest.raises(ValueError, match="target.norm"):
        PredFramesTarget(num_frames=16, tubelet_size=2, pred_t_dim=8, norm="pixel")
    with pytest.raises(ValueError, match="needs \\(T, H, W\\) video tokens"):
        PredFramesTarget(num_frames=16, tubelet_size=2, pred_t_dim=8).check_grid((14, 14))


# ----------------------------------------------------------------------------------- positions and tube count
def test_separable_pos_embed_equals_mae_st_sep_pos_embed():
    torch.manual_seed(0)
    pe = SeparablePosEmbed(dim=12, num_frames=8, image_size=[12, 8], tubelet_size=2, patch_size=4)
    assert pe.grid == (4, 3, 2) and pe.spatial.shape == (6, 12) and pe.temporal.shape == (4, 12)
    reference = official_sep_pos_embed(pe.spatial[None], pe.temporal[None], pe.grid)  # (1, N, D)
    tok = VideoTokenizer(num_frames=8, image_size=[12, 8], tubelet_size=2, patch_size=4)
    torch.testing.assert_close(pe(tok.pos), reference)
    keep = torch.tensor([[0, 7, 23], [5, 6, 11]])
    gathered = pe(torch.gather(tok.pos.expand(2, -1, -1), 1, keep[..., None].expand(-1, -1, 3)))
    torch.testing.assert_close(gathered, reference[0][keep])  # MAE-ST gathers the table at ids_keep
    assert pe.spatial.requires_grad and pe.temporal.requires_grad  # learned


def test_sinusoid_1d_pos_embed_equals_videomae_table():
    pe = Sinusoid1DPosEmbed(dim=16, num_frames=4, image_size=8, tubelet_size=2, patch_size=4)
    tok = VideoTokenizer(num_frames=4, image_size=8, tubelet_size=2, patch_size=4)
    torch.testing.assert_close(pe(tok.pos), torch.tensor(official_sinusoid_table(8, 16), dtype=torch.float32))
    assert not pe.table.requires_grad


def test_tube_mask_hides_videomae_count():
    rng = np.random.default_rng(0)
    official = official_tube_mask((8, 14, 14), 0.9, rng)
    assert official[0].sum() == tube_masked(196, 0.9) == 176  # 20 of 196 visible per frame, not MAE's 19
    video = torch.zeros(1, 3, 4, 28, 28)
    mask = TubeMasker(ratio=0.9)(video_tokens(video, 2, 2), torch.Generator().manual_seed(0))
    assert mask.masked.shape[1] == 2 * 176


# ----------------------------------------------------------------------------------- the recipes' key values
RECIPES = {
    # name: (override, lr at the script's batch, lr batch, divisor, max_epochs, warmup, clip, mask, decoder, min_lr)
    "mae_st_vit_large_k400": ("data.root=/data/k400/train", 1.6e-3 * 128 / 256, 128, 4, 100, 5, 0.02, 0.9,
                              (512, 4, 16), 0.0),
    "videomae_vit_base_k400": ("data.list=/data/k400/train.csv", 1.5e-4 * 2048 / 256, 2048, 1, 1600, 40, None, 0.9,
                               (384, 4, 6), 1e-5 * 2048 / 256),
    "videomaev2_vit_base_hybrid": ("data.list=/data/hybrid_train.csv", 1e-3 * 1024 / 256, 1024, 4, 200, 20, None,
                                   0.9, (384, 4, 6), 1e-5 * 1024 / 256),
}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_composes_with_the_official_values(name, tmp_path):
    override, lr, lr_batch, divisor, epochs, warmup, clip, ratio, decoder, min_lr = RECIPES[name]
    cfg = compose_cfg([f"experiment={name}", override], tmp_path)
    validate(cfg)
    resolved = describe(resolve_batch(cfg), blr=float(cfg.optim.blr), lr=cfg.optim.lr,
                        lr_batch_divisor=cfg.optim.lr_batch_divisor)
    assert resolved["lr"] == pytest.approx(lr) and resolved["lr_batch"] == lr_batch
    assert resolved["lr_batch_divisor"] == divisor == cfg.data.repeat and resolved["accumulation"] == 1
    assert resolved["effective_batch"] == lr_batch * cfg.data.repeat  # clips
    assert (cfg.trainer.max_epochs, cfg.optim.warmup_epochs, cfg.trainer.gradient_clip_val) == (epochs, warmup, clip)
    assert cfg.optim.weight_decay == 0.05 and list(cfg.optim.optimizer.betas) == [0.9, 0.95]
    assert cfg.optim.decay_tokens == (name == "mae_st_vit_large_k400")  # MAE-ST util/misc.py; VideoMAE no_weight_decay()
    assert cfg.optim.min_lr == pytest.approx(min_lr) and cfg.mask.ratio == ratio
    assert (cfg.model.decoder.dim, cfg.model.decoder.depth, cfg.model.decoder.num_heads) == decoder
    assert (cfg.data.num_frames, cfg.data.sampling_rate, cfg.data.image_size) == (16, 4, 224)
    assert (cfg.tokenizer.tubelet_size, cfg.tokenizer.patch_size) == (2, 16)


def test_recipe_files_cite_no_memory():
    from tests.conftest import CONF

    for name in RECIPES:
        text = (CONF / "experiment" / f"{name}.yaml").read_text().lower()
        assert "from memory" not in text and "not re-checked" not in text, name


def test_mae_st_recipe_parts():
    cfg = compose_cfg(["experiment=mae_st_vit_large_k400", "data.root=/k400"], "/tmp/unused")
    assert cfg.model.encoder.cls_token and cfg.mask._target_.endswith("RandomMasker") and cfg.data.repeat == 4
    assert (cfg.data.batch_size, cfg.trainer.devices, cfg.trainer.num_nodes) == (8, 8, 8)  # 2 videos x 4 per GPU
    assert list(cfg.data.mean) == [0.45] * 3 and list(cfg.data.std) == [0.225] * 3 and cfg.data.short_side == 256
    target = instantiate(cfg.target)
    assert isinstance(target, PredFramesTarget) and target.pred_tubelet == 1 and target.out_dim(1536) == 768
    assert target.frames.tolist() == [0, 2, 4, 6, 8, 10, 12, 15]
    pe = instantiate(cfg.pos_embed)(dim=8)
    assert isinstance(pe, SeparablePosEmbed) and pe.grid == (8, 14, 14)
    assert cfg.trainer.precision == "32-true"  # main_pretrain.py --fp32


def test_videomae_recipes_parts():
    v1 = compose_cfg(["experiment=videomae_vit_base_k400", "data.list=/k.csv"], "/tmp/unused")
    v2 = compose_cfg(["experiment=videomaev2_vit_base_hybrid", "data.list=/h.csv"], "/tmp/unused")
    for cfg in (v1, v2):
        assert not cfg.model.encoder.cls_token and cfg.mask._target_.endswith("TubeMasker")
        assert cfg.target._target_.endswith("TubeletNormPixTarget") and cfg.data.crop == "multiscale"
        assert isinstance(instantiate(cfg.pos_embed)(dim=8), Sinusoid1DPosEmbed) and not cfg.data.hflip
    assert v1.decoder_mask is None or "_target_" not in v1.decoder_mask
    assert v2.decoder_mask._target_.endswith("RunningCellDecoderMask") and v2.decoder_mask.ratio == 0.5
    assert (v2.data.repeat, v2.data.batch_size, v2.trainer.devices, v2.trainer.num_nodes) == (4, 128, 8, 4)


# ----------------------------------------------------------------------------------- the options take effect
def test_tiny_run_counts_videos_for_the_lr_and_predicts_the_chosen_frames(tmp_path):
    """A real (tiny) run: data.repeat=2 with optim.lr_batch_divisor=${data.repeat} gives lr = blr x videos / 256 in
    the module and in resolved.yaml; one epoch is one pass over the videos; target=pred_frames shrinks the decoder's
    output to the selected frames (1 of 2 per tubelet) and the reconstruction picture is still drawn."""
    from mae.train.runner import run

    run_dir = tmp_path / "run"
    cfg = compose_cfg([
        *tiny_fit("video", train_batches=1, val_batches=1), "trainer.max_epochs=1", "trainer.limit_train_batches=null",
        f"data.demo_dir={tmp_path / 'demo'}", "data.demo_label=direction", "data.demo_videos_per_class=4",
        "data.demo_frames=12", "data.demo_size=32", "data.num_frames=4", "data.image_size=16",
        "data.short_side=[16,20]", "tokenizer.patch_size=4", "data.repeat=2", "data.batch_size=8",
        "optim.lr=null", "optim.blr=0.01", "optim.lr_batch_divisor=${data.repeat}",
        "target=pred_frames", "target.pred_t_dim=2", "eval.enabled=false", "objective=train/loss",
    ], run_dir)
    metrics = run(cfg)
    videos_per_step = 8 // 2
    assert metrics["optim/lr"] == pytest.approx(0.01 * videos_per_step / 256)  # not 0.01 x 8 clips / 256
    resolved = OmegaConf.load(run_dir / "resolved.yaml").optim
    assert (resolved.effective_batch, resolved.lr_batch, resolved.lr_batch_divisor) == (8, 4, 2)
    assert resolved.lr == pytest.approx(metrics["optim/lr"])
    dm = instantiate(cfg.data)  # the split is the datamodule's: read it back
    dm.train_dataloader()
    num_train = len(dm.train_set)  # videos (each item holds data.repeat clips)
    assert metrics["train/steps"] == num_train // videos_per_step  # one epoch = one pass over the videos
    module = instantiate(cfg.module)
    assert module.decoder.head.out_features == 3 * 1 * 4 * 4  # C x u x p x p with u = 2 x 2 / 4 = 1
    assert list((run_dir / "reconstructions").glob("*.png"))
