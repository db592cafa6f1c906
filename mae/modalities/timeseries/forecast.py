"""Forecasting with a frozen encoder: PatchTST's linear-probing protocol with a closed-form ridge head.

For every window the tokenizer RevIN-normalises each channel and cuts it into patches; the frozen encoder embeds
ALL patches (no mask); the features are the flattened patch tokens (N*D, PatchTST's "flatten head" input) plus a
bias. One linear map per horizon H, shared by every channel, predicts the next H steps in RevIN units; the
prediction is de-normalised with the window's own mean/std and scored against the truth in the data's scaled
units (the numbers PatchTST reports).

The head is fitted in closed form (ridge regression on normal equations accumulated batch by batch in float64),
not with Adam: the least-squares optimum of the same linear head, deterministic, no learning-rate / epoch
choices, and one pass over the data. The ridge strength is chosen on the val split among `alphas` (relative to
the mean squared feature norm) from accumulated statistics, so no feature matrix is ever held in memory.
Windows are visited in time order and windows with a complete future for a horizon form a prefix of them, so
one running Gram matrix, frozen per horizon at the end of its prefix, serves every horizon.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor, nn

from mae.core.interfaces import EvalData
from mae.core.module import MAEModule
from mae.eval.features import to_device
from mae.eval.protocol import EvalProtocol
from mae.modalities.timeseries.tokenizer import fold_channels, revin_denorm, unfold_channels

LAST_VALUE_SUFFIX = "_last_value"


@torch.no_grad()
def window_features(module: nn.Module, encoder: nn.Module, batch: dict) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(features (B*C, N*D+1) with a bias column, RevIN mean (B, 1, C), std (B, 1, C), future in RevIN units
    (B*C, H) NaN where the split ended)."""
    tokens = module.tokenizer(batch)  # values (B*C, N, P)
    x = encoder(tokens)[:, encoder.num_prefix :]  # (B*C, N, D), every patch visible
    feats = torch.cat([x.flatten(1), x.new_ones(x.shape[0], 1)], dim=1).float()  # (B*C, N*D+1)
    _, mean, std, _ = module.tokenizer.normalize(batch)  # (B, 1, C)
    future = fold_channels((batch["future"].float() - mean) / std)  # (B*C, H)
    return feats, mean, std, future


class PrefixGram:
    """Running X^T X, X^T Y, sum(Y^2) in float64 over rows visited in order; frozen for horizon h after the
    last row whose first h targets are complete (those rows are a prefix)."""

    def __init__(self, horizons: list[int]) -> None:
        self.horizons = sorted(horizons)
        self.xtx: Tensor | None = None
        self.xty: Tensor | None = None
        self.yy = None
        self.rows = 0
        self.frozen: dict[int, tuple[Tensor, Tensor, float, int]] = {}

    def _add(self, x: Tensor, y: Tensor) -> None:
        if self.xtx is None:
            self.xtx = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
            self.xty = torch.zeros(x.shape[1], y.shape[1], dtype=torch.float64)
            self.yy = torch.zeros(y.shape[1], dtype=torch.float64)
        if x.shape[0] == 0:
            return
        y = torch.nan_to_num(y, nan=0.0)  # columns past a row's valid horizon are never read for it
        self.xtx += (x.T @ x).double()
        self.xty += (x.T @ y).double()
        self.yy += y.double().pow(2).sum(0)
        self.rows += x.shape[0]

    def _freeze(self, h: int) -> None:
        self.frozen[h] = (self.xtx.clone(), self.xty[:, :h].clone(), float(self.yy[:h].sum()), self.rows)

    def add(self, x: Tensor, y: Tensor) -> None:
        """x: (R, F) features, y: (R, H_max) targets, NaN past the end of the split."""
        x, y = x.cpu(), y.cpu()
        pos = 0
        for h in reversed(self.horizons):  # the longest horizon has the shortest prefix
            if h in self.frozen:
                continue
            complete = torch.isfinite(y[:, :h]).all(dim=1)  # (R,)
            valid = int(complete.sum())
            if not bool(complete[:valid].all()):
                raise ValueError("forecast windows must come in time order (complete futures first)")
            if valid < x.shape[0]:
                self._add(x[pos:valid], y[pos:valid])
                pos = max(pos, valid)
                self._freeze(h)
        self._add(x[pos:], y[pos:])

    def finish(self) -> dict[int, tuple[Tensor, Tensor, float, int]]:
        for h in self.horizons:
            if h not in self.frozen:
                self._freeze(h)
        return self.frozen


