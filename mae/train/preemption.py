"""Never lose a run: a checkpoint on SIGTERM / SIGUSR1 / SIGUSR2 at the next batch boundary, then requeue on SLURM
or stop cleanly (the exact continuation is mae/train/resume.py).

Why not Lightning's own handlers: `SLURMEnvironment(auto_requeue=True)` saves its `hpc_ckpt_N.ckpt` *inside* the
signal handler, i.e. at an arbitrary point of a step (mid backward), and its SIGTERM handler only stops the run
without saving. Here the handler only sets a flag; the checkpoint is written between two optimiser steps, after all
ranks agreed (one all-reduce of a flag per step), so it is the exact state a resumed run continues from.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
from pathlib import Path
from types import FrameType

import lightning as L
import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

PREEMPTED_FILE = "preempted.txt"
"""Written to the checkpoint folder when a run stopped on a signal: which signal, at which step."""


class Preempted(Exception):
    """Raised by every rank at the first hook after the preemption checkpoint (once Lightning has logged that step):
    the next batch's start, a validation's start or the epoch's end. It ends `trainer.fit` there, so no partial-epoch
    validation runs and no later checkpoint (last / best) overwrites the preemption state."""

    def __init__(self, signum: signal.Signals, step: int) -> None:
        super().__init__(f"{signum.name} at step {step}: checkpoint saved")
        self.signum, self.step = signum, step


def _signal_number(name: str) -> signal.Signals:
    """'SIGTERM' / 'TERM' / 'USR1' -> signal.Signals; a clear error for an unknown name."""
    key = name.upper() if name.upper().startswith("SIG") else f"SIG{name.upper()}"
    if not hasattr(signal, key):
        raise ValueError(f"callbacks.preemption.signals: unknown signal {name!r} (use e.g. SIGTERM, SIGUSR1)")
    return signal.Signals(getattr(signal, key))


def slurm_job_id() -> str | None:
    """The id `scontrol requeue` needs (array jobs: ARRAYID_TASKID); None outside SLURM."""
    array_id = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_id is not None and "SLURM_ARRAY_TASK_ID" in os.environ:
        return f"{array_id}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


class PreemptionCheckpoint(L.Callback):
    """On any of `signals`: at the end of the current training batch every rank stops, `dirpath/last.ckpt` is saved
    (atomically, through the trainer's checkpoint IO) and `Preempted` ends the fit (the runner reports it and exits
    cleanly); with `requeue=true` under SLURM the
    job is requeued first (`scontrol requeue`, or the previous handler's own requeue, e.g. submitit's for its
    USR2 timeout signal). The requeued job uses the same run directory and `resume=auto` continues from there.
    """

    def __init__(self, *, dirpath: str, signals: list[str], requeue: bool = True) -> None:
        self.dirpath = Path(dirpath)
        self.signals = [_signal_number(s) for s in signals]
        self.requeue = requeue
        self.received: signal.Signals | None = None
        self.stopped_at_step: int | None = None
        self._stop_next = False
        self._previous: dict[signal.Signals, object] = {}

    # ---- signal plumbing ----------------------------------------------------------------------
    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.received = signal.Signals(signum)  # only a flag: saving happens between steps

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Installed after Lightning's signal connector (trainer._run), replacing its SIGTERM handler; Lightning
        # restores the pre-fit handlers at teardown.
        for signum in self.signals:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handler)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        acc = trainer.accumulate_grad_batches
        if (batch_idx + 1) % acc and batch_idx + 1 != trainer.num_training_batches:
            return  # mid-accumulation: wait for the optimiser step, so the checkpoint is a step boundary
        received = self.received.value if self.received is not None else 0
        if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            flag = torch.tensor([received], device=pl_module.device)  # any rank signalled -> all stop
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            received = int(flag.item())
        if not received:
            return
        self.received = signal.Signals(received)
        self.stopped_at_step = trainer.global_step
        path = self.dirpath / "last.ckpt"
        trainer.save_checkpoint(path)  # every rank calls it (collective under FSDP); rank 0 writes
        if trainer.is_global_zero:
            (self.dirpath / PREEMPTED_FILE).write_text(f"{self.received.name} at step {trainer.global_step}\n")
            log.warning("%s received: saved %s at step %d; resume with resume=auto", self.received.name, path,
                        trainer.global_step)
        if self.requeue and slurm_job_id() is not None:
            self._requeue(trainer)
        self._stop_next = True  # raised at the next hook: Lightning logs this step's row after this one

    def _stop_if_saved(self) -> None:
        if self._stop_next:
            self._stop_next = False
            raise Preempted(self.received, self.stopped_at_step)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        self._stop_if_saved()

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_if_saved()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_if_saved()  # runs before the checkpoint callbacks' own epoch-end saving

    def _requeue(self, trainer: L.Trainer) -> None:
        previous = self._previous.get(self.received)
        if callable(previous):  # e.g. submitit's USR2 handler: requeues its own submission, then exits
            previous(self.received.value, None)
            return
        if trainer.is_global_zero:
            job = slurm_job_id()
            try:
                result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
            except (OSError, subprocess.TimeoutExpired) as err:
                log.error("scontrol requeue %s failed: %s (the checkpoint is saved; resubmit with resume=auto)", job, err)
                return
            if result.returncode:
                log.error("scontrol requeue %s failed (%d): %s", job, result.returncode, result.stderr.strip())
            else:
                log.warning("requeued SLURM job %s", job)

    def _restore_handlers(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handlers()
        self._stop_if_saved()  # the signal came at the run's very last step

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_handlers()
