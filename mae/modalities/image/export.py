"""Export a pre-trained image encoder as a timm `VisionTransformer` state dict.

    python -m mae.modalities.image.export RUN_DIR [--ckpt PATH] [--out FILE]

writes FILE (default RUN_DIR/export/timm_vit.pth) and FILE.json with the `timm.create_model` arguments;
`timm.create_model(name, num_classes=0, **kwargs)` then loads the state dict with strict=True and gives
the same pooled features as `MAEModule.embed`.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from mae.core.encoder import Encoder
from mae.modalities.image.tokenizer import ImageTokenizer
from mae.train.checkpoints import load_run_module

TIMM_NAMES = {192: "vit_tiny_patch16_224", 384: "vit_small_patch16_224", 768: "vit_base_patch16_224", 1024: "vit_large_patch16_224"}


def timm_kwargs(encoder: Encoder, tokenizer: ImageTokenizer) -> tuple[str, dict]:
    """The timm model name and constructor overrides matching our encoder exactly."""
    block = encoder.blocks[0]
    kwargs = {
        "img_size": list(tokenizer.image_size),
        "patch_size": tokenizer.patch_size,
        "in_chans": tokenizer.channels,
        "embed_dim": encoder.dim,
        "depth": len(encoder.blocks),
        "num_heads": block.attn.num_heads,
        "mlp_ratio": block.mlp.fc1.out_features / encoder.dim,
        "class_token": encoder.cls_token is not None,
        "global_pool": "token" if encoder.pool_type == "cls" else "avg",
        "fc_norm": encoder.pool_type == "mean",
    }
    return TIMM_NAMES.get(encoder.dim, "vit_base_patch16_224"), kwargs


def to_timm_state_dict(encoder: Encoder, tokenizer: ImageTokenizer) -> dict[str, torch.Tensor]:
    """Rename/reshape our encoder's weights into timm's VisionTransformer layout."""
    if not isinstance(tokenizer, ImageTokenizer):
        raise TypeError(f"timm export is for image encoders; this run's tokenizer is {type(tokenizer).__name__}")
    d, c, p = encoder.dim, tokenizer.channels, tokenizer.patch_size
    src = {k: v.detach().cpu() for k, v in encoder.state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    pos = encoder.pos_embed(tokenizer.pos.cpu())  # (1, N, D) fixed sin-cos
    if encoder.cls_token is not None:
        out["cls_token"] = src["cls_token"]
        pos = torch.cat([torch.zeros(1, 1, d), pos], dim=1)  # cls position embedding is zero (MAE)
    out["pos_embed"] = pos
    out["patch_embed.proj.weight"] = src["embed.weight"].reshape(d, c, p, p)  # tokens are (C, p, p)
    out["patch_embed.proj.bias"] = src["embed.bias"]
    out |= {k: v for k, v in src.items() if k.startswith("blocks.")}
    norm = "fc_norm" if encoder.pool_type == "mean" else "norm"
    out[f"{norm}.weight"], out[f"{norm}.bias"] = src["norm.weight"], src["norm.bias"]
    return out


def export(run_dir: Path, *, ckpt: Path | None = None, out: Path | None = None) -> Path:
    module = load_run_module(run_dir, ckpt)
    out = out or run_dir / "export" / "timm_vit.pth"
    out.parent.mkdir(parents=True, exist_ok=True)
    name, kwargs = timm_kwargs(module.encoder, module.tokenizer)
    torch.save(to_timm_state_dict(module.encoder, module.tokenizer), out)
    out.with_suffix(".json").write_text(json.dumps({"model_name": name, "kwargs": kwargs}, indent=2))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--ckpt", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = export(args.run_dir, ckpt=args.ckpt, out=args.out)
    spec = json.loads(out.with_suffix(".json").read_text())
    print(f"wrote {out}\nload it with:\n  import timm, torch\n"
          f"  model = timm.create_model({spec['model_name']!r}, pretrained=False, num_classes=0, **{spec['kwargs']})\n"
          f"  model.load_state_dict(torch.load({str(out)!r}), strict=True)")


if __name__ == "__main__":
    main()
