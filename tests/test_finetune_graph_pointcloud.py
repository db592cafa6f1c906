"""Fine-tuning of the graph-level and point-cloud modalities: Point-MAE's voting views (hand-checked: the first view
is the plain cloud, the others scaled-and-translated copies of it, fixed across passes, flattened sample-major), and
the pretrain -> finetune (+ scratch) -> metrics.json chain of both, voting included."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from datamodules.pointcloud.datamodule import PointCloudDataModule
from datamodules.pointcloud.votes import VotingViews, collate_views
from mae.finetune.tasks import Classification
from mae.train.runner import run
from tests.conftest import compose_cfg, tiny_fit


class Plain:
    def __len__(self) -> int:
        return 2

    def __getitem__(self, position: int) -> dict:
        return {"points": torch.full((4, 3), float(position)), "label": 10 + position}


class Augmented:  # what PointCloudDataset does with an (item seed, position) key: a view drawn under that seed
    def __getitem__(self, key: tuple[int, int]) -> dict:
        seed, position = key
        return {"points": torch.full((4, 3), float(position)) + seed % 1000 / 1000 + 100, "label": 10 + position}


def test_voting_views_first_plain_then_seeded_views_flattened_sample_major():
    views = VotingViews(plain=Plain(), augmented=Augmented(), votes=3, seed=0)  # type: ignore[arg-type]
    batch = collate_views([views[0], views[1]])
    assert batch["views"] == 3 and batch["points"].shape == (6, 4, 3) and batch["label"].tolist() == [10, 11]
    rows = batch["points"][:, 0, 0]  # sample-major: cloud 0's 3 views, then cloud 1's
    assert rows[0] == 0.0 and rows[3] == 1.0  # vote 0 of each cloud: the cloud as it is
    assert (rows[[1, 2]] >= 100).all() and (rows[[4, 5]] >= 101).all() and rows[1] != rows[2]  # votes 1, 2: augmented
    assert torch.equal(collate_views([views[0], views[1]])["points"], batch["points"])  # a fixed test


def test_voting_loader_of_the_point_cloud_datamodule():
    dm = PointCloudDataModule(num_points=64, batch_size=6, synthetic_size=12, val_fraction=0.5, test_votes=3)
    batch = next(iter(dm.test_dataloader()))
    assert batch["views"] == 3 and batch["points"].shape == (2 * 3, 64, 3) and batch["label"].shape == (2,)
    views = batch["points"].reshape(2, 3, 64, 3)
    assert torch.equal(views[:, 0], torch.stack([dm.val_set[i]["points"] for i in range(2)]))  # vote 0: plain
    assert not torch.allclose(views[:, 1], views[:, 0]) and not torch.allclose(views[:, 2], views[:, 1])
    assert torch.equal(next(iter(dm.test_dataloader()))["points"], batch["points"])  # the same views every pass


def test_votes_average_logits_per_cloud():
    # two clouds x 3 votes; cloud 0's votes disagree (class 1 wins on the logit mean), cloud 1's agree on class 0
    logits = torch.tensor([[2.0, 0.0], [0.0, 3.0], [0.0, 0.5], [1.0, 0.0], [1.0, 0.0], [1.0, 0.5]])
    task = Classification(view_reduce="logit_mean")
    scores = task.aggregate(logits, {"views": 3})
    assert torch.allclose(scores, torch.tensor([[2 / 3, 3.5 / 3], [1.0, 0.5 / 3]]))
    assert scores.argmax(1).tolist() == [1, 0]


def pretrain(modality: str, data: list[str], run_dir: Path) -> Path:
    cfg = compose_cfg([*tiny_fit(modality, train_batches=3, val_batches=2), *data, "eval.enabled=false",
                       "objective=val/loss"], run_dir)
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    run(cfg)
    return run_dir


@pytest.mark.e2e
@pytest.mark.parametrize("modality, data", [
    ("graph", ["data.source=motifs"]),
    ("pointcloud", ["data.num_points=128", "data.synthetic_size=48", "data.batch_size=8", "tokenizer.num_groups=8",
                    "tokenizer.group_size=16", "finetune.data.test_votes=3"]),
])
def test_pretrain_then_finetune_with_scratch(modality, data, tmp_path):
    source = pretrain(modality, data, tmp_path / "pre")
    cfg = compose_cfg([f"modality={modality}", "logger=csv", "trainer.enable_progress_bar=false", *data,
                       "stage=finetune", f"pretrained={source}", "finetune.epochs=2", "finetune.scratch_baseline=true",
                       "trainer.limit_train_batches=3"], tmp_path / "ft")
    metrics = run(cfg)
    saved = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    for key in ("finetune/top1", "finetune/top1_scratch"):
        assert key in saved and 0.0 <= saved[key] <= 1.0 and metrics[key] == saved[key]
    assert (tmp_path / "ft" / "scratch" / "phase_metrics.json").exists()
