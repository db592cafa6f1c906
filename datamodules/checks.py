"""Typed checks of datamodule arguments: each error names the key, what it got and what to write.

`check_fields` checks a config dataclass's fields against their annotations (every datamodule's `<M>DataConfig`);
`build_config` builds one from keyword options, naming an unknown key. check_bool / check_int / check_float /
check_val_fraction check one value each.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import os
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Literal, TypeVar


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


def check_val_fraction(value: float, name: str = "data.val_fraction") -> None:
    """The share held out for validation: in [0, 1) (0: no val split)."""
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")


# ------------------------------------------------------------------------------ typed config dataclasses
OnError = Literal["skip", "raise"]
"""data.on_error of the file readers (datamodules.errors.ON_ERROR_CHOICES)."""
C = TypeVar("C")


def build_config(config_type: type[C], options: Mapping[str, object], *, owner: str, prefix: str = "data") -> C:
    """`config_type(**options)`, an unknown key raising a TypeError that names it and lists the options."""
    names = [f.name for f in dataclasses.fields(config_type)]
    unknown = [key for key in options if key not in names]
    if unknown:
        raise TypeError(f"{', '.join(f'{prefix}.{key}' for key in unknown)} "
                        f"{'is not an option' if len(unknown) == 1 else 'are not options'} of {owner}; "
                        f"options: {', '.join(names)}")
    return config_type(**options)


def check_fields(cfg: object, prefix: str = "data", *, minimum: Mapping[str, float] | None = None) -> None:
    """Check every field of the (frozen) dataclass instance `cfg` against its annotation, in place.

    Annotations understood: bool, int, float (an int is taken and stored as float), str (an os.PathLike is taken
    and stored as str), None, `A | B` (`X | None`), Literal[...] (the allowed values), list[X] / Sequence[X]
    (stored as a list), tuple[X, ...] / tuple[X, Y] (stored as a tuple; the second form of that length); a
    sequence may be an OmegaConf ListConfig. Any other class: an isinstance check. `minimum`: field -> the
    smallest value allowed (None passes). Errors name `prefix.<field>`, what it got and what to write.
    Annotations are resolved by typing.get_type_hints, which looks names up in the class first: in a class with a
    field named `list` (the key `data.list`), write sequences as tuple[...] or Sequence[...], not list[...].
    """
    hints = typing.get_type_hints(type(cfg))
    for field in dataclasses.fields(cfg):  # type: ignore[arg-type]
        value = check_value(f"{prefix}.{field.name}", getattr(cfg, field.name), hints[field.name])
        object.__setattr__(cfg, field.name, value)
    for key, low in (minimum or {}).items():
        value = getattr(cfg, key)
        if value is not None and value < low:
            raise ValueError(f"{prefix}.{key} must be >= {low}, got {value}")


def check_value(name: str, value: object, annotation: object) -> object:
    """`value` checked against (and converted to) `annotation` (see check_fields); errors name `name`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is typing.Any:
        return value
    if annotation is type(None):
        if value is not None:
            raise TypeError(f"{name} must be null, got {value!r} of type {type(value).__name__}")
        return None
    if annotation is bool:
        return check_bool(name, value)
    if annotation is int:
        return check_int(name, value)
    if annotation is float:
        return check_float(name, value)
    if annotation is str:
        if not isinstance(value, (str, os.PathLike)):
            raise TypeError(f"{name} must be a string, got {value!r} of type {type(value).__name__}")
        return os.fspath(value)
    if origin is Literal:
        if not any(value == choice and type(value) is type(choice) for choice in args):
            raise ValueError(f"{name} must be one of {args}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        return _check_union(name, value, annotation, args)
    if origin in (list, tuple, Sequence, collections.abc.MutableSequence):
        return _check_sequence(name, value, annotation, origin, args)
    if isinstance(annotation, type):
        if not isinstance(value, annotation):
            raise TypeError(f"{name} must be a {annotation.__name__}, got {value!r} of type {type(value).__name__}")
        return value
    raise TypeError(f"check_value: unsupported annotation {annotation!r} of {name}")


def _is_sequence(value: object) -> bool:
    """A list, tuple or OmegaConf ListConfig (a MutableSequence), not a string."""
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def _check_union(name: str, value: object, annotation: object, members: tuple[object, ...]) -> object:
    if value is None and type(None) in members:
        return None
    errors: list[tuple[object, Exception]] = []
    for member in members:
        try:
            return check_value(name, value, member)
        except (TypeError, ValueError) as err:
            errors.append((member, err))
    sequences = [err for member, err in errors if typing.get_origin(member) in (list, tuple, Sequence)]
    if _is_sequence(value) and len(sequences) == 1:
        raise sequences[0]  # the one sequence form: its error names the element / the length
    if any(isinstance(err, ValueError) for _, err in errors):  # of a right type, not an allowed value
        raise ValueError(f"{name} must be {describe(annotation)}, got {value!r}")
    raise TypeError(f"{name} must be {describe(annotation)}, got {value!r} of type {type(value).__name__}")


def _check_sequence(name: str, value: object, annotation: object, origin: object,
                    args: tuple[object, ...]) -> list | tuple:
    if not _is_sequence(value):
        raise TypeError(f"{name} must be {describe(annotation)}, got {value!r} of type {type(value).__name__}")
    items = list(value)  # type: ignore[call-overload]
    if origin is tuple and args and args[-1] is not Ellipsis:  # tuple[X, Y]: that many items
        out = [check_value(f"{name}[{i}]", v, args[min(i, len(args) - 1)]) for i, v in enumerate(items)]
        if len(out) != len(args):
            raise ValueError(f"{name} must hold {len(args)} {_noun(args)}(s), got {len(out)}: {out}")
        return tuple(out)
    element = args[0] if args else typing.Any
    out = [check_value(f"{name}[{i}]", v, element) for i, v in enumerate(items)]
    return tuple(out) if origin is tuple else out


_NOUNS = {bool: "bool", int: "int", float: "number", str: "string"}


def _noun(args: tuple[object, ...]) -> str:
    kinds = {_NOUNS.get(a, "value") for a in args}  # type: ignore[call-overload]
    return kinds.pop() if len(kinds) == 1 else "value"


def describe(annotation: object) -> str:
    """What to write for `annotation`, as error messages say it: "an int", "a list of 2 numbers", "null", ..."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    simple = {bool: "a bool (true/false)", int: "an int", float: "a number", str: "a string", type(None): "null"}
    if annotation in simple:
        return simple[annotation]  # type: ignore[index]
    if origin is Literal:
        return f"one of {args}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin in (list, tuple, Sequence, collections.abc.MutableSequence):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} {_noun(args)}s"
        return f"a list of {_noun(args[:1])}s" if args and args[0] is not typing.Any else "a list"
    return f"a {getattr(annotation, '__name__', annotation)}"


def changed_options(cfg: object, names: Sequence[str]) -> list[str]:
    """The fields among `names` of the dataclass instance `cfg` whose value differs from their declared default (the
    defaults equal the modality yaml's, so these are the options a run sets): what an "unread option" check reports."""
    defaults = {f.name: f.default for f in dataclasses.fields(cfg)}
    return [name for name in names if getattr(cfg, name) != defaults[name]]


def check_demo_or_folder(cfg: object, *, source: str, root: str | None, list_file: str | None,
                         demo_options: Sequence[str]) -> None:
    """A datamodule with a generated "demo" source and "folder": data.root / data.list under the demo, or a demo option
    set (`changed_options`) with a folder, would be silently ignored: ValueError naming it and what to remove."""
    if source == "demo":
        for key, value in (("root", root), ("list", list_file)):
            if value is not None:
                raise ValueError(f"data.{key} is only read by data.source='folder' (or null), not 'demo': remove "
                                 f"data.source=demo to read data.{key}, or remove data.{key}")
    demo_keys = changed_options(cfg, demo_options) if source == "folder" else []
    if demo_keys:
        names = ", ".join(f"data.{k}" for k in demo_keys)
        raise ValueError(f"{names} {'is' if len(demo_keys) == 1 else 'are'} only read by data.source='demo', but "
                         f"the source is 'folder' (data.root / data.list is set): remove {names}")
