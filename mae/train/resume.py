"""Exact resume from any checkpoint a run wrote: the loop state normalised on load, the data position restored.

Lightning writes checkpoints at several points of an epoch: after a training batch (the step checkpoints, the
preemption checkpoint), after the epoch's validation (`ModelCheckpoint`'s last / best) or at the train-epoch end.
Lightning 2.6 resumes the first exactly, but not a checkpoint taken after the epoch's last batch once validation has
run: with `trainer.max_steps` (iteration-based training is always "restarting") it replays the finished epoch's
indices under the next epoch's seed, shifts the logged steps by one and can end the run early. `ResumeDataPosition`
rewrites such a state, as it is loaded, into the state of the same step written right after the last batch (same
weights, optimiser, scheduler and global step), which Lightning resumes exactly. `ResumeDataPosition` then gives
the training sampler the restored epoch and the samples this rank already consumed.
"""
from __future__ import annotations

import logging
import math
import warnings

import lightning as L
from torch.utils.data import DistributedSampler

from datamodules.sampling import SeededSampler

log = logging.getLogger(__name__)

_FIT = "fit_loop"
_EPOCH_LOOP = "epoch_loop"


def epoch_finished(loops: dict) -> bool:
    """Whether a checkpoint's fit-loop state (checkpoint["loops"]["fit_loop"]) was taken after the last training batch
    of an epoch had fully completed (batch end hooks included) but before the epoch was counted as completed."""
    batches = loops[f"{_EPOCH_LOOP}.batch_progress"]
    epochs = loops["epoch_progress"]["current"]
    done = batches["current"]
    return bool(batches["is_last_batch"]) and done["completed"] == done["ready"] > 0 and epochs["completed"] < epochs["ready"]


def to_last_batch_end(loops: dict) -> None:
    """Rewrite (in place) an `epoch_finished` fit-loop state into the state Lightning writes at the end of the epoch's
    last training batch (before validation and the epoch-end hooks), which it resumes exactly: the last batch counted
    as processed but not completed, the epoch as started but not processed, no validation batch run, and the
    logged-step counter one behind the optimiser steps (Lightning adds it back when it restarts there)."""
    for part in ("total", "current"):
        batches = loops[f"{_EPOCH_LOOP}.batch_progress"][part]
        batches["completed"] = batches["processed"] - 1
        epochs = loops["epoch_progress"][part]
        epochs["processed"] = epochs["completed"] = epochs["started"] - 1
    loops[f"{_EPOCH_LOOP}.batch_progress"]["is_last_batch"] = True
    val = loops[f"{_EPOCH_LOOP}.val_loop.batch_progress"]
    for part in ("total", "current"):
        for key in val[part]:
            val[part][key] = 0
    val["is_last_batch"] = False
    steps = loops[f"{_EPOCH_LOOP}.automatic_optimization.optim_progress"]["optimizer"]["step"]["total"]["completed"]
    loops[f"{_EPOCH_LOOP}.state_dict"]["_batches_that_stepped"] = steps - 1


def batches_done_in_epoch(trainer: L.Trainer) -> int:
    """Training batches of the current epoch already consumed by the restored state (0 at an epoch boundary)."""
    nb = trainer.num_training_batches
    if not isinstance(nb, int) or nb <= 0 or math.isinf(nb):
        return 0
    acc = trainer.accumulate_grad_batches
    steps_per_epoch = math.ceil(nb / acc)
    done_steps = trainer.global_step - trainer.current_epoch * steps_per_epoch
    return max(0, min(nb, done_steps * acc)) % nb


class ResumeDataPosition(L.Callback):
    """A resumed run continues with the batches that come next. On load, a checkpoint taken after an epoch's last
    batch's validation or epoch-end hooks is normalised to the state after the batch itself (`to_last_batch_end`); at train start the training sampler (a
    `SeededSampler`; any DistributedSampler gets the epoch) gets the restored epoch and skips the samples this rank
    already consumed, so the resumed losses equal an uninterrupted run's."""

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        loops = checkpoint.get("loops", {}).get(_FIT)
        if loops is not None and epoch_finished(loops):
            to_last_batch_end(loops)
            log.info("resume: checkpoint taken at the end of epoch %d; continuing from the end of its last batch",
                     checkpoint.get("epoch", -1))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        fit = trainer.fit_loop
        if fit.restarted_mid_epoch and fit.epoch_progress.current.completed == fit.epoch_progress.current.ready:
            # Restarted after an epoch's last batch: Lightning has just counted that epoch as completed, but would
            # still treat the next one as restarted mid-epoch (its on_train_epoch_start skipped and its progress never
            # marked ready / started, so the checkpoints written during it would resume at the wrong place).
            fit.reset_restart_stage()
        done = batches_done_in_epoch(trainer)
        loaders = trainer.fit_loop._combined_loader.flattened if trainer.fit_loop._combined_loader else []
        recreate = False
        for loader in loaders:  # DataLoaders
            if isinstance(loader.sampler, DistributedSampler):
                loader.sampler.set_epoch(trainer.current_epoch)
            if done and isinstance(loader.sampler, SeededSampler) and isinstance(loader.batch_size, int):
                loader.sampler.set_start(done * loader.batch_size)
            recreate |= loader.num_workers > 0
        if done and all(isinstance(dl.sampler, SeededSampler) for dl in loaders):
            # Lightning warns that a plain DataLoader cannot resume mid-epoch; this sampler does.
            warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch")
        if done:
            log.info("resuming mid-epoch: epoch %d, skipping %d batches already trained on", trainer.current_epoch, done)
        if recreate and trainer.fit_loop._data_fetcher is not None:
            # Worker loaders draw indices when their iterator is created (in FitLoop.setup_data, before this hook):
            # create it again so the epoch and start set above are used.
            iter(trainer.fit_loop._data_fetcher)
