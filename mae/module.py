"""The one LightningModule: tokenizer -> masker -> encoder (visible only) -> decoder -> target -> loss."""
from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import lightning as L
from lightning.pytorch.utilities import rank_zero_info
import torch
from torch import Tensor, nn

from mae.decoder import Decoder
from mae.encoder import Encoder
from mae.optim import param_groups, scaled_lr, warmup_cosine
from mae.seeding import mix_seed
from mae.types import Mask, Tokens, gather_tokens


class Masker(Protocol):
    def check_grid(self, grid: tuple[int, ...] | None) -> None: ...
    def __call__(self, tokens: Tokens, generator: torch.Generator | None = None) -> Mask: ...


class MAEModule(L.LightningModule):
    """Masked autoencoder for any modality whose tokenizer yields `Tokens`."""

    def __init__(
        self,
        *,
        tokenizer: nn.Module,
        masker: Masker,
        encoder: Callable[..., Encoder],
        decoder: Callable[..., Decoder],
        target: nn.Module,
        loss: Callable[[Tensor, Tensor, Tensor | None], Tensor],
        optimizer: Callable[..., torch.optim.Optimizer],
        batch_size: int,
        blr: float = 1.5e-4,
        lr: float | None = None,
        weight_decay: float = 0.05,
        warmup_epochs: float = 0.0,
        min_lr: float = 0.0,
        seed: int = 0,
        compile: bool = False,
    ) -> None:
        super().__init__()
        masker.check_grid(getattr(tokenizer, "grid", None))  # fail at start-up, not at step 1
        self.tokenizer, self.masker, self.target, self.loss_fn = tokenizer, masker, target, loss
        self.encoder_factory = encoder
        self.encoder = encoder(token_dim=tokenizer.token_dim)
        self.decoder = decoder(
            enc_dim=self.encoder.dim, num_prefix=self.encoder.num_prefix, out_dim=target.out_dim(tokenizer.token_dim)
        )
        self.optimizer_factory = optimizer
        self.batch_size, self.blr, self.lr, self.weight_decay = batch_size, blr, lr, weight_decay
        self.warmup_epochs, self.min_lr, self.seed, self.compile_model = warmup_epochs, min_lr, seed, compile
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
        latent = self.encoder(mask.encoder_input(tokens), mask.keep)  # (B, prefix+K, D)
        pred = self.decoder(latent, tokens, mask)  # (B, M, C'); M' = mask.predicted's width under dual masking
        target = targets_at(self.target, tokens, mask.predicted)  # (B, M, C')
        weight = None if tokens.pad is None else torch.gather(tokens.pad, 1, mask.predicted).logical_not().float()
        loss = self.loss_fn(pred, target, weight)
        return {"tokens": tokens, "mask": mask, "pred": pred, "target": target, "loss": loss}

    @torch.no_grad()
    def embed(self, batch: dict) -> Tensor:
        """(B, D) pooled encoder features of the unmasked input, for evaluation and downstream use."""
        return self.embed_with(self.encoder, batch)

    @torch.no_grad()
    def embed_with(self, encoder: nn.Module, batch: dict) -> Tensor:
        """(B, D) pooled features of `encoder` (this module's or a random-init twin) on the unmasked input.
        A tokenizer that folds several token sequences into one sample (time-series channels) merges their
        pooled rows back per sample with `merge_pooled(features, batch)`."""
        features = encoder.pool(self.tokenizer(batch))  # (B, D), or (B*C, D) for folded channels
        merge = getattr(self.tokenizer, "merge_pooled", None)
        return features if merge is None else merge(features, batch)

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
        t = self.trainer
        return self.batch_size * t.accumulate_grad_batches * t.world_size

    def optimizer_overrides(self) -> dict:
        """Keyword arguments that replace the optimizer config's for this trainer: Lightning refuses to clip the
        gradients of a fused optimizer under mixed precision (it would unscale inside the kernel), so there the
        optimizer falls back to torch's per-parameter loop (`fused=False`), with a note in the log."""
        t = self.trainer
        fused = getattr(self.optimizer_factory, "keywords", {}).get("fused")
        if fused and t.gradient_clip_val and "mixed" in str(t.precision):
            rank_zero_info(f"optim: fused AdamW off: trainer.gradient_clip_val={t.gradient_clip_val} with "
                           f"trainer.precision={t.precision} needs the non-fused optimizer step")
            return {"fused": False}
        return {}

    def configure_optimizers(self):
        eff = self.effective_batch()
        self.resolved_lr = self.lr if self.lr is not None else scaled_lr(blr=self.blr, effective_batch=eff)
        groups = param_groups(nn.ModuleList([self.encoder, self.decoder]), weight_decay=self.weight_decay)
        optimizer = self.optimizer_factory(groups, lr=self.resolved_lr, **self.optimizer_overrides())
        total = max(1, int(self.trainer.estimated_stepping_batches))
        epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else 1
        warmup = int(round(self.warmup_epochs * total / epochs))
        min_ratio = self.min_lr / self.resolved_lr if self.resolved_lr > 0 else 0.0
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, warmup_steps=warmup, total_steps=total, min_ratio=min_ratio)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def targets_at(target: nn.Module, tokens: Tokens, index: Tensor) -> Tensor:
    """(B, M, C') the targets of the tokens at `index` (B, M): a token-wise target (one with `of_values`) is
    computed on the gathered tokens only, any other on all tokens and then gathered."""
    of_values = getattr(target, "of_values", None)
    if of_values is not None:
        return of_values(gather_tokens(tokens.values, index))
    return gather_tokens(target(tokens), index)


def batch_size_of(batch: dict) -> int:
    """The leading dimension of the first tensor in a batch dict."""
    for value in batch.values():
        if isinstance(value, Tensor):
            return value.shape[0]
    raise ValueError("batch holds no tensor")
