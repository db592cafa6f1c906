"""Start-up validation of the composed config, before anything is built."""
from __future__ import annotations

from omegaconf import DictConfig, ListConfig, OmegaConf

BOOL_STRINGS = {"true", "false", "yes", "no", "on", "off"}


def string_booleans(cfg: DictConfig | ListConfig, path: str = "") -> list[str]:
    """Keys whose value is a boolean spelled as a string ("False"): such a value is truthy in Python."""
    found = []
    items = cfg.items() if isinstance(cfg, DictConfig) else enumerate(cfg)
    for key, _ in items:
        where = f"{path}.{key}" if path else str(key)
        node = cfg._get_node(key)  # raw node: do not resolve interpolations twice
        value = node._value() if node is not None else None
        if isinstance(node, (DictConfig, ListConfig)):
            found += string_booleans(node, where)
        elif isinstance(value, str) and value.strip().lower() in BOOL_STRINGS and not node._is_interpolation():
            found.append(f"{where}={value!r}")
    return found


def validate(cfg: DictConfig) -> None:
    """Raise ValueError with a clear message for configs that cannot work."""
    bad = string_booleans(cfg)
    if bad:
        raise ValueError(
            "boolean values given as strings (write true/false without quotes): " + ", ".join(bad)
        )
    if cfg.get("objective") is None:
        raise ValueError("objective must name a metric, e.g. eval/linear_acc or val/loss")
    missing = OmegaConf.missing_keys(cfg)
    if missing:
        raise ValueError(f"config values that must be set: {sorted(missing)}")
