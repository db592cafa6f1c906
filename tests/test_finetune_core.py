"""The fine-tuning stage's parts against small hand-computed cases: MAE's layer decay, mixup / cutmix, multi-view
reduction, LARS groups, class-balanced label fractions, the head."""
from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn

from mae.core.encoder import Encoder
from mae.core.pos_embed import SinCosPosEmbed
from mae.finetune.heads import PoolHead
from mae.finetune.labels import balanced_subset
from mae.finetune.mixup import BatchMixup
from mae.finetune.optim import lars_groups, layer_decay_groups
from mae.finetune.tasks import Classification, MultiLabel, reduce_views


def tiny_encoder(depth: int = 3) -> Encoder:
    return Encoder(token_dim=12, dim=16, depth=depth, num_heads=2, pos_embed=partial(SinCosPosEmbed))


def mae_layer_id(name: str, num_layers: int) -> int:
    """facebookresearch/mae util/lr_decay.py get_layer_id_for_vit, on our parameter names."""
    if name.startswith(("encoder.cls_token", "encoder.pos_embed", "encoder.embed")):
        return 0
    if name.startswith("encoder.blocks."):
        return int(name.split(".")[2]) + 1
    return num_layers


def test_layer_decay_matches_mae_lr_decay():
    encoder, head = tiny_encoder(depth=3), nn.Linear(16, 5)
    groups = layer_decay_groups(encoder, head, weight_decay=0.05, layer_decay=0.5, lr=1.0)
    names = {id(p): n for n, p in nn.ModuleDict({"encoder": encoder, "head": head}).named_parameters()}
    num_layers = 3 + 1
    seen = 0
    for group in groups:
        for p in group["params"]:
            name = names[id(p)]
            expected_scale = 0.5 ** (num_layers - mae_layer_id(name, num_layers))
            assert group["lr"] == pytest.approx(expected_scale), name
            no_decay = p.ndim == 1 or name == "encoder.cls_token"  # MAE: 1-D params and no_weight_decay()
            assert group["weight_decay"] == (0.0 if no_decay else 0.05), name
            seen += 1
    assert seen == len(names)  # every trainable parameter is in exactly one group


def test_layer_decay_one_is_a_single_scale():
    groups = layer_decay_groups(tiny_encoder(), nn.Linear(16, 3), weight_decay=0.0, layer_decay=1.0, lr=2e-3)
    assert {g["lr"] for g in groups} == {2e-3}
    with pytest.raises(ValueError, match="layer_decay"):
        layer_decay_groups(tiny_encoder(), nn.Linear(16, 3), weight_decay=0.0, layer_decay=0.0, lr=1.0)


def test_lars_groups_adapt_only_matrices():
    head = nn.Sequential(nn.BatchNorm1d(4, affine=False), nn.Linear(4, 3))
    adapt, plain = lars_groups(head, weight_decay=0.0, lr=0.1)
    assert [p.shape for p in adapt["params"]] == [torch.Size([3, 4])] and adapt["always_adapt"]
    assert [p.shape for p in plain["params"]] == [torch.Size([3])] and not plain["always_adapt"]


def test_mixup_mixes_inputs_and_targets_with_the_same_lambda():
    x = torch.stack([torch.zeros(1, 4, 4), torch.ones(1, 4, 4)])  # (2, 1, 4, 4)
    mixer = BatchMixup(mixup_alpha=0.8, cutmix_alpha=0.0)
    mixed, soft = mixer(x, torch.tensor([0, 1]), num_classes=3, label_smoothing=0.0, multi_label=False, seed=5)
    lam = float(soft[0, 0])  # sample 0 = lam x sample 0 + (1 - lam) x sample 1 (timm mixes i with B-1-i)
    assert torch.allclose(mixed[0], torch.full((1, 4, 4), 1 - lam))
    assert torch.allclose(soft, torch.tensor([[lam, 1 - lam, 0.0], [1 - lam, lam, 0.0]]))
    again, _ = mixer(x, torch.tensor([0, 1]), num_classes=3, label_smoothing=0.0, multi_label=False, seed=5)
    assert torch.equal(mixed, again)  # a pure function of the seed: a resumed run mixes the same way
    assert torch.equal(x[1], torch.ones(1, 4, 4))  # the input batch is not mixed in place


