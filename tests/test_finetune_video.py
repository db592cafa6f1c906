"""Video fine-tuning: VideoMAE's multi-view test (clips x crops, softmax mean), the data options the stage sets, the
K400 recipe, and the pretrain -> finetune chain on the moving-MNIST demo."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from datamodules.video.datamodule import VideoDataModule
from datamodules.video.decode import clip_indices, clip_starts, view_box
from datamodules.video.demo import write_mp4
from mae.core.optim import resolve_lr
from mae.finetune.tasks import Classification, reduce_views
from tests.conftest import compose_cfg

FRAMES, HEIGHT, WIDTH = 12, 16, 32


def coded_video(video: int) -> np.ndarray:
    """(T, H, W, 3) frames whose red channel tells the frame (20 t), green the column (8 x) and blue the video."""
    t = np.arange(FRAMES)[:, None, None]
    x = np.arange(WIDTH)[None, None, :]
    frames = np.zeros((FRAMES, HEIGHT, WIDTH, 3), np.uint8)
    frames[..., 0] = np.broadcast_to(20 * t, (FRAMES, HEIGHT, WIDTH))
    frames[..., 1] = np.broadcast_to(8 * x, (FRAMES, HEIGHT, WIDTH))
    frames[..., 2] = 60 + 60 * video
    return frames


@pytest.fixture(scope="module")
def coded_folder(tmp_path_factory):
    """Train: 2 classes x 2 coded videos (root); val: 2 more, listed in val.csv (cat, then dog)."""
    root = tmp_path_factory.mktemp("coded")
    for c, name in enumerate(("cat", "dog")):
        (root / "train" / name).mkdir(parents=True)
        for i in range(2):
            write_mp4(root / "train" / name / f"{i}.mp4", coded_video(c))
    (root / "val").mkdir()
    write_mp4(root / "val" / "a.mp4", coded_video(0))
    write_mp4(root / "val" / "b.mp4", coded_video(2))
    (root / "val.csv").write_text("path,label\nval/a.mp4,cat\nval/b.mp4,dog\n")
    return root


def coded_module(root, **options) -> VideoDataModule:
    return VideoDataModule(root=str(root / "train"), val_list=str(root / "val.csv"), backend="pyav", num_frames=2,
                           sampling_rate=1, image_size=16, short_side=16, mean=[0.0] * 3, std=[1.0] * 3, **options)


# ----------------------------------------------------------------------------------------- the views
def test_test_clips_are_uniformly_spaced_and_one_clip_is_centred():
    assert clip_starts(40, 7, 5, random=False, spread=True).tolist() == [0, 8, 16, 24, 33]  # int(k x 33 / 4)
    assert clip_starts(40, 7, 1, random=False, spread=True).tolist() == [16]  # as the val clip
    assert clip_starts(5, 7, 3, random=False, spread=True).tolist() == [0, 0, 0]  # shorter than a clip
    index = clip_indices(5, num_frames=4, sampling_rate=2, clips=2, random=False, short="loop", path="x", spread=True)
    assert index.tolist() == [[0, 2, 4, 1], [0, 2, 4, 1]]  # then looped as any short video


def test_test_crops_run_left_centre_right_along_the_long_side():
    assert [view_box((16, 32), (16, 16), j, 3) for j in range(3)] == [(0, 0, 16, 16), (0, 8, 16, 16), (0, 16, 16, 16)]
    assert [view_box((40, 20), (16, 16), j, 3) for j in range(3)] == [(0, 2, 16, 16), (12, 2, 16, 16),
                                                                       (24, 2, 16, 16)]  # portrait: top to bottom
    assert view_box((20, 40), (16, 16), 0, 1) == (2, 12, 16, 16)  # one crop: the centre box of the val loader


def test_multi_view_batches_hold_the_views_of_each_video_in_consecutive_rows(coded_folder):
    dm = coded_module(coded_folder, test_clips=3, test_crops=3, batch_size=18)
    assert dm.classes == ["cat", "dog"] and dm.val_set.sample_labels() == [0, 1] and len(dm.train_set) == 4
    batches = list(dm.test_dataloader())
    assert len(batches) == 1  # 18 clips = 2 videos of 9 views
    batch = batches[0]
    assert batch["video"].shape == (2 * 9, 3, 2, 16, 16) and batch["views"] == 9
    assert batch["label"].tolist() == [0, 1]  # one label per video
    red, green, blue = (batch["video"][:, c].mean(dim=(1, 2, 3)) * 255 for c in range(3))  # (18,) each
    for i, video in enumerate((0, 2)):
        for k, start in enumerate((0, 5, 10)):  # 12 frames, clips of 2: starts int(k x 10 / 2)
            for j, left in enumerate((0, 8, 16)):
                row = i * 9 + k * 3 + j  # sample-major, clip-major inside a sample
                assert abs(red[row] - 20 * (start + 0.5)) < 8, (row, red[row])
                assert abs(green[row] - 8 * (left + 7.5)) < 8, (row, green[row])
                assert abs(blue[row] - (60 + 60 * video)) < 8, (row, blue[row])


def test_one_view_is_the_val_loader(coded_folder):
    dm = coded_module(coded_folder, batch_size=2)
    test, val = next(iter(dm.test_dataloader())), next(iter(dm.val_dataloader()))
    assert "views" not in test and torch.equal(test["video"], val["video"]) and torch.equal(test["label"], val["label"])
    views = coded_module(coded_folder, test_clips=1, test_crops=3, batch_size=6)  # 2 videos of 3 views
    centre = next(iter(views.test_dataloader()))["video"][1::3]  # the middle crop of each video
    assert torch.allclose(centre, val["video"])


def test_val_list_errors_name_the_keys(coded_folder):
    (coded_folder / "odd.csv").write_text("path,label\nval/a.mp4,bird\n")
    with pytest.raises(ValueError, match=r"class\(es\) \['bird'\] that the train videos do not have"):
        VideoDataModule(root=str(coded_folder / "train"), val_list=str(coded_folder / "odd.csv"),
                        backend="pyav").setup()
    with pytest.raises(ValueError, match="data.val_fraction=0.1 is not read with data.val_list"):
        VideoDataModule(root="/x", val_list="/y.csv", val_fraction=0.1)
    with pytest.raises(ValueError, match="data.val_list .* needs the train videos"):
        VideoDataModule(val_list="/y.csv")
    with pytest.raises(ValueError, match=r"data\.test_crops must be >= 1"):
        VideoDataModule(test_crops=0)


# --------------------------------------------------------------------------------- the softmax mean
def test_softmax_mean_over_views_picks_the_class_a_logit_mean_would_miss():
    # sample 0: one confident view for class 0, two mild ones for class 1: the mean probability says 1, the mean
    # logit says 0 (VideoMAE's merge averages softmax outputs). Sample 1: every view says 0.
    out = torch.tensor([[10.0, 0.0], [0.0, 2.0], [0.0, 2.0],
                        [3.0, 0.0], [2.0, 0.0], [1.0, 0.0]])  # (B*V, K) = (2*3, 2), sample-major
    batch = {"label": torch.tensor([1, 0]), "views": 3}
    probs = reduce_views(out, 3, "softmax_mean").exp()  # (B, K)
    expected = torch.stack([out[:3].softmax(-1).mean(0), out[3:].softmax(-1).mean(0)])
    assert torch.allclose(probs, expected) and probs.argmax(-1).tolist() == [1, 0]
    assert reduce_views(out, 3, "logit_mean").argmax(-1).tolist() == [0, 0]
    for view_reduce, top1 in (("softmax_mean", 1.0), ("logit_mean", 0.5)):
        task = Classification(view_reduce=view_reduce)
        task.setup(num_classes=2)
        task.update(out, batch)
        assert task.compute()["top1"] == top1


# ------------------------------------------------------------------------------------------ configs
def staged(overrides: list[str], tmp_path):
    from mae.finetune.runner import stage_config

    cfg = compose_cfg(overrides, tmp_path)
    stage_config(cfg)
    return cfg


def test_the_demo_protocol_sets_fine_tuning_data_and_keeps_pretraining_unchanged(tmp_path):
    pre = compose_cfg(["modality=video"], tmp_path)
    assert pre.data.crop == "short_side" and pre.data.get("test_clips", 1) == 1  # pre-training: one view
    cfg = staged(["modality=video", "stage=finetune", "pretrained=/x"], tmp_path)
    assert (cfg.data.crop, cfg.data.repeat, cfg.data.test_clips, cfg.data.test_crops) == ("resized", 1, 1, 1)
    assert cfg.trainer.max_epochs == cfg.finetune.epochs and cfg.optim.weight_decay == 0.05
    assert cfg.finetune.task.label_smoothing == 0.1 and cfg.finetune.layer_decay == 0.75
    assert cfg.finetune.mixup.mixup_alpha == 0.8 and cfg.finetune.mixup.cutmix_alpha == 1.0
    dm = VideoDataModule(**{k: v for k, v in OmegaConf.to_container(cfg.data, resolve=True).items() if k != "_target_"})
    assert dm.crop.kind == "resized" and dm.test_views_per_video == 1


def test_the_k400_recipe_has_videomaes_values(tmp_path):
    cfg = staged(["experiment=videomae_vit_base_k400_finetune", "pretrained=/x", "data.list=/k400/train.csv"],
                 tmp_path)
    data = cfg.data
    assert (data.num_frames, data.sampling_rate, data.image_size, data.short_side) == (16, 4, 224, 224)
    assert (data.repeat, data.batch_size, data.test_clips, data.test_crops) == (2, 12, 5, 3)
    assert (data.crop, list(data.crop_area), data.hflip) == ("resized", [0.08, 1.0], True)
    assert cfg.trainer.max_epochs == 75 and cfg.optim.warmup_epochs == 5 and cfg.optim.weight_decay == 0.05
    assert cfg.optim.effective_batch_size == data.batch_size * cfg.trainer.devices * cfg.trainer.num_nodes == 768
    # VideoMAE: lr = 5e-4 x 384 videos / 256; ours counts 768 clips
    assert math.isclose(resolve_lr(blr=cfg.optim.blr, lr=cfg.optim.lr, effective_batch=768), 5e-4 * 384 / 256)
    options = OmegaConf.to_container(cfg.data, resolve=True)
    options.pop("_target_")
    dm = VideoDataModule(**options)  # the options check passes; nothing is read yet
    assert dm.test_views_per_video == 15 and dm.crop.area == (0.08, 1.0)


# --------------------------------------------------------------------------------------- end to end
DEMO = ["data.demo_label=direction", "data.demo_videos_per_class=4", "data.demo_frames=12", "data.demo_size=32",
        "data.num_frames=4", "data.image_size=16", "data.short_side=[16,20]", "data.batch_size=4"]
SMALL = ["modality=video", "logger=csv", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1",
         "model.encoder.dim=32", "model.encoder.depth=1", "model.encoder.num_heads=2",
         "model.decoder.dim=32", "model.decoder.depth=1", "model.decoder.num_heads=2"]


@pytest.mark.e2e
def test_pretrain_then_finetune_with_multi_view_test_and_scratch_baseline(tmp_path, monkeypatch):
    from datamodules.video.datamodule import VideoViewsDataset
    from mae.train.runner import run

    tested = []
    original = VideoViewsDataset._load
    monkeypatch.setattr(VideoViewsDataset, "_load", lambda self, index: tested.append(index) or original(self, index))

    demo = [*DEMO, f"data.demo_dir={tmp_path / 'demo'}"]
    pre = tmp_path / "pre"
    cfg = compose_cfg([*SMALL, *demo, "trainer.max_epochs=1", "eval.enabled=false", "objective=val/loss",
                       "callbacks.reconstruction=null"], pre)
    run(cfg)
    (pre / ".hydra").mkdir()
    OmegaConf.save(cfg, pre / ".hydra" / "config.yaml")  # what Hydra writes beside a CLI run
    ft = tmp_path / "ft"
    metrics = run(compose_cfg([*SMALL, *demo, "stage=finetune", f"pretrained={pre}", "finetune.epochs=2",
                               "finetune.scratch_baseline=true", "finetune.data.test_clips=2",
                               "finetune.data.test_crops=3"], ft))
    saved = json.loads((ft / "metrics.json").read_text())
    for key in ("finetune/top1", "finetune/top1_scratch", "finetune/loss", "finetune/loss_scratch"):
        assert key in saved and math.isfinite(saved[key]), key
    assert 0.0 <= saved["finetune/top1"] <= 1.0 and metrics["finetune/train_samples"] == 13  # 16 videos, 3 held out
    assert len(tested) == 2 * 3  # each phase scored the 3 val videos as 2 clips x 3 crops
