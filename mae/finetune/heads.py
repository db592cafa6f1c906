"""Task heads on top of the encoder: what turns its features into the task's outputs.

`Head.forward(encoder=, tokenizer=, tokens=, keep=, batch=)` sees everything a head may need: pooled-feature heads
use `encoder.pool` (+ the tokenizer's per-sample merge), a forecasting head the per-token latents.
"""
from __future__ import annotations

from torch import Tensor, nn

from mae.core.interfaces import MAEEncoder, Tokenizer
from mae.core.tokens import Tokens


class Head(nn.Module):
    """The declared interface of a task head; `in_dim` is the encoder's pooled width after the tokenizer's merge."""

    def forward(self, *, encoder: MAEEncoder, tokenizer: Tokenizer, tokens: Tokens, keep: Tensor | None,
                batch: dict) -> Tensor:
        raise NotImplementedError


class PoolHead(Head):
    """Pooled features -> [BatchNorm without affine] -> [dropout] -> Linear (B, out_dim).

    MAE fine-tuning (`models_vit.VisionTransformer` with global_pool): the encoder's mean pool + fc_norm, then a
    Linear initialised trunc_normal(std=2e-5) (`main_finetune.py`: `trunc_normal_(model.head.weight, std=2e-5)`).
    MAE linear probing (`main_linprobe.py`): `torch.nn.Sequential(BatchNorm1d(affine=False, eps=1e-6), head)`
    with the head initialised trunc_normal(std=0.01): batch_norm=true, init_std=0.01.
    """

    def __init__(self, *, in_dim: int, out_dim: int, batch_norm: bool = False, init_std: float = 2e-5,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"finetune.head.dropout must be in [0, 1), got {dropout}")
        self.norm = nn.BatchNorm1d(in_dim, affine=False, eps=1e-6) if batch_norm else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_dim, out_dim)
        nn.init.trunc_normal_(self.linear.weight, std=init_std)
        nn.init.zeros_(self.linear.bias)

    def forward(self, *, encoder: MAEEncoder, tokenizer: Tokenizer, tokens: Tokens, keep: Tensor | None,
                batch: dict) -> Tensor:
        features = tokenizer.merge_pooled(encoder.pool(tokens, keep), batch)  # (B, in_dim)
        return self.linear(self.dropout(self.norm(features)))  # (B, out_dim)


class MLPHead(Head):
    """Pooled features -> [Linear -> BatchNorm -> ReLU -> Dropout] x len(hidden) -> Linear (B, out_dim): Point-MAE's
    `cls_head_finetune` (models/Point_MAE.py PointTransformer: 256, 256, dropout 0.5) on the pooled features."""

    def __init__(self, *, in_dim: int, out_dim: int, hidden: list[int], dropout: float = 0.5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = h
        self.mlp = nn.Sequential(*layers, nn.Linear(width, out_dim))

    def forward(self, *, encoder: MAEEncoder, tokenizer: Tokenizer, tokens: Tokens, keep: Tensor | None,
                batch: dict) -> Tensor:
        return self.mlp(tokenizer.merge_pooled(encoder.pool(tokens, keep), batch))  # (B, out_dim)
