"""FLOP counting with torch's FlopCounterMode, CPU attention included."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.models import MASK_RATIO, build_encoder
from mae.core.masking import RandomMasker

aten = torch.ops.aten


def _sdpa_fwd(q, k, v, *args, out_shape=None, **kwargs) -> int:
    """q (B, H, L, d), k/v (B, H, S, d): QK^T and PV, 2 FLOPs per multiply-add."""
    b, h, lq, d = q
    s, dv = k[2], v[3]
    return 2 * b * h * lq * s * (d + dv)


def _sdpa_bwd(grad_out, q, k, v, *args, out_shape=None, **kwargs) -> int:
    """Four matmuls of the attention backward (dV, dP, dQ, dK): twice the forward (recompute not counted)."""
    return 2 * _sdpa_fwd(q, k, v)


# torch 2.14's FlopCounterMode has formulas for the CUDA flash/efficient/cuDNN SDPA kernels but not the
# CPU flash kernel, so on CPU attention matmuls would count as 0 FLOPs; we add the same formula for it.
CPU_SDPA = {
    aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_fwd,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_bwd,
}


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of the matmul-like ops (mm, addmm, bmm, conv, SDPA) that `fn` runs, forward and backward."""
    mode = FlopCounterMode(display=False, custom_mapping=CPU_SDPA)
    with mode:
        fn()
    return mode.get_total_flops()


@torch.no_grad()
def encoder_flops(*, dim: int, depth: int, heads: int) -> dict[str, int]:
    """Forward FLOPs at batch 1 with every token visible (mask None) and at MAE's mask ratio."""
    encoder, tokenizer = build_encoder(dim=dim, depth=depth, heads=heads)
    tokens = tokenizer({"image": torch.randn(1, 3, 224, 224)})  # values (1, 196, 768)
    mask = RandomMasker(ratio=MASK_RATIO)(tokens, torch.Generator().manual_seed(0))  # keep (1, 49)
    return {
        "tokens_all": tokens.num_tokens,
        "tokens_visible": mask.keep.shape[1],
        "flops_ratio_0.0": count_flops(lambda: encoder(tokens, None)),
        f"flops_ratio_{MASK_RATIO}": count_flops(lambda: encoder(tokens, mask)),
    }
