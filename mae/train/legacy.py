"""Run directories written before the layout change (issue 13, Dec 2026) load with today's code.

Their `.hydra/config.yaml` names classes at their old homes (`mae.module.MAEModule`, `mae.tokenizers.image.
ImageTokenizer`, ...), picks some of them through `${oc.select:default_*,...}` keys, and spells VideoMAE V2's
dual masking `mask.decoder=running_cell`. The weights need nothing: the module's parameter names did not change.
`upgrade_module_config` turns such a config's `module` node into today's; a config of today passes unchanged.
`upgrade_overrides` rewrites the one command-line spelling that changed (train.py applies it, with a note).
"""
from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

MOVED = {
    "mae.module.MAEModule": "mae.core.module.MAEModule",
    "mae.encoder.Encoder": "mae.core.encoder.Encoder",
    "mae.decoder.Decoder": "mae.core.decoder.Decoder",
    "mae.pos_embed.SinCosPosEmbed": "mae.core.pos_embed.SinCosPosEmbed",
    "mae.pos_embed.MLPPosEmbed": "mae.core.pos_embed.MLPPosEmbed",
    "mae.masking.RandomMasker": "mae.core.masking.RandomMasker",
    "mae.masking.BlockMasker": "mae.core.masking.BlockMasker",
    "mae.masking.TubeMasker": "mae.modalities.video.masking.TubeMasker",
    "mae.masking.FrameMasker": "mae.modalities.video.masking.FrameMasker",
    "mae.masking.TimeFreqMasker": "mae.modalities.audio.masking.TimeFreqMasker",
    "mae.graph_masking.GraphMasker": "mae.modalities.graph.masking.GraphMasker",
    "mae.graph_encoder.GraphEncoder": "mae.modalities.graph.encoder.GraphEncoder",
    "mae.graph_decoder.GraphDecoder": "mae.modalities.graph.decoder.GraphDecoder",
    "mae.targets.PixelTarget": "mae.core.targets.PixelTarget",
    "mae.targets.NormPixTarget": "mae.core.targets.NormPixTarget",
    "mae.targets.HOGTarget": "mae.modalities.image.targets.HOGTarget",
    "mae.losses.masked_mse": "mae.core.losses.masked_mse",
    "mae.losses.masked_l1": "mae.core.losses.masked_l1",
    "mae.losses.masked_chamfer": "mae.modalities.pointcloud.losses.masked_chamfer",
    "mae.losses.sce_loss": "mae.modalities.graph.losses.sce_loss",
    "mae.tokenizers.image.ImageTokenizer": "mae.modalities.image.tokenizer.ImageTokenizer",
    "mae.tokenizers.video.VideoTokenizer": "mae.modalities.video.tokenizer.VideoTokenizer",
    "mae.tokenizers.video.TubeletNormPixTarget": "mae.modalities.video.targets.TubeletNormPixTarget",
    "mae.tokenizers.video.VideoHOGTarget": "mae.modalities.video.targets.VideoHOGTarget",
    "mae.tokenizers.audio.SpectrogramTokenizer": "mae.modalities.audio.tokenizer.SpectrogramTokenizer",
    "mae.tokenizers.pointcloud.PointCloudTokenizer": "mae.modalities.pointcloud.tokenizer.PointCloudTokenizer",
    "mae.tokenizers.pointcloud.PointGroupTarget": "mae.modalities.pointcloud.targets.PointGroupTarget",
    "mae.tokenizers.pointcloud.PointNetEmbed": "mae.modalities.pointcloud.embed.PointNetEmbed",
    "mae.tokenizers.graph.GraphTokenizer": "mae.modalities.graph.tokenizer.GraphTokenizer",
    "mae.tokenizers.graph.NodeFeatureTarget": "mae.modalities.graph.targets.NodeFeatureTarget",
    "mae.tokenizers.timeseries.PatchTSTTokenizer": "mae.modalities.timeseries.tokenizer.PatchTSTTokenizer",
    "mae.tokenizers.timeseries.RevINPatchTarget": "mae.modalities.timeseries.targets.RevINPatchTarget",
    "mae.tokenizers.timeseries.LearnedPosEmbed": "mae.modalities.timeseries.pos_embed.LearnedPosEmbed",
}
"""Old `_target_` -> today's, for every class an old run config could name inside `module`."""
RUNNING_CELL = "mae.modalities.video.masking.RunningCellDecoderMask"
TAKES_EPS = {"mae.core.targets.NormPixTarget", "mae.modalities.video.targets.TubeletNormPixTarget"}
"""The targets that read `eps`; old configs passed an unused `target.eps` to every target."""


def upgrade_module_config(cfg: DictConfig) -> DictConfig:
    """The run config's `module` node, resolved (`run_dir` must be set) and in today's spelling."""
    module: dict[str, Any] = OmegaConf.to_container(cfg.module, resolve=True)  # type: ignore[assignment]
    module = _retarget(module)
    masker = module["masker"]
    kind, ratio = masker.pop("decoder", None), masker.pop("decoder_ratio", None)
    if kind == "running_cell":  # old mask.decoder=running_cell: today decoder_mask=running_cell
        module["decoder_mask"] = {"_target_": RUNNING_CELL, "ratio": 0.5 if ratio is None else ratio}
    elif kind is not None:
        raise ValueError(f"mask.decoder={kind!r} in an old run config: only running_cell existed")
    if module["target"]["_target_"] not in TAKES_EPS:
        module["target"].pop("eps", None)
    return OmegaConf.create(module)


RENAMED_OVERRIDES = {"mask.decoder": "decoder_mask", "mask.decoder_ratio": "decoder_mask.ratio"}
"""Old override key -> today's; `mask.decoder=null` is today's `decoder_mask=none`."""


def upgrade_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """(today's overrides, a note per rewritten one): `mask.decoder=running_cell` -> `decoder_mask=running_cell`,
    `mask.decoder=null,running_cell` (a sweep) -> `decoder_mask=none,running_cell`, `mask.decoder_ratio=0.5` ->
    `decoder_mask.ratio=0.5`. Every other override passes unchanged."""
    out, notes = [], []
    for override in overrides:
        key, sep, value = override.partition("=")
        new_key = RENAMED_OVERRIDES.get(key.lstrip("+~"))
        if not sep or new_key is None:
            out.append(override)
            continue
        if new_key == "decoder_mask":
            value = ",".join("none" if v.strip() == "null" else v for v in value.split(","))
        out.append(f"{new_key}={value}")
        notes.append(f"{override} is now spelled {out[-1]}")
    return out, notes


def _retarget(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: MOVED.get(v, v) if k == "_target_" else _retarget(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_retarget(v) for v in node]
    return node
