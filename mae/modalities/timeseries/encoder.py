"""PatchTST's self-supervised network (Nie et al., ICLR 2023), as yuqinie98/PatchTST PatchTST_self_supervised runs it
(`model=patchtst`; the MAE-style variant of the framework is `model=patchtst_mae`).

PatchTST is *not* an asymmetric MAE: its encoder sees every patch. patch_mask.py `random_masking` zeroes the values
of the hidden patches and PatchMaskCB feeds that full (bs, num_patch, n_vars, patch_len) tensor to the model; the
pretrain head (dropout + Linear(d_model, patch_len), `mae.core.linear_decoder.LinearDecoder`) maps every latent
back to a patch and the loss is taken on the hidden ones. Parts, with their official files:

    W_P            nn.Linear(patch_len, d_model) shared by all channels   models/patchTST.py PatchTSTEncoder
    W_pos          learned (num_patch, d_model), uniform(-0.02, 0.02)     layers/pos_encoding.py pe='zeros', learn_pe
    dropout        on u + W_pos                                           PatchTSTEncoder.forward
    layers         post-norm (pre_norm=False) BatchNorm1d over d_model    models/patchTST.py TSTEncoderLayer
    attention      W_Q/W_K/W_V + to_out(Linear, Dropout(dropout)), scale (d_model // n_heads) ** -0.5,
                   optional residual attention (pre-softmax scores added to the next layer's)   layers/attention.py
    feed-forward   Linear(d_model, d_ff), act, Dropout, Linear(d_ff, d_model)                 TSTEncoderLayer.ff
    no final norm  the backbone returns the last layer's output                                PatchTSTEncoder

Channel independence comes from the tokenizer (`PatchTSTTokenizer` folds channels into the batch), so every row
here is one channel of one sample, as PatchTST's reshape to (bs * nvars, num_patch, d_model).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from mae.core.interfaces import MAEEncoder
from mae.core.tokens import Mask, Tokens, gather_tokens

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}  # layers/basics.py get_activation_fn


def check_rate(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"model.encoder.{key} must be a number in [0, 1), got {value!r}")
    return float(value)


class BatchNormTokens(nn.Module):
    """BatchNorm1d over the feature axis of (B, N, D) tokens: PatchTST's Sequential(Transpose(1,2), BatchNorm1d,
    Transpose(1,2)); statistics over every (row, patch) of the batch. With `pad` (B, N) True = padding (UCR series of
    unequal length; PatchTST itself never pads), training statistics and the running averages are taken over the real
    tokens only, so padding never changes a real token's output (exactly BatchNorm1d's update otherwise)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)

    def forward(self, x: Tensor, pad: Tensor | None = None) -> Tensor:
        if pad is None or not self.training or not bool(pad.any()):
            return self.bn(x.transpose(1, 2)).transpose(1, 2)  # (B, N, D)
        bn, real = self.bn, x[~pad]  # (R, D) the real tokens
        mean, var = real.mean(0), real.var(0, unbiased=False)  # (D,)
        if bn.track_running_stats and bn.running_mean is not None and bn.running_var is not None:
            with torch.no_grad():  # BatchNorm1d's momentum update, unbiased variance
                bn.num_batches_tracked += 1
                n = real.shape[0]
                bn.running_mean.lerp_(mean.detach(), bn.momentum)
                bn.running_var.lerp_(var.detach() * n / max(n - 1, 1), bn.momentum)
        return (x - mean) * torch.rsqrt(var + bn.eps) * bn.weight + bn.bias  # (B, N, D)


