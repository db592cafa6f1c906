"""GraphMAE's encoder: a GAT (torch-geometric `GATConv`) over the WHOLE graph, [MASK] token at hidden nodes.

Unlike the transformer `Encoder` (visible tokens only), a GNN needs every node to pass messages, so
`forward(tokens, mask)` replaces the input features of the hidden nodes (`mask.mask_token_at()`: a
`GraphMask` leaves its randomly replaced nodes out) by a learnable [MASK] vector and returns
latents of ALL N nodes, (B, N, D). `mae.modalities.graph.decoder.GraphDecoder` re-masks the hidden ones.

Layers as GraphMAE's GAT: input dropout (`feat_drop`), `GATConv` with `num_heads` heads of dim/num_heads
concatenated, attention dropout (`attn_drop`), LeakyReLU slope `negative_slope`, optional residual and norm,
PReLU after every layer (the last one included: GraphMAE's encoder keeps its last activation).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch_geometric.nn import GATConv

from mae.core.interfaces import MAEEncoder
from mae.core.tokens import Mask, Tokens

NORMS = (None, "layernorm", "batchnorm")
POOLS = ("mean", "max", "sum")


def flat_edges(tokens: Tokens, who: str) -> Tensor:
    """tokens.edge_index (2, E) into the flattened B*N nodes, with a clear error when the tokens have none."""
    if tokens.edge_index is None:
        raise ValueError(f"{who} needs tokens with edge_index (modality=graph); these tokens have no graph structure")
    return tokens.edge_index


def masked_pool(x: Tensor, pad: Tensor | None, how: str) -> Tensor:
    """(B, N, D) node latents -> (B, D) over the real (non-padding) nodes: mean, max or sum."""
    real = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device) if pad is None else ~pad
    w = real.unsqueeze(-1).to(x.dtype)  # (B, N, 1)
    if how == "max":
        return x.masked_fill(~real.unsqueeze(-1), float("-inf")).amax(dim=1)
    total = (x * w).sum(dim=1)  # (B, D)
    return total if how == "sum" else total / w.sum(dim=1).clamp_min(1.0)


class GATStack(nn.Module):
    """`depth` GATConv layers on flattened nodes (B*N, C) -> (B*N, out): hidden layers concatenate `heads`
    heads of width/heads; the last layer concatenates too (encoder) or averages `heads` heads of
    width out_dim (decoder, `last_concat=False`)."""

    def __init__(self, *, in_dim: int, width: int, out_dim: int, depth: int, heads: int, feat_drop: float,
                 attn_drop: float, negative_slope: float, residual: bool, norm: str | None, last_concat: bool,
                 last_activation: bool) -> None:
        super().__init__()
        if depth < 1 or heads < 1:
            raise ValueError(f"GAT depth and num_heads must be >= 1, got {depth}, {heads}")
        if norm not in NORMS:
            raise ValueError(f"model norm must be one of {NORMS}, got {norm!r}")
        self.convs, self.norms, self.acts = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        self.drop = nn.Dropout(feat_drop)
        dims = [in_dim] + [width] * (depth - 1)
        for i, d_in in enumerate(dims):
            last = i == depth - 1
            concat = last_concat or not last
            d_out = out_dim if last else width
            if concat and d_out % heads:
                raise ValueError(f"GAT width {d_out} must be divisible by num_heads {heads}")
            self.convs.append(GATConv(d_in, d_out // heads if concat else d_out, heads=heads, concat=concat,
                                      negative_slope=negative_slope, dropout=attn_drop, residual=residual))
            use_act = last_activation or not last
            self.norms.append(nn.Identity() if norm is None or not use_act else
                              nn.LayerNorm(d_out) if norm == "layernorm" else nn.BatchNorm1d(d_out))
            self.acts.append(nn.PReLU() if use_act else nn.Identity())

    def forward(self, h: Tensor, edge_index: Tensor) -> Tensor:
        for conv, norm, act in zip(self.convs, self.norms, self.acts):
            h = act(norm(conv(self.drop(h), edge_index)))
        return h


class GraphEncoder(MAEEncoder):
    """GAT encoder with the `MAEEncoder` interface: dim, num_prefix (0), pool_dim, forward(tokens, mask), pool(tokens).

    forward returns (B, N, dim) latents of every node (not only the visible ones). `pos_embed` (the modality's
    positional-encoding embedding) is added to the input embedding only when `use_pos` is true (GraphMAE
    does not use positional encodings; a GAT sees the structure through the edges).
    """

    def __init__(
        self,
        *,
        token_dim: int,
        dim: int = 512,
        depth: int = 2,
        num_heads: int = 4,
        feat_drop: float = 0.2,
        attn_drop: float = 0.1,
        negative_slope: float = 0.2,
        residual: bool = False,
        norm: str | None = None,
        pool: str = "mean",
        use_pos: bool = False,
        pos_embed: Callable[..., nn.Module] | None = None,
    ) -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"model.encoder.pool must be one of {POOLS} for the GAT, got {pool!r}")
        if use_pos and pos_embed is None:
            raise ValueError("model.encoder.use_pos=true needs model.encoder.pos_embed (the modality's pos_embed)")
        self.dim, self.num_prefix, self.pool_dim, self.pool_type = dim, 0, dim, pool
        self.mask_token = nn.Parameter(torch.zeros(1, 1, token_dim))  # GraphMAE's enc_mask_token (zeros)
        self.pos_embed = pos_embed(dim=token_dim) if use_pos and pos_embed is not None else None
        self.gat = GATStack(in_dim=token_dim, width=dim, out_dim=dim, depth=depth, heads=num_heads,
                            feat_drop=feat_drop, attn_drop=attn_drop, negative_slope=negative_slope,
                            residual=residual, norm=norm, last_concat=True, last_activation=True)

    def no_weight_decay(self) -> set[str]:
        return {"mask_token"}

    def forward(self, tokens: Tokens, mask: Mask | None = None) -> Tensor:
        """(B, N, dim) latents of every node; the nodes `mask.mask_token_at()` enter as the [MASK] token."""
        x = tokens.values  # (B, N, C)
        if mask is not None:
            hidden = mask.mask_token_at()  # (B, N)
            x = torch.where(hidden.unsqueeze(-1), self.mask_token.to(x.dtype), x)  # (B, N, C)
        if self.pos_embed is not None:
            x = x + self.pos_embed(tokens.pos).to(x.dtype)
        b, n, c = x.shape
        h = self.gat(x.reshape(b * n, c), flat_edges(tokens, "GraphEncoder"))  # (B*N, dim)
        return h.reshape(b, n, self.dim)

    def pool(self, tokens: Tokens, keep: Tensor | None = None) -> Tensor:
        """(B, dim) graph embeddings: mean / max / sum of the unmasked node latents over the real nodes (every node:
        a GNN passes messages over all of them, so `keep` must be None)."""
        if keep is not None:
            raise ValueError("the graph encoder pools every node: fine-tuning token dropping does not apply to graphs")
        return masked_pool(self(tokens, None), tokens.pad, self.pool_type)
