"""The one LightningModule: tokenizer -> masker -> encoder (visible only) -> decoder -> target -> loss."""
from __future__ import annotations

from collections.abc import Callable
from functools import partial

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from mae.core.interfaces import DecoderMask, MAEDecoder, MAEEncoder, Masker, Target, Tokenizer
from mae.core.masking import DualMasker
from mae.core.optim import check_schedule, param_groups, resolve_lr, warmup_cosine_schedule
from mae.core.seeding import mix_seed


class MAEModule(L.LightningModule):
    """Masked autoencoder for any modality whose tokenizer yields `Tokens`."""

    def __init__(
        self,
        *,
        tokenizer: Tokenizer,
        masker: Masker,
        encoder: Callable[..., MAEEncoder],
        decoder: Callable[..., MAEDecoder],
        target: Target,
        loss: Callable[[Tensor, Tensor, Tensor | None], Tensor],
        optimizer: partial[torch.optim.Optimizer],
        batch_size: int,
        blr: float = 1.5e-4,
        lr: float | None = None,
        weight_decay: float = 0.05,
        warmup_epochs: float = 0.0,
        min_lr: float = 0.0,
        seed: int = 0,
        compile: bool = False,
        decoder_mask: DecoderMask | None = None,
        lr_batch_divisor: int = 1,
        decay_tokens: bool = False,
        schedule: str = "warmup_cosine",
    ) -> None:
        super().__init__()
        if decoder_mask is not None:  # dual masking: the decoder reconstructs a subset of the hidden tokens
            masker = DualMasker(base=masker, decoder=decoder_mask)
        masker.check_grid(tokenizer.grid)  # fail at start-up, not at step 1
        target.check_grid(tokenizer.grid)
        self.tokenizer, self.masker, self.target, self.loss_fn = tokenizer, masker, target, loss
        self.encoder_factory = encoder
        self.encoder = encoder(token_dim=tokenizer.token_dim)
        self.decoder = decoder(
            enc_dim=self.encoder.dim, num_prefix=self.encoder.num_prefix, out_dim=target.out_dim(tokenizer.token_dim)
        )
        self.optimizer_factory = optimizer
        self.batch_size, self.blr, self.lr, self.weight_decay = batch_size, blr, lr, weight_decay
        self.warmup_epochs, self.min_lr, self.seed, self.compile_model = warmup_epochs, min_lr, seed, compile
        if isinstance(lr_batch_divisor, bool) or not isinstance(lr_batch_divisor, int) or lr_batch_divisor < 1:
            raise ValueError(f"optim.lr_batch_divisor must be an integer >= 1, got {lr_batch_divisor!r}")
        self.lr_batch_divisor = lr_batch_divisor  # the lr rule counts effective_batch / this (MAE-ST: videos = clips / repeat)
        if not isinstance(decay_tokens, bool):
            raise ValueError(f"optim.decay_tokens must be true or false, got {decay_tokens!r}")
        self.decay_tokens = decay_tokens  # True: cls / mask tokens decayed too (MAE's main_pretrain.py)
        check_schedule(schedule, warmup_epochs=warmup_epochs, min_lr=min_lr)  # at start-up, not at fit
        self.schedule = schedule
        self._generator: torch.Generator | None = None
        self.resolved_lr: float | None = None

    # ---- forward pieces -------------------------------------------------------------------
    def generator(self, *key: int) -> torch.Generator:
        """The masking RNG, re-seeded from (seed, key, rank): masks are a pure function of the step."""
        if self._generator is None or self._generator.device != self.device:
            self._generator = torch.Generator(device=self.device)
        rank = self.trainer.global_rank if self._trainer is not None else 0
        return self._generator.manual_seed(mix_seed(self.seed, *key, rank))

    def forward(self, batch: dict, generator: torch.Generator | None = None) -> dict[str, object]:
        """One masked reconstruction: returns tokens, mask, pred (B, M, C'), target (B, M, C'), loss."""
        tokens = self.tokenizer(batch)  # values (B, N, C)
        mask = self.masker(tokens, generator)  # keep (B, K), masked (B, M)
        latent = self.encoder(mask.encoder_input(tokens), mask)  # (B, prefix+K, D)
        pred = self.decoder(latent, tokens, mask)  # (B, M, C'); M' = mask.predicted's width under dual masking
        target = self.target.at(tokens, mask.predicted)  # (B, M, C')
        weight = None if tokens.pad is None else torch.gather(tokens.pad, 1, mask.predicted).logical_not().float()
        loss = self.loss_fn(pred, target, weight)
        return {"tokens": tokens, "mask": mask, "pred": pred, "target": target, "loss": loss}

    @torch.no_grad()
    def embed(self, batch: dict, encoder: MAEEncoder | None = None) -> Tensor:
        """(B, D) pooled features of the unmasked input: the one way to embed a batch, for evaluation and
        downstream use. `encoder`: another encoder of this architecture (a random-init twin); None = this
        module's. A tokenizer that folds several token sequences into one sample (time-series channels) merges
        their pooled rows back per sample (`Tokenizer.merge_pooled`)."""
        encoder = self.encoder if encoder is None else encoder
        return self.tokenizer.merge_pooled(encoder.pool(self.tokenizer(batch)), batch)  # (B, D)

    # ---- Lightning hooks ------------------------------------------------------------------
    def _step(self, batch: dict, batch_idx: int, stage: str) -> Tensor:
        # Validation uses the same masks every epoch (key -1) so val/loss curves are comparable.
        key = (0, self.current_epoch, batch_idx) if stage == "train" else (1, -1, batch_idx)
        loss = self(batch, self.generator(*key))["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"{stage}/loss is {loss.item()} at epoch {self.current_epoch}, batch {batch_idx}, "
                f"step {self.global_step}: lower optim.blr, raise optim.warmup_epochs, set "
                f"trainer.gradient_clip_val, or use trainer.precision=32-true"
            )
        self.log(f"{stage}/loss", loss, prog_bar=True, on_step=stage == "train", on_epoch=True,
                 sync_dist=True, batch_size=batch_size_of(batch))  # mean over ranks (no-op on one process)
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        return self._step(batch, batch_idx, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> Tensor:
        return self._step(batch, batch_idx, "val")

    def configure_model(self) -> None:
        if self.compile_model:
            self.encoder.compile()  # in place: state-dict keys stay the same
            self.decoder.compile()

    def effective_batch(self) -> int:
        """The batch of the lr rule: samples per optimiser step / lr_batch_divisor (1 = every sample counts)."""
        t = self.trainer
        return max(1, self.batch_size * t.accumulate_grad_batches * t.world_size // self.lr_batch_divisor)

    def optimizer_overrides(self) -> dict:
        """Keyword arguments that replace the optimizer config's for this trainer: Lightning refuses to clip the
        gradients of a fused optimizer under mixed precision (it would unscale inside the kernel), so there the
        optimizer falls back to torch's per-parameter loop (`fused=False`), with a note in the log."""
        t = self.trainer
        fused = self.optimizer_factory.keywords.get("fused")
        if fused and t.gradient_clip_val and "mixed" in str(t.precision):
            rank_zero_info(f"optim: fused AdamW off: trainer.gradient_clip_val={t.gradient_clip_val} with "
                           f"trainer.precision={t.precision} needs the non-fused optimizer step")
            return {"fused": False}
        return {}

    def configure_optimizers(self):
        eff = self.effective_batch()
        self.resolved_lr = resolve_lr(blr=self.blr, lr=self.lr, effective_batch=eff)
        groups = param_groups(nn.ModuleList([self.encoder, self.decoder]), weight_decay=self.weight_decay,
                              decay_tokens=self.decay_tokens)
        optimizer = self.optimizer_factory(groups, lr=self.resolved_lr, **self.optimizer_overrides())
        schedule = warmup_cosine_schedule(optimizer, self.trainer, warmup_epochs=self.warmup_epochs,
                                          peak_lr=self.resolved_lr, min_lr=self.min_lr, schedule=self.schedule)
        return {"optimizer": optimizer, "lr_scheduler": schedule}


def batch_size_of(batch: dict) -> int:
    """The leading dimension of the first tensor in a batch dict."""
    for value in batch.values():
        if isinstance(value, Tensor):
            return value.shape[0]
    raise ValueError("batch holds no tensor")
