"""Never lose work: SIGTERM saves a checkpoint and stops cleanly, kill -9 loses at most the checkpoint interval, and a
run resumed from any checkpoint it wrote (mid-epoch, at an epoch's last batch, after the epoch's validation; by
resume=auto or ckpt_path; with or without DataLoader workers; max_epochs or max_steps) logs the same losses as an
uninterrupted run, bit for bit. No `limit_train_batches` shortcut: 5 real batches per epoch."""
from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
import torch

from mae.train.checkpoints import AtomicCheckpointIO, atomic_torch_save, find_resume_checkpoint
from mae.train.runner import run
from tests.conftest import FAST, ROOT, compose_cfg

INTERVAL = 2  # callbacks.step_checkpoint.every_n_train_steps in the chain
STEPS_PER_EPOCH = 5  # 100 synthetic images, val 20, train 80 / batch 16
BASE = [*FAST, "data.source=synthetic", "data.synthetic_size=100", "data.batch_size=16",
        "trainer.limit_train_batches=null", "trainer.limit_val_batches=null", "trainer.max_epochs=3",
        "eval.enabled=false", "objective=train/loss", "trainer.log_every_n_steps=1",
        "+logger.csv.flush_logs_every_n_steps=1", "callbacks.reconstruction=null"]


class SelfSignal(L.Callback):
    """Test helper: the training process sends `signum` to itself after optimiser step `at_step` (a real signal
    at a known step, so the test does not depend on timing)."""

    def __init__(self, *, at_step: int, signum: int) -> None:
        self.at_step, self.signum = at_step, signum

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.at_step:
            os.kill(os.getpid(), self.signum)


def signal_at(step: int, signum: int) -> list[str]:
    return ["+callbacks.self_signal._target_=tests.test_resume.SelfSignal", f"+callbacks.self_signal.at_step={step}",
            f"+callbacks.self_signal.signum={int(signum)}"]


