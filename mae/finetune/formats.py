"""Checkpoints of other codebases -> our `mae.core.encoder.Encoder` weights (`pretrained=PATH`).

    official MAE / Audio-MAE .pth   a timm VisionTransformer state dict under `model` (MAE's models_vit / models_mae)
    official VideoMAE .pth           MCG-NJU/VideoMAE modeling_pretrain / modeling_finetune (`model` or `module`)
    official Point-MAE .pth          Pang-Yatian/Point-MAE Point_MAE (pre-training: `base_model`, `MAE_encoder.*`)
    Hugging Face directory           `save_pretrained` of ViTMAEModel / ViTMAEForPreTraining (both key generations),
                                     VideoMAEModel / VideoMAEForPreTraining / VideoMAEForVideoClassification

Every key of the source is converted or dropped by an explicit rule (decoders, mask tokens, heads: `ignored`);
anything else is an error listing it. Our Encoder keeps timm's block layout, so blocks map one to one; the patch
embedding convolution becomes the Linear on flattened tokens ((C, p, p) / (C, t, p, p) order); the positional table
is returned apart (`pos_table`, installed by `mae.finetune.load.install_pos_table`); a cls position row is folded
into the cls token (cls + pos[0] is what every block sees either way); VideoMAE's separate q / v biases become the
qkv bias with a zero k part, and are REQUIRED when the source says it has them: Hugging Face's VideoMAE silently
loads zeros for missing ones (the q/v-bias trap); here a missing one is an error naming it.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from mae.core.pos_embed import sinusoid_1d_table


@dataclass
class ImportedEncoder:
    """What a foreign checkpoint gives: `state` under our Encoder's keys (no positional table), the source's
    positional table over `grid` (None: the tokenizer's grid), and what it says of the architecture."""

    state: dict[str, Tensor]
    pos_table: Tensor | None
    grid: tuple[int, ...] | None
    pos_trainable: bool
    encoder_kwargs: dict[str, object] = field(default_factory=dict)
    tokenizer_kwargs: dict[str, object] = field(default_factory=dict)
    source: str = ""
    ignored: list[str] = field(default_factory=list)
    sinusoid_1d: bool = False  # VideoMAE: the table is a 1-D sinusoid over the flattened tokens, built on the grid used


HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def detect_format(path: Path) -> str:
    """"hf_dir" or "pth"; ValueError naming `path` and the formats accepted otherwise."""
    if path.is_dir():
        if (path / "config.json").is_file() and any((path / w).is_file() for w in HF_WEIGHTS):
            return "hf_dir"
        raise ValueError(f"pretrained={path} is a directory but neither a run of ours (.hydra/config.yaml + "
                         "checkpoints/) nor a Hugging Face save_pretrained directory (config.json + model.safetensors)")
    if path.suffix in (".pth", ".pt", ".bin", ".safetensors"):
        return "pth"
    raise ValueError(f"pretrained={path}: expected a run directory, one of its .ckpt checkpoints, an official .pth "
                     "(MAE / Audio-MAE / VideoMAE / Point-MAE) or a Hugging Face save_pretrained directory")


def import_encoder(path: Path) -> ImportedEncoder:
    if detect_format(path) == "hf_dir":
        return import_hf(path)
    return import_pth(path)


# ---------------------------------------------------------------------------------------------------- helpers
def read_state(path: Path) -> dict[str, Tensor]:
    """A state dict from a .pth (unwrapping `model` / `module` / `state_dict` / `base_model`) or a .safetensors."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise RuntimeError(f"pretrained={path} is corrupt or not a torch checkpoint: {err}") from err
    for key in ("model", "module", "state_dict", "base_model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise RuntimeError(f"pretrained={path} holds no state dict of tensors (top-level keys: "
                           f"{list(obj)[:8] if isinstance(obj, dict) else type(obj).__name__})")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def take_rest(state: dict[str, Tensor], used: set[str], ignore: tuple[str, ...], source: str) -> list[str]:
    """The keys dropped by a rule (prefixes / names in `ignore`); ValueError for any key neither used nor ignored."""
    ignored = [k for k in state if k not in used and k.startswith(ignore)]
    rest = sorted(set(state) - used - set(ignored))
    if rest:
        raise ValueError(f"{source}: {len(rest)} keys this importer does not know: {', '.join(rest[:10])}"
                         f"{' ...' if len(rest) > 10 else ''}: not a plain ViT encoder of that format (layer scale, "
                         "relative position bias, a different block?)")
    return sorted(ignored)


def block_indices(state: dict[str, Tensor], pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for k in state if (m := re.match(pattern, k))})


def fold_cls(cls: Tensor, pos: Tensor) -> tuple[Tensor, Tensor]:
    """cls (1, 1, D), pos (1, 1+N, D) -> (cls + pos[:, :1], pos[:, 1:])."""
    return cls + pos[:, :1], pos[:, 1:]


def square_grid(n: int) -> tuple[int, int] | None:
    side = int(round(n**0.5))
    return (side, side) if side * side == n else None


def require(state: dict[str, Tensor], key: str, source: str, why: str = "") -> Tensor:
    if key not in state:
        raise ValueError(f"{source}: missing {key}{': ' + why if why else ''}")
    return state[key]


# --------------------------------------------------------------------------------------------------- .pth files
def import_pth(path: Path) -> ImportedEncoder:
    state = read_state(path)
    if any(k.startswith("MAE_encoder.") for k in state) or "cls_pos" in state:
        return from_pointmae(state, f"official Point-MAE checkpoint {path.name}")
    if any(k.endswith("attn.q_bias") for k in state) or any(k.startswith("encoder.patch_embed") for k in state):
        return from_videomae(state, f"official VideoMAE checkpoint {path.name}")
    if "patch_embed.proj.weight" in state:
        return from_timm_vit(state, f"official MAE / timm ViT checkpoint {path.name}")
    raise ValueError(f"pretrained={path}: not a checkpoint this importer knows (no patch_embed.proj.weight, "
                     f"MAE_encoder.* or encoder.patch_embed.*; keys: {', '.join(list(state)[:8])} ...)")


def from_timm_vit(state: dict[str, Tensor], source: str) -> ImportedEncoder:
    """MAE / Audio-MAE / timm VisionTransformer (models_vit.py, models_mae.py encoder part)."""
    out: dict[str, Tensor] = {}
    used: set[str] = set()
    conv = state["patch_embed.proj.weight"]  # (D, C, p, p) (Audio-MAE: C = 1)
    d = conv.shape[0]
    out["embed.weight"], out["embed.bias"] = conv.reshape(d, -1), require(state, "patch_embed.proj.bias", source)
    used |= {"patch_embed.proj.weight", "patch_embed.proj.bias"}
    pos = state.get("pos_embed")
    cls = state.get("cls_token")
    table = None
    if cls is not None:  # timm's pos_embed of a cls model holds the cls row first (no_embed_class=False, MAE's)
        used.add("cls_token")
        if pos is not None:
            cls, table = fold_cls(cls, pos)
        out["cls_token"] = cls
    elif pos is not None:
        table = pos
    if pos is not None:
        used.add("pos_embed")
    depth = block_indices(state, r"blocks\.(\d+)\.")
    for k in state:
        if k.startswith("blocks."):
            out[k] = state[k]
            used.add(k)
    norm = "fc_norm" if "fc_norm.weight" in state else "norm"
    for p in ("weight", "bias"):
        out[f"norm.{p}"] = require(state, f"{norm}.{p}", source, "the final norm")
        used.add(f"{norm}.{p}")
    ignored = take_rest(state, used, ("decoder", "mask_token", "head", "norm.", "fc_norm."), source)
    kwargs: dict[str, object] = {"dim": d, "depth": len(depth), "cls_token": cls is not None,
                                 "mlp_ratio": state["blocks.0.mlp.fc1.weight"].shape[0] / d}
    if norm == "fc_norm":
        kwargs["pool"] = "mean"  # a global-pool (fc_norm) model
    return ImportedEncoder(state=out, pos_table=table, grid=None if table is None else square_grid(table.shape[1]),
                           pos_trainable=True, encoder_kwargs=kwargs, source=source, ignored=ignored,
                           tokenizer_kwargs={"patch_size": conv.shape[-1], "channels": conv.shape[1]})


def qkv_from_q_v(q_bias: Tensor, v_bias: Tensor) -> Tensor:
    """VideoMAE's attention: qkv bias = cat(q_bias, zeros, v_bias) (modeling_finetune.py Attention.forward)."""
    return torch.cat([q_bias, torch.zeros_like(q_bias), v_bias])


def from_videomae(state: dict[str, Tensor], source: str) -> ImportedEncoder:
    """MCG-NJU/VideoMAE: pre-training checkpoints prefix the encoder with `encoder.`; fine-tuned ones do not."""
    pre = "encoder." if any(k.startswith("encoder.patch_embed") for k in state) else ""
    out: dict[str, Tensor] = {}
    used: set[str] = set()
    conv = require(state, f"{pre}patch_embed.proj.weight", source)  # (D, C, t, p, p)
    d = conv.shape[0]
    out["embed.weight"], out["embed.bias"] = conv.reshape(d, -1), require(state, f"{pre}patch_embed.proj.bias", source)
    used |= {f"{pre}patch_embed.proj.weight", f"{pre}patch_embed.proj.bias"}
    depth = block_indices(state, rf"{re.escape(pre)}blocks\.(\d+)\.")
    for i in depth:
        b = f"{pre}blocks.{i}."
        for k in [k for k in state if k.startswith(b)]:
            name = k[len(b):]
            if name in ("attn.q_bias", "attn.v_bias"):
                continue
            out[f"blocks.{i}.{name}"] = state[k]
            used.add(k)
        why = "VideoMAE's attention has q and v biases (qkv_bias=True); a checkpoint without them is not VideoMAE's"
        q, v = require(state, f"{b}attn.q_bias", source, why), require(state, f"{b}attn.v_bias", source, why)
        out[f"blocks.{i}.attn.qkv.bias"] = qkv_from_q_v(q, v)
        used |= {f"{b}attn.q_bias", f"{b}attn.v_bias"}
    norm = f"{pre}fc_norm" if f"{pre}fc_norm.weight" in state else f"{pre}norm"
    for p in ("weight", "bias"):
        out[f"norm.{p}"] = require(state, f"{norm}.{p}", source, "the final norm")
        used.add(f"{norm}.{p}")
    ignored = take_rest(state, used, ("decoder", "encoder_to_decoder", "mask_token", "head", "pos_embed",
                                      f"{pre}norm.", f"{pre}fc_norm.", f"{pre}head", f"{pre}pos_embed"), source)
    kwargs = {"dim": d, "depth": len(depth), "cls_token": False,
              "mlp_ratio": out["blocks.0.mlp.fc1.weight"].shape[0] / d}
    return ImportedEncoder(state=out, pos_table=None, grid=None, pos_trainable=False, sinusoid_1d=True,
                           encoder_kwargs=kwargs, source=source, ignored=ignored,
                           tokenizer_kwargs={"tubelet_size": conv.shape[2], "patch_size": conv.shape[-1],
                                             "channels": conv.shape[1]})


def from_pointmae(state: dict[str, Tensor], source: str) -> ImportedEncoder:
    """Point-MAE pre-training (models/Point_MAE.py Point_MAE.MAE_encoder = MaskTransformer): the mini-PointNet
    (Conv1d k=1 = Linear), the centre MLP, blocks with qkv_bias=False (zero bias here), nn.LayerNorm (eps 1e-5).
    Fine-tuned PointTransformer checkpoints add a cls token with its own position (`cls_pos`) added before every
    block, which our encoder does not have: they are refused (start from the pre-training checkpoint)."""
    if "cls_pos" in state:
        raise ValueError(f"{source}: a fine-tuned Point-MAE checkpoint (cls_token + cls_pos added before every block) "
                         "has no counterpart here; fine-tune from Point-MAE's pre-training checkpoint (pretrain.pth)")
    pre = "MAE_encoder."
    out: dict[str, Tensor] = {}
    used: set[str] = set()
    conv_map = {"first_conv.0": "first.0", "first_conv.1": "first.1", "first_conv.3": "first.3",
                "second_conv.0": "second.0", "second_conv.1": "second.1", "second_conv.3": "second.3"}
    for k, v in state.items():
        if k.startswith(f"{pre}encoder."):
            name = k[len(f"{pre}encoder."):]
            layer, param = name.rsplit(".", 1)
            if layer not in conv_map:
                continue
            out[f"embed.{conv_map[layer]}.{param}"] = v.squeeze(-1) if v.ndim == 3 else v  # Conv1d(k=1) -> Linear
            used.add(k)
        elif k.startswith(f"{pre}pos_embed."):
            idx, param = k[len(f"{pre}pos_embed."):].split(".")
            out[f"pos_embed.mlp.{idx}.{param}"] = v
            used.add(k)
        elif k.startswith(f"{pre}blocks.blocks."):
            name = "blocks." + k[len(f"{pre}blocks.blocks."):]
            out[name] = v
            used.add(k)
        elif k.startswith(f"{pre}norm."):
            out["norm." + k.rsplit(".", 1)[1]] = v
            used.add(k)
    depth = block_indices(out, r"blocks\.(\d+)\.")
    for i in depth:
        if f"blocks.{i}.attn.qkv.bias" not in out:
            out[f"blocks.{i}.attn.qkv.bias"] = torch.zeros(out[f"blocks.{i}.attn.qkv.weight"].shape[0])
    ignored = take_rest(state, used, ("MAE_decoder", "decoder_pos_embed", "increase_dim", "mask_token"), source)
    d = require(out, "norm.weight", source, "MAE_encoder.norm").shape[0]
    kwargs = {"dim": d, "depth": len(depth), "cls_token": False, "norm_eps": 1e-5, "pos_every_block": True,
              "mlp_ratio": out["blocks.0.mlp.fc1.weight"].shape[0] / d}
    return ImportedEncoder(state=out, pos_table=None, grid=None, pos_trainable=True, encoder_kwargs=kwargs,
                           source=source, ignored=ignored)


# -------------------------------------------------------------------------------------------- Hugging Face dirs
def read_hf(path: Path) -> tuple[dict, dict[str, Tensor]]:
    config = json.loads((path / "config.json").read_text())
    weights = next(path / w for w in HF_WEIGHTS if (path / w).is_file())
    return config, read_state(weights)


def import_hf(path: Path) -> ImportedEncoder:
    config, state = read_hf(path)
    kind = config.get("model_type")
    if kind == "vit_mae":
        return from_hf_vitmae(config, state, f"Hugging Face ViTMAE {path}")
    if kind == "videomae":
        return from_hf_videomae(config, state, f"Hugging Face VideoMAE {path}")
    raise ValueError(f"pretrained={path}: Hugging Face model_type {kind!r}; ViTMAE (vit_mae) and VideoMAE "
                     "(videomae) directories are supported")


def hf_kwargs(config: dict, source: str) -> dict[str, object]:
    if config.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"{source}: hidden_act={config['hidden_act']!r}; our blocks use exact GELU")
    d = int(config["hidden_size"])
    return {"dim": d, "depth": int(config["num_hidden_layers"]), "num_heads": int(config["num_attention_heads"]),
            "mlp_ratio": int(config["intermediate_size"]) / d, "norm_eps": float(config.get("layer_norm_eps", 1e-12))}