class PatchTSTAttention(nn.Module):
    """layers/attention.py MultiheadAttention + ScaledDotProductAttention (lsa=False: fixed scale).

    forward(x, prev, key_pad) -> (output (B, N, D), scores (B, H, N, N) before the softmax, prev included).
    key_pad: (B, N) True = padding, never attended to (the official key_padding_mask)."""

    def __init__(self, *, dim: int, num_heads: int, attn_dropout: float, proj_dropout: float) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.W_Q = nn.Linear(dim, dim)
        self.W_K = nn.Linear(dim, dim)
        self.W_V = nn.Linear(dim, dim)
        self.scale = self.head_dim**-0.5  # a frozen nn.Parameter officially (requires_grad=lsa=False): a constant
        self.attn_dropout = nn.Dropout(attn_dropout)
        self.to_out = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(proj_dropout))

    def forward(self, x: Tensor, prev: Tensor | None = None, key_pad: Tensor | None = None) -> tuple[Tensor, Tensor]:
        b, n, d = x.shape
        q = self.W_Q(x).view(b, n, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, N, hd)
        k = self.W_K(x).view(b, n, self.num_heads, self.head_dim).permute(0, 2, 3, 1)  # (B, H, hd, N)
        v = self.W_V(x).view(b, n, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, N, hd)
        scores = torch.matmul(q, k) * self.scale  # (B, H, N, N)
        if prev is not None:
            scores = scores + prev  # residual attention (RealFormer)
        if key_pad is not None:
            scores = scores.masked_fill(key_pad[:, None, None, :], float("-inf"))
        weights = self.attn_dropout(torch.softmax(scores, dim=-1))  # (B, H, N, N)
        out = torch.matmul(weights, v).transpose(1, 2).reshape(b, n, d)  # (B, N, D)
        return self.to_out(out), scores


