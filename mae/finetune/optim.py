"""Fine-tuning parameter groups: MAE's layer-wise lr decay through timm's `param_groups_layer_decay`, and LARS groups
for the linear probe (timm's `Lars`, with MAE's exclusions).

Layer ids as MAE's `util/lr_decay.py` (`get_layer_id_for_vit`): the token embedding, cls token and positional
table are layer 0, block i is layer i + 1, everything after the blocks (the final norm / fc_norm and the head) is
layer L + 1; the lr of layer j is scaled by layer_decay ** (L + 1 - j). Weight decay is off for 1-D parameters
and the encoder's `no_weight_decay()` names (cls token; the positional table), as MAE's `no_weight_decay_list`.
"""
from __future__ import annotations

from timm.optim import param_groups_layer_decay
from torch import nn

from mae.core.interfaces import MAEEncoder


class LayerDecayView(nn.Module):
    """What timm's layer-decay grouping reads: the encoder and the head under fixed names, and MAE's layer ids as a
    `group_matcher` (unmatched names: the final norm and the head, mapped to the last layer)."""

    def __init__(self, encoder: MAEEncoder, head: nn.Module) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head

    def group_matcher(self, coarse: bool = False) -> dict:
        return {"stem": r"^encoder\.(?:cls_token|embed|pos_embed)", "blocks": [(r"^encoder\.blocks\.(\d+)", None)]}


def no_decay_names(encoder: MAEEncoder) -> list[str]:
    names = {f"encoder.{name}" for name in encoder.no_weight_decay()}
    names |= {f"encoder.{name}" for name, _ in encoder.named_parameters() if name.startswith("pos_embed.table")}
    return sorted(names)


def layer_decay_groups(encoder: MAEEncoder, head: nn.Module, *, weight_decay: float, layer_decay: float,
                       lr: float) -> list[dict]:
    """Parameter groups with `lr` = peak lr x the layer's scale (kept as `lr_scale` too) and MAE's weight decay.
    layer_decay 1.0 gives one scale for every layer (no decay)."""
    if not 0.0 < layer_decay <= 1.0:
        raise ValueError(f"finetune.layer_decay must be in (0, 1], got {layer_decay}")
    groups = param_groups_layer_decay(LayerDecayView(encoder, head), weight_decay=weight_decay,
                                      no_weight_decay_list=no_decay_names(encoder), layer_decay=layer_decay)
    for group in groups:
        group["lr"] = lr * group["lr_scale"]
    return groups


def lars_groups(module: nn.Module, *, weight_decay: float, lr: float) -> list[dict]:
    """MAE's LARS (`util/lars.py`): the trust ratio and weight decay only for parameters of more than one axis; biases
    and other 1-D parameters take plain momentum SGD. timm's `Lars` applies the ratio to a group when
    `always_adapt` (or weight decay) is set, so the two kinds go in two groups."""
    trainable = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
    return [
        {"params": [p for _, p in trainable if p.ndim > 1], "weight_decay": weight_decay, "always_adapt": True,
         "lr": lr, "lr_scale": 1.0},
        {"params": [p for _, p in trainable if p.ndim <= 1], "weight_decay": 0.0, "always_adapt": False,
         "lr": lr, "lr_scale": 1.0},
    ]
