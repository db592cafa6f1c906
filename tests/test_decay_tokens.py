"""Weight decay on cls / mask tokens (issue 16): `optim.decay_tokens=true` gives exactly timm's
`param_groups_weight_decay` (MAE's main_pretrain.py rule: cls_token and mask_token decayed); false, the shared
default, exempts the encoder's / decoder's `no_weight_decay()` names too. experiment=mae_vit_base_in1k is MAE's."""
from __future__ import annotations

import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from timm.optim import param_groups_weight_decay
from torch import nn

from mae.core.optim import param_groups
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


def test_mae_recipe_decays_tokens_as_main_pretrain(tmp_path):
    """main_pretrain.py add_weight_decay (the recipe's other values: tests/test_recipes_core.py)."""
    cfg = compose_cfg(["experiment=mae_vit_base_in1k", "data.root=/imagenet"], tmp_path / "run")
    assert cfg.optim.decay_tokens is True and cfg.module.decay_tokens is True
    # the recipe's module, shrunk: its optimiser groups are timm's, cls / mask tokens decayed
    _, module = tiny_image_module(tmp_path, "experiment=mae_vit_base_in1k", "data.root=/imagenet")
    model = nn.ModuleList([module.encoder, module.decoder])
    groups = by_decay(param_groups(model, weight_decay=module.weight_decay, decay_tokens=module.decay_tokens))
    assert groups == by_decay(param_groups_weight_decay(model, 0.05))
