"""Start-up validation of the composed config, before anything is built."""
from __future__ import annotations

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from mae.train.config_model import model_errors
from mae.train.config_objective import objective_errors
from mae.train.config_ranges import range_errors
from mae.train.config_targets import check_target_fits_tokens

BOOL_STRINGS = {"true", "false", "yes", "no", "on", "off"}


def string_booleans(cfg: DictConfig | ListConfig, path: str = "") -> list[str]:
    """Keys whose value is a boolean spelled as a string ("False"): such a value is truthy in Python."""
    found = []
    keys = cfg.keys() if isinstance(cfg, DictConfig) else range(len(cfg))
    for key in keys:  # keys only: resolving the values here would fail on a broken interpolation without a word
        where = f"{path}.{key}" if path else str(key)
        node = cfg._get_node(key)  # raw node: do not resolve interpolations twice
        value = node._value() if node is not None else None
        if isinstance(node, (DictConfig, ListConfig)):
            found += string_booleans(node, where)
        elif isinstance(value, str) and value.strip().lower() in BOOL_STRINGS and not node._is_interpolation():
            found.append(f"{where}={value!r}")
    return found


def interpolation_error(cfg: DictConfig) -> str | None:
    """The first `${...}` of the config that cannot be resolved, named with its key, or None."""
    try:
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    except InterpolationResolutionError as err:
        return f"{err.full_key} cannot be resolved: {err.msg}"
    return None


def validate(cfg: DictConfig) -> None:
    """Raise ValueError with a clear message for configs that cannot work."""
    check_target_fits_tokens(cfg)  # first: a wrong target's own interpolations (${data.channels}) cannot resolve
    bad = string_booleans(cfg)
    if bad:
        raise ValueError(
            "boolean values given as strings (write true/false without quotes): " + ", ".join(bad)
        )
    if cfg.get("objective") is None:
        raise ValueError("objective must name a metric, e.g. eval/linear_acc or val/loss")
    unresolved = interpolation_error(cfg)  # before missing_keys, which resolves every value
    if unresolved:
        raise ValueError(unresolved)
    missing = OmegaConf.missing_keys(cfg)
    if missing:
        raise ValueError(f"config values that must be set: {sorted(missing)}")
    errors = [*range_errors(cfg), *objective_errors(cfg), *model_errors(cfg)]
    if errors:
        raise ValueError("\n".join(errors))
