"""Time series (PatchTST, Nie et al. 2023) -> channel-independent patch tokens.

batch["series"] (B, L, C), optional batch["observed"] (B, L) bool (False = padding of a shorter series)
-> RevIN instance normalisation per (sample, channel) over the observed steps -> channels folded into the batch
-> non-overlapping patches of `patch_len` steps: Tokens(values (B*C, N, patch_len), pos (1, N, 1) = patch index,
grid (N,), pad (B*C, N) = patches without any observed step, or None).

Channel independence: every channel is its own token sequence and all channels share the same weights; no
channel id enters the tokens (PatchTST has none). RevIN is *not* affine here (PatchTST's self-supervised
RevIN callback is not either): a learned scale inside the target would let the model shrink its own targets.
Targets therefore live in normalised units (the modality uses `mae.core.targets.PixelTarget` on these values).
"""
from __future__ import annotations

import torch
from torch import Tensor

from mae.core.interfaces import Tokenizer
from mae.core.tokens import Tokens

REVIN_EPS = 1e-5  # RevIN's eps: a constant channel gets std sqrt(eps), values (x - mean) / std = 0


def revin_stats(series: Tensor, observed: Tensor | None, *, eps: float = REVIN_EPS) -> tuple[Tensor, Tensor]:
    """(B, L, C) series, (B, L) observed flags -> per-(sample, channel) mean and std (B, 1, C) over the observed
    steps; std = sqrt(biased var + eps), so a constant channel never divides by zero."""
    x = series.float()
    if observed is None:
        mean = x.mean(dim=1, keepdim=True)  # (B, 1, C)
        var = x.var(dim=1, keepdim=True, unbiased=False)
    else:
        w = observed.to(x.dtype).unsqueeze(-1)  # (B, L, 1)
        count = w.sum(dim=1, keepdim=True).clamp_min(1.0)  # (B, 1, 1)
        mean = (x * w).sum(dim=1, keepdim=True) / count
        var = ((x - mean).pow(2) * w).sum(dim=1, keepdim=True) / count
    return mean, (var + eps).sqrt()


def revin_norm(series: Tensor, mean: Tensor, std: Tensor, observed: Tensor | None = None) -> Tensor:
    """(B, L, C) -> normalised (B, L, C); unobserved steps set to 0 (= the series mean)."""
    x = (series.float() - mean) / std
    return x if observed is None else x * observed.to(x.dtype).unsqueeze(-1)


