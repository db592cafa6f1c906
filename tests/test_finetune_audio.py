"""Audio fine-tuning: AudioSet-style multi-label CSVs, SpecAugment in training only, Audio-MAE's time/frequency token
dropping, the AS-2M / ESC-50 recipes, and the pretrain -> finetune chain on the demo sounds."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from datamodules.audio.datamodule import AudioDataModule
from mae.core.tokens import Tokens
from mae.finetune.mixup import BatchMixup
from mae.finetune.tasks import MultiLabel
from mae.modalities.audio.masking import TimeFreqTokenDrop
from mae.modalities.audio.tokenizer import SpectrogramTokenizer
from tests.conftest import compose_cfg

SR = 16000
SMALL = {"frames": 32, "mel_bins": 16, "mean": 0.0, "std": 1.0, "batch_size": 4}


def noise_clip(path, seed: int, seconds: float = 0.5) -> None:
    sf.write(path, np.random.default_rng(seed).standard_normal(int(seconds * SR)).astype(np.float32) * 0.1, SR)


@pytest.fixture(scope="module")
def multilabel_lists(tmp_path_factory):
    """6 train + 2 val noise clips; AudioSet-style lists with comma-separated mids, the class file in index order."""
    root = tmp_path_factory.mktemp("audioset")
    (root / "clips").mkdir()
    for i in range(8):
        noise_clip(root / "clips" / f"{i}.wav", i)
    (root / "class_labels_indices.csv").write_text(
        'index,mid,display_name\n0,/m/dog,"Dog"\n2,/m/cat,"Cat"\n1,/m/bird,"Bird, songbird"\n')
    (root / "train.csv").write_text(
        'path,labels\nclips/0.wav,"/m/cat,/m/dog"\nclips/1.wav,/m/bird\nclips/2.wav,"/m/cat, /m/bird"\n'
        'clips/3.wav,\nclips/4.wav,/m/dog\nclips/5.wav,"/m/cat"\n')
    (root / "val.csv").write_text('path,labels\nclips/6.wav,"/m/bird,/m/cat"\nclips/7.wav,/m/dog\n')
    return root


def multilabel_module(root, **options) -> AudioDataModule:
    return AudioDataModule(**{"list": str(root / "train.csv"), "val_list": str(root / "val.csv"),
                              "classes": str(root / "class_labels_indices.csv"), **SMALL, **options})


# -------------------------------------------------------------------------------------- multi-label
def test_multilabel_csv_gives_multi_hot_labels_and_the_first_positive(multilabel_lists):
    dm = multilabel_module(multilabel_lists)
    assert dm.classes == ["/m/dog", "/m/bird", "/m/cat"] and dm.multi_label  # the mids in `index` order
    assert dm.train_set.sample_labels() == [0, 1, 1, -1, 0, 2]  # lowest positive index, -1 without a class
    train = next(iter(dm.eval_dataloaders()[0]))
    assert train["labels"].dtype == torch.float32 and train["labels"].tolist() == [
        [1, 0, 1], [0, 1, 0], [0, 1, 1], [0, 0, 0]]
    assert train["label"].tolist() == [0, 1, 1, -1] and train["fbank"].shape == (4, 32, 16)
    val = next(iter(dm.val_dataloader()))  # data.val_list is the whole val split
    assert val["labels"].tolist() == [[0, 1, 1], [1, 0, 0]] and val["label"].tolist() == [1, 0]
    inferred = multilabel_module(multilabel_lists, classes=None)  # the sorted names of both lists
    assert inferred.classes == ["/m/bird", "/m/cat", "/m/dog"]


def test_multilabel_csv_errors_name_the_row(multilabel_lists, tmp_path):
    (tmp_path / "bad.csv").write_text('path,labels\nclips/0.wav,/m/dog\nclips/1.wav,"/m/dog,/m/cow"\n')
    with pytest.raises(ValueError, match=r"bad\.csv' line 3: unknown class name\(s\) \['/m/cow'\] .*data\.classes="):
        AudioDataModule(list=str(tmp_path / "bad.csv"), audio_dir=str(multilabel_lists),
                        classes=str(multilabel_lists / "class_labels_indices.csv"), **SMALL).setup()
    (tmp_path / "unquoted.csv").write_text("path,labels\nclips/0.wav,/m/dog,/m/cat\n")
    with pytest.raises(ValueError, match=r"line 2: more cells than the header's 2 columns: quote the labels cell"):
        AudioDataModule(list=str(tmp_path / "unquoted.csv"), audio_dir=str(multilabel_lists), **SMALL).setup()
    (tmp_path / "semi.csv").write_text("path,labels\nclips/0.wav,/m/dog;/m/cat\nclips/1.wav,/m/cat\n")
    semi = AudioDataModule(list=str(tmp_path / "semi.csv"), audio_dir=str(multilabel_lists), label_delimiter=";",
                           val_fraction=0.0, **SMALL)
    assert semi.classes == ["/m/cat", "/m/dog"] and semi.train_set.sample_labels() == [0, 0]
    with pytest.raises(ValueError, match=r"data\.classes is only read with a multi-label CSV in data\.list"):
        AudioDataModule(classes="/x/classes.csv")
    with pytest.raises(ValueError, match=r"data\.val_fold=1 and data\.val_list both choose the val split"):
        AudioDataModule(list="/x.csv", val_list="/y.csv", val_fold=1)


def test_multilabel_task_and_mixup_take_the_batches(multilabel_lists):
    batch = next(iter(multilabel_module(multilabel_lists).eval_dataloaders()[0]))
    task = MultiLabel()
    task.setup(num_classes=3)
    logits = torch.tensor([[2.0, -2.0, 1.0], [-1.0, 3.0, -2.0], [-2.0, 1.0, 2.0], [0.0, 0.0, 0.0]])
    target = task.target(batch)
    assert target.shape == (4, 3) and math.isfinite(float(task.loss(logits, target, train=True)))
    task.update(logits, batch)
    assert task.compute()["map"] == pytest.approx(1.0)  # every positive outranks the negatives of its class
    mixed, soft = BatchMixup(mixup_alpha=10.0, cutmix_alpha=0.0, prob=1.0, switch_prob=0.0, mode="elem")(
        batch["fbank"], target, num_classes=3, label_smoothing=0.0, multi_label=True, seed=0)
    assert mixed.shape == batch["fbank"].shape and soft.shape == (4, 3)
    # elem mode: clip i mixed with clip B-1-i at its own lambda; clip 0 (dog, cat) with clip 3 (no class)
    lam0, lam3 = soft[0, 0], 1 - soft[3, 0]
    assert 0.0 < lam0 < 1.0 and torch.allclose(soft[0], lam0 * target[0])
    assert 0.0 < lam3 < 1.0 and torch.allclose(soft[3], (1 - lam3) * target[0])


def test_esc50_category_names_are_the_classes(tmp_path):
    rows = ["filename,fold,target,category,esc10"]
    for i in range(6):
        noise_clip(tmp_path / f"{i}.wav", i)
        rows.append(f"{i}.wav,{1 + i % 3},{i % 2},{('dog', 'rooster')[i % 2]},False")
    (tmp_path / "esc50.csv").write_text("\n".join(rows) + "\n")
    dm = AudioDataModule(list=str(tmp_path / "esc50.csv"), val_fold=3, **SMALL)
    assert dm.classes == ["dog", "rooster"] and not dm.multi_label
    assert sorted(dm.val_set.sample_labels()) == [0, 1] and len(dm.train_set) == 4
    assert "labels" not in next(iter(dm.val_dataloader()))


# ------------------------------------------------------------------------------------- SpecAugment
def whole_lines(x: torch.Tensor) -> tuple[int, int]:
    """(time frames, freq bins) set to exactly 0 in (T, F) x, after checking that the zeros are whole lines."""
    zero = x == 0
    rows, cols = zero.all(dim=1), zero.all(dim=0)  # (T,), (F,)
    assert torch.equal(zero, rows[:, None] | cols[None, :]), "zeros that are not whole time frames / freq bins"
    return int(rows.sum()), int(cols.sum())


def test_spec_augment_masks_train_clips_only(tmp_path):
    for i in range(6):
        noise_clip(tmp_path / f"{i}.wav", i, seconds=1.0)  # 98 frames: every 32-frame crop is real audio
    (tmp_path / "list.csv").write_text("path,labels\n" + "".join(f"{i}.wav,c{i % 2}\n" for i in range(6)))
    common = {"list": str(tmp_path / "list.csv"), "val_fraction": 0.5, **SMALL}
    plain, masked = AudioDataModule(**common), AudioDataModule(**common, freqm=6, timem=12)
    plain.setup()
    masked.setup()
    bands = [whole_lines(masked.train_set[(seed, 0)]["fbank"]) for seed in range(20)]  # seeded draws, as in training
    assert all(t < 12 and f < 6 for t, f in bands) and any(t > 0 for t, _ in bands) and any(f > 0 for _, f in bands)
    assert [whole_lines(plain.train_set[(seed, 0)]["fbank"]) for seed in range(20)] == [(0, 0)] * 20
    assert torch.equal(masked.train_set[(7, 1)]["fbank"], masked.train_set[(7, 1)]["fbank"])  # a function of the seed
    for a, b in zip(plain.val_dataloader(), masked.val_dataloader()):  # eval loaders unchanged
        assert torch.equal(a["fbank"], b["fbank"])
    for a, b in zip(plain.eval_dataloaders()[0], masked.eval_dataloaders()[0]):
        assert torch.equal(a["fbank"], b["fbank"])
    with pytest.raises(ValueError, match=r"data\.freqm=20 must be at most data\.mel_bins=16"):
        AudioDataModule(**common, freqm=20)


# ------------------------------------------------------------------------------------ token dropping
def audiomae_random_masking_2d(x: torch.Tensor, t: int, f: int, mask_t_prob: float, mask_f_prob: float) -> torch.Tensor:
    """facebookresearch/AudioMAE models_vit.py VisionTransformer.random_masking_2d (T, F as arguments), verbatim."""
    n, _, d = x.shape
    x = x.reshape(n, t, f, d)
    len_keep_t = int(t * (1 - mask_t_prob))
    noise = torch.rand(n, t, device=x.device)
    ids_keep = torch.argsort(noise, dim=1)[:, :len_keep_t]
    x = torch.gather(x, dim=1, index=ids_keep.unsqueeze(-1).unsqueeze(-1).repeat(1, 1, f, d))
    x = x.permute(0, 2, 1, 3)
    len_keep_f = int(f * (1 - mask_f_prob))
    noise = torch.rand(n, f, device=x.device)
    ids_keep = torch.argsort(noise, dim=1)[:, :len_keep_f]
    x_masked = torch.gather(x, dim=1, index=ids_keep.unsqueeze(-1).unsqueeze(-1).repeat(1, 1, len_keep_t, d))
    return x_masked.permute(0, 2, 1, 3).reshape(n, len_keep_f * len_keep_t, d)


def spectrogram_tokens(batch: int, frames: int = 64, mel_bins: int = 32) -> Tokens:
    tokenizer = SpectrogramTokenizer(frames=frames, mel_bins=mel_bins, patch_size=8)
    return tokenizer({"fbank": torch.randn(batch, frames, mel_bins)})


def test_token_drop_keeps_whole_time_columns_and_freq_rows_with_one_k():
    tokens = spectrogram_tokens(5)  # grid (8, 4)
    drop = TimeFreqTokenDrop(mask_t_prob=0.2, mask_f_prob=0.5)
    mask = drop(tokens, torch.Generator().manual_seed(0))
    assert mask.keep.shape == (5, 6 * 2) and mask.masked.shape == (5, 32 - 12)  # int(8 x 0.8) x int(4 x 0.5)
    order = torch.cat([mask.keep, mask.masked], dim=1)
    assert torch.equal(torch.gather(order, 1, mask.restore), torch.arange(32).expand(5, 32))
    for keep in mask.keep:
        cols, rows = {int(k) // 4 for k in keep}, {int(k) % 4 for k in keep}
        assert len(cols) == 6 and len(rows) == 2 and {c * 4 + r for c in cols for r in rows} == set(keep.tolist())
    assert len({tuple(sorted(k.tolist())) for k in mask.keep}) > 1  # each sample draws its own lines
    again = drop(tokens, torch.Generator().manual_seed(0))
    assert torch.equal(again.keep, mask.keep)


def test_token_drop_replicates_audio_maes_random_masking_2d():
    tokens = spectrogram_tokens(3)
    ids = torch.arange(32, dtype=torch.float32).expand(3, 32)[..., None]  # (B, N, 1): each token its index
    torch.manual_seed(5)
    reference = audiomae_random_masking_2d(ids, 8, 4, 0.2, 0.2)[..., 0].long()  # (B, K) in Audio-MAE's order
    torch.manual_seed(5)
    ours = TimeFreqTokenDrop(mask_t_prob=0.2, mask_f_prob=0.2)(tokens, None).keep  # the same draws
    assert torch.equal(ours, reference)


def test_token_drop_refuses_other_grids_and_bad_probabilities():
    with pytest.raises(ValueError, match=r"2-D \(time, freq\) token grid"):
        TimeFreqTokenDrop()(Tokens(values=torch.zeros(2, 6, 3), pos=torch.zeros(1, 6, 1), grid=(6,)))
    with pytest.raises(ValueError, match=r"mask_t_prob must be a number in \[0, 1\)"):
        TimeFreqTokenDrop(mask_t_prob=1.0)
    with pytest.raises(ValueError, match="keeps 0 of 8 time columns"):
        TimeFreqTokenDrop(mask_t_prob=0.9)(spectrogram_tokens(1))


# ------------------------------------------------------------------------------------------ configs
def staged(overrides: list[str], tmp_path):
    from mae.finetune.runner import stage_config

    cfg = compose_cfg(overrides, tmp_path)
    stage_config(cfg)
    return cfg


def test_the_demo_protocol_turns_spec_augment_on_for_fine_tuning_only(tmp_path):
    assert compose_cfg(["modality=audio"], tmp_path).data.get("freqm", 0) == 0  # pre-training: off
    cfg = staged(["modality=audio", "stage=finetune", "pretrained=/x"], tmp_path)
    assert (cfg.data.freqm, cfg.data.timem) == (48, 48) and cfg.finetune.task.label_smoothing == 0.1
    assert cfg.finetune.token_drop is None and cfg.finetune.mixup is None and cfg.optim.blr == 1e-3


def test_the_as2m_recipe_has_audio_maes_values(tmp_path):
    cfg = staged(["experiment=audiomae_vit_base_as2m_finetune", "pretrained=/x", "data.list=/as/train.csv",
                  "data.classes=/as/class_labels_indices.csv"], tmp_path)
    assert cfg.objective == "finetune/map" and isinstance(instantiate(cfg.finetune.task), MultiLabel)
    drop = instantiate(cfg.finetune.token_drop)
    assert drop.kept((64, 8)) == (51, 6)  # 1024 frames x 128 bins in 16 x 16 patches
    assert (cfg.data.freqm, cfg.data.timem, cfg.data.frames, cfg.data.batch_size) == (48, 192, 1024, 4)
    assert cfg.optim.blr == 2e-4 and cfg.optim.weight_decay == 5e-4 and cfg.optim.warmup_epochs == 10
    assert cfg.trainer.max_epochs == 100 and cfg.trainer.limit_train_batches == 781
    assert cfg.optim.effective_batch_size == 4 * cfg.trainer.devices * cfg.trainer.num_nodes == 256
    mixup = instantiate(cfg.finetune.mixup)
    assert (mixup.mixup_alpha, mixup.cutmix_alpha, mixup.prob, mixup.mode) == (10.0, 0.0, 0.5, "elem")
    options = OmegaConf.to_container(cfg.data, resolve=True)
    options.pop("_target_")
    AudioDataModule(**options)  # the options check passes; nothing is read yet


def test_the_esc50_recipe_has_audio_maes_values(tmp_path):
    cfg = staged(["experiment=audiomae_vit_base_esc50_finetune", "pretrained=/x", "data.list=/esc/meta/esc50.csv",
                  "data.audio_dir=/esc/audio", "data.val_fold=4"], tmp_path)
    assert cfg.objective == "finetune/top1" and cfg.finetune.task.label_smoothing == 0.1
    assert (cfg.data.freqm, cfg.data.timem, cfg.data.frames, cfg.data.val_fold) == (96, 24, 512, 4)
    assert (cfg.data.mean, cfg.data.std) == (-6.6268077, 5.358466) and cfg.finetune.mixup is None
    assert cfg.optim.blr == 1e-3 and cfg.trainer.max_epochs == 50 and cfg.finetune.token_drop is None
    options = OmegaConf.to_container(cfg.data, resolve=True)
    options.pop("_target_")
    AudioDataModule(**options)


# --------------------------------------------------------------------------------------- end to end
DEMO = ["data.demo_clips_per_class=8", "data.demo_seconds=1.5", "data.frames=64", "data.mel_bins=32",
        "tokenizer.patch_size=8", "data.batch_size=8"]
SMALL_MODEL = ["modality=audio", "logger=csv", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1",
               "model.encoder.dim=32", "model.encoder.depth=1", "model.encoder.num_heads=2",
               "model.decoder.dim=32", "model.decoder.depth=1", "model.decoder.num_heads=2"]
TOKEN_DROP = ("finetune.token_drop={_target_:mae.modalities.audio.masking.TimeFreqTokenDrop,mask_t_prob:0.2,"
              "mask_f_prob:0.2}")


@pytest.fixture(scope="module")
def pretrained_audio(tmp_path_factory):
    """A 1-epoch pre-training run on the demo sounds (its run directory; the demo files under demo/)."""
    from mae.train.runner import run

    root = tmp_path_factory.mktemp("audio_ft")
    pre = root / "pre"
    cfg = compose_cfg([*SMALL_MODEL, *DEMO, f"data.demo_dir={root / 'demo'}", "trainer.max_epochs=1",
                       "eval.enabled=false", "objective=val/loss", "callbacks.reconstruction=null"], pre)
    run(cfg)
    (pre / ".hydra").mkdir()
    OmegaConf.save(cfg, pre / ".hydra" / "config.yaml")  # what Hydra writes beside a CLI run
    return pre


@pytest.mark.e2e
def test_pretrain_then_finetune_with_spec_augment_token_drop_and_scratch_baseline(pretrained_audio, tmp_path,
                                                                                 monkeypatch):
    from mae.train.runner import run

    drops = []
    original = TimeFreqTokenDrop.__call__
    monkeypatch.setattr(TimeFreqTokenDrop, "__call__", lambda self, *a, **k: drops.append(1) or original(self, *a, **k))
    ft = tmp_path / "ft"
    metrics = run(compose_cfg([*SMALL_MODEL, *DEMO, f"data.demo_dir={pretrained_audio.parent / 'demo'}",
                               "stage=finetune", f"pretrained={pretrained_audio}", "finetune.epochs=2",
                               "finetune.scratch_baseline=true", "finetune.data.freqm=8", "finetune.data.timem=16",
                               TOKEN_DROP], ft))
    saved = json.loads((ft / "metrics.json").read_text())
    for key in ("finetune/top1", "finetune/top1_scratch", "finetune/loss", "finetune/loss_scratch"):
        assert key in saved and math.isfinite(saved[key]), key
    assert 0.0 <= saved["finetune/top1"] <= 1.0 and metrics["finetune/train_samples"] == 32  # 40 clips, 8 held out
    assert len(drops) == saved["finetune/steps"] + saved["finetune/steps_scratch"]  # every training step, no eval one


@pytest.mark.e2e
def test_multilabel_csv_fine_tuning_reports_map(pretrained_audio, tmp_path):
    """AudioSet's protocol on the demo files: two classes a clip (its sound, odd / even), BCE + mAP, mixup."""
    from mae.train.runner import run

    files = sorted(p for p in (pretrained_audio.parent / "demo").rglob("*") if p.suffix in (".flac", ".wav"))
    rows = [f'{p},"{p.parent.name},{("even", "odd")[i % 2]}"' for i, p in enumerate(files)]
    (tmp_path / "clips.csv").write_text("path,labels\n" + "\n".join(rows) + "\n")
    run(compose_cfg([*SMALL_MODEL, *DEMO[-4:], f"data.list={tmp_path / 'clips.csv'}", "stage=finetune",
                     f"pretrained={pretrained_audio}", "finetune.epochs=1", "objective=finetune/map",
                     "~finetune.task.label_smoothing", "finetune.task._target_=mae.finetune.tasks.MultiLabel",
                     "finetune.data.freqm=8", "finetune.data.timem=16",
                     "finetune.mixup={_target_:mae.finetune.mixup.BatchMixup,mixup_alpha:10.0,cutmix_alpha:0.0,"
                     "prob:0.5,switch_prob:0.0,mode:elem}"], tmp_path / "ft"))
    saved = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    assert 0.0 < saved["finetune/map"] <= 1.0 and saved["finetune/map_classes"] == 7  # 5 sounds + odd + even
