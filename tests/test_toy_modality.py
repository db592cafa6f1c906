"""docs/adding-a-modality.md, executed: its code blocks become a package in a temporary folder (the csvrows toy
modality: rows of a CSV cut into chunks), its yaml blocks that package's conf/ folder, found through
hydra.searchpath. Nothing in this repository is touched, and the run goes through the real config tree."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import CONF, ROOT
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import open_dict

DOC = ROOT / "docs" / "adding-a-modality.md"
# first line of each code block of the walk-through -> where it goes in the toy package
PYTHON = {'"""CSV rows:': "datamodule.py", '"""A CSV row': "tokenizer.py",
          '"""Reconstruction pictures of modality=csvrows': "pictures.py", "# mae/modalities/csvrows/targets.py": "targets.py"}
YAML = {"# @package _global_": "modality/csvrows.yaml", "# conf/target/chunk_stats.yaml": "target/chunk_stats.yaml"}


def to_package(text: str) -> str:
    """The doc's module paths (inside this repository) -> the toy package's."""
    return re.sub(r"\b(?:datamodules\.csvrows|mae\.modalities\.csvrows)\b", "my_csvrows", text)


def write_toy_package(folder: Path) -> Path:
    blocks = re.findall(r"```(python|yaml)\n(.*?)```", DOC.read_text(), flags=re.S)
    written = set()
    for kind, body in blocks:
        table = PYTHON if kind == "python" else YAML
        for start, name in table.items():
            if body.startswith(start):
                path = folder / "my_csvrows" / name if kind == "python" else folder / "conf" / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(to_package(body))
                written.add(name)
    assert written == set(PYTHON.values()) | set(YAML.values()), f"code blocks missing from {DOC}: {written}"
    (folder / "my_csvrows" / "__init__.py").write_text("")
    return folder / "conf"


def write_rows(path: Path, *, rows: int = 240, width: int = 32, seed: int = 0) -> None:
    """Two classes of noisy sine rows (frequency 1 or 3 over the row); the probes can tell them apart."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 2 * np.pi, width)
    lines = [",".join(f"c{i}" for i in range(width)) + ",label"]
    for r in range(rows):
        label = r % 2
        row = np.sin((1 + 2 * label) * x + rng.uniform(0, 2 * np.pi)) + 0.1 * rng.standard_normal(width)
        lines.append(",".join(f"{v:.4f}" for v in row) + f",{'ab'[label]}")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def toy(tmp_path, monkeypatch):
    conf = write_toy_package(tmp_path / "pkg")
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    write_rows(tmp_path / "rows.csv")

    def make(*overrides: str):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose("train", return_hydra_config=True, overrides=[
                f"hydra.searchpath=[file://{conf}]", "modality=csvrows", f"data.path={tmp_path / 'rows.csv'}",
                "data.num_columns=32", "data.label_column=label", f"run_dir={tmp_path / 'run'}", *overrides])

    return make


def test_the_toy_modality_composes_from_its_own_folder(toy):
    cfg = toy()
    choices = cfg.hydra.runtime.choices
    assert choices["modality"] == "csvrows" and choices["model"] == "patchtst" and choices["target"] == "pixel"
    assert cfg.tokenizer._target_ == "my_csvrows.tokenizer.RowTokenizer" and cfg.mask.ratio == 0.5
    module = instantiate(cfg.module)
    assert module.tokenizer.grid == (8,) and module.tokenizer.token_dim == 4
    chosen = toy("target=chunk_stats", "mask=block")  # its own option file, next to the built-in ones
    assert chosen.target._target_ == "my_csvrows.targets.ChunkStatsTarget"
    assert instantiate(chosen.module).decoder.head.out_features == 2


def test_the_toy_datamodule_checks_its_options(toy):
    assert instantiate(toy().data).cfg.num_columns == 32
    with pytest.raises(Exception, match=r"data\.batch_size must be >= 1, got 0"):
        instantiate(toy("data.batch_size=0").data)
    with pytest.raises(Exception, match=r"data\.colums is not an option of CsvRowsDataModule; options: path, "):
        instantiate(toy("+data.colums=3").data)


def test_the_toy_modality_refuses_a_mask_it_cannot_take(toy):
    with pytest.raises(Exception, match="mask=tube needs tokens on a"):
        instantiate(toy("mask=tube").module)


@pytest.mark.e2e
def test_the_toy_modality_trains_and_is_evaluated(toy, tmp_path):
    from mae.train.runner import run

    cfg = toy("debug=fast", "logger=csv", "trainer.max_epochs=3", "trainer.limit_train_batches=null",
              "data.batch_size=32")
    with open_dict(cfg):
        del cfg["hydra"]  # as train.py sees it: the runtime node is Hydra's, not the run's
    metrics = run(cfg)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for key in ("train/loss", "val/loss", "eval/linear_acc", "eval/linear_acc_random_init", "eval/rankme"):
        assert key in saved and np.isfinite(saved[key]), key
    assert metrics["train/steps"] == 3 * (192 // 32)  # 240 rows, 20 % held out, drop_last
    assert list((tmp_path / "run" / "reconstructions").glob("*.png"))
