"""Pretrained vs randomly initialised encoder vs the raw input, evaluated on the same frozen-feature protocol.

The protocol sees embedding functions, batch -> (B, D) rows, keyed by metric suffix: "" the pretrained encoder's
pooled features, `_random_init` its random-init twin's (`frozen_encoders`), `_raw_input` the raw input itself
(`raw_input_embed`: `Tokenizer.raw_features`, wider inputs hashed down to RAW_INPUT_WIDTH by `SignHashProjection`).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from mae.eval.features import extract_features
from mae.eval.rankme import rankme
from mae.eval.report import RANDOM_INIT_SUFFIX, evaluate_features

Embed = Callable[[dict], Tensor]
"""batch dict (tensors on the module's device) -> (B, D) features."""

RAW_INPUT_WIDTH = 4096
"""Raw inputs wider than this are projected down to it (`SignHashProjection`) before the probes."""


def random_init_encoder(module: nn.Module, *, seed: int) -> nn.Module:
    """A fresh encoder of the module's architecture (same factory, fixed seed), in eval mode on its device."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = module.encoder_factory(token_dim=module.tokenizer.token_dim)
    return encoder.to(module.device).eval()


def frozen_encoders(module: nn.Module, *, random_init: bool, seed: int) -> dict[str, nn.Module]:
    """Metric-name suffix -> encoder: "" = the pretrained one, RANDOM_INIT_SUFFIX = the random-init twin."""
    encoders = {"": module.encoder}
    if random_init:
        encoders[RANDOM_INIT_SUFFIX] = random_init_encoder(module, seed=seed)
    return encoders


class SignHashProjection:
    """(B, F) -> (B, min(F, width)) rows: unchanged when F <= width, else a fixed seeded sparse random projection.

    Each input column f goes to one output column bucket[f] with a random sign sign[f] (both drawn once from
    `seed`), out[:, j] = sum of sign[f] * x[:, f] over the f with bucket[f] = j: the count sketch / feature hashing
    of Weinberger et al. 2009, a Johnson-Lindenstrauss-type projection that preserves inner products in expectation,
    like a Gaussian one, at O(F) memory and O(B*F) time. A dense Gaussian projection would be an F x width matrix:
    2.5 GB for one 224 x 224 RGB image (F = 150528), 39 GB for a 16-frame clip; average-pooling the tokens instead
    would keep only the mean token and throw away where everything is, the very thing a raw-input baseline keeps.

    Every row of a run must have the same F (the probes stack the rows); another F is an error naming the fix.
    """

    def __init__(self, *, width: int, seed: int) -> None:
        if width < 1:
            raise ValueError(f"raw-input projection width must be >= 1, got {width}")
        self.width, self.seed = width, seed
        self.in_width: int | None = None
        self.bucket: Tensor | None = None  # (F,) int64 output column of each input column
        self.sign: Tensor | None = None  # (F,) +-1

    def _build(self, in_width: int) -> None:
        self.in_width = in_width
        if in_width <= self.width:
            return
        g = torch.Generator().manual_seed(self.seed)
        self.bucket = torch.randint(0, self.width, (in_width,), generator=g)  # (F,)
        self.sign = torch.randint(0, 2, (in_width,), generator=g).float() * 2 - 1  # (F,)

    def __call__(self, x: Tensor) -> Tensor:
        if x.ndim != 2:
            raise ValueError(f"raw features must be (B, F) rows, got shape {tuple(x.shape)}")
        if self.in_width is None:
            self._build(x.shape[1])
        elif x.shape[1] != self.in_width:
            raise ValueError(f"raw input rows of {x.shape[1]} values after rows of {self.in_width}: the raw-input "
                             "baseline needs inputs of one size (the tokenizer's raw_features); set "
                             "eval.raw_input=false for data of varying size")
        x = x.float()
        if self.bucket is None:
            return x  # (B, F)
        self.bucket, self.sign = self.bucket.to(x.device), self.sign.to(x.device)  # moved once, then kept there
        return x.new_zeros(x.shape[0], self.width).index_add_(1, self.bucket, x * self.sign)  # (B, width)


def encoder_embeds(module: nn.Module, encoders: dict[str, nn.Module]) -> dict[str, Embed]:
    """Metric suffix -> the pooled features (`module.embed`) of that encoder."""
    return {suffix: (lambda batch, encoder=encoder: module.embed(batch, encoder)) for suffix, encoder in
            encoders.items()}


def raw_input_embed(module: nn.Module, *, seed: int, width: int = RAW_INPUT_WIDTH) -> Embed:
    """batch -> (B, min(F, width)): the raw input of each sample (`module.tokenizer.raw_features`, (B, F): the
    flattened token values by default), projected by a `SignHashProjection` seeded by `seed` when F > width."""
    project = SignHashProjection(width=width, seed=seed)
    return lambda batch: project(module.tokenizer.raw_features(batch))


def extract_all(module: nn.Module, embeds: dict[str, Embed], loader: Iterable[dict], *,
                max_samples: int | None = None) -> tuple[dict[str, Tensor], Tensor]:
    """`extract_features` of every embedding in ONE pass over `loader` (decoding a video or audio batch costs more
    than embedding it): suffix -> (N, D_suffix) features, and the (N,) labels they share."""
    widths: dict[str, int] = {}

    def embed_all(batch: dict) -> Tensor:
        outs = [embed(batch).float() for embed in embeds.values()]
        widths.update(zip(embeds, (out.shape[1] for out in outs)))
        return torch.cat(outs, dim=1)  # (B, sum of D)

    x, y = extract_features(embed_all, loader, device=module.device, max_samples=max_samples)  # (N, sum of D)
    parts = torch.split(x, list(widths.values()), dim=1)
    return dict(zip(widths, parts)), y


def probe_embeds(
    module: nn.Module,
    embeds: dict[str, Embed],
    train_loader: Iterable[dict],
    val_loader: Iterable[dict],
    *,
    k: int,
    temperature: float,
    max_samples: int | None,
    knn_standardize: bool = False,
) -> dict[str, float]:
    """The default protocol for every embedding: features of the train loader fit the linear probe / kNN, scored
    on the val loader; RankMe of the train features. Keys get the embedding's suffix."""
    train, train_y = extract_all(module, embeds, train_loader, max_samples=max_samples)
    val, val_y = extract_all(module, embeds, val_loader)
    metrics: dict[str, float] = {}
    for suffix in embeds:
        metrics |= evaluate_features(train[suffix], train_y, val[suffix], val_y, k=k, temperature=temperature,
                                     suffix=suffix, knn_standardize=knn_standardize)
    return metrics


def rankme_embeds(module: nn.Module, embeds: dict[str, Embed], train_loader: Iterable[dict], *,
                  max_samples: int | None) -> dict[str, float]:
    """The label-free part of the default protocol: eval/rankme{suffix} of each embedding's train features
    (unlabeled data: no linear probe, no kNN, and the val split is not read)."""
    train, _ = extract_all(module, embeds, train_loader, max_samples=max_samples)
    return {f"eval/rankme{suffix}": rankme(train[suffix]) for suffix in embeds}
