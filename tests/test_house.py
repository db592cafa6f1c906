"""The layout and the config contract: the core imports no modality, a recorded choice names what runs, an explicit
command-line choice wins, and debug=fast composes and builds for every modality."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import CONF, ROOT
from hydra import compose, initialize_config_dir
from hydra.utils import get_class, instantiate

MODALITIES = ["image", "video", "audio", "pointcloud", "graph", "timeseries", "timeseries_forecast"]
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))

# choice -> the class (or function) its config instantiates: a choice must say what runs
MASKS = {"random": "mae.core.masking.RandomMasker", "block": "mae.core.masking.BlockMasker",
         "tube": "mae.modalities.video.masking.TubeMasker", "frame": "mae.modalities.video.masking.FrameMasker",
         "time": "mae.modalities.audio.masking.TimeFreqMasker", "freq": "mae.modalities.audio.masking.TimeFreqMasker",
         "timefreq": "mae.modalities.audio.masking.TimeFreqMasker",
         "graphmae": "mae.modalities.graph.masking.GraphMasker", "node": "mae.modalities.graph.masking.GraphMasker"}
TARGETS = {"norm_pix": "mae.core.targets.NormPixTarget", "pixel": "mae.core.targets.PixelTarget",
           "hog": "mae.modalities.image.targets.HOGTarget", "video_hog": "mae.modalities.video.targets.VideoHOGTarget",
           "tubelet_norm_pix": "mae.modalities.video.targets.TubeletNormPixTarget",
           "pred_frames": "mae.modalities.video.targets.PredFramesTarget",
           "point_group": "mae.modalities.pointcloud.targets.PointGroupTarget",
           "node_features": "mae.modalities.graph.targets.NodeFeatureTarget",
           "revin_patch": "mae.modalities.timeseries.targets.RevINPatchTarget"}
LOSSES = {"mse": "mae.core.losses.masked_mse", "l1": "mae.core.losses.masked_l1",
          "chamfer": "mae.modalities.pointcloud.losses.masked_chamfer", "sce": "mae.modalities.graph.losses.sce_loss"}
ENCODERS = {"gat": "mae.modalities.graph.encoder.GraphEncoder",
            "patchtst": "mae.modalities.timeseries.encoder.PatchTSTEncoder"}  # every other model: the shared transformer
MASKS |= {"group": "mae.core.group_masking.GroupMasker", "blockwise": "mae.core.group_masking.BlockwiseMasker"}
ENCODERS |= {m: "mae.core.mask_token_encoder.MaskTokenEncoder" for m in ("simmim", "maskfeat")}  # all tokens + [MASK]
EVALS = {"default": "mae.eval.protocol.FrozenProbe", "graph": "mae.modalities.graph.eval.GraphProbe",
         "forecast": "mae.modalities.timeseries.forecast.ForecastProbe",
         "graphmae": "mae.modalities.graph.protocol.GraphMAEProtocol"}


def compose_choices(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, "run_dir=/tmp/unused"], return_hydra_config=True)
    return cfg, cfg.hydra.runtime.choices


def test_core_imports_no_modality_and_no_datamodule():
    offenders = []
    for path in sorted((ROOT / "mae" / "core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names
                          if n.startswith(("mae.modalities", "mae.train", "datamodules"))]
    assert not offenders, offenders


def test_no_default_tricks_left_in_the_configs():
    for path in CONF.rglob("*.yaml"):
        text = path.read_text()
        assert "oc.select" not in text and "default_" not in text.replace("default_root_dir", ""), path
    assert not (CONF / "mask_for_modality").exists() and not (CONF / "model_for_modality").exists()


@pytest.mark.parametrize("overrides", [[f"modality={m}"] for m in MODALITIES] + [[f"experiment={e}"] for e in EXPERIMENTS],
                         ids=lambda o: o[0])
def test_every_recorded_choice_names_the_class_that_runs(overrides):
    cfg, choices = compose_choices(overrides)
    assert cfg.mask._target_ == MASKS[choices["mask"]]
    assert cfg.target._target_ == TARGETS[choices["target"]]
    assert cfg.loss._target_ == LOSSES[choices["loss"]]
    assert cfg.eval._target_ == EVALS[choices["eval"]]
    assert cfg.model.encoder._target_ == ENCODERS.get(choices["model"], "mae.core.encoder.Encoder")
    assert cfg.data._target_.startswith(f"datamodules.{choices['modality'].split('_')[0]}.")
    for node in (cfg.mask, cfg.target, cfg.eval):  # and each names an importable class
        get_class(node._target_)


@pytest.mark.parametrize("overrides, expected", [
    (["modality=graph", "mask=random"], "RandomMasker"),
    (["modality=graph", "loss=mse", "target=pixel"], "PixelTarget"),
    (["modality=pointcloud", "loss=mse"], "masked_mse"),
    (["experiment=videomae_vit_base_k400", "mask=random"], "RandomMasker"),
])
def test_an_explicit_choice_on_the_command_line_wins(overrides, expected):
    cfg, choices = compose_choices(overrides)
    targets = {cfg.mask._target_, cfg.target._target_, cfg.loss._target_}
    assert any(t.endswith("." + expected) for t in targets)
    assert choices[overrides[-1].split("=")[0]] == overrides[-1].split("=")[1]


@pytest.mark.parametrize("overrides, message", [
    (["modality=video", "mask=block"], "mask=block draws 2-D"),
    (["modality=image", "mask=tube"], "mask=tube needs tokens on a"),
    (["modality=image", "decoder_mask=running_cell"], "running_cell needs"),
    (["modality=video", "target=hog"], "target=video_hog"),
    (["modality=timeseries_forecast", "eval=default"], "eval=probe cannot evaluate"),
])
def test_a_choice_that_cannot_work_fails_at_start_up(overrides, message, tmp_path):
    cfg, _ = compose_choices([*overrides, "trainer.max_epochs=1", "data.batch_size=2"])
    with pytest.raises(Exception, match=message):
        instantiate(cfg.module)
        instantiate(cfg.eval).check(instantiate(cfg.data))


@pytest.mark.parametrize("modality", MODALITIES)
def test_debug_fast_composes_and_builds_for_every_modality(modality):
    """debug=fast is written on shared keys only: it builds the module and the callbacks of every modality."""
    width = ["data.num_features=256"] if modality == "graph" else []  # train.py reads it from the data
    cfg, choices = compose_choices([f"modality={modality}", "debug=fast", *width])
    assert choices["debug"] == "fast" and cfg.trainer.limit_train_batches == 3
    module = instantiate(cfg.module)
    assert module.encoder.dim == 32
    pictures = instantiate(cfg.callbacks.reconstruction)
    assert type(pictures.pictures).__module__.startswith(f"mae.modalities.{modality.split('_')[0]}.")


def test_every_modality_file_is_a_folder_and_a_yaml():
    for m in ["image", "video", "audio", "pointcloud", "graph", "timeseries"]:
        assert (ROOT / "mae" / "modalities" / m / "tokenizer.py").is_file()
        assert (ROOT / "mae" / "modalities" / m / "pictures.py").is_file()
        assert any((ROOT / "datamodules" / m).glob("*.py"))
        assert (CONF / "modality" / f"{m}.yaml").is_file()
    assert not (ROOT / "mae" / "tokenizers").exists()
    assert not list((ROOT / "mae").glob("graph_*.py"))
    assert Path(ROOT / "mae" / "core" / "interfaces.py").is_file()