HF_BLOCK = {  # our timm Block names <- Hugging Face names (both key generations of transformers)
    "norm1": ("layernorm_before",), "norm2": ("layernorm_after",),
    "attn.proj": ("attention.o_proj", "attention.output.dense"),
    "mlp.fc1": ("mlp.fc1", "intermediate.dense"), "mlp.fc2": ("mlp.fc2", "output.dense"),
}
HF_QKV = {"q": ("attention.q_proj", "attention.attention.query"), "k": ("attention.k_proj", "attention.attention.key"),
          "v": ("attention.v_proj", "attention.attention.value")}


def hf_blocks(state: dict[str, Tensor], prefix: str, source: str, *, qv_bias: bool, k_bias: bool,
              used: set[str]) -> dict[str, Tensor]:
    """Our blocks.{i}.* from a Hugging Face encoder's layers under `prefix` ("layers." or "encoder.layer.")."""
    out: dict[str, Tensor] = {}
    for i in block_indices(state, rf"{re.escape(prefix)}(\d+)\."):
        b = f"{prefix}{i}."

        def pick(names: tuple[str, ...], param: str, b: str = b) -> str:
            for name in names:
                if f"{b}{name}.{param}" in state:
                    return f"{b}{name}.{param}"
            raise ValueError(f"{source}: missing {b}{names[-1]}.{param}")

        for ours, theirs in HF_BLOCK.items():
            for param in ("weight", "bias"):
                key = pick(theirs, param)
                out[f"blocks.{i}.{ours}.{param}"] = state[key]
                used.add(key)
        weights, biases = [], []
        for part, theirs in HF_QKV.items():
            key = pick(theirs, "weight")
            weights.append(state[key])
            used.add(key)
            if part == "k" and not k_bias:
                biases.append(torch.zeros(state[key].shape[0]))
                continue
            legacy = f"{b}attention.attention.{part}_bias"  # older VideoMAE: q_bias / v_bias parameters
            candidates = [f"{b}{name}.bias" for name in theirs] + [legacy]
            found = next((c for c in candidates if c in state), None)
            if found is None:
                if qv_bias or part == "k":
                    raise ValueError(f"{source}: layer {i} has no {part} bias ({legacy} / {b}{theirs[-1]}.bias) although "
                                     "the config says the attention has one: Hugging Face would load zeros here "
                                     "without a word (the VideoMAE q_bias/v_bias trap); re-convert the checkpoint")
                biases.append(torch.zeros(state[key].shape[0]))
                continue
            biases.append(state[found])
            used.add(found)
        out[f"blocks.{i}.attn.qkv.weight"] = torch.cat(weights)
        out[f"blocks.{i}.attn.qkv.bias"] = torch.cat(biases)
    return out


