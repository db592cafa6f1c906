"""Typed checks of constructor arguments: each error names the key and what it got."""
from __future__ import annotations

import os
from collections.abc import Sequence


def check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool (true/false), got {value!r} of type {type(value).__name__}")
    return value


def check_int(name: str, value: object, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r} of type {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r} of type {type(value).__name__}")
    return float(value)


def check_floats(name: str, value: object, *, length: int | None = None) -> list[float]:
    """A list of numbers (a Hydra ListConfig is accepted) of the given length."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a list of numbers, got {value!r} of type {type(value).__name__}")
    out = [check_float(f"{name}[{i}]", v) for i, v in enumerate(value)]
    if length is not None and len(out) != length:
        raise ValueError(f"{name} must hold {length} number(s), got {len(out)}: {out}")
    return out


def check_optional_str(name: str, value: object) -> str | None:
    if value is not None and not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a string or null, got {value!r} of type {type(value).__name__}")
    return None if value is None else os.fspath(value)
