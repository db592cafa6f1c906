"""The fine-tuning LightningModule: tokenizer -> [token dropping] -> encoder (all tokens) -> head -> task loss.

The same module fine-tunes end to end (`stage=finetune`: layer-wise lr decay, drop path, mixup) and trains a linear
probe on a frozen encoder (`stage=linprobe`: BatchNorm + linear head, LARS). Validation scores the task's metrics
every epoch (`val/<metric>`); the test pass (the datamodule's `test_dataloader`, multi-view where the data gives
several views per sample) gives the run's final `test/<metric>`.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import lightning as L
import torch
from torch import Tensor, nn

from mae.core.interfaces import MAEEncoder, Masker, Tokenizer
from mae.core.module import batch_size_of
from mae.core.optim import resolve_lr, warmup_cosine_schedule
from mae.core.seeding import mix_seed
from mae.finetune.heads import Head
from mae.finetune.mixup import BatchMixup
from mae.finetune.optim import lars_groups, layer_decay_groups
from mae.finetune.tasks import Task


class FinetuneModule(L.LightningModule):
    """encoder: built (and loaded) by the stage runner; head_factory(in_dim=, out_dim=) the task head; task: loss and
    metrics (already `setup` with the data's classes); mixup: timm Mixup/CutMix on the tokenizer's input (None = off);
    token_drop: a masker applied in training only (Audio-MAE's fine-tuning masking), None = every token;
    freeze_encoder: the linear probe (encoder in eval mode, no gradients); optimizer: `adamw` or `lars`."""

    def __init__(self, *, tokenizer: Tokenizer, encoder: MAEEncoder, head_factory: Callable[..., Head], task: Task,
                 optimizer: partial[torch.optim.Optimizer], lars: bool, batch_size: int, blr: float,
                 lr: float | None, weight_decay: float, layer_decay: float, warmup_epochs: float, min_lr: float,
                 mixup: BatchMixup | None, token_drop: Masker | None, freeze_encoder: bool, seed: int,
                 classes: list[str], figure_dir: Path | None = None, freeze_epochs: int = 0) -> None:
        super().__init__()
        if mixup is not None and not task.uses_mixup:
            raise ValueError(f"finetune.mixup applies to classification, not to the {task.name} task: "
                             "set finetune.mixup=null")
        if freeze_encoder and token_drop is not None:
            raise ValueError("finetune.token_drop needs a trained encoder; the linear probe freezes it: "
                             "set finetune.token_drop=null")
        self.tokenizer, self.encoder, self.task = tokenizer, encoder, task
        self.head = head_factory(in_dim=tokenizer.pooled_dim(encoder.pool_dim), out_dim=task.out_dim)
        self.optimizer_factory, self.lars = optimizer, lars
        self.batch_size, self.blr, self.lr, self.weight_decay = batch_size, blr, lr, weight_decay
        self.layer_decay, self.warmup_epochs, self.min_lr = layer_decay, warmup_epochs, min_lr
        self.mixup, self.token_drop, self.freeze_encoder, self.seed = mixup, token_drop, freeze_encoder, seed
        self.classes, self.figure_dir = classes, figure_dir
        if freeze_epochs < 0:
            raise ValueError(f"finetune.freeze_epochs must be >= 0, got {freeze_epochs}")
        self.freeze_epochs = freeze_epochs  # PatchTST / fastai fine_tune: head-only epochs first, then everything
        if freeze_encoder:
            self.encoder.requires_grad_(False)
        self.resolved_lr: float | None = None

    @property
    def encoder_frozen(self) -> bool:
        """Whether the encoder is frozen now: always for the linear probe, for the first freeze_epochs otherwise."""
        return self.freeze_encoder or (self._trainer is not None and self.current_epoch < self.freeze_epochs)

    def on_train_epoch_start(self) -> None:
        if not self.freeze_encoder:
            self.encoder.requires_grad_(not self.encoder_frozen)
            self.encoder.train(not self.encoder_frozen)

    # ---- forward ---------------------------------------------------------------------------
    def forward(self, batch: dict, *, keep: Tensor | None = None) -> Tensor:
        """(B, out_dim) task outputs of a batch (rows = samples x views)."""
        tokens = self.tokenizer(batch)
        return self.head(encoder=self.encoder, tokenizer=self.tokenizer, tokens=tokens, keep=keep, batch=batch)

    def train(self, mode: bool = True) -> FinetuneModule:
        super().train(mode)
        if self.freeze_encoder or (mode and self.encoder_frozen):
            self.encoder.eval()  # the probe's encoder keeps eval behaviour (no drop path, frozen statistics)
        return self

    def _generator(self, *key: int) -> torch.Generator:
        rank = self.trainer.global_rank if self._trainer is not None else 0
        return torch.Generator(device=self.device).manual_seed(mix_seed(self.seed, *key, rank))

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        target = self.task.target(batch)
        if self.mixup is not None:
            key = self.tokenizer.key
            batch = dict(batch)
            batch[key], target = self.mixup(batch[key], target, num_classes=self.task.out_dim,
                                            label_smoothing=self.task.label_smoothing,
                                            multi_label=self.task.multi_label,
                                            seed=mix_seed(self.seed, 2, self.global_step, self.global_rank))
        keep = None
        if self.token_drop is not None:
            keep = self.token_drop(self.tokenizer(batch), self._generator(3, self.global_step)).keep  # (B, K)
        loss = self.task.loss(self(batch, keep=keep), target, train=True)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"train/loss is {loss.item()} at step {self.global_step}: lower finetune.blr, "
                                     "raise finetune.warmup_epochs or set trainer.gradient_clip_val")
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, sync_dist=True,
                 batch_size=batch_size_of(batch))
        return loss

    def _eval_step(self, batch: dict) -> tuple[Tensor, int]:
        out = self(batch)
        scores = self.task.aggregate(out.float(), batch)  # (B, K) one row per sample
        self.task.update(out, batch)
        loss = self.task.loss(scores, self.task.target(batch), train=False)
        return loss, scores.shape[0]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        loss, n = self._eval_step(batch)
        self.log("val/loss", loss, prog_bar=True, on_epoch=True, sync_dist=True, batch_size=n)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        loss, n = self._eval_step(batch)
        self.log("test/loss", loss, on_epoch=True, sync_dist=True, batch_size=n)

    def _log_metrics(self, stage: str) -> None:
        for name, value in self.task.compute().items():
            self.log(f"{stage}/{name}", value, prog_bar=stage == "val" and name == self.task.monitor, sync_dist=False)
        if stage == "test" and self.figure_dir is not None:  # every rank: the metric states are gathered
            self.task.figures(self.figure_dir if self.trainer.is_global_zero else None, self.classes)
        self.task.reset()

    def on_validation_epoch_start(self) -> None:
        self.task.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_start(self) -> None:
        self.task.reset()

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    # ---- optimisation ----------------------------------------------------------------------
    def effective_batch(self) -> int:
        t = self.trainer
        return self.batch_size * t.accumulate_grad_batches * t.world_size

    def configure_optimizers(self):
        self.resolved_lr = resolve_lr(blr=self.blr, lr=self.lr, effective_batch=self.effective_batch())
        if self.lars:
            groups = lars_groups(nn.ModuleList([self.encoder, self.head]), weight_decay=self.weight_decay,
                                 lr=self.resolved_lr)
        else:
            groups = layer_decay_groups(self.encoder, self.head, weight_decay=self.weight_decay,
                                        layer_decay=self.layer_decay, lr=self.resolved_lr)
        optimizer = self.optimizer_factory([g for g in groups if g["params"]], lr=self.resolved_lr)
        schedule = warmup_cosine_schedule(optimizer, self.trainer, warmup_epochs=self.warmup_epochs,
                                          peak_lr=self.resolved_lr, min_lr=self.min_lr)
        return {"optimizer": optimizer, "lr_scheduler": schedule}