def test_cutmix_on_video_cuts_the_same_box_in_every_frame():
    video = torch.stack([torch.zeros(3, 4, 8, 8), torch.ones(3, 4, 8, 8)])  # (2, C, T, H, W)
    mixer = BatchMixup(mixup_alpha=0.0, cutmix_alpha=1.0)
    mixed, soft = mixer(video, torch.tensor([0, 1]), num_classes=2, label_smoothing=0.0, multi_label=False, seed=1)
    pasted = mixed[0]  # ones where the box of sample 1 was pasted
    assert torch.equal(pasted, pasted[:, :1].expand_as(pasted))  # same box in every frame and channel
    share = float(pasted.mean())
    assert soft[0, 1] == pytest.approx(share)  # lambda corrected to the pasted area


def test_mixup_needs_an_even_batch():
    with pytest.raises(ValueError, match="even batch"):
        BatchMixup()(torch.zeros(3, 1, 4, 4), torch.zeros(3, dtype=torch.long), num_classes=2, label_smoothing=0.0,
                     multi_label=False, seed=0)


def test_views_softmax_mean_and_logit_mean():
    # two samples x two views: sample 0's views disagree, the softmax mean follows the confident one
    out = torch.tensor([[4.0, 0.0], [0.0, 1.0], [0.0, 2.0], [0.0, 2.0]])
    soft = reduce_views(out, 2, "softmax_mean").exp()  # (2, 2) mean probabilities
    p0 = (out[0].softmax(0) + out[1].softmax(0)) / 2
    assert torch.allclose(soft[0], p0) and int(soft[0].argmax()) == 0
    assert torch.allclose(reduce_views(out, 2, "logit_mean"), torch.tensor([[2.0, 0.5], [0.0, 2.0]]))


def test_classification_top1_over_views():
    task = Classification()
    task.setup(num_classes=3)
    out = torch.tensor([[5.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0, 0, 3.0]])  # 2 samples x 2 views
    task.update(out, {"label": torch.tensor([0, 1]), "views": 2})
    assert task.compute()["top1"] == pytest.approx(0.5)  # sample 0 right (class 0), sample 1 wrong (class 2)


def test_multilabel_map_hand_computed():
    task = MultiLabel()
    task.setup(num_classes=3)
    labels = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [1.0, 1.0, 0]])  # class 2 never positive: left out
    scores = torch.tensor([[2.0, -1, 0], [-1, 2.0, 0], [1.0, 0.5, 0]])
    task.update(scores, {"labels": labels})
    # class 0: ranks rows (0, 2, 1) -> positives at 1, 2 -> AP 1; class 1: ranks (1, 2, 0) -> AP 1
    metrics = task.compute()
    assert metrics["map"] == pytest.approx(1.0) and metrics["map_classes"] == 2
    task.reset()
    task.update(-scores, {"labels": labels})
    # class 0 reversed order (1, 2, 0): positives at ranks 2, 3 -> AP (1/2 + 2/3) / 2
    assert task.compute()["map"] == pytest.approx(((1 / 2 + 2 / 3) / 2 + (1 / 2 + 2 / 3) / 2) / 2)


def test_balanced_subset_is_seeded_and_balanced():
    labels = [0] * 50 + [1] * 30 + [2] * 20 + [-1] * 5
    chosen = balanced_subset(labels, fraction=0.1, seed=3)
    counts = [sum(labels[p] == c for p in chosen) for c in range(3)]
    assert counts == [5, 3, 2] and -1 not in {labels[p] for p in chosen}
    assert chosen == balanced_subset(labels, fraction=0.1, seed=3) != balanced_subset(labels, fraction=0.1, seed=4)
    assert [sum(labels[p] == c for p in balanced_subset(labels, fraction=0.01, seed=0)) for c in range(3)] == [1, 1, 1]
    with pytest.raises(ValueError, match="label_fraction"):
        balanced_subset(labels, fraction=0.0, seed=0)


