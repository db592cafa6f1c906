"""Never lose work: SIGTERM saves a checkpoint and stops cleanly, kill -9 loses at most the checkpoint interval,
resume=auto continues with the same losses as an uninterrupted run, corrupt checkpoints are named and skipped."""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
import torch

from mae.train.checkpoints import AtomicCheckpointIO, atomic_torch_save, find_resume_checkpoint
from mae.train.runner import objective_value, run
from tests.conftest import FAST, ROOT, compose_cfg

INTERVAL = 2  # callbacks.step_checkpoint.every_n_train_steps in these runs
COMMON = [*FAST, "trainer.limit_train_batches=4", "trainer.max_epochs=3", "eval.enabled=false",
          "data.num_workers=0", "trainer.log_every_n_steps=1", "+logger.csv.flush_logs_every_n_steps=1",
          f"callbacks.step_checkpoint.every_n_train_steps={INTERVAL}"]


class SelfSignal(L.Callback):
    """Test helper: the training process sends `signum` to itself after optimiser step `at_step` (a real signal
    at a known step, so the test does not depend on timing)."""

    def __init__(self, *, at_step: int, signum: int) -> None:
        self.at_step, self.signum = at_step, signum

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.at_step:
            os.kill(os.getpid(), self.signum)


def train_cli(run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "train.py", *COMMON, *overrides, f"hydra.run.dir={run_dir}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def step_losses(run_dir: Path) -> pd.Series:
    """train/loss per step; where a step was logged twice (before and after a resume), the later row."""
    frame = pd.read_csv(run_dir / "csv" / "metrics.csv").dropna(subset=["train/loss_step"])
    return frame.groupby("step")["train/loss_step"].last().sort_index()


def ckpt_step(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["global_step"]


@pytest.mark.e2e
def test_sigterm_then_kill9_then_resume_matches_uninterrupted(tmp_path):
    full, chain = tmp_path / "full", tmp_path / "chain"
    run(compose_cfg(COMMON, full))  # 3 epochs x 4 batches = 12 steps, uninterrupted
    signal_cb = "+callbacks.self_signal._target_=tests.test_resume.SelfSignal"

    # 1) SIGTERM after step 3 (mid-epoch; sent to this process, whose handler only sets a flag): a checkpoint at
    #    the next step boundary, a clean stop (train.py then exits with 0: its objective is NaN).
    metrics = run(compose_cfg([*COMMON, signal_cb, "+callbacks.self_signal.at_step=3",
                               f"+callbacks.self_signal.signum={int(signal.SIGTERM)}"], chain))
    assert metrics["train/preempted"] == 1.0 and math.isnan(objective_value(metrics, "eval/linear_acc"))
    assert signal.getsignal(signal.SIGTERM) is not None  # handlers restored
    assert (chain / "checkpoints" / "preempted.txt").read_text().startswith("SIGTERM at step 4")
    assert ckpt_step(chain / "checkpoints" / "last.ckpt") == 4
    assert not (chain / "metrics.json").exists()  # no evaluation of a half-trained run

    # 2) resume=auto, then kill -9 after step 7: at most INTERVAL steps lost.
    proc = train_cli(chain, "resume=auto", signal_cb, "+callbacks.self_signal.at_step=7",
                     f"+callbacks.self_signal.signum={int(signal.SIGKILL)}")
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    newest = find_resume_checkpoint(chain)
    assert 7 - INTERVAL <= ckpt_step(newest) <= 7, newest

    # 3) resume=auto again, to the end: the losses of the whole chain equal the uninterrupted run's.
    metrics = run(compose_cfg([*COMMON, "resume=auto"], chain))
    assert metrics["train/steps"] == 12
    a, b = step_losses(full), step_losses(chain)
    assert list(a.index) == list(range(12)) and list(b.index) == list(a.index)
    pd.testing.assert_series_equal(a, b, check_exact=False, rtol=1e-5)


def test_corrupt_checkpoint_is_named_and_the_previous_one_used(tmp_path, caplog):
    run_dir = tmp_path / "run"
    old, new = run_dir / "checkpoints" / "step00000002.ckpt", run_dir / "checkpoints" / "last.ckpt"
    atomic_torch_save({"global_step": 2}, old)
    atomic_torch_save({"global_step": 4, "blob": torch.randn(1000)}, new)
    os.utime(old, ns=(1, 1))  # older
    data = new.read_bytes()
    new.write_bytes(data[: len(data) // 2])  # truncated
    with caplog.at_level("WARNING"):
        assert find_resume_checkpoint(run_dir) == old
    assert "last.ckpt is corrupt" in caplog.text
    with pytest.raises(RuntimeError, match="last.ckpt is corrupt"):  # an explicit ckpt_path: error, no fallback
        AtomicCheckpointIO().load_checkpoint(new)
    old.write_bytes(b"")
    with pytest.raises(RuntimeError, match=r"no valid checkpoint .*step00000002.ckpt"):  # never from scratch
        find_resume_checkpoint(run_dir)
    assert find_resume_checkpoint(tmp_path / "fresh") is None  # nothing yet: a fresh start


def test_kill_during_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"global_step": 1}, path)

    def dies_halfway(obj, f):
        f.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt  # the process is interrupted while writing

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"global_step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temp file left behind


@pytest.mark.e2e
def test_resume_auto_and_ckpt_path_together_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="either resume=auto or ckpt_path"):
        run(compose_cfg([*FAST, "resume=auto", f"ckpt_path={tmp_path / 'x.ckpt'}"], tmp_path / "run"))


def test_wandb_run_id_is_kept_in_the_run_directory(tmp_path):
    from mae.train.loggers import wandb_logger

    first = wandb_logger(save_dir=str(tmp_path), project="mae", offline=True)
    again = wandb_logger(save_dir=str(tmp_path), project="mae", offline=True)  # the resumed / requeued run
    assert first.version == again.version == (tmp_path / "wandb" / "run_id.txt").read_text().strip()
    assert wandb_logger(save_dir=str(tmp_path / "other"), project="mae", offline=True).version != first.version


def test_requeue_on_slurm_calls_scontrol_with_the_job_id(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from mae.train.preemption import PreemptionCheckpoint

    fake = tmp_path / "scontrol"
    fake.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'called'}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    callback = PreemptionCheckpoint(dirpath=str(tmp_path), signals=["SIGUSR1"], requeue=True)
    callback.received = signal.SIGUSR1
    callback._requeue(SimpleNamespace(is_global_zero=True))
    assert (tmp_path / "called").read_text().split() == ["requeue", "4242"]
