"""Multi-process training helpers: the effective batch resolved into gradient accumulation before the Trainer is
built, and a check that every rank holds the same weights."""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import lightning as L
import torch
import torch.distributed as dist
from omegaconf import DictConfig

from mae.core.optim import resolve_lr

log = logging.getLogger(__name__)


def count_devices(devices: object, accelerator: object) -> int:
    """Processes per node that `lightning.Trainer(devices=..., accelerator=...)` will start.

    int n > 0 -> n; a list of device ids -> its length; "auto" / -1 -> every visible GPU for gpu/cuda/auto with
    CUDA present, else 1 (Lightning's CPU `auto` is one process); a string "2" or "0,1" like Lightning's.
    """
    if isinstance(devices, bool):
        raise TypeError(f"trainer.devices must be an int, a list of ids or 'auto', got {devices!r}")
    if isinstance(devices, str) and devices.strip() not in ("auto", "-1"):
        text = devices.strip()
        return len([d for d in text.split(",") if d.strip()]) if "," in text else int(text)
    if isinstance(devices, int) and devices > 0:
        return devices
    if isinstance(devices, (list, tuple)) or (hasattr(devices, "__len__") and not isinstance(devices, str)):
        return len(devices)
    accelerator = str(accelerator or "auto")
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return max(1, torch.cuda.device_count())
    return 1


@dataclass
class BatchPlan:
    """How an effective batch is reached: per_device x devices x nodes x accumulation."""

    per_device: int
    devices: int
    nodes: int
    accumulation: int

    @property
    def world_size(self) -> int:
        return self.devices * self.nodes

    @property
    def effective(self) -> int:
        return self.per_device * self.world_size * self.accumulation


def plan_batch(*, effective_batch_size: int | None, per_device: int, devices: int, nodes: int,
               accumulation: int) -> BatchPlan:
    """The accumulation that makes per_device x devices x nodes x accumulation == effective_batch_size.

    effective_batch_size None keeps `accumulation` as configured. Raises ValueError naming the keys when the
    effective batch is not an exact multiple of per_device x devices x nodes, or when both it and a
    trainer.accumulate_grad_batches other than 1 are set.
    """
    if effective_batch_size is None:
        return BatchPlan(per_device, devices, nodes, accumulation)
    if isinstance(effective_batch_size, bool) or not isinstance(effective_batch_size, int) or effective_batch_size < 1:
        raise ValueError(f"optim.effective_batch_size must be a positive int or null, got {effective_batch_size!r}")
    if accumulation != 1:
        raise ValueError(
            f"optim.effective_batch_size={effective_batch_size} derives trainer.accumulate_grad_batches; "
            f"do not also set it (got {accumulation})"
        )
    per_step = per_device * devices * nodes
    if effective_batch_size % per_step:
        raise ValueError(
            f"optim.effective_batch_size={effective_batch_size} is not a multiple of data.batch_size x "
            f"trainer.devices x trainer.num_nodes = {per_device} x {devices} x {nodes} = {per_step}; choose an "
            f"effective batch among {[per_step * k for k in (1, 2, 4, 8, 16)]} or change data.batch_size"
        )
    return BatchPlan(per_device, devices, nodes, effective_batch_size // per_step)


def resolve_batch(cfg: DictConfig) -> BatchPlan:
    """Read optim.effective_batch_size (null = off) and write the accumulation it needs into
    cfg.trainer.accumulate_grad_batches (before the Trainer is built)."""
    plan = plan_batch(
        effective_batch_size=cfg.optim.get("effective_batch_size"),
        per_device=int(cfg.data.batch_size),
        devices=count_devices(cfg.trainer.get("devices", "auto"), cfg.trainer.get("accelerator", "auto")),
        nodes=int(cfg.trainer.get("num_nodes", 1)),
        accumulation=int(cfg.trainer.get("accumulate_grad_batches", 1)),
    )
    cfg.trainer.accumulate_grad_batches = plan.accumulation
    return plan


def describe(plan: BatchPlan, *, blr: float, lr: float | None, lr_batch_divisor: int = 1) -> dict:
    """The resolved numbers printed at start-up and saved as <run_dir>/resolved.yaml. `effective_batch` counts
    samples per optimiser step; the lr rule counts `lr_batch` = effective_batch // optim.lr_batch_divisor (MAE-ST /
    VideoMAE V2: videos = clips / data.repeat), as MAEModule.effective_batch does."""
    if isinstance(lr_batch_divisor, bool) or not isinstance(lr_batch_divisor, int) or lr_batch_divisor < 1:
        raise ValueError(f"optim.lr_batch_divisor must be an integer >= 1, got {lr_batch_divisor!r}")
    lr_batch = max(1, plan.effective // lr_batch_divisor)
    out = {**asdict(plan), "world_size": plan.world_size, "effective_batch": plan.effective,
           "lr_batch_divisor": lr_batch_divisor, "lr_batch": lr_batch, "blr": blr}
    out["lr"] = resolve_lr(blr=blr, lr=lr, effective_batch=lr_batch)
    out["lr_rule"] = "optim.lr (absolute)" if lr is not None else lr_rule(lr_batch_divisor)
    return out


def lr_rule(lr_batch_divisor: int) -> str:
    """The scaling rule in words, for the log."""
    if lr_batch_divisor == 1:
        return "blr x effective_batch / 256"
    return f"blr x (effective_batch / optim.lr_batch_divisor={lr_batch_divisor}) / 256"


def weights_digest(module: torch.nn.Module) -> str:
    """sha256 of every parameter and buffer (names, shapes, bytes): equal digests = identical weights."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()
                 if tensor.numel() else b"")
    return h.hexdigest()


class RankConsistency(L.Callback):
    """At the end of fit, gathers every rank's weights digest; rank 0 writes them to `path` (JSON) and raises if
    they differ (DDP must keep replicas identical). One all-gather of a 64-char string: cheap at any size."""

    def __init__(self, *, path: str) -> None:
        self.path = Path(path)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        digest = weights_digest(pl_module)
        digests = [digest]
        if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            digests = [None] * trainer.world_size
            dist.all_gather_object(digests, digest)
        if trainer.is_global_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({"world_size": trainer.world_size, "digests": digests}, indent=2))
            if len(set(digests)) != 1:
                raise RuntimeError(f"weights differ across ranks after training: {digests}")


def fsdp_strategy(*, sharding_strategy: str = "FULL_SHARD", activation_checkpointing: bool = False,
                  cpu_offload: bool = False) -> L.pytorch.strategies.FSDPStrategy:
    """Lightning's FSDPStrategy with each timm `Block` (encoder and decoder) as one sharded unit and full
    (rank-0 gathered) checkpoints. A factory because a set of classes cannot be written in YAML."""
    from lightning.pytorch.strategies import FSDPStrategy
    from timm.models.vision_transformer import Block

    return FSDPStrategy(
        auto_wrap_policy={Block},
        activation_checkpointing_policy={Block} if activation_checkpointing else None,
        sharding_strategy=sharding_strategy,
        cpu_offload=cpu_offload,
        state_dict_type="full",
    )
