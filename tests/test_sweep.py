"""Sweeps: multirun with the basic and the submitit_local launchers, an Optuna search of 3 trials, and the summary
table at the sweep root listing every run (failed ones too)."""
from __future__ import annotations

import json
import runpy
import subprocess
import sys

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from mae.train.sweep import check_sweeper_direction, objective_direction, summary_tables
from tests.conftest import CONF, FAST, ROOT

# val/loss as the objective: no frozen-feature evaluation needed, so each run takes a few seconds.
QUICK = [*FAST, "eval.enabled=false", "objective=val/loss", "trainer.max_epochs=1", "data.num_workers=0",
         "callbacks.reconstruction=null"]


def multirun(sweep_dir, *overrides: str) -> subprocess.CompletedProcess:
    """`python train.py -m ...` in a new process (for launchers that start their own processes)."""
    return subprocess.run([sys.executable, "train.py", "-m", *QUICK, *overrides, f"hydra.sweep.dir={sweep_dir}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def multirun_here(monkeypatch, sweep_dir, *overrides: str) -> int:
    """`python train.py -m ...` through train.main in this process (saves a Python start-up per run); the exit code."""
    monkeypatch.setattr(sys, "argv", ["train.py", "-m", *QUICK, *overrides, f"hydra.sweep.dir={sweep_dir}"])
    try:
        runpy.run_path(str(ROOT / "train.py"), run_name="__main__")
    except SystemExit as exit_:
        return exit_.code or 0
    finally:  # leave no Hydra global state to later tests of this worker
        HydraConfig.instance().cfg = None
        GlobalHydra.instance().clear()
    return 0


def summary(sweep_dir) -> pd.DataFrame:
    assert (sweep_dir / "summary.md").is_file()
    return pd.read_csv(sweep_dir / "summary.csv").set_index("job")


@pytest.mark.e2e
def test_basic_launcher_sweep_summary_lists_every_run_including_failed(tmp_path, monkeypatch):
    # patch size 5 does not divide the 28-px images: those runs fail at start-up and must still be listed.
    assert multirun_here(monkeypatch, tmp_path, "mask.ratio=0.6,0.9", "tokenizer.patch_size=4,5") != 0
    table = summary(tmp_path)
    assert len(table) == 4
    done = table[table.status == "completed"]
    assert sorted(done.overrides) == ["mask.ratio=0.6 tokenizer.patch_size=4", "mask.ratio=0.9 tokenizer.patch_size=4"]
    for job, row in done.iterrows():
        assert row["val/loss"] == pytest.approx(json.loads((tmp_path / str(job) / "metrics.json").read_text())["val/loss"], rel=1e-12)
    failed = table[table.status == "failed"]
    assert len(failed) == 2 and failed.error.str.contains("patch size").all()
    assert "2 of 4 runs completed" in (tmp_path / "summary.md").read_text()


@pytest.mark.e2e
def test_submitit_local_launcher_runs_jobs_in_their_own_processes(tmp_path):
    proc = multirun(tmp_path, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5", "mask.ratio=0.6,0.9")
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = summary(tmp_path)
    assert list(table.status) == ["completed", "completed"] and table["val/loss"].notna().all()
    assert list((tmp_path / ".submitit").glob("*/*_result.pkl"))  # submitit ran them, not the basic launcher


@pytest.mark.e2e
def test_optuna_sweep_of_three_trials_minimises_val_loss(tmp_path, monkeypatch):
    assert multirun_here(monkeypatch, tmp_path, "hparams_search=optuna", "hydra.sweeper.n_trials=3",
                         "hydra.sweeper.direction=minimize", "hydra.sweeper.sampler.n_startup_trials=2") == 0
    table = summary(tmp_path)
    assert len(table) == 3 and (table.status == "completed").all()
    assert table.overrides.str.contains("mask.ratio=").all() and table.overrides.nunique() == 3
    best = OmegaConf.load(tmp_path / "optimization_results.yaml")
    assert best.best_value == pytest.approx(table["val/loss"].min())


def test_sweeper_direction_must_match_the_objective(tmp_path):
    assert objective_direction("val/loss") == "minimize" and objective_direction("eval/linear_acc") == "maximize"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["hparams_search=optuna", "objective=val/loss"], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    try:
        with pytest.raises(ValueError, match="hydra.sweeper.direction=minimize"):
            check_sweeper_direction("val/loss")
        check_sweeper_direction("eval/linear_acc")
    finally:
        HydraConfig.instance().cfg = None


def test_summary_tables_show_objective_and_missing_values():
    rows = [{"job": "0", "status": "completed", "overrides": "a=1", "error": "", "val/loss": 0.5},
            {"job": "1", "status": "failed", "overrides": "a=2", "error": "ValueError: bad"}]
    text_csv, text_md = summary_tables(rows, "val/loss")
    assert text_csv.splitlines()[0] == "job,status,overrides,error,all_overrides,val/loss"
    assert "| 1 | failed: ValueError: bad | `a=2` | — |" in text_md and "1 of 2 runs completed" in text_md