class PatchTSTLayer(nn.Module):
    """models/patchTST.py TSTEncoderLayer with norm='BatchNorm' (or 'LayerNorm') and pre_norm=False (or True)."""

    def __init__(self, *, dim: int, num_heads: int, d_ff: int, dropout: float, attn_dropout: float, activation: str,
                 norm: str, pre_norm: bool) -> None:
        super().__init__()
        self.self_attn = PatchTSTAttention(dim=dim, num_heads=num_heads, attn_dropout=attn_dropout,
                                           proj_dropout=dropout)
        self.dropout_attn = nn.Dropout(dropout)
        self.norm_attn = BatchNormTokens(dim) if norm == "BatchNorm" else nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, d_ff), ACTIVATIONS[activation](), nn.Dropout(dropout),
                                nn.Linear(d_ff, dim))
        self.dropout_ffn = nn.Dropout(dropout)
        self.norm_ffn = BatchNormTokens(dim) if norm == "BatchNorm" else nn.LayerNorm(dim)
        self.pre_norm = pre_norm

    @staticmethod
    def _norm(norm: nn.Module, x: Tensor, pad: Tensor | None) -> Tensor:
        return norm(x, pad) if isinstance(norm, BatchNormTokens) else norm(x)  # LayerNorm: per token already

    def forward(self, x: Tensor, prev: Tensor | None = None, key_pad: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h = self._norm(self.norm_attn, x, key_pad) if self.pre_norm else x
        out, scores = self.self_attn(h, prev, key_pad)
        x = h + self.dropout_attn(out)  # official: src = src + dropout(src2), src already normalised under pre_norm
        if not self.pre_norm:
            x = self._norm(self.norm_attn, x, key_pad)
        h = self._norm(self.norm_ffn, x, key_pad) if self.pre_norm else x
        x = h + self.dropout_ffn(self.ff(h))
        if not self.pre_norm:
            x = self._norm(self.norm_ffn, x, key_pad)
        return x, scores


class PatchTSTEncoder(MAEEncoder):
    """PatchTST's backbone on channel-independent patch tokens (module docstring). forward(tokens, mask) zeroes the
    values of the hidden patches (`mask.mask_token_at()`) and returns the latents of EVERY patch, (B, N, D); with
    mask None nothing is hidden (evaluation, fine-tuning).

    dim / depth / num_heads / d_ff: d_model, n_layers, n_heads, d_ff. dropout: PatchTST's `dropout` (input, attention
    projection, both residual branches, inside the feed-forward); attn_dropout: on the attention weights.
    activation: "relu" | "gelu"; norm: "BatchNorm" | "LayerNorm"; pre_norm; res_attention: as PatchTST's arguments.
    pos_embed: a factory (dim=) -> module mapping pos (1, N, 1) to (1, N, D) (PatchTST: `LearnedPosEmbed`).
    pool: how `pool` makes one vector per row for the frozen-feature probes: "mean" of the non-padding latents, or
    "last", the last patch's latent (PatchTST's ClassificationHead / RegressionHead read x[:, :, :, -1]).
    """

    num_prefix = 0
    latents = "all"  # forward returns every patch (MAEEncoder.latents, read by the start-up check where declared)

    def __init__(self, *, token_dim: int, dim: int, depth: int, num_heads: int, d_ff: int,
                 pos_embed: Callable[..., nn.Module], dropout: float = 0.0, attn_dropout: float = 0.0,
                 activation: str = "relu", norm: str = "BatchNorm", pre_norm: bool = False,
                 res_attention: bool = False, pool: str = "mean") -> None:
        super().__init__()
        for key, value in (("dim", dim), ("depth", depth), ("num_heads", num_heads), ("d_ff", d_ff)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"model.encoder.{key} must be an integer >= 1, got {value!r}")
        if dim % num_heads:
            raise ValueError(f"model.encoder.dim={dim} is not divisible by model.encoder.num_heads={num_heads}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"model.encoder.activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if norm not in ("BatchNorm", "LayerNorm"):
            raise ValueError(f"model.encoder.norm must be 'BatchNorm' or 'LayerNorm', got {norm!r}")
        for key, value in (("pre_norm", pre_norm), ("res_attention", res_attention)):
            if not isinstance(value, bool):
                raise ValueError(f"model.encoder.{key} must be true or false, got {value!r}")
        if pool not in ("mean", "last"):
            raise ValueError(f"model.encoder.pool must be 'mean' or 'last', got {pool!r}")
        self.dim, self.pool_dim, self.pool_type, self.res_attention = dim, dim, pool, res_attention
        self.W_P = nn.Linear(token_dim, dim)  # (B, N, patch_len) -> (B, N, D), shared_embedding=True
        self.pos_embed = pos_embed(dim=dim)
        self.dropout = nn.Dropout(check_rate(dropout, "dropout"))
        self.layers = nn.ModuleList(
            PatchTSTLayer(dim=dim, num_heads=num_heads, d_ff=d_ff, dropout=dropout,
                          attn_dropout=check_rate(attn_dropout, "attn_dropout"), activation=activation, norm=norm,
                          pre_norm=pre_norm)
            for _ in range(depth)
        )

    def encode(self, values: Tensor, pos: Tensor, pad: Tensor | None) -> Tensor:
        """(B, N, C) patch values (hidden ones already zeroed) -> (B, N, D) latents."""
        x = self.dropout(self.W_P(values) + self.pos_embed(pos).to(values.dtype))  # (B, N, D)
        scores = None
        for layer in self.layers:
            x, new_scores = layer(x, scores, pad)
            scores = new_scores if self.res_attention else None
        return x

    def forward(self, tokens: Tokens, mask: Mask | None = None) -> Tensor:
        """(B, N, D) latents of every patch; the values of the hidden ones are zeroed first (random_masking)."""
        values = tokens.values  # (B, N, C)
        if mask is not None:
            values = values.masked_fill(mask.mask_token_at().unsqueeze(-1), 0.0)  # x_removed = zeros
        return self.encode(values, tokens.pos, tokens.pad)

    def pool(self, tokens: Tokens, keep: Tensor | None = None) -> Tensor:
        """(B, D) one embedding per row from every patch (keep must be None: the encoder has no token dropping)."""
        if keep is not None:
            raise ValueError("model=patchtst sees every patch: finetune.token_drop must be null")
        x = self.encode(tokens.values, tokens.pos, tokens.pad)  # (B, N, D)
        if self.pool_type == "last":
            if tokens.pad is None:
                return x[:, -1]
            last = (tokens.pad.logical_not().cumsum(1).argmax(1))  # (B,) index of the last real patch
            return gather_tokens(x, last[:, None])[:, 0]
        if tokens.pad is None:
            return x.mean(dim=1)
        weight = tokens.pad.logical_not().to(x.dtype).unsqueeze(-1)  # (B, N, 1)
        return (x * weight).sum(1) / weight.sum(1).clamp_min(1.0)
