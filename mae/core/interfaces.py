"""The declared interfaces between the parts. Every modality implements these; nothing is found by probing.

    Tokenizer    batch dict -> Tokens                         (mae/modalities/<m>/tokenizer.py)
    Masker       Tokens -> Mask (fixed K per batch)           (mae/core/masking.py, modalities' maskers)
    DecoderMask  Mask -> Mask with `decode` set (dual masking: the decoder reconstructs a subset)
    MAEEncoder   Tokens (+ Mask) -> latents; pooled features  (mae/core/encoder.py, the graph GAT)
    MAEDecoder   latents + Tokens + Mask -> predictions at Mask.predicted
    Target       Tokens -> what the decoder must predict, and its inverse for pictures
    Pictures     reconstruction panels -> a matplotlib Figure (chosen by config: `pictures`)
    EvalData     what evaluation protocols may ask of a datamodule (datamodules/base.py implements it)

Each base class documents its defaults; a subclass overrides only what differs.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from mae.core.tokens import Mask, Tokens, gather_tokens

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class Tokenizer(nn.Module):
    """batch dict -> Tokens. Subclasses set `token_dim` (width C of Tokens.values) in __init__.

    grid: the token grid when it is fixed for the run ((H, W), (T, H, W), (T, F), (N,)), so structured maskers
    can refuse a wrong modality at start-up; None (default) for tokens without a fixed grid (points, nodes).
    layout: what the tokens are, in words ("image patches", "series patches"); a `Target` that only fits some
    layouts lists them in `Target.layouts`, and the config check refuses a mismatch before anything is built.
    """

    token_dim: int
    grid: tuple[int, ...] | None = None
    layout: ClassVar[str] = "tokens"

    def forward(self, batch: dict[str, Tensor]) -> Tokens:
        raise NotImplementedError

    def pooled_dim(self, pool_dim: int) -> int:
        """Width of `merge_pooled`'s output for encoder features of width `pool_dim` (a fine-tuning head's input).
        Default: the same (one token sequence per sample)."""
        return pool_dim

    def merge_pooled(self, features: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """(rows, D) pooled features of the token sequences -> (B, D') one row per sample. Default: the
        identity (one token sequence per sample); time series fold channels into rows and merge them here."""
        return features

    def raw_features(self, batch: dict[str, Tensor]) -> Tensor:
        """(B, F) one row of raw input per sample, for the raw-input baseline of the frozen probes (eval.raw_input).
        Default: the token values flattened, (B, N, C) -> (B, N*C), padding tokens (Tokens.pad) zeroed; a tokenizer
        that folds several token sequences into one sample (time-series channels) joins its rows per sample here."""
        tokens = self(batch)
        values = tokens.values  # (B, N, C)
        if tokens.pad is not None:
            values = values.masked_fill(tokens.pad.unsqueeze(-1), 0.0)
        return values.flatten(1)  # (B, N*C)


class Masker:
    """Tokens -> Mask: a per-sample permutation with the same number K of visible tokens in every sample."""

    def check_grid(self, grid: tuple[int, ...] | None) -> None:
        """Raise ValueError (naming the choice to make instead) when tokens on `grid` cannot be masked this way.
        Called at start-up with the tokenizer's grid. Default: any tokens can be masked."""

    def __call__(self, tokens: Tokens, generator: torch.Generator | None = None) -> Mask:
        raise NotImplementedError


class DecoderMask:
    """The decoder side of dual masking (VideoMAE V2): picks the subset `Mask.decode` of the hidden tokens that
    the decoder reconstructs. Wrapped around any Masker by `mae.core.masking.DualMasker`."""

    def check_grid(self, grid: tuple[int, ...] | None) -> None:
        """As `Masker.check_grid`; default: any tokens."""

    def __call__(self, mask: Mask, tokens: Tokens, generator: torch.Generator | None = None) -> Mask:
        raise NotImplementedError


class MAEEncoder(nn.Module):
    """What the module and the evaluation protocols use of an encoder.

    dim: latent width; num_prefix: prefix tokens (cls) at the start of `forward`'s output; pool_dim: width of
    `pool`'s output. forward(tokens, mask) -> (B, prefix+K, D) latents of the visible tokens (the transformer)
    or (B, prefix+N, D) of every token (a GNN, which needs all nodes to pass messages); mask None = no masking.
    pool(tokens, keep) -> (B, pool_dim) one embedding per token sequence of the unmasked tokens (of the tokens at
    `keep` (B, K) only, where the encoder supports it: fine-tuning with token dropping).
    """

    dim: int
    num_prefix: int
    pool_dim: int
    latents: ClassVar[str | None] = None
    """What `forward` returns: "visible" (prefix+K) or "all" (prefix+N); None: not declared. The start-up check
    (mae/train/config_model.py) refuses a decoder whose `MAEDecoder.reads` says otherwise."""

    def forward(self, tokens: Tokens, mask: Mask | None = None) -> Tensor:
        raise NotImplementedError

    def pool(self, tokens: Tokens, keep: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def no_weight_decay(self) -> set[str]:
        """Names of parameters the optimiser must not decay (cls / mask tokens). Default: none."""
        return set()


class MAEDecoder(nn.Module):
    """latent (the encoder's output) + tokens + mask -> (B, M', out_dim) predictions at `mask.predicted`."""

    reads: ClassVar[str | None] = None
    """The latents `forward` expects: "visible" (the MAE decoder) or "all" (LinearDecoder); None: not declared."""

    def forward(self, latent: Tensor, tokens: Tokens, mask: Mask) -> Tensor:
        raise NotImplementedError

    def no_weight_decay(self) -> set[str]:
        """As `MAEEncoder.no_weight_decay`."""
        return set()


class Target(nn.Module):
    """What the decoder must predict, per token, and its inverse for pictures.

    Default: a token-wise target, one whose value for a token depends on that token's values alone; it
    implements `of_values` ((B, M, C) -> (B, M, C')) and `at` computes it on the predicted tokens only.
    A target that needs the neighbours (HOG on the whole image) overrides `forward` and sets
    `tokenwise = False`: `at` then computes it on all tokens and gathers.
    """

    tokenwise: bool = True
    layouts: ClassVar[tuple[str, ...] | None] = None
    """The `Tokenizer.layout`s this target can be computed on (None, the default: any tokens)."""
    inverse_note: str = "reconstruction drawn as predicted"
    """How `invert` undoes the target, said in the reconstruction picture's title."""

    def check_grid(self, grid: tuple[int, ...] | None) -> None:
        """As `Masker.check_grid`: refuse tokens this target cannot be computed on, at start-up. Default: any."""

    def out_dim(self, token_dim: int) -> int:
        """Width C' of the target for tokens of width C. Default: the same."""
        return token_dim

    def of_values(self, values: Tensor) -> Tensor:
        """(B, M, C) token values -> (B, M, C') targets (token-wise targets)."""
        raise NotImplementedError

    def forward(self, tokens: Tokens) -> Tensor:
        """(B, N, C') the targets of every token."""
        return self.of_values(tokens.values)

    def at(self, tokens: Tokens, index: Tensor) -> Tensor:
        """(B, M, C') the targets of the tokens at `index` (B, M)."""
        if self.tokenwise:
            return self.of_values(gather_tokens(tokens.values, index))
        return gather_tokens(self(tokens), index)

    def invert(self, pred: Tensor, true_values: Tensor) -> Tensor | None:
        """Predictions (B, M, C') -> token values (B, M, C) for pictures, using the TRUE values of the same
        tokens where the target needs their statistics; None where no inverse exists (HOG). Default: pred."""
        return pred


@runtime_checkable
class EvalData(Protocol):
    """What evaluation and pictures ask of a datamodule (datamodules.base.MAEDataModule implements it).

    eval_tasks: the evaluation protocols (`EvalProtocol.task`) this data can serve, e.g. ("probe",).
    has_labels: whether the samples carry class labels (the probes need them; RankMe does not).
    eval_dataloaders(): (train split without augmentation, val split), for frozen-feature probes.
    denormalize(x): undo the input normalisation of (B, C, H, W) images for pictures (identity elsewhere).
    """

    eval_tasks: tuple[str, ...]

    @property
    def has_labels(self) -> bool: ...

    def eval_dataloaders(self) -> tuple[Iterable[dict], Iterable[dict]]: ...

    def denormalize(self, x: Tensor) -> Tensor: ...


class Pictures:
    """Draws reconstruction panels. panels: name -> (B, N, C) token values ("original", "masked" with NaN at the
    hidden tokens, "reconstruction", "reconstruction + visible"); tokens: the Tokens they came from; note: the
    title (what is hidden, how the target was inverted). Returns the Figure, already saved at `path`."""

    def draw(self, panels: dict[str, Tensor], tokens: Tokens, note: str, path: Path, *, tokenizer: Tokenizer,
             data: EvalData) -> Figure:
        raise NotImplementedError