def train_cli(run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "train.py", *overrides, f"hydra.run.dir={run_dir}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def step_losses(run_dir: Path) -> pd.Series:
    """train/loss per step, each step logged once (a resume drops the rows logged after its checkpoint)."""
    frame = pd.read_csv(run_dir / "csv" / "metrics.csv").dropna(subset=["train/loss_step"])
    assert not frame["step"].duplicated().any(), frame["step"].tolist()
    return frame.set_index("step")["train/loss_step"].sort_index()


def ckpt_step(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["global_step"]


@pytest.mark.e2e
def test_sigterm_and_kill9_at_epoch_ends_and_mid_epoch_with_workers_match_uninterrupted(tmp_path):
    common = [*BASE, "data.num_workers=2", f"callbacks.step_checkpoint.every_n_train_steps={INTERVAL}"]
    full, chain = tmp_path / "full", tmp_path / "chain"
    assert train_cli(full, *common).returncode == 0  # 3 epochs x 5 batches = 15 steps, uninterrupted

    # 1) SIGTERM after step 4: the checkpoint is taken after the next step, the epoch's last batch (step 5); no
    #    validation runs after it and nothing overwrites it; a clean stop with exit 0.
    proc = train_cli(chain, *common, *signal_at(4, signal.SIGTERM))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (chain / "checkpoints" / "preempted.txt").read_text().startswith("SIGTERM at step 5")
    assert ckpt_step(chain / "checkpoints" / "last.ckpt") == 5
    assert not (chain / "checkpoints" / "best.ckpt").exists()  # no validation ran after the signal
    assert not (chain / "metrics.json").exists()  # no evaluation of a half-trained run

    # 2) resume=auto, then kill -9 after step 7 (mid-epoch): the step-6 checkpoint is the newest.
    proc = train_cli(chain, *common, "resume=auto", *signal_at(7, signal.SIGKILL))
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert ckpt_step(find_resume_checkpoint(chain)) == 6

    # 3) resume=auto, kill -9 after step 11: the newest state is epoch 1's end (last.ckpt, written after its
    #    validation, and the step-10 checkpoint taken before it).
    proc = train_cli(chain, *common, "resume=auto", *signal_at(11, signal.SIGKILL))
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert find_resume_checkpoint(chain).name == "last.ckpt" and ckpt_step(chain / "checkpoints" / "last.ckpt") == 10

    # 4) resume=auto, SIGTERM after step 12 (mid-epoch): checkpoint at step 13.
    proc = train_cli(chain, *common, "resume=auto", *signal_at(12, signal.SIGTERM))
    assert proc.returncode == 0 and ckpt_step(chain / "checkpoints" / "last.ckpt") == 13, proc.stderr[-3000:]

    # 5) resume=auto to the end: every step logged once, with the uninterrupted run's loss, bit for bit.
    assert train_cli(chain, *common, "resume=auto").returncode == 0
    a, b = step_losses(full), step_losses(chain)
    assert list(a.index) == list(range(15))
    pd.testing.assert_series_equal(a, b, check_exact=True)


@pytest.mark.e2e
@pytest.mark.parametrize("limit", ["trainer.max_epochs=3", "trainer.max_steps=13"])
def test_resume_from_every_kind_of_checkpoint_is_exact(tmp_path, limit):
    """Checkpoints at every step and after every epoch's validation; resumed from an epoch-end one, from the last
    batch of an epoch and from mid-epoch, and again from a checkpoint the resumed run wrote itself."""
    common = [*BASE, limit, "data.num_workers=0", "callbacks.step_checkpoint.every_n_train_steps=1",
              "callbacks.step_checkpoint.save_top_k=-1", "callbacks.checkpoint.save_top_k=-1",
              "callbacks.checkpoint.filename='ep{epoch}'", "+callbacks.checkpoint.auto_insert_metric_name=false"]
    full = tmp_path / "full"
    run(compose_cfg(common, full))
    a = step_losses(full)
    ckpts = full / "checkpoints"
    assert ckpt_step(ckpts / "ep0.ckpt") == STEPS_PER_EPOCH  # written after epoch 0's validation
    starts = {"epoch end": ckpts / "ep0.ckpt", "last batch": ckpts / "step00000005.ckpt",
              "mid-epoch": ckpts / "step00000007.ckpt"}
    for kind, ckpt in starts.items():
        resumed = tmp_path / kind.replace(" ", "_")
        run(compose_cfg([*common, f"ckpt_path={ckpt}"], resumed))
        b = step_losses(resumed)
        assert list(b.index) == list(a.index[ckpt_step(ckpt):]), kind
        pd.testing.assert_series_equal(a[b.index], b, check_exact=True, obj=kind)
    # second generation: a checkpoint written by the run resumed from the epoch end
    again = tmp_path / "again"
    ckpt = tmp_path / "epoch_end" / "checkpoints" / "step00000008.ckpt"
    run(compose_cfg([*common, f"ckpt_path={ckpt}"], again))
    b = step_losses(again)
    assert list(b.index) == list(a.index[8:])
    pd.testing.assert_series_equal(a[b.index], b, check_exact=True)


def _fake_ckpt(path: Path, step: int, value: float = 1.0) -> None:
    atomic_torch_save({"global_step": step, "state_dict": {"w": torch.full((3,), value)}, "optimizer_states": []}, path)


def test_resume_auto_picks_the_highest_step_not_the_newest_file(tmp_path):
    ckpts = tmp_path / "checkpoints"
    _fake_ckpt(ckpts / "last.ckpt", 300)
    _fake_ckpt(ckpts / "step00000250.ckpt", 250)
    os.utime(ckpts / "last.ckpt", ns=(1, 1))  # `cp -r` without -p: any order of mtimes
    assert find_resume_checkpoint(tmp_path) == ckpts / "last.ckpt"
    _fake_ckpt(ckpts / "step00000300.ckpt", 300)  # a tie: last.ckpt
    assert find_resume_checkpoint(tmp_path) == ckpts / "last.ckpt"


def test_a_non_finite_state_is_never_written_nor_picked(tmp_path, caplog):
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "step00000002.ckpt"
    with pytest.raises(FloatingPointError, match=r"step 2: 1 tensors hold NaN/inf \(first: state_dict.w\)"):
        io.save_checkpoint({"global_step": 2, "state_dict": {"w": torch.tensor([1.0, math.nan])}}, path)
    assert not path.exists()
    with pytest.raises(FloatingPointError, match="optimizer_states.0.state.0.exp_avg"):
        io.save_checkpoint({"global_step": 2, "state_dict": {"w": torch.ones(2)},
                            "optimizer_states": [{"state": {0: {"exp_avg": torch.tensor([math.inf])}}}]}, path)
    good, diverged = tmp_path / "checkpoints" / "step00000004.ckpt", tmp_path / "checkpoints" / "step00000006.ckpt"
    _fake_ckpt(good, 4)
    _fake_ckpt(diverged, 6, value=math.nan)  # e.g. written by an older version, or a copied file
    with caplog.at_level("WARNING"):
        assert find_resume_checkpoint(tmp_path) == good
    assert "step00000006.ckpt at step 6" in caplog.text and "NaN/inf" in caplog.text


class _RunsCode:
    """A pickle that would run a shell command when unpickled with weights_only=False."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_planted_checkpoint_runs_no_code(tmp_path, caplog):
    from mae.train.checkpoints import load_run_module

    marker = tmp_path / "pwned"
    planted = tmp_path / "run" / "checkpoints" / "step99999999.ckpt"
    planted.parent.mkdir(parents=True)
    torch.save({"global_step": 99999999, "payload": _RunsCode(marker)}, planted)
    _fake_ckpt(planted.parent / "step00000002.ckpt", 2)
    with caplog.at_level("WARNING"):
        assert find_resume_checkpoint(tmp_path / "run").name == "step00000002.ckpt"  # the pre-scan loads it as data
    assert "step99999999.ckpt is corrupt or not a torch checkpoint" in caplog.text
    with pytest.raises(RuntimeError, match="step99999999.ckpt is corrupt"):  # an explicit ckpt_path
        AtomicCheckpointIO().load_checkpoint(planted)
    shutil.copytree(ROOT / "tests" / "data" / "pre_layout_runs", tmp_path / "cfgs")
    (tmp_path / "run" / ".hydra").mkdir()
    shutil.copy(tmp_path / "cfgs" / "image.yaml", tmp_path / "run" / ".hydra" / "config.yaml")
    with pytest.raises(Exception, match="Weights only load failed|weights_only"):  # export / evaluation loading
        load_run_module(tmp_path / "run", planted)
    assert not marker.exists()


def test_corrupt_checkpoint_is_named_and_the_previous_one_used(tmp_path, caplog):
    run_dir = tmp_path / "run"
    old, new = run_dir / "checkpoints" / "step00000002.ckpt", run_dir / "checkpoints" / "last.ckpt"
    _fake_ckpt(old, 2)
    atomic_torch_save({"global_step": 4, "state_dict": {"w": torch.randn(1000)}}, new)
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


def _tiny_tmpfs(folder: Path) -> bool:
    folder.mkdir()
    try:
        return subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)],
                              capture_output=True).returncode == 0
    except OSError:
        return False


def test_a_full_disk_is_enospc_naming_the_file_and_the_previous_checkpoint_stays(tmp_path):
    disk = tmp_path / "disk"
    if not _tiny_tmpfs(disk):
        pytest.skip("needs permission to mount a 256 KiB tmpfs (root); the message is built from OSError(ENOSPC)")
    try:
        path = disk / "checkpoints" / "last.ckpt"
        atomic_torch_save({"global_step": 1, "w": torch.zeros(1000)}, path)
        with pytest.raises(OSError, match=r"no space left on the device of .*checkpoints while writing checkpoint "
                                          r"last.ckpt \(\d+\.\d MiB free\)") as err:
            atomic_torch_save({"global_step": 2, "w": torch.zeros(1_000_000)}, path)  # 4 MB into 256 KiB
        assert err.value.errno == 28
        assert torch.load(path, weights_only=True)["global_step"] == 1
        assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]
    finally:
        subprocess.run(["umount", str(disk)], check=False)


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