def revin_denorm(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """Inverse of `revin_norm`: (B, T, C) normalised -> original units."""
    return x * std + mean


def fold_channels(x: Tensor) -> Tensor:
    """(B, L, C) -> (B*C, L): each channel becomes its own series (channel independence)."""
    b, length, c = x.shape
    return x.permute(0, 2, 1).reshape(b * c, length)


def unfold_channels(x: Tensor, channels: int) -> Tensor:
    """(B*C, ...) -> (B, C, ...), the inverse of the batch folding."""
    return x.reshape(x.shape[0] // channels, channels, *x.shape[1:])


def patchify_1d(x: Tensor, patch_len: int) -> Tensor:
    """(R, L) -> (R, N, patch_len) non-overlapping patches of the LAST N*patch_len steps (N = L // patch_len);
    like PatchTST's `create_patch`, the oldest L mod patch_len steps are dropped."""
    r, length = x.shape
    n = length // patch_len
    return x[:, length - n * patch_len :].reshape(r, n, patch_len)  # (R, N, P)


def unpatchify_1d(values: Tensor) -> Tensor:
    """(R, N, patch_len) -> (R, N*patch_len), the inverse of `patchify_1d` on the kept steps."""
    return values.reshape(values.shape[0], -1)


class PatchTSTTokenizer(Tokenizer):
    """batch["series"] (B, L, C) -> channel-independent RevIN-normalised patch tokens (module docstring).

    patch_len: steps per patch (PatchTST: 12, stride = patch_len: non-overlapping, as its self-supervised model).
    merge: how `merge_pooled` turns per-channel pooled features (B*C, D) into one vector per sample for the
    frozen-feature evaluation and the pooled fine-tuning heads: "concat" (B, C*D) (keeps which channel said what;
    PatchTST's ClassificationHead is a Linear on n_vars * d_model) or "mean" (B, D).
    channels: the series' channel count C when known before the first batch (`${data.channels}`); `pooled_dim`
    needs it for merge="concat" (a head's input width C*D), and batches with another C are refused. None: any C,
    and `pooled_dim` of a concat merge is an error naming the fix.
    """

    layout = "series patches"

    def __init__(self, *, patch_len: int, merge: str = "concat", channels: int | None = None, key: str = "series",
                 observed_key: str = "observed", eps: float = REVIN_EPS) -> None:
        super().__init__()
        if isinstance(patch_len, bool) or not isinstance(patch_len, int) or patch_len < 1:
            raise ValueError(f"tokenizer.patch_len must be an int >= 1, got {patch_len!r}")
        if merge not in ("concat", "mean"):
            raise ValueError(f"tokenizer.merge must be 'concat' or 'mean', got {merge!r}")
        if channels is not None and (isinstance(channels, bool) or not isinstance(channels, int) or channels < 1):
            raise ValueError(f"tokenizer.channels must be an int >= 1 or null, got {channels!r}")
        self.channels = channels
        self.patch_len, self.merge, self.key, self.observed_key, self.eps = patch_len, merge, key, observed_key, eps
        self.token_dim = patch_len
        self.grid = None  # (N,) depends on the series length; set per batch in Tokens.grid

    def series(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor | None]:
        """The (B, L, C) series and (B, L) observed flags of a batch, checked."""
        x = batch[self.key]
        if x.ndim == 2:
            x = x.unsqueeze(-1)  # (B, L) univariate -> (B, L, 1)
        if x.ndim != 3:
            raise ValueError(f"batch[{self.key!r}] must be (B, L, C) or (B, L), got shape {tuple(x.shape)}")
        if self.channels is not None and x.shape[-1] != self.channels:
            raise ValueError(f"batch[{self.key!r}] has {x.shape[-1]} channels, the tokenizer was built for "
                             f"tokenizer.channels={self.channels} (a fine-tuning head is sized by it): use data with "
                             f"{self.channels} channels, or set data.columns to choose them")
        if x.shape[1] < self.patch_len:
            raise ValueError(f"series of {x.shape[1]} steps are shorter than one patch (tokenizer.patch_len="
                             f"{self.patch_len}): lower tokenizer.patch_len or raise data.context")
        observed = batch.get(self.observed_key)
        return x, observed

    def normalize(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """(normalised series (B, L, C), mean (B, 1, C), std (B, 1, C), observed (B, L) or None)."""
        x, observed = self.series(batch)
        mean, std = revin_stats(x, observed, eps=self.eps)
        return revin_norm(x, mean, std, observed), mean, std, observed

    def forward(self, batch: dict[str, Tensor]) -> Tokens:
        normed, _, _, observed = self.normalize(batch)  # (B, L, C)
        values = patchify_1d(fold_channels(normed), self.patch_len)  # (B*C, N, P)
        n = values.shape[1]
        pos = torch.arange(n, device=values.device, dtype=torch.float32).reshape(1, n, 1)  # (1, N, 1)
        pad = None
        if observed is not None and not bool(observed.all()):
            c = normed.shape[-1]
            obs = patchify_1d(observed.float(), self.patch_len).amax(dim=-1) == 0  # (B, N) no observed step
            pad = obs.repeat_interleave(c, dim=0)  # (B*C, N), rows in the (B, C) folding order
        return Tokens(values=values, pos=pos, grid=(n,), pad=pad)  # float32, normalised units

    def pooled_dim(self, pool_dim: int) -> int:
        """Width of `merge_pooled`'s output: C * pool_dim ("concat", needs `channels`) or pool_dim ("mean")."""
        if self.merge == "mean":
            return pool_dim
        if self.channels is None:
            raise ValueError("tokenizer.merge=concat concatenates the C channels' features, and tokenizer.channels is "
                             "not set, so a head's input width C x D is unknown: pre-train with "
                             "tokenizer.channels=${data.channels} (or the number), or with tokenizer.merge=mean")
        return self.channels * pool_dim

    def merge_pooled(self, features: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """(B*C, D) per-channel pooled features -> (B, C*D) ("concat") or (B, D) ("mean")."""
        x, _ = self.series(batch)
        per_channel = unfold_channels(features, x.shape[-1])  # (B, C, D)
        return per_channel.flatten(1) if self.merge == "concat" else per_channel.mean(dim=1)

    def raw_features(self, batch: dict[str, Tensor]) -> Tensor:
        """(B, C*N*P) the sample's RevIN-normalised patches, every channel's, flattened (unobserved patches zeroed):
        the per-channel rows of the default (B*C, N*P) joined back per sample, whatever `merge` is."""
        rows = super().raw_features(batch)  # (B*C, N*P)
        x, _ = self.series(batch)
        return unfold_channels(rows, x.shape[-1]).flatten(1)  # (B, C*N*P)