def strip_prefix(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k.removeprefix(prefix): v for k, v in state.items()}


def from_hf_vitmae(config: dict, state: dict[str, Tensor], source: str) -> ImportedEncoder:
    state = strip_prefix(state, "vit.")
    used: set[str] = set()
    layers = "layers." if any(k.startswith("layers.") for k in state) else "encoder.layer."
    out = hf_blocks(state, layers, source, qv_bias=bool(config.get("qkv_bias", True)),
                    k_bias=bool(config.get("qkv_bias", True)), used=used)
    conv = require(state, "embeddings.patch_embeddings.projection.weight", source)
    d = conv.shape[0]
    out["embed.weight"], out["embed.bias"] = conv.reshape(d, -1), state["embeddings.patch_embeddings.projection.bias"]
    cls, table = fold_cls(require(state, "embeddings.cls_token", source),
                          require(state, "embeddings.position_embeddings", source))
    out["cls_token"] = cls
    out["norm.weight"], out["norm.bias"] = require(state, "layernorm.weight", source), state["layernorm.bias"]
    used |= {"embeddings.patch_embeddings.projection.weight", "embeddings.patch_embeddings.projection.bias",
             "embeddings.cls_token", "embeddings.position_embeddings", "layernorm.weight", "layernorm.bias"}
    ignored = take_rest(state, used, ("decoder.",), source)
    size, p = config["image_size"], config["patch_size"]
    grid = (size // p, size // p) if isinstance(size, int) else (size[0] // p, size[1] // p)
    return ImportedEncoder(state=out, pos_table=table, grid=grid, pos_trainable=False, source=source,
                           encoder_kwargs={**hf_kwargs(config, source), "cls_token": True}, ignored=ignored,
                           tokenizer_kwargs={"patch_size": p, "channels": int(config.get("num_channels", 3))})


def from_hf_videomae(config: dict, state: dict[str, Tensor], source: str) -> ImportedEncoder:
    state = strip_prefix(state, "videomae.")
    used: set[str] = set()
    qv_bias = bool(config.get("qkv_bias", config.get("qv_bias", True)))
    out = hf_blocks(state, "encoder.layer.", source, qv_bias=qv_bias, k_bias=False, used=used)
    conv = require(state, "embeddings.patch_embeddings.projection.weight", source)  # (D, C, t, p, p)
    d = conv.shape[0]
    out["embed.weight"], out["embed.bias"] = conv.reshape(d, -1), state["embeddings.patch_embeddings.projection.bias"]
    used |= {"embeddings.patch_embeddings.projection.weight", "embeddings.patch_embeddings.projection.bias"}
    for norm in ("layernorm", "fc_norm"):
        if f"{norm}.weight" in state:
            out["norm.weight"], out["norm.bias"] = state[f"{norm}.weight"], state[f"{norm}.bias"]
            used |= {f"{norm}.weight", f"{norm}.bias"}
            break
    else:  # VideoMAEModel with mean pooling has no final norm (VideoMAE's fc_norm is new at fine-tuning)
        out["norm.weight"], out["norm.bias"] = torch.ones(d), torch.zeros(d)
    ignored = take_rest(state, used, ("decoder.", "encoder_to_decoder", "mask_token", "classifier",
                                      "embeddings.position_embeddings"), source)
    size, p, t = config["image_size"], config["patch_size"], config["tubelet_size"]
    grid = (config["num_frames"] // t, size // p, size // p)
    return ImportedEncoder(state=out, pos_table=sinusoid_1d_table(grid[0] * grid[1] * grid[2], d), grid=grid,
                           pos_trainable=False, sinusoid_1d=True, source=source, ignored=ignored,
                           encoder_kwargs={**hf_kwargs(config, source), "cls_token": False},
                           tokenizer_kwargs={"patch_size": p, "tubelet_size": t,
                                             "channels": int(config.get("num_channels", 3))})
