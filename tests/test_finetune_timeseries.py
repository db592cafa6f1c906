"""Time-series fine-tuning: PatchTST's flatten head with RevIN de-normalisation, the per-horizon forecast metrics,
pooled_dim against merge_pooled, the data the stage reads (futures, the test split, label fractions), the recipe,
and the pretrain -> finetune chains (forecasting and UCR classification) with their scratch baselines."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from datamodules.timeseries.datamodule import TimeSeriesDataModule
from mae.core.encoder import Encoder
from mae.core.pos_embed import SinCosPosEmbed
from mae.finetune.labels import apply_label_fraction
from mae.modalities.timeseries.finetune import FlattenHead, Forecast
from mae.modalities.timeseries.tokenizer import PatchTSTTokenizer, revin_stats
from mae.train.config_check import validate
from mae.train.runner import run
from tests.conftest import compose_cfg, tiny_fit
from tests.test_timeseries import forecast_dm, sines, write_csv


def tiny_encoder(cls_token: bool = False) -> Encoder:
    torch.manual_seed(0)
    return Encoder(token_dim=12, dim=16, depth=1, num_heads=2, pos_embed=SinCosPosEmbed, cls_token=cls_token).eval()


def head_output(head: FlattenHead, tok: PatchTSTTokenizer, enc: Encoder, series: torch.Tensor) -> torch.Tensor:
    batch = {"series": series}
    return head(encoder=enc, tokenizer=tok, tokens=tok(batch), keep=None, batch=batch)


# ---------------------------------------------------------------------------------------------- the flatten head
def test_flatten_head_shapes_and_revin_denormalisation_by_hand():
    tok, enc = PatchTSTTokenizer(patch_len=12, channels=3), tiny_encoder(cls_token=True)  # the cls token is skipped
    head = FlattenHead(in_dim=3 * 16, out_dim=24, dim=16, context=50, patch_len=12, dropout=0.2).eval()
    assert head.linear.in_features == 4 * 16 and head.linear.out_features == 24  # 50 steps -> 4 patches (2 dropped)
    x = torch.randn(2, 50, 3) * torch.tensor([1.0, 10.0, 0.1]) + torch.tensor([5.0, -3.0, 100.0])
    x[1, :, 2] = 7.0  # a constant channel
    with torch.no_grad():
        head.linear.weight.zero_()
        head.linear.bias.zero_()
        out = head_output(head, tok, enc, x)  # a zero head forecasts 0 in RevIN units = each window's mean
        assert out.shape == (2, 24, 3)
        mean, std = revin_stats(x, None)  # (B, 1, C)
        torch.testing.assert_close(out, mean.expand(-1, 24, -1))
        assert torch.all(out[1, :, 2] == 7.0)  # the constant channel forecasts its constant
        head.linear.bias.fill_(1.0)  # +1 in RevIN units = one (window, channel) standard deviation above its mean
        torch.testing.assert_close(head_output(head, tok, enc, x), (mean + std).expand(-1, 24, -1))
        # channel independence: permuting the input channels permutes the forecasts
        head.linear.weight.normal_(0, 0.05)
        perm = torch.tensor([2, 0, 1])
        a = head_output(head, tok, enc, x)
        b = head_output(head, tok, enc, x[:, :, perm])
        torch.testing.assert_close(b, a[:, :, perm], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="token_drop"):
        head(encoder=enc, tokenizer=tok, tokens=tok({"series": x}), keep=torch.zeros(6, 2, dtype=torch.long),
             batch={"series": x})
    with pytest.raises(ValueError, match="built for 4 patches"):
        head_output(head, tok, enc, torch.randn(2, 60, 3))
    with pytest.raises(ValueError, match="tokenizer.channels=3"):
        head_output(head, tok, enc, torch.randn(2, 50, 2))
    with pytest.raises(ValueError, match="context is null"):
        FlattenHead(in_dim=16, out_dim=4, dim=16, context=None, patch_len=12)


# --------------------------------------------------------------------------------------------- the forecast task
def test_per_horizon_metrics_and_loss_by_hand():
    task = Forecast(horizons=[2, 1])
    task.setup(num_classes=0)
    assert task.out_dim == 2 and task.horizons == [1, 2] and task.monitor_mode == "min" and not task.uses_mixup
    truth = torch.tensor([[1.0, 2.0], [3.0, float("nan")]]).unsqueeze(-1)  # (B=2, H=2, C=1): window 1 ends early
    batch = {"series": torch.zeros(2, 24, 1), "future": truth}
    pred = torch.zeros(2, 2, 1)
    task.update(pred, batch)
    got = task.compute()
    # h1: both windows, errors 1 and 3; h2: window 0 only, errors 1 and 2
    expected = {"mse_h1": (1 + 9) / 2, "mae_h1": (1 + 3) / 2, "mse_h2": (1 + 4) / 2, "mae_h2": (1 + 2) / 2}
    expected |= {"mse": (expected["mse_h1"] + expected["mse_h2"]) / 2, "mae": (expected["mae_h1"] + expected["mae_h2"]) / 2}
    assert got == pytest.approx(expected)
    assert set(task.metric_names) == set(expected)
    # the loss: MSE over the windows whose whole future is known (window 0), as PatchTST's complete windows
    assert float(task.loss(pred, task.target(batch), train=True)) == pytest.approx(2.5)
    incomplete = torch.full((1, 2, 1), float("nan"))
    out = torch.ones(1, 2, 1, requires_grad=True)
    loss = task.loss(out, incomplete, train=True)
    assert float(loss.detach()) == 0.0 and loss.requires_grad  # a batch without a complete future learns nothing
    task.reset()
    task.update(pred[1:], {"series": batch["series"][1:], "future": truth[1:]})
    got = task.compute()
    assert got["mse_h1"] == 9.0 and math.isnan(got["mse_h2"])  # no window complete for h2: not a number
    one = Forecast(horizons=[2])
    one.update(pred, batch)
    assert one.compute() == pytest.approx({"mse_h2": 2.5, "mae_h2": 1.5, "mse": 2.5, "mae": 1.5})
    with pytest.raises(ValueError, match="classes"):
        task.setup(num_classes=6)
    with pytest.raises(ValueError, match=r"batch\['future'\]"):
        task.target({"series": torch.zeros(2, 24, 1)})


# ------------------------------------------------------------------------------------ pooled_dim vs merge_pooled
@pytest.mark.parametrize("merge, channels", [("concat", 3), ("mean", 3), ("mean", None), ("concat", 1)])
def test_pooled_dim_is_the_width_of_merge_pooled(merge, channels):
    tok, enc = PatchTSTTokenizer(patch_len=12, merge=merge, channels=channels), tiny_encoder()
    c = channels or 4
    batch = {"series": torch.randn(2, 36, c)}
    with torch.no_grad():
        merged = tok.merge_pooled(enc.pool(tok(batch)), batch)
    assert merged.shape == (2, tok.pooled_dim(enc.pool_dim))


def test_pooled_dim_of_a_concat_needs_the_channel_count():
    with pytest.raises(ValueError, match=r"tokenizer\.channels is not set"):
        PatchTSTTokenizer(patch_len=12).pooled_dim(16)
    with pytest.raises(ValueError, match="tokenizer.channels must be"):
        PatchTSTTokenizer(patch_len=12, channels=0)


# ----------------------------------------------------------------------------------------------------- the data
def test_forecast_windows_carry_futures_and_the_test_split_is_served(tmp_path):
    dm = forecast_dm(write_csv(tmp_path / "toy.csv", sines(400, 2)), horizons=[12, 24])
    dm.setup()
    n_train = 280 - 48 + 1  # ratios 0.7 of 400 rows: every start whose context fits, as in pre-training
    assert len(dm.train_set) == n_train
    first, last = dm.train_set[0], dm.train_set[n_train - 1]
    assert first["future"].shape == (24, 2) and torch.isfinite(first["future"]).all()
    assert torch.isnan(last["future"]).all()  # no row after the split: the loss skips it
    test = next(iter(dm.test_dataloader()))
    assert test["series"].shape == (8, 48, 2) and test["future"].shape == (8, 24, 2)
    rows = dm.split_rows["test"]
    assert len(dm.test_dataloader().dataset) == rows[1] - rows[0] - 48 - 12 + 1  # complete for the shortest horizon
    assert dm.inferred_options() == {"channels": 2}  # data.context given; the channel count is read from the data


def test_ucr_series_list_their_labels_for_label_fractions():
    dm = TimeSeriesDataModule(name="GunPoint", batch_size=8)
    labels = dm.train_labels()
    assert len(labels) == 50 and sorted(set(labels)) == [0, 1]
    assert dm.val_set.sample_labels() == [int(b) for b in dm.val_set.labels]
    assert dm.inferred_options() == {"context": 156, "channels": 1}  # 150 steps rounded up to patches of 12
    note = apply_label_fraction(dm, fraction=0.2, seed=0)
    assert dm.num_train == 10 and "10 of 50" in note
    assert sorted(set(dm.train_labels())) == [0, 1]
    assert dm.test_dataloader().dataset is dm.val_set  # the official TEST split


# --------------------------------------------------------------------------------------------------- the recipe
def test_patchtst_finetune_recipe_composes(tmp_path):
    cfg = compose_cfg(["experiment=patchtst_etth1_finetune", "data.root=/data/ETTh1.csv", "pretrained=/runs/pre"],
                      tmp_path)
    validate(cfg)
    assert cfg.stage == "finetune" and cfg.objective == "finetune/mse" and list(cfg.data.horizons) == [96]
    ft = cfg.finetune
    assert (ft.epochs, ft.freeze_epochs) == (30, 10) and ft.head.dropout == 0.2 and ft.optim.lr == 1e-4
    assert ft.optim.optimizer._target_ == "torch.optim.Adam" and not ft.lars and ft.mixup is None
    head = instantiate(ft.head)(in_dim=7 * 128, out_dim=96)
    assert head.linear.in_features == 42 * 128  # 512 // 12 patches x d_model 128
    task = instantiate(ft.task)
    assert task.out_dim == 96 and type(task).__name__ == "Forecast"
    classify = compose_cfg(["modality=timeseries", "stage=finetune", "pretrained=/runs/pre"], tmp_path)
    assert classify.finetune.task._target_.endswith("Classification") and classify.finetune.head.dropout == 0.2


# ---------------------------------------------------------------------------------------------- end to end
TS_PRE = tiny_fit("timeseries", train_batches=2, val_batches=1)
FT = ["logger=csv", "trainer.enable_progress_bar=false", "finetune.epochs=2", "trainer.log_every_n_steps=1",
      "finetune.optim.warmup_epochs=1", "finetune.scratch_baseline=true"]


def pretrain(overrides: list[str], run_dir: Path) -> Path:
    cfg = compose_cfg([*TS_PRE, *overrides, "eval.enabled=false", "objective=val/loss"], run_dir)
    run(cfg)
    (run_dir / ".hydra").mkdir()
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")  # what Hydra writes beside a CLI run
    return run_dir


@pytest.mark.e2e
def test_forecast_pretrain_then_finetune_with_scratch_baseline(tmp_path):
    csv = write_csv(tmp_path / "toy.csv", sines(400, 3))
    data = ["modality=timeseries_forecast", f"data.root={csv}", "data.context=48", "data.horizons=[12,24]",
            "data.batch_size=16"]
    pre = pretrain([*data, "++tokenizer.channels=3"], tmp_path / "pre")
    run_dir = tmp_path / "ft"
    run(compose_cfg([*data, *FT, "stage=finetune", f"pretrained={pre}", "objective=finetune/mse_h24",
                     "finetune.freeze_epochs=1", "trainer.limit_train_batches=3", "trainer.limit_val_batches=2"],
                    run_dir))  # PatchTST's two steps: one head-only epoch, then the whole network
    saved = json.loads((run_dir / "metrics.json").read_text())
    for h in (12, 24):
        for kind in ("mse", "mae"):
            for suffix in ("", "_scratch"):
                value = saved[f"finetune/{kind}_h{h}{suffix}"]
                assert math.isfinite(value) and 0 < value < 10, (kind, h, suffix)
    assert saved["finetune/mse"] == pytest.approx((saved["finetune/mse_h12"] + saved["finetune/mse_h24"]) / 2)
    assert saved["finetune/steps"] == 2 * 3
    assert (run_dir / "forecast_h24.png").is_file() and (run_dir / "scratch" / "forecast_h24.png").is_file()
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert state["head.linear.weight"].shape == (24, 4 * 32)  # 48 // 12 patches x the tiny encoder's 32
    start = torch.load(pre / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    key = "encoder.layers.0.self_attn.W_Q.weight"  # model=patchtst (PatchTST's network, the modality's default)
    assert not torch.equal(state[key], start[key])  # the second epoch trained the encoder too


@pytest.mark.e2e
def test_ucr_classification_pretrain_then_finetune_with_scratch_baseline(tmp_path):
    data = ["data.name=BasicMotions", "data.batch_size=8"]  # 4 classes, 6 channels, 100 steps
    pre = pretrain([*data, "++tokenizer.channels=6"], tmp_path / "pre")
    run_dir = tmp_path / "ft"
    metrics = run(compose_cfg(["modality=timeseries", *data, *FT, "stage=finetune", f"pretrained={pre}",
                               "finetune.label_fraction=0.5", "trainer.limit_val_batches=2"], run_dir))
    saved = json.loads((run_dir / "metrics.json").read_text())
    for key in ("finetune/top1", "finetune/top1_scratch", "finetune/loss", "finetune/loss_scratch"):
        assert key in saved and 0.0 <= saved[key] < 10, key
    assert metrics["finetune/train_samples"] == 20 and saved["finetune/steps"] == 2 * (20 // 8)  # half of 40, balanced
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert state["head.linear.weight"].shape == (4, 6 * 32)  # concat of 6 channels x 32
