"""GraphMAE's decoder: encoder-to-decoder Linear, RE-MASK the hidden nodes' latents (set to 0), one GAT layer.

Constructor arguments as `mae.core.decoder.Decoder` (enc_dim, num_prefix, out_dim, dim, depth, num_heads) so the
module's factory call is unchanged. It needs latents of every node (B, prefix+N, D), which `GraphEncoder`
returns; the transformer encoder returns visible tokens only and pairs with `mae.core.decoder.Decoder`.
"""
from __future__ import annotations

from torch import Tensor, nn

from mae.core.interfaces import MAEDecoder
from mae.core.tokens import Mask, Tokens, gather_tokens
from mae.modalities.graph.encoder import GATStack, flat_edges


class GraphDecoder(MAEDecoder):
    """latent (B, prefix+N, D) -> predictions (B, M, out_dim) at mask.predicted (the hidden nodes).

    depth GAT layers: depth-1 hidden ones of width `dim` (concatenated heads, PReLU) and an output layer of
    `num_heads` heads of width out_dim averaged, no activation. GraphMAE: depth 1, one output head.
    """

    def __init__(
        self,
        *,
        enc_dim: int,
        num_prefix: int,
        out_dim: int,
        dim: int = 512,
        depth: int = 1,
        num_heads: int = 1,
        feat_drop: float = 0.2,
        attn_drop: float = 0.1,
        negative_slope: float = 0.2,
        remask: bool = True,
    ) -> None:
        super().__init__()
        self.num_prefix, self.remask = num_prefix, remask
        self.encoder_to_decoder = nn.Linear(enc_dim, enc_dim, bias=False)
        self.gat = GATStack(in_dim=enc_dim, width=dim, out_dim=out_dim, depth=depth, heads=num_heads,
                            feat_drop=feat_drop, attn_drop=attn_drop, negative_slope=negative_slope,
                            residual=False, norm=None, last_concat=False, last_activation=False)
        self.out_dim = out_dim

    def forward(self, latent: Tensor, tokens: Tokens, mask: Mask) -> Tensor:
        b, n = tokens.batch_size, tokens.num_tokens
        if latent.shape[1] != self.num_prefix + n:
            raise ValueError(
                f"GraphDecoder needs latents of all {n} nodes, got {latent.shape[1] - self.num_prefix}: pair it with "
                "mae.modalities.graph.encoder.GraphEncoder (model=gat); the transformer encoder sees visible tokens only and "
                "goes with mae.core.decoder.Decoder"
            )
        h = self.encoder_to_decoder(latent[:, self.num_prefix :])  # (B, N, D)
        if self.remask:  # GraphMAE: rep[mask_nodes] = 0, the decoder must rebuild them from their neighbours
            h = h.masked_fill(mask.hidden_bool().unsqueeze(-1), 0.0)
        out = self.gat(h.reshape(b * n, -1), flat_edges(tokens, "GraphDecoder"))  # (B*N, out_dim)
        return gather_tokens(out.reshape(b, n, self.out_dim), mask.predicted)  # (B, M, out_dim)