def test_pool_head_linear_probe_layout():
    head = PoolHead(in_dim=16, out_dim=4, batch_norm=True, init_std=0.01)
    assert isinstance(head.norm, nn.BatchNorm1d) and not head.norm.affine
    assert float(head.linear.weight.detach().std()) < 0.05 and float(head.linear.bias.detach().abs().sum()) == 0.0


def test_encoder_drop_path_schedule():
    encoder = Encoder(token_dim=12, dim=16, depth=3, num_heads=2, pos_embed=partial(SinCosPosEmbed), drop_path=0.2)
    rates = [getattr(b.drop_path1, "drop_prob", 0.0) for b in encoder.blocks]
    assert rates == pytest.approx([0.0, 0.1, 0.2])  # timm's linear rule, as MAE's models_vit


def test_label_efficiency_curve_of_a_sweep(tmp_path):
    from mae.finetune.label_curve import write_label_curve

    rows = [{"status": "completed", "finetune/label_fraction": f, "finetune/top1": a, "finetune/top1_scratch": b}
            for f, a, b in [(0.1, 0.9, 0.6), (0.01, 0.7, 0.3), (1.0, 0.97, 0.95), (0.1, 0.8, 0.5)]]
    rows.append({"status": "failed", "finetune/label_fraction": 0.5})
    assert write_label_curve(tmp_path, rows, "finetune/top1") == tmp_path / "label_efficiency.png"
    lines = (tmp_path / "label_efficiency.csv").read_text().splitlines()
    assert lines[0] == "label_fraction,finetune/top1,finetune/top1_scratch,gain"
    assert [line.split(",")[0] for line in lines[1:]] == ["0.01", "0.1", "1.0"]  # sorted; the 0.1 runs averaged
    assert float(lines[2].split(",")[1]) == pytest.approx(0.85) and float(lines[2].split(",")[3]) == pytest.approx(0.3)
    assert write_label_curve(tmp_path / "x", rows[:1], "finetune/top1") is None  # one fraction: no curve


def test_summary_gain_is_positive_when_pretraining_helps_for_errors_too():
    from mae.finetune.report import format_finetune_summary

    table = format_finetune_summary({"finetune/top1": 0.9, "finetune/top1_scratch": 0.8, "finetune/mse_h96": 0.5,
                                     "finetune/mse_h96_scratch": 0.4})
    top1, mse = (line for line in table.splitlines() if line.startswith(("finetune/top1", "finetune/mse")))
    assert top1.split()[-1] == "+0.1000" and "scratch wins" not in top1
    assert mse.split()[-4:] == ["-0.1000", "<-", "scratch", "wins"]  # a higher error is a loss for pre-training


def test_the_mae_recipe_carries_the_papers_values():
    from tests.conftest import compose_cfg

    cfg = compose_cfg(["experiment=mae_vit_base_in1k_finetune", "pretrained=/x.pth", "data.root=/y"], "/tmp/unused")
    ft = cfg.finetune
    assert (ft.mixup.mixup_alpha, ft.mixup.cutmix_alpha, ft.mixup.prob, ft.mixup.switch_prob) == (0.8, 1.0, 1.0, 0.5)
    assert (ft.layer_decay, ft.drop_path, ft.epochs, ft.task.label_smoothing) == (0.65, 0.1, 100, 0.1)
    assert (ft.optim.blr, ft.optim.effective_batch_size, ft.optim.warmup_epochs) == (5e-4, 1024, 5)
    assert (ft.data.random_erasing, ft.data.rand_augment) == (0.25, "rand-m9-mstd0.5-inc1-mmax9")
