"""Forecasting fine-tuning (`modality=timeseries_forecast stage=finetune pretrained=RUN`): PatchTST's protocol.

PatchTST_self_supervised/patchtst_finetune.py (yuqinie98/PatchTST) fine-tunes the pre-trained backbone with a
`PredictionHead` (src/models/patchTST.py): every patch latent of a channel, flattened (d_model x num_patch), ->
Dropout(head_dropout) -> Linear -> the horizon, shared by all channels (individual=False); RevIN normalises the
input and `RevInCB(denorm=True)` de-normalises the prediction with the window's own mean / std; the loss is
`torch.nn.MSELoss()` between the de-normalised prediction and the target in the data's StandardScaler units, and
the test scores are `mse` / `mae` (src/metrics.py) in the same units.

    FlattenHead  encoder latents of all N patches (B*C, N, D) -> flatten -> dropout -> Linear(N*D, H) ->
                 (B, H, C) de-normalised with the tokenizer's RevIN statistics.
    Forecast     the Task: target batch["future"] (B, H, C), MSE on the windows whose future is complete,
                 metrics mse_h<H> / mae_h<H> per horizon of data.horizons and their means mse / mae.

One model for all horizons: the head predicts the longest horizon H_max and a horizon h is scored on the first h
steps of each window whose first h future steps exist (so each h is scored on the same test windows as a PatchTST
model trained for h alone). PatchTST trains one model per horizon (--target_points); for its protocol give a single
horizon per run, e.g. a multirun `data.horizons=[96],[192],[336],[720]` (experiment=patchtst_etth1_finetune).
One head keeps a run's cost at one fine-tuning; with several horizons the shorter ones share the head trained on
H_max (a multi-horizon compromise, usually a little worse than a dedicated model at the short horizons).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric

from mae.core.interfaces import MAEEncoder, Tokenizer
from mae.core.tokens import Tokens
from mae.finetune.heads import Head
from mae.finetune.tasks import Task
from mae.modalities.timeseries.forecast import LAST_VALUE_SUFFIX, draw_forecast
from mae.modalities.timeseries.tokenizer import revin_denorm, unfold_channels

FINE_TUNED = "_fine_tuned"  # the picture's legend key of the fine-tuned forecast


class FlattenHead(Head):
    """PatchTST's `PredictionHead` (individual=False): all N patch latents of a channel -> flatten (N*D) ->
    Dropout(dropout) -> Linear(N*D, out_dim = H_max), shared by every channel; the (B, H, C) output is de-normalised
    with the window's RevIN mean / std (the tokenizer's `normalize`), so it is in the data's units.

    in_dim (the pooled width other heads read) is not used: this head sees every patch. dim: the encoder width
    (model.encoder.dim); context // patch_len = N, the patches of a window (data.context, tokenizer.patch_len).
    PatchTST flattens (d_model, num_patch) and we flatten (N, D): the same Linear up to the order of its inputs.
    The Linear keeps PyTorch's default initialisation, as PatchTST's nn.Linear.
    """

    def __init__(self, *, in_dim: int, out_dim: int, dim: int, context: int | None, patch_len: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if context is None:
            raise ValueError("finetune.head.context is null: the flatten head needs the window length "
                             "(data.context; the data decides it when null, set it to a number here)")
        if context < patch_len:
            raise ValueError(f"finetune.head.context={context} is shorter than one patch of {patch_len} steps")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"finetune.head.dropout must be in [0, 1), got {dropout}")
        self.num_patches, self.dim = context // patch_len, dim
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(self.num_patches * dim, out_dim)

    def forward(self, *, encoder: MAEEncoder, tokenizer: Tokenizer, tokens: Tokens, keep: Tensor | None,
                batch: dict) -> Tensor:
        if keep is not None:
            raise ValueError("the flatten head reads every patch: finetune.token_drop must be null for forecasting")
        x = encoder(tokens)[:, encoder.num_prefix :]  # (B*C, N, D), every patch visible
        if tuple(x.shape[1:]) != (self.num_patches, self.dim):
            raise ValueError(f"the flatten head was built for {self.num_patches} patches x {self.dim} "
                             f"(finetune.head.context / patch_len, dim) and the encoder gives {tuple(x.shape[1:])}: "
                             "fine-tune with the data.context the head is built for")
        norm = self.linear(self.dropout(x.flatten(1)))  # (B*C, H) in RevIN units
        _, mean, std, _ = tokenizer.normalize(batch)  # (B, 1, C)
        pred = unfold_channels(norm, mean.shape[-1]).transpose(1, 2)  # (B, C, H) -> (B, H, C)
        return revin_denorm(pred.float(), mean, std)  # (B, H, C) in the data's units


def complete_rows(target: Tensor, horizon: int) -> Tensor:
    """(B,) True where the first `horizon` future steps of every channel are known (not NaN past the split end)."""
    return torch.isfinite(target[:, :horizon]).flatten(1).all(dim=1)


class ForecastErrors(Metric):
    """Sums of squared and absolute errors and their counts per horizon (float64, summed over ranks)."""

    full_state_update = False

    def __init__(self, horizons: Sequence[int]) -> None:
        super().__init__()
        self.horizons = list(horizons)
        for name in ("se", "ae", "count"):
            self.add_state(name, default=torch.zeros(len(self.horizons), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        """pred (B, H_max, C) forecasts, target (B, H_max, C) truth (NaN past the end of the split)."""
        for i, h in enumerate(self.horizons):
            ok = complete_rows(target, h)  # (B,)
            err = (pred[ok, :h] - target[ok, :h]).double()  # (B', h, C)
            self.se[i] += err.pow(2).sum()
            self.ae[i] += err.abs().sum()
            self.count[i] += err.numel()

    def compute(self) -> tuple[Tensor, Tensor]:
        """(mse, mae) per horizon, NaN for a horizon no window was complete for."""
        n = self.count.clamp_min(1)
        empty = self.count == 0
        return self.se.div(n).masked_fill(empty, float("nan")), self.ae.div(n).masked_fill(empty, float("nan"))


class Forecast(Task):
    """Multi-horizon forecasting (module docstring). horizons: data.horizons; out_dim = the longest, the per-channel
    output width of the head. Loss: MSE between the de-normalised forecast and batch["future"] over the windows
    whose whole future is known (PatchTST's windows: seq_len + pred_len inside the split). Metrics: mse_h<H>,
    mae_h<H> per horizon on the windows complete for H, and mse / mae their means over the horizons (the monitor:
    val/mse, lower is better)."""

    name = "forecast"
    monitor = "mse"
    monitor_mode = "min"
    uses_mixup = False

    def __init__(self, *, horizons: Sequence[int]) -> None:
        super().__init__()
        horizons = [int(h) for h in horizons]
        if not horizons or min(horizons) < 1:
            raise ValueError(f"finetune.task.horizons must be horizons >= 1 (data.horizons), got {horizons}")
        self.horizons = sorted(set(horizons))
        self.errors = ForecastErrors(self.horizons)
        self.example: dict | None = None

    @property
    def metric_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return (*(f"{k}_h{h}" for h in self.horizons for k in ("mse", "mae")), "mse", "mae")

    def setup(self, *, num_classes: int) -> None:
        if num_classes:
            raise ValueError(f"the forecast task needs forecasting windows, and the data has {num_classes} classes: "
                             "use modality=timeseries_forecast (classification: modality=timeseries, "
                             "finetune.task=Classification)")

    @property
    def out_dim(self) -> int:
        return self.horizons[-1]

    def target(self, batch: dict) -> Tensor:
        if "future" not in batch:
            raise ValueError("the forecast task reads batch['future'] (B, H, C): forecasting windows of "
                             "modality=timeseries_forecast (data.task=forecast)")
        future = batch["future"].float()  # (B, H_data, C)
        if future.shape[1] < self.out_dim:
            raise ValueError(f"the windows' future holds {future.shape[1]} steps, the task forecasts {self.out_dim} "
                             "(finetune.task.horizons must be data.horizons)")
        return future[:, : self.out_dim]  # (B, H, C)

    def loss(self, out: Tensor, target: Tensor, *, train: bool) -> Tensor:
        ok = complete_rows(target, self.out_dim)  # (B,)
        if not bool(ok.any()):
            return out.float().sum() * 0.0  # no window of this batch has its whole future: nothing to learn
        return F.mse_loss(out[ok].float(), target[ok])

    def update(self, out: Tensor, batch: dict) -> None:
        pred, truth = self.aggregate(out.float(), batch), self.target(batch)  # (B, H, C) each
        self.errors.update(pred, truth)
        if self.example is None and bool(complete_rows(truth, self.out_dim)[:1].all()):
            last = batch["series"][0, -1:].float().expand(self.out_dim, -1)  # (H, C) the last value repeated
            self.example = {"series": batch["series"][0].float().cpu(), "future": truth[0].cpu(),
                            "preds": {FINE_TUNED: {self.out_dim: pred[0].detach().cpu()},
                                      LAST_VALUE_SUFFIX: {self.out_dim: last.cpu()}}}

    def compute(self) -> dict[str, float]:
        mse, mae = (v.reshape(-1) for v in self.errors.compute())  # (n_horizons,): torchmetrics squeezes one horizon
        out: dict[str, float] = {}
        for i, h in enumerate(self.horizons):
            out[f"mse_h{h}"], out[f"mae_h{h}"] = float(mse[i]), float(mae[i])
        out["mse"], out["mae"] = float(mse.mean()), float(mae.mean())
        return out

    def figures(self, dirpath: Path | None, classes: list[str]) -> list[Path]:
        """forecast_h<H_max>.png: the first complete test window's last channel, its fine-tuned forecast and the
        last-value baseline (the data's scaled units)."""
        if self.example is None or dirpath is None:
            return []
        return [draw_forecast(self.example, self.out_dim, dirpath / f"forecast_h{self.out_dim}.png")]

    def reset(self) -> None:
        self.errors.reset()
        self.example = None
