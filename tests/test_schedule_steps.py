"""The lr schedule follows the optimiser steps the run really takes (issue 16): step-only runs
(max_epochs=-1 max_steps=N), runs cut short by max_steps, and the epoch-based case, for pre-training and
fine-tuning, against a port of MAE's per-iteration schedule."""
from __future__ import annotations

import math
from types import SimpleNamespace

import lightning as L
import pytest
from hydra.utils import instantiate

from mae.core.optim import schedule_steps, warmup_cosine
from tests.conftest import compose_cfg, tiny_fit


def mae_adjust_learning_rate(epoch: float, args: SimpleNamespace) -> float:
    """Reference: facebookresearch/mae util/lr_sched.py `adjust_learning_rate` (the lr it sets), called per
    iteration in engine_pretrain.py with epoch = data_iter_step / len(data_loader) + epoch."""
    if epoch < args.warmup_epochs:
        lr = args.lr * epoch / args.warmup_epochs
    else:
        lr = args.min_lr + (args.lr - args.min_lr) * 0.5 * \
            (1. + math.cos(math.pi * (epoch - args.warmup_epochs) / (args.epochs - args.warmup_epochs)))
    return lr


def ours(step: int, *, warmup_epochs: float, steps_per_epoch: int, total: int, peak: float, min_lr: float) -> float:
    warmup, total = schedule_steps(warmup_epochs=warmup_epochs, steps_per_epoch=steps_per_epoch, total_steps=total)
    return peak * warmup_cosine(step, warmup_steps=warmup, total_steps=total, min_ratio=min_lr / peak)


@pytest.mark.parametrize("epochs, max_steps", [(10, None), (10, 12), (None, 12)])
def test_schedule_equals_mae_lr_sched_on_the_run_really_taken(epochs, max_steps):
    """MAE's epochs = the run really taken (in epochs of 3 steps); warm-up 2 epochs = 6 steps in every case. The
    only difference: our warm-up is one step ahead ((step + 1) / W: the first step does not run at lr 0)."""
    spe, peak, min_lr, warm = 3, 1e-3, 1e-5, 2
    total = min(x for x in (epochs and epochs * spe, max_steps) if x)
    args = SimpleNamespace(lr=peak, min_lr=min_lr, warmup_epochs=warm, epochs=total / spe)
    assert schedule_steps(warmup_epochs=warm, steps_per_epoch=spe, total_steps=total) == (6, total)
    for step in range(total + 1):
        want = mae_adjust_learning_rate((step + (step < 6)) / spe, args)
        assert ours(step, warmup_epochs=warm, steps_per_epoch=spe, total=total, peak=peak, min_lr=min_lr) \
            == pytest.approx(want, rel=1e-9, abs=1e-15), step


def test_schedule_errors_name_the_keys():
    with pytest.raises(ValueError, match="trainer.max_epochs or trainer.max_steps"):
        schedule_steps(warmup_epochs=1, steps_per_epoch=3, total_steps=float("inf"))
    with pytest.raises(ValueError, match="optim.warmup_epochs"):
        schedule_steps(warmup_epochs=1, steps_per_epoch=float("inf"), total_steps=10)
    assert schedule_steps(warmup_epochs=0, steps_per_epoch=float("inf"), total_steps=10) == (0, 10)
    assert schedule_steps(warmup_epochs=2, steps_per_epoch=3, total_steps=0) == (0, 1)  # max_steps=0: no step
    with pytest.warns(UserWarning, match="never reaches its peak"):
        assert schedule_steps(warmup_epochs=2, steps_per_epoch=3, total_steps=6) == (6, 6)


# ----------------------------------------------------------------- the real modules under a real Trainer
class LrRecorder(L.Callback):
    """The lr of every optimiser step (read before the step), and the lr after the last one (the largest group's:
    layer decay scales the others)."""

    def __init__(self) -> None:
        self.lrs: list[float] = []
        self.final: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.lrs.append(max(g["lr"] for g in trainer.optimizers[0].param_groups))

    def on_train_end(self, trainer, pl_module) -> None:
        self.final = max(g["lr"] for g in trainer.optimizers[0].param_groups)


def fit(module, dm, **trainer_kw) -> LrRecorder:
    rec = LrRecorder()
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_train_batches=3,
                        limit_val_batches=0, num_sanity_val_steps=0, callbacks=[rec], **trainer_kw)
    trainer.fit(module, datamodule=dm)
    return rec


def composed(tmp_path, *overrides: str):
    from mae.train.runner import adapt_to_data

    cfg = compose_cfg([*tiny_fit("timeseries", train_batches=3, val_batches=1), "data.name=GunPoint",
                       "data.batch_size=8", "optim.warmup_epochs=1", "optim.min_lr=1e-5", *overrides], tmp_path)
    dm = instantiate(cfg.data)
    adapt_to_data(cfg, dm, tmp_path)
    return cfg, dm


def check_step_run(rec: LrRecorder, *, peak: float, warmup: int, steps: int, min_lr: float) -> None:
    assert len(rec.lrs) == steps
    assert rec.lrs[warmup - 1] == pytest.approx(peak) and all(lr < peak for lr in rec.lrs[: warmup - 1])
    assert all(a >= b for a, b in zip(rec.lrs[warmup:], rec.lrs[warmup + 1:]))
    assert rec.final == pytest.approx(min_lr)


