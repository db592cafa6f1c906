"""Distributed training: effective batch -> accumulation, disjoint data shards, DDP on CPU (2 gloo processes)."""
from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import DistributedSampler

from datamodules.sampling import SeededSampler
from mae.train.config_check import validate
from mae.train.distributed import count_devices, plan_batch, resolve_batch
from mae.train.runner import run
from tests.conftest import CONF, FAST, ROOT, compose_cfg


# ------------------------------------------------------------------------------------------- batch plan
def test_effective_batch_gives_accumulation_and_lr():
    plan = plan_batch(effective_batch_size=4096, per_device=64, devices=8, nodes=1, accumulation=1)
    assert (plan.accumulation, plan.world_size, plan.effective) == (8, 8, 4096)
    assert plan_batch(effective_batch_size=4096, per_device=64, devices=8, nodes=8, accumulation=1).accumulation == 1
    assert plan_batch(effective_batch_size=None, per_device=16, devices=2, nodes=1, accumulation=3).effective == 96
    with pytest.raises(ValueError, match=r"not a multiple of data.batch_size x trainer.devices x trainer.num_nodes"):
        plan_batch(effective_batch_size=1000, per_device=64, devices=8, nodes=1, accumulation=1)
    with pytest.raises(ValueError, match="do not also set it"):
        plan_batch(effective_batch_size=256, per_device=64, devices=1, nodes=1, accumulation=2)


def test_count_devices_like_lightning():
    assert count_devices(4, "gpu") == 4 and count_devices([0, 3], "gpu") == 2 and count_devices("0,1,2", "gpu") == 3
    assert count_devices("auto", "cpu") == 1 and count_devices("2", "cpu") == 2


@pytest.mark.parametrize("modality", ["image", "audio", "pointcloud"])
@pytest.mark.parametrize("trainer", ["ddp", "fsdp", "ddp_cpu"])
def test_distributed_trainers_compose_for_every_modality(tmp_path, modality, trainer):
    cfg = compose_cfg([f"modality={modality}", f"trainer={trainer}", "trainer.num_nodes=2",
                       "optim.effective_batch_size=256", f"data.batch_size={4 if trainer == 'ddp_cpu' else 8}",
                       "trainer.devices=4"], tmp_path)
    validate(cfg)
    plan = resolve_batch(cfg)
    per = cfg.data.batch_size * 4 * 2
    assert plan.accumulation == 256 // per and cfg.trainer.accumulate_grad_batches == 256 // per
    if trainer == "ddp_cpu":
        assert instantiate(cfg.trainer.strategy).process_group_backend == "gloo"


def test_paper_recipe_on_64_and_8_gpus_has_the_same_effective_batch(tmp_path):
    base = ["experiment=mae_vit_base_in1k", "data.root=/data/imagenet/train", "trainer=ddp",
            "optim.effective_batch_size=4096"]
    for nodes, accumulation in ((8, 1), (1, 8)):
        cfg = compose_cfg([*base, f"trainer.num_nodes={nodes}", "trainer.devices=8"], tmp_path)
        assert resolve_batch(cfg).accumulation == accumulation
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[*base, "hydra/launcher=slurm", "trainer.num_nodes=8", "trainer.devices=8",
                                          "hydra.launcher.partition=gpu"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
    assert (launcher.nodes, launcher.gpus_per_node, launcher.tasks_per_node) == (8, 8, 8)  # one task per GPU


# ---------------------------------------------------------------------------------------------- shards
@pytest.mark.parametrize("n,world", [(10, 2), (11, 3), (7, 1)])
def test_seeded_sampler_shards_are_disjoint_and_add_up_to_the_single_process_order(n, world):
    single = list(SeededSampler(n, seed=3, shuffle=True))
    shards = [list(SeededSampler(n, seed=3, shuffle=True, num_replicas=world, rank=r)) for r in range(world)]
    indices = [i for shard in shards for _, i in shard]
    assert len(indices) == len(set(indices)) == n - n % world  # disjoint, no padding duplicates
    assert all(len(s) == n // world for s in shards)
    for r, shard in enumerate(shards):  # rank r = positions r, r + W, ... of the one global order, same seeds
        assert shard == single[r: n - n % world: world]
    sampler = SeededSampler(n, seed=3, shuffle=True, num_replicas=world, rank=0)
    sampler.set_start(2)
    assert list(sampler) == shards[0][2:] and list(sampler) == shards[0]  # the skip applies once
    assert isinstance(sampler, DistributedSampler)  # so Lightning does not wrap (and re-shard) it


def test_seeded_sampler_with_fewer_samples_than_ranks_gives_each_rank_one():
    shards = [list(SeededSampler(1, seed=0, shuffle=True, num_replicas=2, rank=r)) for r in range(2)]
    assert [[i for _, i in s] for s in shards] == [[0], [0]]


# --------------------------------------------------------------------------------------- DDP end to end
def step_losses(run_dir) -> pd.Series:
    frame = pd.read_csv(run_dir / "csv" / "metrics.csv").dropna(subset=["train/loss_step"])
    return frame.groupby("step")["train/loss_step"].last().sort_index()


@pytest.mark.e2e
def test_ddp_cpu_two_processes_match_one_process_at_the_same_effective_batch(tmp_path):
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    common = [*FAST, "trainer.limit_train_batches=3", "data.num_workers=0", "eval.random_init=false"]
    proc = subprocess.run(
        [sys.executable, "train.py", *common, "trainer=ddp_cpu", "data.batch_size=8", "optim.effective_batch_size=16",
         "+callbacks.rank_check._target_=mae.train.distributed.RankConsistency",
         f"+callbacks.rank_check.path={ddp_dir / 'ranks.json'}", f"hydra.run.dir={ddp_dir}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = run(compose_cfg([*common, "data.batch_size=16"], single_dir))

    ranks = json.loads((ddp_dir / "ranks.json").read_text())
    assert ranks["world_size"] == 2 and len(set(ranks["digests"])) == 1  # identical weights on both ranks
    resolved = OmegaConf.load(ddp_dir / "resolved.yaml").optim
    assert (resolved.world_size, resolved.per_device, resolved.accumulation, resolved.effective_batch) == (2, 8, 1, 16)
    assert "resolved optimisation:" in proc.stdout
    ddp = json.loads((ddp_dir / "metrics.json").read_text())  # written once, by rank 0, with its evaluation
    assert ddp["optim/world_size"] == 2 and ddp["optim/effective_batch"] == single["optim/effective_batch"] == 16
    assert ddp["optim/lr"] == pytest.approx(single["optim/lr"]) and "eval/linear_acc" in ddp
    assert list((ddp_dir / "reconstructions").glob("*.png"))
    # Same data per step (the ranks' shards make up the single process's batch), same init and lr; only the
    # random masks differ (seeded per rank), so the loss curves agree within a few percent.
    a, b = step_losses(ddp_dir), step_losses(single_dir)
    assert list(a.index) == list(b.index) == list(range(6))
    assert ((a - b).abs() / b).max() < 0.04, pd.concat({"ddp": a, "single": b}, axis=1)
