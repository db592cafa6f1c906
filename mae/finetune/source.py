"""`pretrained=PATH`: what it points to, the architecture it carries, and the encoder built and loaded from it.

PATH may be
  - a run directory of ours (RUN/.hydra/config.yaml + RUN/checkpoints/last.ckpt),
  - one of our checkpoints (RUN/checkpoints/<name>.ckpt: the architecture is read from RUN/.hydra/config.yaml),
  - an official-format `.pth` (MAE / Audio-MAE / VideoMAE / Point-MAE; no architecture inside: `model=` names it),
  - a Hugging Face `save_pretrained` directory of ViTMAEModel / VideoMAEModel (config.json gives the architecture).
The architecture of a run of ours (its `model`, `tokenizer` and `pos_embed` config) replaces the current one, and
resolves against the CURRENT data options: fine-tuning at another image size / frame count / spectrogram length
is a data override, and the positional embedding is interpolated to the new grid.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from mae.core.encoder import Encoder
from mae.core.interfaces import MAEEncoder, Tokenizer
from mae.core.pos_embed import SinCosPosEmbed, sincos_table, sinusoid_1d_table
from mae.finetune.formats import ImportedEncoder, detect_format, import_encoder
from mae.finetune.load import install_pos_table, load_encoder_strict
from mae.train.checkpoints import read_checkpoint

log = logging.getLogger(__name__)


@dataclass
class Pretrained:
    """A resolved `pretrained=` path: a run of ours (`run_cfg` + `ckpt`) or an imported checkpoint (`imported`)."""

    path: Path
    run_cfg: DictConfig | None = None
    ckpt: Path | None = None
    imported: ImportedEncoder | None = None

    @property
    def description(self) -> str:
        if self.imported is not None:
            return f"{self.imported.source} {self.path}"
        return f"run checkpoint {self.ckpt}"


def resolve_pretrained(path: str | None) -> Pretrained:
    """Read what `pretrained=PATH` names (module docstring); a clear error naming PATH when it is none of them."""
    if path is None:
        raise ValueError("stage=finetune|linprobe needs pretrained=PATH: a run directory of ours, one of its "
                         "checkpoints, an official .pth, or a Hugging Face save_pretrained directory")
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"pretrained={path}: no such file or directory")
    if p.is_dir() and (p / ".hydra" / "config.yaml").is_file():
        ckpt = p / "checkpoints" / "last.ckpt"
        if not ckpt.is_file():
            raise FileNotFoundError(f"pretrained={path}: the run directory holds no checkpoints/last.ckpt (did its "
                                    "training finish or write a checkpoint?); pass one of its checkpoints instead")
        return Pretrained(path=p, run_cfg=OmegaConf.load(p / ".hydra" / "config.yaml"), ckpt=ckpt)
    if p.is_file() and p.suffix == ".ckpt":
        run = p.parent.parent
        if not (run / ".hydra" / "config.yaml").is_file():
            raise FileNotFoundError(f"pretrained={path}: a checkpoint of ours must stay in its run directory "
                                    f"(RUN/checkpoints/{p.name}); {run}/.hydra/config.yaml, which holds the "
                                    "architecture, is missing")
        return Pretrained(path=p, run_cfg=OmegaConf.load(run / ".hydra" / "config.yaml"), ckpt=p)
    detect_format(p)  # raises naming the formats accepted
    return Pretrained(path=p, imported=import_encoder(p))


def apply_architecture(cfg: DictConfig, source: Pretrained) -> None:
    """Write the source's architecture into cfg (before anything is built): a run's model / tokenizer / pos_embed
    config, or what an imported checkpoint says of itself (HF config.json; shapes of a .pth)."""
    with open_dict(cfg):
        if source.run_cfg is not None:
            ours, theirs = cfg.data.get("_target_"), source.run_cfg.data.get("_target_")
            if ours != theirs:
                raise ValueError(f"pretrained={source.path} was pre-trained on {theirs} data and this run reads "
                                 f"{ours}: choose the modality of the pre-training run (modality=...)")
            for key in ("model", "tokenizer", "pos_embed"):
                if key in source.run_cfg:
                    cfg[key] = source.run_cfg[key]
            return
        imported = source.imported
        for key, value in imported.encoder_kwargs.items():
            if key == "pool" and cfg.finetune.get("pool") is not None:
                continue
            cfg.model.encoder[key] = value
        for key, value in imported.tokenizer_kwargs.items():
            if key == "channels" and cfg.tokenizer.get("channels") not in (None, value):
                raise ValueError(f"pretrained={source.path} takes {value}-channel input and this run's data has "
                                 f"{cfg.tokenizer.channels} (tokenizer.channels): set data.channels={value} (e.g. "
                                 f"RGB images) or choose a checkpoint pre-trained on {cfg.tokenizer.channels} channels")
            if key in cfg.tokenizer:
                cfg.tokenizer[key] = value


def pretrain_grid(source: Pretrained) -> tuple[int, ...] | None:
    """The token grid the source was pre-trained on (None for tokens without a grid)."""
    if source.imported is not None:
        return source.imported.grid
    tokenizer: Tokenizer = instantiate(source.run_cfg.tokenizer)  # resolved against the pre-training run's data
    return tokenizer.grid


def encoder_state(source: Pretrained) -> dict[str, torch.Tensor]:
    """The encoder weights of the source, under our Encoder's keys."""
    if source.imported is not None:
        return source.imported.state
    checkpoint = read_checkpoint(source.ckpt)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise RuntimeError(f"pretrained={source.ckpt} holds no state_dict: not a train.py checkpoint")
    prefix = "encoder."
    state = {k[len(prefix):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    if not state:
        raise RuntimeError(f"pretrained={source.ckpt} holds no encoder.* weights (keys: "
                           f"{', '.join(list(checkpoint['state_dict'])[:5])}, ...)")
    return state


def build_encoder(cfg: DictConfig, tokenizer: Tokenizer, source: Pretrained | None, *, drop_path: float,
                  pos_embed: str, reset_norm: bool) -> MAEEncoder:
    """The encoder of cfg.model (drop path set), loaded from `source` with a strict key check (None: random init,
    the scratch baseline). pos_embed="learned" makes the positional embedding a trained table (MAE fine-tuning);
    "keep" keeps the pre-training one, as a fixed table interpolated to the new grid when the grid differs."""
    if pos_embed not in ("keep", "learned"):
        raise ValueError(f"finetune.pos_embed must be keep or learned, got {pos_embed!r}")
    overrides: dict[str, object] = {"drop_path": drop_path} if drop_path else {}
    if cfg.finetune.get("pool") is not None:
        overrides["pool"] = cfg.finetune.pool
    factory = instantiate(cfg.model.encoder)
    try:
        encoder: MAEEncoder = factory(token_dim=tokenizer.token_dim, **overrides)
    except TypeError as err:
        raise ValueError(f"finetune options {sorted(overrides)} do not apply to {cfg.model.encoder._target_}: "
                         f"{err}; set finetune.drop_path=0 / finetune.pool=null") from err
    grid = tokenizer.grid
    if source is not None:
        load_encoder_strict(encoder, encoder_state(source), source=source.description)
        imported = source.imported
        if imported is not None and imported.sinusoid_1d and grid is not None:
            # VideoMAE: a fixed 1-D sinusoid over the flattened tokens of the grid in use (recomputed, not interpolated,
            # at another frame count or size, as VideoMAE's fine-tuning builds it for its own num_patches)
            install_pos_table(encoder, sinusoid_1d_table(math.prod(grid), encoder.dim), grid, grid,
                              trainable=pos_embed == "learned")
            return reset(encoder, reset_norm)
        table = imported.pos_table if imported is not None else None
        if table is not None:
            install_pos_table(encoder, table, source.imported.grid or grid, grid,
                              trainable=pos_embed == "learned" or source.imported.pos_trainable)
            return reset(encoder, reset_norm)
        source_grid = pretrain_grid(source)
    else:
        source_grid = grid
    if isinstance(encoder, Encoder) and isinstance(encoder.pos_embed, SinCosPosEmbed) and grid is not None and (
            pos_embed == "learned" or source_grid != grid):
        install_pos_table(encoder, sincos_table(source_grid, encoder.dim), source_grid, grid,
                          trainable=pos_embed == "learned")
    return reset(encoder, reset_norm)


def reset(encoder: MAEEncoder, reset_norm: bool) -> MAEEncoder:
    """MAE's global-pool fine-tuning builds a new fc_norm (ones / zeros) instead of the pre-trained final norm."""
    if reset_norm:
        if not isinstance(encoder, Encoder):
            raise ValueError(f"finetune.reset_norm applies to the ViT encoder, not {type(encoder).__name__}")
        norm = encoder.norm
        torch.nn.init.ones_(norm.weight)
        torch.nn.init.zeros_(norm.bias)
    return encoder
