"""Point-MAE's voting at test time (tools/runner_finetune.py `validate_vote`): each test cloud is scored as V views,
the first as it is and V-1 under the train-time scale-and-translate, and the logits are averaged
(`Classification(view_reduce=logit_mean)`). Views are drawn under seeds of (seed, vote, position): a fixed test."""
from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

from datamodules.pointcloud.datamodule import PointCloudDataset
from mae.core.seeding import mix_seed


class VotingViews(Dataset):
    """Item i = {"points": (V, P, 3) views of cloud i, "label": int}; `collate_views` flattens a batch of them."""

    def __init__(self, *, plain: PointCloudDataset, augmented: PointCloudDataset, votes: int, seed: int) -> None:
        self.plain, self.augmented, self.votes, self.seed = plain, augmented, votes, seed

    def __len__(self) -> int:
        return len(self.plain)

    def __getitem__(self, position: int) -> dict[str, Tensor | int]:
        first = self.plain[position]
        views = [first["points"]] + [self.augmented[(mix_seed(self.seed, 11, vote, position), position)]["points"]
                                     for vote in range(1, self.votes)]
        return {"points": torch.stack(views), "label": first["label"]}  # (V, P, 3)


def collate_views(items: list[dict]) -> dict[str, Tensor | int]:
    """[(V, P, 3)] x B -> {"points": (B*V, P, 3) sample-major, "label": (B,), "views": V}."""
    points = torch.stack([it["points"] for it in items])  # (B, V, P, 3)
    return {"points": points.flatten(0, 1), "label": torch.tensor([it["label"] for it in items]),
            "views": points.shape[1]}
