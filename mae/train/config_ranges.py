"""Types and ranges of the numeric options that the constructors would otherwise reject deep inside torch (or
accept silently: `optim.lr=0` trains nothing), checked on the composed config before anything is built."""
from __future__ import annotations

import math
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

ABSENT = object()


@dataclass(frozen=True)
class Range:
    """`key` must be a number (an int when `integer`) with low </<= key </<= high, or null when `nullable`."""

    key: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    nullable: bool = False

    def describe(self) -> str:
        """E.g. "a number with 0 < mask.ratio < 1", "null or a number with optim.lr > 0"."""
        kind = "an integer" if self.integer else "a number"
        if self.low is not None and self.high is not None:
            bound = (f"{self.low:g} {'<' if self.low_open else '<='} {self.key} "
                     f"{'<' if self.high_open else '<='} {self.high:g}")
        elif self.low is not None:
            bound = f"{self.key} {'>' if self.low_open else '>='} {self.low:g}"
        else:
            bound = f"{self.key} {'<' if self.high_open else '<='} {self.high:g}"
        return f"{'null or ' if self.nullable else ''}{kind} with {bound}"

    def allows(self, value: object) -> bool:
        if value is None:
            return self.nullable
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)


def shown(value: object) -> str:
    """A value as the user would write it on the command line (null, 'abc' for strings)."""
    return "null" if value is None else repr(value)


# every ratio-like key of conf/mask/*.yaml and conf/decoder_mask/*.yaml, and the optimisation options
RULES = (
    Range("mask.ratio", 0, 1, low_open=True, high_open=True),
    Range("mask.replace_rate", 0, 1, high_open=True),  # mask=graphmae
    Range("mask.min_aspect", 0, 1, low_open=True),  # mask=block
    Range("mask.num_blocks", 1, integer=True, nullable=True),  # mask=block
    Range("mask.min_tokens", 1, integer=True, nullable=True),  # mask=blockwise
    Range("mask.max_tokens", 1, integer=True, nullable=True),  # mask=blockwise
    Range("decoder_mask.ratio", 0, 1, low_open=True, high_open=True),  # decoder_mask=running_cell: [0.25, 1)
    Range("optim.blr", 0, low_open=True),
    Range("optim.lr", 0, low_open=True, nullable=True),
    Range("optim.weight_decay", 0),
    Range("optim.warmup_epochs", 0),
    Range("optim.min_lr", 0),
)


def range_errors(cfg: DictConfig, rules: tuple[Range, ...] = RULES) -> list[str]:
    """One message per option of `rules` present in `cfg` whose value is outside its range (absent keys: not
    checked; a masker without `num_blocks` has none)."""
    errors = []
    for rule in rules:
        value = OmegaConf.select(cfg, rule.key, default=ABSENT)
        if value is not ABSENT and not rule.allows(value):
            errors.append(f"{rule.key}={shown(value)}: {rule.key} must be {rule.describe()}")
    return errors
