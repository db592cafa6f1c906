"""One run per run directory, logs that never mix, resume=auto refused where it cannot resume, and a small folder of
one's own data that runs at the default batch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from mae.train.rundir import RunDirInUse, RunDirLock
from mae.train.runner import run
from tests.conftest import FAST, ROOT, compose_cfg

QUICK = [*FAST, "eval.enabled=false", "objective=train/loss", "data.source=synthetic", "data.synthetic_size=64",
         "data.batch_size=16", "trainer.max_epochs=1", "callbacks.reconstruction=null"]


def train_py(*overrides: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *overrides], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.e2e
def test_a_second_run_in_a_locked_directory_fails_naming_the_holder_and_leaves_its_config(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text("the holder's config\n")
    with RunDirLock(run_dir):
        proc = train_py(*QUICK, f"hydra.run.dir={run_dir}")
        assert proc.returncode != 0
        assert f"run directory {run_dir} is in use by PID {os.getpid()}" in proc.stderr, proc.stderr[-2000:]
        assert (run_dir / ".hydra" / "config.yaml").read_text() == "the holder's config\n"
        assert not (run_dir / "checkpoints").exists() and not (run_dir / "csv").exists()
        with pytest.raises(RunDirInUse, match="in use by PID"):  # in-process too
            RunDirLock(run_dir).__enter__()
    with RunDirLock(run_dir):  # released: the next run takes it
        pass


@pytest.mark.e2e
def test_resume_auto_without_a_run_directory_is_an_error_naming_recent_runs(tmp_path):
    first = train_py(*QUICK, "hydra.run.dir=outputs/2026-01-01/00-00-00", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    proc = train_py(*QUICK, "resume=auto", cwd=tmp_path)
    assert proc.returncode != 0
    assert "resume=auto needs the directory of the run to continue" in proc.stderr
    assert "outputs/2026-01-01/00-00-00" in proc.stderr  # where the user's checkpoints are
    assert len(list((tmp_path / "outputs").glob("*/*/checkpoints"))) == 1  # nothing trained in a new directory
    again = train_py(*QUICK, "resume=auto", "hydra.run.dir=outputs/2026-01-01/00-00-00", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]


@pytest.mark.e2e
def test_a_fresh_start_never_overwrites_checkpoints_and_never_mixes_logs(tmp_path):
    run_dir = tmp_path / "run"
    run(compose_cfg(QUICK, run_dir))
    steps = pd.read_csv(run_dir / "csv" / "metrics.csv")["step"].dropna().tolist()
    with pytest.raises(ValueError, match="holds the checkpoints of an earlier run .*resume=auto"):
        run(compose_cfg(QUICK, run_dir))  # resume=null in a used directory: refused, nothing overwritten
    for ckpt in (run_dir / "checkpoints").iterdir():
        ckpt.unlink()  # the checkpoints were deleted: resume=auto starts fresh ...
    run(compose_cfg([*QUICK, "resume=auto"], run_dir))
    new = pd.read_csv(run_dir / "csv" / "metrics.csv").dropna(subset=["train/loss_step"])
    assert not new["step"].duplicated().any()  # ... with logs of its own
    assert pd.read_csv(run_dir / "previous" / "1" / "csv" / "metrics.csv")["step"].dropna().tolist() == steps
    assert (run_dir / "previous" / "1" / "metrics.json").is_file()


def _png_folder(root: Path, per_class: int) -> None:
    for label in range(2):
        (root / str(label)).mkdir(parents=True)
        for i in range(per_class):
            Image.new("L", (28, 28), color=40 + 150 * label + i).save(root / str(label) / f"{i}.png")


@pytest.mark.e2e
def test_a_small_folder_runs_at_the_default_batch_with_the_lr_re_derived(tmp_path, capsys):
    root = tmp_path / "digits"
    _png_folder(root, per_class=10)  # 20 images: 16 train, 4 val; the default batch is 128
    cfg = compose_cfg([*FAST, f"data.root={root}", "trainer.limit_train_batches=null",
                       "callbacks.reconstruction=null", "eval.enabled=false", "objective=train/loss"], tmp_path / "run")
    metrics = run(cfg)
    out = capsys.readouterr().out
    assert "note: data.batch_size 128 -> 16: the train split holds 16 images" in out
    assert metrics["train/steps"] == 2  # 2 epochs of one batch of 16
    assert metrics["optim/effective_batch"] == 16
    assert metrics["optim/lr"] == pytest.approx(cfg.optim.blr * 16 / 256)  # blr x effective / 256
    resolved = (tmp_path / "run" / "resolved.yaml").read_text()
    assert "effective_batch: 16" in resolved
    with pytest.raises(ValueError, match="optim.effective_batch_size=256 is fixed; lower both"):
        run(compose_cfg([*FAST, f"data.root={root}", "optim.effective_batch_size=256", "eval.enabled=false",
                         "objective=train/loss"], tmp_path / "fixed"))


@pytest.mark.e2e
def test_the_graph_feature_width_is_read_from_a_smiles_csv_and_saved_in_the_run_config(tmp_path):
    pytest.importorskip("rdkit")
    csv = tmp_path / "mols.csv"
    smiles = ["CCO", "CCN", "c1ccccc1", "CC(=O)O", "CCCC", "CCOC", "CN", "CCCl", "OCCO", "C1CC1", "CC=C", "CCS"]
    csv.write_text("smiles,label\n" + "".join(f"{s},{i % 2}\n" for i, s in enumerate(smiles)))
    run_dir = tmp_path / "run"
    proc = train_py("modality=graph", f"data.root={csv}", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
                    "eval.enabled=false", "objective=train/loss", "model.encoder.dim=16", "model.decoder.dim=16",
                    f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "num_features: 9" in saved  # load_run_module rebuilds the same model from it
    assert "note: data.batch_size 32 -> " in proc.stdout  # 12 molecules, fewer than the default batch
    assert json.loads((run_dir / "metrics.json").read_text())["train/steps"] >= 1