def test_pretraining_step_only_run_peaks_after_warmup_and_ends_at_min_lr(tmp_path):
    cfg, dm = composed(tmp_path)
    module = instantiate(cfg.module)
    rec = fit(module, dm, max_epochs=-1, max_steps=8)  # 3 batches per epoch: warm-up 1 epoch = 3 steps
    check_step_run(rec, peak=module.resolved_lr, warmup=3, steps=8, min_lr=1e-5)
    # cut short by max_steps: the warm-up stays 1 epoch (the old rule gave 1 x 5 / 4 = 1 step), cosine ends at 5
    module = instantiate(cfg.module)
    rec = fit(module, dm, max_epochs=4, max_steps=5)
    check_step_run(rec, peak=module.resolved_lr, warmup=3, steps=5, min_lr=1e-5)
    # the epoch-based case is unchanged: warm-up = warmup_epochs x total / max_epochs = 3 steps of 6
    module = instantiate(cfg.module)
    rec = fit(module, dm, max_epochs=2, accumulate_grad_batches=1)
    check_step_run(rec, peak=module.resolved_lr, warmup=3, steps=6, min_lr=1e-5)


def test_accumulation_counts_optimiser_steps(tmp_path):
    cfg, dm = composed(tmp_path)
    module = instantiate(cfg.module)
    rec = fit(module, dm, max_epochs=-1, max_steps=4, accumulate_grad_batches=3)  # 1 optimiser step per epoch
    by_step = rec.lrs[::3]  # one lr per optimiser step (constant within an accumulation window)
    assert len(by_step) == 4 and by_step[0] == pytest.approx(module.resolved_lr)  # warm-up 1 epoch = 1 step
    assert rec.final == pytest.approx(1e-5)


def test_finetuning_step_only_run_uses_the_same_schedule(tmp_path):
    from mae.finetune.runner import build_module, stage_config
    from mae.train.runner import adapt_to_data

    cfg = compose_cfg(["modality=timeseries", "stage=finetune", "pretrained=/unused", "model.encoder.dim=32",
                       "model.encoder.depth=1", "model.encoder.num_heads=2", "data.name=GunPoint",
                       "finetune.batch_size=8", "finetune.optim.warmup_epochs=1", "finetune.optim.min_lr=1e-5"],
                      tmp_path)
    stage_config(cfg)
    dm = instantiate(cfg.data)
    adapt_to_data(cfg, dm, tmp_path)
    module = build_module(cfg, dm, None, tmp_path, stage="finetune")
    rec = fit(module, dm, max_epochs=-1, max_steps=7)
    check_step_run(rec, peak=module.resolved_lr, warmup=3, steps=7, min_lr=1e-5)


def test_one_cycle_equals_patchtst_fit_one_cycle(tmp_path):
    """optim.schedule=one_cycle against PatchTST's callback (src/callback/scheduler.py OneCycleLR.before_fit: torch's
    OneCycleLR(max_lr, epochs=n_epochs, steps_per_epoch=len(train), pct_start 0.3, cos, cycle_momentum, 0.85 / 0.95,
    div 25, final div 1e4), stepped after every train batch; lr and beta1 per step."""
    import torch

    cfg, dm = composed(tmp_path, "optim.schedule=one_cycle", "optim.warmup_epochs=0", "optim.min_lr=0")
    module = instantiate(cfg.module)
    betas: list[float] = []

    class Beta(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            betas.append(trainer.optimizers[0].param_groups[0]["betas"][0])

    rec = LrRecorder()
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_train_batches=3,
                        limit_val_batches=0, num_sanity_val_steps=0, callbacks=[rec, Beta()], max_epochs=4)
    trainer.fit(module, datamodule=dm)
    peak = module.resolved_lr
    reference = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=peak, betas=(0.9, 0.999))
    official = torch.optim.lr_scheduler.OneCycleLR(optimizer=reference, max_lr=peak, total_steps=None, epochs=4,
                                                   steps_per_epoch=3, pct_start=0.3, anneal_strategy="cos",
                                                   cycle_momentum=True, base_momentum=0.85, max_momentum=0.95,
                                                   div_factor=25., final_div_factor=1e4, three_phase=False)
    want_lr, want_beta = [], []
    for _ in range(12):
        want_lr.append(reference.param_groups[0]["lr"])
        want_beta.append(reference.param_groups[0]["betas"][0])
        reference.step()
        official.step()
    assert rec.lrs == pytest.approx(want_lr) and betas == pytest.approx(want_beta)
    assert max(rec.lrs) == pytest.approx(peak, rel=0.05) and rec.lrs[0] == pytest.approx(peak / 25)


def test_one_cycle_refuses_a_warmup_of_its_own(tmp_path):
    cfg, _ = composed(tmp_path, "optim.schedule=one_cycle", "optim.warmup_epochs=1", "optim.min_lr=0")
    with pytest.raises(Exception, match="optim.schedule=one_cycle warms up over 30 % of the run"):
        instantiate(cfg.module)
    cfg, _ = composed(tmp_path, "optim.schedule=cosine")
    with pytest.raises(Exception, match="optim.schedule must be one of"):
        instantiate(cfg.module)
