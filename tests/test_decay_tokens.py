"""Weight decay on cls / mask tokens (issue 16): `optim.decay_tokens=true` gives exactly timm's
`param_groups_weight_decay` (MAE's main_pretrain.py rule: cls_token and mask_token decayed); false, the shared
default, exempts the encoder's / decoder's `no_weight_decay()` names too. experiment=mae_vit_base_in1k is MAE's."""
from __future__ import annotations

import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from timm.optim import param_groups_weight_decay
from torch import nn

from mae.core.optim import param_groups, resolve_lr
from tests.conftest import compose_cfg


def by_decay(groups: list[dict]) -> dict[float, set[int]]:
    """{weight_decay: ids of its parameters}, empty groups dropped."""
    out: dict[float, set[int]] = {}
    for g in groups:
        if g["params"]:
            out.setdefault(float(g["weight_decay"]), set()).update(id(p) for p in g["params"])
    return out


def tiny_image_module(tmp_path, *overrides: str):
    shrink = ["model.encoder.dim=32", "model.encoder.depth=1", "model.encoder.num_heads=2", "model.decoder.dim=32",
              "model.decoder.depth=1", "model.decoder.num_heads=2"]
    cfg = compose_cfg([*overrides, *shrink], tmp_path / "run")
    return cfg, instantiate(cfg.module)


def test_decay_tokens_true_equals_timm_param_groups_weight_decay(tmp_path):
    _, module = tiny_image_module(tmp_path, "optim.decay_tokens=true")
    model = nn.ModuleList([module.encoder, module.decoder])
    ours = by_decay(param_groups(model, weight_decay=0.05, decay_tokens=True))
    assert ours == by_decay(param_groups_weight_decay(model, 0.05))
    tokens = {id(module.encoder.cls_token), id(module.decoder.mask_token)}
    assert tokens <= ours[0.05]


def test_decay_tokens_false_exempts_exactly_the_no_weight_decay_names(tmp_path):
    _, module = tiny_image_module(tmp_path)
    model = nn.ModuleList([module.encoder, module.decoder])
    ours = by_decay(param_groups(model, weight_decay=0.05, decay_tokens=False))
    timm = by_decay(param_groups_weight_decay(model, 0.05, no_weight_decay_list=["0.cls_token", "1.mask_token"]))
    assert ours == timm
    assert {id(module.encoder.cls_token), id(module.decoder.mask_token)} <= ours[0.0]


def test_module_passes_the_option_and_checks_it(tmp_path):
    cfg, module = tiny_image_module(tmp_path)
    assert cfg.optim.decay_tokens is False and module.decay_tokens is False  # the documented default
    with pytest.raises(InstantiationException, match="optim.decay_tokens must be true or false"):
        instantiate(cfg.module, decay_tokens="yes")


def test_mae_recipe_decays_tokens_and_keeps_the_papers_values(tmp_path):
    """PRETRAIN.md (--batch_size 64 on 8 nodes x 8 GPUs, --mask_ratio 0.75 --epochs 800 --warmup_epochs 40
    --blr 1.5e-4 --weight_decay 0.05), main_pretrain.py (lr rule, AdamW(0.9, 0.95), add_weight_decay), models_mae.py
    mae_vit_base_patch16_dec512d8b (decoder 512 wide, 8 deep, 16 heads)."""
    cfg = compose_cfg(["experiment=mae_vit_base_in1k", "data.root=/imagenet"], tmp_path / "run")
    gpus = cfg.data.batch_size * cfg.trainer.devices * cfg.trainer.num_nodes
    assert gpus == 4096 and resolve_lr(blr=cfg.optim.blr, lr=cfg.optim.lr, effective_batch=gpus) == pytest.approx(2.4e-3)
    assert (cfg.trainer.max_epochs, cfg.optim.warmup_epochs, cfg.optim.min_lr) == (800, 40, 0.0)
    assert cfg.optim.weight_decay == 0.05 and cfg.optim.decay_tokens is True and cfg.module.decay_tokens is True
    assert list(cfg.optim.optimizer.betas) == [0.9, 0.95] and cfg.trainer.get("gradient_clip_val") is None
    assert cfg.mask.ratio == 0.75 and cfg.mask._target_.endswith("RandomMasker")
    assert (cfg.model.decoder.dim, cfg.model.decoder.depth, cfg.model.decoder.num_heads) == (512, 8, 16)
    # the recipe's module, shrunk: its optimiser groups are timm's, cls / mask tokens decayed
    _, module = tiny_image_module(tmp_path, "experiment=mae_vit_base_in1k", "data.root=/imagenet")
    model = nn.ModuleList([module.encoder, module.decoder])
    groups = by_decay(param_groups(model, weight_decay=module.weight_decay, decay_tokens=module.decay_tokens))
    assert groups == by_decay(param_groups_weight_decay(model, 0.05))
