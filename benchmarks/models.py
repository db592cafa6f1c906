"""The two models under test, built from configs (no weights downloaded), and one training step each.

Identical MAE config: ViT-Tiny/16 at 224 px (width 192, depth 12, 3 heads, MLP 768), decoder width 128,
depth 4, 4 heads (MLP 512), mask ratio 0.75, norm_pix loss, AdamW(betas 0.9/0.95, wd 0.05, no decay on
1-D params and cls/mask tokens) for both, fused (one kernel for all parameters: our conf/optim/adamw.yaml
default and HF Trainer's default since torch 2.8).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

from mae.core.decoder import Decoder
from mae.core.encoder import Encoder
from mae.core.losses import masked_mse
from mae.core.masking import RandomMasker
from mae.core.module import MAEModule
from mae.core.optim import param_groups
from mae.core.pos_embed import SinCosPosEmbed
from mae.core.targets import NormPixTarget
from mae.modalities.image.tokenizer import ImageTokenizer

IMAGE, PATCH, MASK_RATIO = 224, 16, 0.75
ENC = {"dim": 192, "depth": 12, "heads": 3}
DEC = {"dim": 128, "depth": 4, "heads": 4}
LR, WD, BETAS = 1.5e-4 * 32 / 256, 0.05, (0.9, 0.95)


@dataclass
class Runner:
    """A model with its optimiser; `step(images)` does forward, backward, AdamW step, zero_grad."""

    name: str
    model: nn.Module
    step: Callable[[Tensor], float]

    def trainable_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)


def build_ours(*, compile: bool = False, seed: int = 0) -> Runner:
    torch.manual_seed(seed)
    pe = SinCosPosEmbed
    module = MAEModule(
        tokenizer=ImageTokenizer(image_size=IMAGE, channels=3, patch_size=PATCH),
        masker=RandomMasker(ratio=MASK_RATIO),
        encoder=partial(Encoder, dim=ENC["dim"], depth=ENC["depth"], num_heads=ENC["heads"], pos_embed=pe),
        decoder=partial(Decoder, dim=DEC["dim"], depth=DEC["depth"], num_heads=DEC["heads"], pos_embed=pe),
        target=NormPixTarget(),
        loss=masked_mse,
        optimizer=partial(torch.optim.AdamW, betas=BETAS),
        batch_size=32,
    ).train()
    if compile:
        module.encoder.compile()  # in place, as MAEModule.configure_model does
        module.decoder.compile()
    opt = torch.optim.AdamW(param_groups(module, weight_decay=WD), lr=LR, betas=BETAS, fused=True)
    generator = torch.Generator().manual_seed(seed)

    def step(images: Tensor) -> float:  # images (B, 3, 224, 224)
        loss = module({"image": images}, generator)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss.item()

    return Runner("ours (compiled)" if compile else "ours", module, step)


def hf_config(attn: str):
    from transformers import ViTMAEConfig

    return ViTMAEConfig(
        image_size=IMAGE, patch_size=PATCH, num_channels=3,
        hidden_size=ENC["dim"], num_hidden_layers=ENC["depth"], num_attention_heads=ENC["heads"],
        intermediate_size=4 * ENC["dim"],
        decoder_hidden_size=DEC["dim"], decoder_num_hidden_layers=DEC["depth"],
        decoder_num_attention_heads=DEC["heads"], decoder_intermediate_size=4 * DEC["dim"],
        mask_ratio=MASK_RATIO, norm_pix_loss=True, layer_norm_eps=1e-6, qkv_bias=True,
        attn_implementation=attn,
    )


def build_hf(*, seed: int = 0) -> tuple[Runner, str]:
    """HF ViTMAEForPreTraining from a config; returns the runner and the attention implementation used."""
    from transformers import ViTMAEForPreTraining

    torch.manual_seed(seed)
    try:
        model = ViTMAEForPreTraining(hf_config("sdpa"))
    except (ValueError, ImportError):
        model = ViTMAEForPreTraining(hf_config("eager"))
    model.train()
    attn = str(model.config._attn_implementation)
    no_decay = {"vit.embeddings.cls_token", "decoder.mask_token"}
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if p.ndim > 1 and n not in no_decay], "weight_decay": WD},
        {"params": [p for n, p in named if p.ndim <= 1 or n in no_decay], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=LR, betas=BETAS, fused=True)

    def step(images: Tensor) -> float:  # images (B, 3, 224, 224); HF draws its own mask noise
        loss = model(pixel_values=images).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss.item()

    return Runner("HF ViTMAE", model, step), attn


def build_encoder(*, dim: int, depth: int, heads: int) -> tuple[Encoder, ImageTokenizer]:
    """A bare MAE encoder (eval mode) and its 224 px / 16 px tokenizer, for FLOP counting."""
    tokenizer = ImageTokenizer(image_size=IMAGE, channels=3, patch_size=PATCH)
    encoder = Encoder(token_dim=tokenizer.token_dim, dim=dim, depth=depth, num_heads=heads, pos_embed=SinCosPosEmbed)
    return encoder.eval(), tokenizer
