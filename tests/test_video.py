"""Video modality: tube/frame/running-cell masks, tubelet tokenizer and targets, decoding, bad and short files, repeat."""
from __future__ import annotations

import warnings
from functools import partial

import numpy as np
import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from datamodules.errors import LoadError, SkippedFileWarning
from datamodules.video.datamodule import VideoDataModule, collate_clips
from datamodules.video.decode import ClipReader, clip_indices, read_decord, read_pyav
from datamodules.video.demo import demo_frames, write_mp4
from datamodules.video.lists import read_video_list
from mae.core.decoder import Decoder
from mae.core.encoder import Encoder
from mae.core.losses import masked_mse
from mae.core.masking import BlockMasker, DualMasker, RandomMasker, num_masked
from mae.core.module import MAEModule
from mae.core.pos_embed import SinCosPosEmbed
from mae.core.tokens import Tokens
from mae.modalities.image.targets import HOGTarget
from mae.modalities.video.masking import FrameMasker, RunningCellDecoderMask, TubeMasker, running_cell_visible
from mae.modalities.video.targets import TubeletNormPixTarget, VideoHOGTarget
from mae.modalities.video.tokenizer import VideoTokenizer, tubeletify
from tests.conftest import FAST, compose_cfg

GRID = (4, 6, 6)


def video_tokens(batch: int = 3, grid=GRID, dim: int = 5) -> Tokens:
    n = grid[0] * grid[1] * grid[2]
    return Tokens(values=torch.randn(batch, n, dim), pos=torch.zeros(1, n, 3), grid=grid)


# ---------------------------------------------------------------------------------------------- masks
@pytest.mark.parametrize("ratio", [0.5, 0.75, 0.9])
def test_tube_mask_is_identical_over_time_and_hides_exactly_the_ratio(ratio):
    tokens = video_tokens(batch=16)
    mask = TubeMasker(ratio=ratio)(tokens, torch.Generator().manual_seed(0))
    t, h, w = GRID
    hidden = mask.hidden_bool().reshape(16, t, h * w)  # (B, T, H*W)
    assert (hidden == hidden[:, :1]).all(), "every time step must hide the same spatial positions"
    assert (hidden.sum(-1) == int(ratio * h * w)).all()  # VideoMAE's TubeMaskingGenerator count
    assert mask.masked.shape == (16, t * int(ratio * h * w))
    assert not (hidden[0, 0] == hidden[1, 0]).all(), "samples get different tubes"
    restored = torch.gather(mask.shuffle, 1, mask.restore)
    assert (restored == torch.arange(t * h * w)).all()


def test_frame_mask_hides_whole_time_steps_exactly():
    tokens = video_tokens(batch=8, grid=(8, 3, 3))
    mask = FrameMasker(ratio=0.5)(tokens, torch.Generator().manual_seed(1))
    hidden = mask.hidden_bool().reshape(8, 8, 9)
    per_step = hidden.sum(-1)  # (B, T): 0 or 9 each
    assert ((per_step == 0) | (per_step == 9)).all() and (per_step.eq(9).sum(-1) == num_masked(8, 0.5)).all()