def ridge_path(xtx: Tensor, xty: Tensor, alphas: list[float]) -> list[Tensor]:
    """Ridge solutions W (F, H) = (X^T X + lam I)^-1 X^T Y for lam = alpha * trace(X^T X) / F, one Cholesky
    factorisation per alpha (an eigendecomposition shared by all alphas was 10-30x slower on CPU here)."""
    scale = float(torch.trace(xtx)) / xtx.shape[0]
    eye = torch.eye(xtx.shape[0], dtype=xtx.dtype)
    threads = torch.get_num_threads()
    # One thread: multi-threaded LAPACK on a busy 2-core machine took 0.3 s for a 129 x 129 Cholesky (1e-4 s on
    # one thread); at 5377 x 5377 one thread is only ~15 % slower than two.
    torch.set_num_threads(1)
    try:
        return [torch.cholesky_solve(xty, torch.linalg.cholesky(xtx + a * scale * eye)) for a in alphas]
    finally:
        torch.set_num_threads(threads)


def quadratic_mse(w: Tensor, stats: tuple[Tensor, Tensor, float, int]) -> float:
    """Mean squared error of X W against Y from accumulated (X^T X, X^T Y, sum Y^2, rows) alone."""
    xtx, xty, yy, rows = stats
    sse = yy - 2 * float((w * xty).sum()) + float((w * (xtx @ w)).sum())
    return sse / max(1, rows * w.shape[1])


def gram_stats(module: nn.Module, encoder: nn.Module, loader: Iterable[dict], horizons: list[int],
               max_samples: int | None) -> dict[int, tuple[Tensor, Tensor, float, int]]:
    gram, seen = PrefixGram(horizons), 0
    for batch in loader:
        feats, _, _, future = window_features(module, encoder, to_device(batch, module.device))
        gram.add(feats, future)
        seen += batch["series"].shape[0]
        if max_samples is not None and seen >= max_samples:
            break
    return gram.finish()


@torch.no_grad()
def fit_heads(module: nn.Module, encoder: nn.Module, loaders: dict[str, Iterable[dict]], *, horizons: list[int],
              alphas: list[float], max_samples: int | None) -> dict[int, tuple[Tensor, float]]:
    """horizon -> (W (N*D+1, H) ridge head fitted on train, chosen alpha on val)."""
    train = gram_stats(module, encoder, loaders["train"], horizons, max_samples)
    val = gram_stats(module, encoder, loaders["val"], horizons, None)
    heads = {}
    for h in horizons:
        if train[h][3] == 0 or val[h][3] == 0:
            raise ValueError(f"no train/val window has a complete future of {h} steps: lower data.horizons")
        solutions = ridge_path(train[h][0], train[h][1], alphas)
        scores = [quadratic_mse(w, val[h]) for w in solutions]
        best = min(range(len(alphas)), key=scores.__getitem__)
        heads[h] = (solutions[best].float(), alphas[best])
    return heads


@torch.no_grad()
def test_errors(module: nn.Module, encoders: dict[str, nn.Module], heads: dict[str, dict[int, tuple[Tensor, float]]],
                loader: Iterable[dict], horizons: list[int]) -> tuple[dict[str, float], dict]:
    """Test MSE / MAE per horizon and encoder (plus the last-value baseline) in the data's scaled units, and the
    first window's forecasts for the picture."""
    sums: dict[str, list[float]] = {}
    example: dict = {}
    for batch in loader:
        batch = to_device(batch, module.device)
        truth = batch["future"].float()  # (B, H_max, C)
        last = batch["series"][:, -1:, :].float()  # (B, 1, C)
        preds = {LAST_VALUE_SUFFIX: {h: last.expand(-1, h, -1) for h in horizons}}
        for suffix, encoder in encoders.items():
            feats, mean, std, _ = window_features(module, encoder, batch)
            c = truth.shape[-1]
            preds[suffix] = {}
            for h in horizons:
                w = heads[suffix][h][0].to(feats.device)
                norm = unfold_channels(feats @ w, c).transpose(1, 2)  # (B, H, C)
                preds[suffix][h] = revin_denorm(norm, mean, std)
        for suffix, per_h in preds.items():
            for h, p in per_h.items():
                t = truth[:, :h]
                ok = torch.isfinite(t).all(dim=2).all(dim=1)  # (B,) windows with a complete future
                err = p[ok] - t[ok]
                acc = sums.setdefault(f"{h}{suffix}", [0.0, 0.0, 0.0])
                acc[0] += float(err.pow(2).sum()); acc[1] += float(err.abs().sum()); acc[2] += err.numel()  # noqa: E702
        if not example:
            example = {"series": batch["series"][0].cpu(), "future": truth[0].cpu(),
                       "preds": {s: {h: p[0].cpu() for h, p in per_h.items()} for s, per_h in preds.items()}}
    metrics = {}
    for key, (se, ae, n) in sums.items():
        h, _, suffix = key.partition("_")
        suffix = f"_{suffix}" if suffix else ""
        metrics[f"eval/forecast_mse_h{h}{suffix}"] = se / max(n, 1)
        metrics[f"eval/forecast_mae_h{h}{suffix}"] = ae / max(n, 1)
    return metrics, example


