"""Video end to end: `modality=video` with tube / random / frame masks and V2 dual masking, the paper recipes."""
from __future__ import annotations

import pytest
from hydra.utils import instantiate

from mae.train.config_check import validate
from tests.conftest import compose_cfg, fit_and_read, tiny_fit

pytestmark = pytest.mark.e2e

# Shrunk for video: 4 demo videos per direction (16 mp4s of 12 frames, 32x32), clips of 4 frames of 16x16 in
# 2x4x4 tubelets = 2x4x4 = 32 tokens, a 1-block encoder, 2 epochs of 2 batches.
VIDEO_FAST = [
    *tiny_fit("video", train_batches=2, val_batches=1, pictures_every=2),
    "data.demo_label=direction", "data.demo_videos_per_class=4", "data.demo_frames=12", "data.demo_size=32",
    "data.num_frames=4", "data.image_size=16", "data.short_side=[16,20]", "data.batch_size=4",
]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("video_demo") / "demo"


@pytest.mark.parametrize("mask", ["tube", "random", "frame", "tube_running_cell"])
def test_video_fit_with_each_mask_writes_metrics(tmp_path, demo_dir, mask):
    extra = ["mask=tube", "decoder_mask=running_cell"] if mask == "tube_running_cell" else [f"mask={mask}"]
    cfg = compose_cfg([*VIDEO_FAST, f"data.demo_dir={demo_dir}", *extra], tmp_path / "run")
    assert cfg.mask.ratio == 0.75 and cfg.target._target_.endswith("TubeletNormPixTarget")
    metrics, saved = fit_and_read(cfg, tmp_path / "run")
    assert metrics["train/loss"] > 0 and 0.0 <= saved["eval/linear_acc"] <= 1.0


def test_paper_recipes_compose_with_the_papers_values(tmp_path):
    cfg = compose_cfg(["experiment=videomae_vit_base_k400", "data.list=/data/k400/train.csv"], tmp_path)
    validate(cfg)
    assert cfg.mask._target_.endswith("TubeMasker") and cfg.mask.ratio == 0.9
    assert (cfg.data.num_frames, cfg.data.sampling_rate, cfg.data.image_size) == (16, 4, 224)
    assert (cfg.tokenizer.tubelet_size, cfg.tokenizer.patch_size) == (2, 16)
    assert (cfg.model.encoder.dim, cfg.model.encoder.depth, cfg.model.decoder.dim, cfg.model.decoder.depth) == (768, 12, 384, 4)
    assert cfg.target._target_.endswith("TubeletNormPixTarget") and cfg.trainer.max_epochs == 1600
    assert cfg.optim.lr is None and cfg.optim.blr == 1.5e-4  # the demo's absolute default_lr does not leak in
    module = instantiate(cfg.module)
    assert module.tokenizer.grid == (8, 14, 14) and module.tokenizer.token_dim == 1536
    cfg = compose_cfg(["experiment=mae_st_vit_large_k400", "data.root=/data/k400/train"], tmp_path)
    validate(cfg)
    assert cfg.mask._target_.endswith("RandomMasker") and cfg.mask.ratio == 0.9 and cfg.data.repeat == 4
    assert (cfg.model.encoder.dim, cfg.model.encoder.depth) == (1024, 24) and cfg.data.sampling_rate == 4
    assert cfg.data.batch_size % cfg.data.repeat == 0


def test_demo_defaults_compose_and_stay_out_of_other_modalities(tmp_path):
    """The video demo's size (2,000 videos, 20 epochs, absolute lr 7.5e-4) comes from modality=video through
    default_max_epochs / default_lr; an explicit override still wins and the image job keeps its 60 epochs."""
    cfg = compose_cfg(["modality=video"], tmp_path)
    assert (cfg.trainer.max_epochs, cfg.optim.lr, cfg.data.demo_videos_per_class) == (20, 7.5e-4, 200)
    assert compose_cfg(["modality=video", "trainer.max_epochs=3", "optim.lr=1e-3"], tmp_path).trainer.max_epochs == 3
    image = compose_cfg([], tmp_path)
    assert image.trainer.max_epochs == 60 and image.optim.lr is None
    assert compose_cfg(["modality=video", "trainer=ddp_cpu"], tmp_path).trainer.max_epochs == 20