def v2_running_cell_masks(frames: int, height: int, width: int, ratio: float) -> np.ndarray:
    """A port of VideoMAE V2's RunningCellMaskingGenerator (masking_generator.py): (4, T, H*W), 1 = not decoded."""
    hidden = int(4 * ratio)
    queue = np.hstack([np.ones(hidden), np.zeros(4 - hidden)])
    out = []
    for ptr in range(4):
        per_frame = []
        for _ in range(frames):
            ptr += 1  # run_cell()
            unit = queue[(np.arange(4) + ptr) % 4].reshape(2, 2)  # get_cell()
            per_frame.append(np.tile(unit, [height // 2, width // 2]).flatten())
        out.append(np.stack(per_frame))
    return np.stack(out)


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75])
def test_running_cell_pattern_matches_videomae_v2(ratio):
    t, h, w = GRID
    reference = v2_running_cell_masks(t, h, w, ratio)  # (4, T, H*W)
    ours = running_cell_visible(GRID, ratio=ratio, start=torch.arange(4))  # (4, N)
    np.testing.assert_array_equal(ours.reshape(4, t, h * w).numpy(), reference == 0)


@pytest.mark.parametrize("masker", [TubeMasker, RandomMasker])
def test_dual_masking_decodes_hidden_tokens_in_the_running_cell(masker):
    tokens = video_tokens(batch=32)
    dual = DualMasker(base=masker(ratio=0.75), decoder=RunningCellDecoderMask(ratio=0.5))
    mask = dual(tokens, torch.Generator().manual_seed(2))
    b, m = mask.masked.shape
    assert mask.decode is not None and mask.decode.shape == (b, round(m * 0.5))
    assert torch.equal(mask.predicted, mask.decode)
    hidden = mask.hidden_bool()
    assert torch.gather(hidden, 1, mask.decode).all(), "the decoder reconstructs hidden tokens only"
    assert (mask.decode.sort(1).values.diff(dim=1) > 0).all(), "no token twice"
    # which pattern start each sample drew is unknown: one of the 4 must explain it
    cells = running_cell_visible(GRID, ratio=0.5, start=torch.arange(4))  # (4, N)
    for i in range(b):
        in_cell = hidden[i] & cells  # (4, N) hidden and decoder-visible under each start
        decoded = torch.zeros_like(hidden[i]).scatter(0, mask.decode[i], True)
        fits = [(decoded <= c).all() if c.sum() >= mask.decode.shape[1] else (c <= decoded).all() for c in in_cell]
        assert any(fits), f"sample {i}: decoded tokens do not follow a running-cell pattern"


def test_masks_without_a_time_axis_fail_with_a_clear_message():
    with pytest.raises(ValueError, match=r"mask=tube needs tokens on a \(T, H, W\)"):
        TubeMasker(ratio=0.9).check_grid((7, 7))
    with pytest.raises(ValueError, match="mask=frame needs"):
        FrameMasker(ratio=0.5).check_grid((16, 8))  # audio (T, F): use mask=time there
    with pytest.raises(ValueError, match="running_cell needs"):
        DualMasker(base=RandomMasker(ratio=0.75), decoder=RunningCellDecoderMask()).check_grid((7, 7))
    with pytest.raises(ValueError, match="mask=block draws 2-D"):
        BlockMasker(ratio=0.5).check_grid(GRID)
    with pytest.raises(ValueError, match="decoder_mask.ratio"):
        RunningCellDecoderMask(ratio=0.1)
    RandomMasker(ratio=0.75).check_grid(GRID)  # MAE-ST random masking is fine on video


def test_tube_on_image_fails_at_start_up(tmp_path):
    cfg = compose_cfg([*FAST, "mask=tube"], tmp_path)  # modality=image
    with pytest.raises(InstantiationException, match=r"mask=tube needs tokens on a \(T, H, W\) space-time grid"):
        instantiate(cfg.module)
    cfg = compose_cfg([*FAST, "modality=video", "mask=block"], tmp_path)
    with pytest.raises(InstantiationException, match="choose mask=tube"):
        instantiate(cfg.module)


# ------------------------------------------------------------------------------ tokenizer and targets
def test_tubelet_round_trip_and_linear_embedding_equals_conv3d():
    tok = VideoTokenizer(num_frames=4, image_size=[8, 12], tubelet_size=2, patch_size=4)
    video = torch.randn(2, 3, 4, 8, 12)
    tokens = tok({"video": video})
    assert tokens.grid == (2, 2, 3) and tokens.values.shape == (2, 12, 3 * 2 * 4 * 4) and tokens.pos.shape == (1, 12, 3)
    torch.testing.assert_close(tok.unpatchify(tokens.values), video, rtol=0, atol=0)
    conv = torch.nn.Conv3d(3, 7, kernel_size=(2, 4, 4), stride=(2, 4, 4))
    expected = conv(video).flatten(2).transpose(1, 2)  # (B, N, 7), tokens row-major over (t, h, w)
    linear = tokens.values @ conv.weight.reshape(7, -1).T + conv.bias
    torch.testing.assert_close(linear, expected, atol=1e-5, rtol=1e-5)
    assert tokens.pos[0, 5].tolist() == [0.0, 1.0, 2.0]  # token 5 = (t 0, h 1, w 2)
    with pytest.raises(ValueError, match="tubelet_size=3 must divide data.num_frames=4"):
        VideoTokenizer(num_frames=4, image_size=8, tubelet_size=3, patch_size=4)


def test_tubelet_norm_pix_normalises_each_channel_and_inverts():
    tok = VideoTokenizer(num_frames=4, image_size=8, tubelet_size=2, patch_size=4)
    tokens = tok({"video": torch.rand(2, 3, 4, 8, 8) * 3 + 1})
    target = TubeletNormPixTarget()
    y = target(tokens).unflatten(-1, (3, -1))  # (B, N, C, t*p*p)
    torch.testing.assert_close(y.mean(-1), torch.zeros(y.shape[:-1]), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std(-1), torch.ones(y.shape[:-1]), atol=1e-4, rtol=0)
    torch.testing.assert_close(target.invert(target(tokens), tokens.values), tokens.values, atol=1e-5, rtol=1e-5)


def test_video_hog_is_the_image_hog_of_each_frame():
    tok = VideoTokenizer(num_frames=2, image_size=16, tubelet_size=2, patch_size=8)
    video = torch.rand(1, 3, 2, 16, 16)
    tokens = tok({"video": video})
    hog = VideoHOGTarget(channels=3, patch_size=8, cell_size=4)
    out = hog(tokens)  # (1, 4, 2 * 3*9*4)
    assert out.shape == (1, 4, hog.out_dim(tok.token_dim)) == (1, 4, 2 * 108)
    image = HOGTarget(channels=3, patch_size=8, cell_size=4)
    for f in range(2):  # frame f of each tubelet = the image HOG of frame f
        frame_tokens = Tokens(values=tubeletify(video[:, :, f : f + 1], 1, 8), pos=tokens.pos, grid=(2, 2))
        torch.testing.assert_close(out[..., f * 108 : (f + 1) * 108], image(frame_tokens))


def test_module_with_dual_masking_predicts_only_the_decoded_tokens():
    tok = VideoTokenizer(num_frames=4, image_size=16, tubelet_size=2, patch_size=4)
    module = MAEModule(
        tokenizer=tok, masker=TubeMasker(ratio=0.75), decoder_mask=RunningCellDecoderMask(),
        encoder=partial(Encoder, dim=32, depth=1, num_heads=2, pos_embed=SinCosPosEmbed),
        decoder=partial(Decoder, dim=32, depth=1, num_heads=2, pos_embed=SinCosPosEmbed),
        target=TubeletNormPixTarget(), loss=masked_mse, optimizer=torch.optim.AdamW, batch_size=2,
    )
    out = module({"video": torch.randn(2, 3, 4, 16, 16)}, torch.Generator().manual_seed(0))
    mask = out["mask"]
    assert out["pred"].shape == (2, mask.decode.shape[1], tok.token_dim) == out["target"].shape
    assert mask.decode.shape[1] == round(mask.masked.shape[1] * 0.5) and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert module.decoder.mask_token.grad is not None


# ------------------------------------------------------------------------------------------- decoding
def moving_square(frames: int = 12, size: int = 32) -> np.ndarray:
    video = np.zeros((frames, size, size, 3), np.uint8)
    for t in range(frames):
        video[t, 8:20, t : t + 12] = (200, 120, 40)
    return video


def test_decord_and_pyav_return_the_same_frames(tmp_path):
    path = tmp_path / "square.mp4"
    source = moving_square()
    write_mp4(path, source)
    plan = lambda n: torch.tensor([[0, 3, 6, 9], [2, 2, 11, 5]])  # noqa: E731
    a, b = read_decord(path, plan), read_pyav(path, plan)
    assert a.shape == b.shape == (2, 4, 32, 32, 3) and a.dtype == torch.uint8
    assert (a.int() - b.int()).abs().max() <= 1  # same ffmpeg YUV->RGB conversion, +-1 at most
    error = (a.float() - torch.from_numpy(source)[plan(0)].float()).abs().mean()
    assert error < 4.0, f"decoded frames far from the encoded ones (mean abs error {error:.1f} of 255)"


def write_bad_files(folder):
    folder.mkdir(parents=True)
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    write_mp4(folder / "good.mp4", moving_square())
    data = (folder / "good.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 3])
    import av

    with av.open(str(folder / "audio_only.mkv"), mode="w") as out:  # a file without a video stream
        stream = out.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            out.mux(packet)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_bad_files_are_skipped_with_a_count_or_raise(tmp_path, backend):
    root = tmp_path / "videos"
    write_bad_files(root / "a")
    (root / "b").mkdir()
    write_mp4(root / "b" / "ok.mp4", moving_square())
    common = dict(root=str(root), backend=backend, num_frames=4, sampling_rate=2, image_size=16, batch_size=2,
                  val_fraction=0.0)
    dm = VideoDataModule(**common, on_error="skip")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dm.setup()
    assert dm.skips.count == 4 and len(dm.train_set) == 2
    assert sum("skipping" in str(w.message) for w in caught if w.category is SkippedFileWarning) == 4
    assert sorted(p.split("/")[-1] for p, _ in dm.skips.skipped) == ["audio_only.mkv", "empty.mp4", "garbage.mp4",
                                                                     "truncated.mp4"]
    with pytest.raises(LoadError, match="failed to load"):
        VideoDataModule(**common, on_error="raise").setup()
    only_bad = tmp_path / "bad"
    write_bad_files(only_bad / "x")
    (only_bad / "x" / "good.mp4").unlink()
    with pytest.raises(RuntimeError, match="all 4 files .* failed to load"):
        VideoDataModule(**{**common, "root": str(only_bad)}, on_error="skip").setup()


def test_short_videos_loop_pad_or_skip(tmp_path):
    index = partial(clip_indices, num_frames=4, sampling_rate=2, clips=1, random=False, path="x")
    assert index(3, short="loop").tolist() == [[0, 2, 1, 0]]
    assert index(3, short="pad").tolist() == [[0, 2, 2, 2]]
    with pytest.raises(LoadError, match="shorter than one clip of 7"):
        index(3, short="skip")
    assert index(20, short="skip").tolist() == [[6, 8, 10, 12]]  # centred: (20 - 7) // 2 = 6
    root = tmp_path / "v"
    (root / "c").mkdir(parents=True)
    write_mp4(root / "c" / "short.mp4", moving_square(frames=3))
    write_mp4(root / "c" / "long.mp4", moving_square(frames=16))
    common = dict(root=str(root), num_frames=8, sampling_rate=2, image_size=16, batch_size=1, val_fraction=0.0)
    for policy in ("loop", "pad"):
        dm = VideoDataModule(**common, short_video=policy)
        dm.setup()
        clips = [dm.train_eval_set[i]["video"] for i in range(2)]
        assert all(c.shape == (1, 3, 8, 16, 16) for c in clips) and dm.skips.count == 0
    dm = VideoDataModule(**common, short_video="skip")
    dm.setup()
    with pytest.warns(SkippedFileWarning, match="shorter than one clip"):
        items = [dm.train_eval_set[i]["video"] for i in range(2)]
    assert dm.skips.count == 1 and torch.equal(items[0], items[1])  # the short one replaced by the long one


def test_repeat_decodes_once_and_yields_k_different_clips(tmp_path, monkeypatch):
    path = tmp_path / "v.mp4"
    write_mp4(path, moving_square(frames=40))
    calls = []
    reader = ClipReader(backend="pyav", num_frames=4, sampling_rate=2, image_size=(16, 16), short_side=(16, 24),
                        mean=[0.5] * 3, std=[0.5] * 3, hflip=False, short="loop")
    original = reader.read
    reader.read = lambda p, plan: calls.append(1) or original(p, plan)
    torch.manual_seed(0)
    clips = reader(path, clips=4, train=True)  # (K, C, T, H, W)
    assert clips.shape == (4, 3, 4, 16, 16) and len(calls) == 1
    assert not torch.equal(clips[0], clips[1])
    batch = collate_clips([{"video": clips, "label": torch.zeros(4, dtype=torch.int64)}] * 2)
    assert batch["video"].shape == (8, 3, 4, 16, 16) and batch["label"].shape == (8,)
    with pytest.raises(ValueError, match="multiple of data.repeat=4"):
        VideoDataModule(root=str(tmp_path), batch_size=6, repeat=4)


def test_repeat_batches_count_clips_and_replay_with_the_seed(tmp_path):
    dm = VideoDataModule(demo_dir=str(tmp_path / "demo"), demo_label="direction", demo_videos_per_class=3,
                         demo_frames=12, demo_size=32,
                         num_frames=4, sampling_rate=2, image_size=16, short_side=[16, 24], repeat=2, batch_size=4,
                         val_fraction=0.2)
    batches = list(dm.train_dataloader())
    assert all(b["video"].shape == (4, 3, 4, 16, 16) for b in batches)
    assert all(torch.equal(b["label"][0::2], b["label"][1::2]) for b in batches)  # 2 clips per video
    again = list(dm.train_dataloader())
    assert all(torch.equal(x["video"], y["video"]) for x, y in zip(batches, again))
    assert dm.classes == ["moving_down", "moving_left", "moving_right", "moving_up"] and dm.has_labels


def test_list_files_space_or_comma_separated(tmp_path):
    (tmp_path / "k400.txt").write_text("a/x.mp4 3\nb/y.mp4 0\n")
    paths, labels, classes = read_video_list(tmp_path / "k400.txt", video_dir="/data/k400")
    assert [str(p) for p in paths] == ["/data/k400/a/x.mp4", "/data/k400/b/y.mp4"] and labels == [3, 0]
    assert classes == ["0", "1", "2", "3"]
    (tmp_path / "l.csv").write_text("path,label\nx.mp4,cat\ny.mp4,dog\nz.mp4,cat\n")
    paths, labels, classes = read_video_list(tmp_path / "l.csv", video_dir=None)
    assert paths[0] == tmp_path / "x.mp4" and labels == [0, 1, 0] and classes == ["cat", "dog"]


def test_demo_bounce_keeps_the_whole_digit_in_view_and_wrap_cuts_it():
    digit = np.zeros((28, 28), np.float32)
    digit[2:26, 2:26] = 255.0  # a solid square: its total brightness is constant while it is whole in view
    colour = np.ones(3, np.float32)
    kwargs = dict(frames=40, size=32, velocity=(1.7, -1.3), start=(5, 9), colour=colour, digit_size=24)
    bounce = demo_frames(digit, motion="bounce", **kwargs)[..., 0].astype(np.float64)  # (T, 32, 32)
    mass = bounce.sum(axis=(1, 2))
    assert np.allclose(mass, mass[0], rtol=1e-6) and mass[0] > 0
    assert not np.array_equal(bounce[0], bounce[10])  # it does move
    wrap = demo_frames(digit, motion="wrap", **kwargs)[..., 0].astype(np.float64)
    # wrapping keeps the mass too but splits the square across the borders at some time step
    split = [bool(w[:, 0].any() and w[:, -1].any()) for w in wrap]
    assert any(split) and not any(bool(b[:, 0].any() and b[:, -1].any()) for b in bounce)
    with pytest.raises(ValueError, match="demo_digit_size"):
        demo_frames(digit, motion="bounce", **{**kwargs, "digit_size": 40})
    with pytest.raises(ValueError, match="demo_digit_size=40 must be at most data.demo_size=32"):
        VideoDataModule(demo_size=32, demo_digit_size=40)