def evaluate_forecast(module: nn.Module, encoders: dict[str, nn.Module], loaders: dict[str, Iterable[dict]], *,
                      horizons: list[int], alphas: list[float], max_samples: int | None,
                      plot_dir: str | None) -> dict[str, float]:
    """eval/forecast_{mse,mae}_h{H}{suffix} for each encoder suffix ("" pretrained, "_random_init") and the
    last-value baseline ("_last_value"), plus eval/forecast_alpha_h{H}{suffix} (the ridge strength chosen)."""
    module.eval()
    heads = {s: fit_heads(module, e.eval(), loaders, horizons=horizons, alphas=alphas, max_samples=max_samples)
             for s, e in encoders.items()}
    metrics, example = test_errors(module, encoders, heads, loaders["test"], horizons)
    for suffix, per_h in heads.items():
        for h, (_, alpha) in per_h.items():
            metrics[f"eval/forecast_alpha_h{h}{suffix}"] = alpha
    ordered = {k: metrics[k] for k in sorted(metrics, key=lambda k: (LAST_VALUE_SUFFIX in k, k))}
    if plot_dir is not None and example:
        draw_forecast(example, horizons[0], Path(plot_dir) / f"forecast_h{horizons[0]}.png")
    return ordered


def draw_forecast(example: dict, horizon: int, path: Path, *, channel: int = -1) -> Path:
    """The first test window of the last channel: context tail, truth, and each head's forecast."""
    from matplotlib.figure import Figure

    series, future = example["series"][:, channel].numpy(), example["future"][:horizon, channel].numpy()
    tail = min(len(series), 4 * horizon)
    t0 = range(-tail, 0)
    t1 = range(0, horizon)
    fig = Figure(figsize=(9, 3))
    ax = fig.subplots()
    ax.plot(t0, series[-tail:], color="0.3", lw=1, label="context")
    ax.plot(t1, future, color="k", lw=1.4, label="truth")
    colours = {"": "tab:red", "_random_init": "tab:blue", LAST_VALUE_SUFFIX: "tab:green"}
    for suffix, per_h in example["preds"].items():
        name = {"": "pretrained", LAST_VALUE_SUFFIX: "last value"}.get(suffix, suffix.strip("_").replace("_", " "))
        ax.plot(t1, per_h[horizon][:, channel].numpy(), color=colours.get(suffix), lw=1.1, ls="--", label=name)
    ax.axvline(0, color="0.6", lw=0.8)
    ax.set_title(f"first test window, last channel, horizon {horizon} (scaled units)", fontsize=9)
    ax.legend(fontsize=7, ncol=5, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path


class ForecastData(EvalData, Protocol):
    """What `ForecastProbe` reads of a forecasting datamodule (datamodules.timeseries, data.task=forecast)."""

    horizons: list[int]
    ridge_alphas: list[float]
    plot_dir: str | None

    def forecast_loaders(self) -> dict[str, Iterable[dict]]: ...


class ForecastProbe(EvalProtocol):
    """eval=forecast: PatchTST's linear probing, a ridge flatten head per horizon on each frozen encoder, test
    MSE / MAE per horizon next to the random-init encoder and the last-value baseline (`evaluate_forecast`)."""

    task = "forecast"

    def evaluate(self, module: MAEModule, data: ForecastData, encoders: dict[str, nn.Module]) -> dict[str, float]:
        return evaluate_forecast(module, encoders, data.forecast_loaders(), horizons=list(data.horizons),
                                 alphas=list(data.ridge_alphas), max_samples=self.max_samples, plot_dir=data.plot_dir)
