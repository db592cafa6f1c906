"""Train-time video crops: VideoMAE's multi-scale crop, MAE-ST's random resized crop, the default random box."""
from __future__ import annotations

import pytest
import torch

from datamodules.video.crop import TrainCrop, multiscale_box, resized_box
from datamodules.video.datamodule import VideoDataModule
from datamodules.video.decode import ClipReader
from tests.conftest import compose_cfg

SCALES = (1.0, 0.875, 0.75, 0.66)


def test_multiscale_boxes_follow_tsn_group_multiscale_crop():
    """Frame 320x427, output 224: sides int(320 x scale) = 320, 280, 240, 211 (224 is > 3 px from all: no snap),
    (height, width) scale indices at most one apart, offsets on TSN's 13 fixed positions, all of them reached."""
    torch.manual_seed(0)
    h, w = 320, 427
    sides = [320, 280, 240, 211]
    seen_offsets, seen_pairs = set(), set()
    for _ in range(3000):
        top, left, bh, bw = multiscale_box((h, w), (224, 224), SCALES)
        i, j = sides.index(bh), sides.index(bw)
        assert abs(i - j) <= 1
        hs, ws = (h - bh) // 4, (w - bw) // 4
        assert top % hs == 0 if hs else top == 0
        assert left % ws == 0 and top + bh <= h and left + bw <= w
        if hs and ws:  # a full-height box (bh = h) has a single row of offsets
            seen_offsets.add((top // hs, left // ws))
        seen_pairs.add((i, j))
    assert seen_pairs == {(i, j) for i in range(4) for j in range(4) if abs(i - j) <= 1}  # 10 pairs
    corners_centre = {(0, 0), (0, 4), (4, 0), (4, 4), (2, 2)}
    edges_quarters = {(2, 0), (2, 4), (4, 2), (0, 2), (1, 1), (1, 3), (3, 1), (3, 3)}
    assert seen_offsets == corners_centre | edges_quarters  # exactly TSN's 13 positions


def test_multiscale_snaps_sides_within_3_px_of_the_output():
    torch.manual_seed(0)
    sides = {multiscale_box((256, 256), (224, 224), (1.0, 0.875))[2] for _ in range(200)}
    assert sides == {256, 224}  # int(256 x 0.875) = 224 exactly; and 226 would snap too:
    assert {multiscale_box((258, 258), (224, 224), (0.875,))[2] for _ in range(20)} == {224}  # int(225.75) = 225


def test_resized_boxes_have_the_area_and_aspect_asked_for():
    torch.manual_seed(0)
    h, w = 240, 320
    for _ in range(500):
        top, left, bh, bw = resized_box((h, w), (0.5, 1.0), (0.75, 4 / 3))
        assert 0 <= top and top + bh <= h and 0 <= left and left + bw <= w
        assert 0.5 - 0.02 <= bh * bw / (h * w) <= 1.0
        assert 0.75 - 0.02 <= bw / bh <= 4 / 3 + 0.02


def test_default_box_is_a_random_output_sized_window():
    torch.manual_seed(0)
    boxes = {TrainCrop().box((40, 48), (32, 32)) for _ in range(300)}
    assert {b[2:] for b in boxes} == {(32, 32)}
    assert {b[0] for b in boxes} == set(range(9)) and {b[1] for b in boxes} == set(range(17))


@pytest.mark.parametrize("crop", ["multiscale", "resized"])
def test_clip_reader_resizes_the_box_to_the_output_and_keeps_eval_centred(crop):
    reader = ClipReader(backend="pyav", num_frames=4, sampling_rate=1, image_size=(32, 32), short_side=(48, 48),
                        mean=[0.0] * 3, std=[1.0] * 3, hflip=False, short="loop", crop=TrainCrop(kind=crop))
    ramp = torch.arange(64, dtype=torch.uint8).view(1, 1, 64, 1).expand(4, 48, 64, 3)  # (T, H, W, 3) brightness ramp
    torch.manual_seed(0)
    train = [reader.spatial(ramp, train=True) for _ in range(20)]  # (3, T, 32, 32) each
    assert all(x.shape == (3, 4, 32, 32) for x in train)
    widths = {round(float(x[0, 0, 0, -1] - x[0, 0, 0, 0]) * 255) for x in train}  # ramp span seen by the crop
    assert len(widths) > 1  # different box widths, each resized to 32 columns
    centre = reader.spatial(ramp, train=False)
    torch.testing.assert_close(centre[0, 0, 0], torch.arange(16, 48, dtype=torch.float32) / 255)  # the middle 32 px


def test_bad_crop_settings_name_the_key():
    with pytest.raises(ValueError, match="data.crop must be one of"):
        VideoDataModule(crop="random_crop")
    with pytest.raises(ValueError, match="data.crop_scales"):
        VideoDataModule(crop="multiscale", crop_scales=[1.0, 1.2])
    with pytest.raises(ValueError, match="data.crop_area"):
        VideoDataModule(crop="resized", crop_area=[0.8, 0.5])
    with pytest.raises(ValueError, match="data.crop_aspect"):
        VideoDataModule(crop="resized", crop_aspect=[0.75])


def test_paper_recipes_pick_their_papers_crops(tmp_path):
    videomae = compose_cfg(["experiment=videomae_vit_base_k400", "data.list=/data/k400/train.csv"], tmp_path)
    assert (videomae.data.crop, list(videomae.data.crop_scales), videomae.data.hflip) == ("multiscale", list(SCALES), False)
    mae_st = compose_cfg(["experiment=mae_st_vit_large_k400", "data.root=/data/k400/train"], tmp_path)
    assert (mae_st.data.crop, list(mae_st.data.crop_area), mae_st.data.hflip) == ("resized", [0.5, 1.0], True)
    assert compose_cfg(["modality=video"], tmp_path).data.crop == "short_side"  # the demo keeps the plain crop
