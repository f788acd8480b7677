"""Typed config dataclasses, one way: `option(...)` declares a field with its help text (and its
fixed set of values, as peft's configs do), `config_from_dict` builds a config from plain YAML/JSON
values and fails with one line naming the bad fields and the valid values.

Both the run config (`gazeclip.run.config.TrainConfig`) and the model configs
(`gazeclip.models.config`) are declared with it, and `gazeclip train`'s flags are generated from
the same metadata (`flag_fields`).

    @dataclass
    class Cfg:
        mode: str = option("fast", "how to run", choices=("fast", "slow"))
        blocks: list[int] = option(lambda: [-1], "blocks to adapt", factory=True)

    config_from_dict(Cfg, {"mode": "slow"}, "my.yaml")   # Cfg(mode='slow', blocks=[-1])
"""
from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import MISSING, Field, field, fields
from typing import Any, TypeVar

from .errors import UsageError

C = TypeVar("C")


def option(default: Any, help: str, choices: tuple | None = None, factory: bool = False, flag: bool = True):
    """A config field. `factory=True`: `default` is a zero-argument callable (a list, a nested
    config); a list or dict default is copied per instance anyway. `flag=False` keeps the field off
    generated command-line flags (testing switches)."""
    md: dict[str, Any] = {"help": help}
    if choices is not None:
        md["choices"] = tuple(choices)
    if not flag:
        md["flag"] = False
    if factory:
        return field(default_factory=default, metadata=md)
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=md)
    return field(default=default, metadata=md)


def default_of(f: Field) -> Any:
    return f.default_factory() if f.default_factory is not MISSING else f.default


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def field_kind(cls: type, f: Field) -> tuple[Any, bool]:
    """(base type, optional) of a field from its annotation: `list[int] | None` -> (list, True)."""
    hint = _hints(cls)[f.name]
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        hint = args[0] if len(args) == 1 else object
    return (typing.get_origin(hint) or hint), optional


_EXPECT = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list",
           tuple: "a list", dict: "a mapping"}


def _check_value(cls: type, f: Field, v: Any, where: str) -> tuple[Any, str | None]:
    """The value normalised (YAML "1e-3" -> 0.001, list -> tuple, mapping -> nested config), or the
    reason it does not fit."""
    kind, optional = field_kind(cls, f)
    default = default_of(f)
    if v is None and (optional or default is None):
        return v, None
    if dataclasses.is_dataclass(kind):
        if dataclasses.is_dataclass(v):
            v = dataclasses.asdict(v)
        if not isinstance(v, dict):
            return v, f"{f.name}={v!r} must be a mapping of {kind.__name__} fields"
        base = dataclasses.asdict(default) if dataclasses.is_dataclass(default) else {}
        return config_from_dict(kind, {**base, **v}, f"{where} (in {f.name})"), None
    bad = None
    if kind is bool:
        bad = not isinstance(v, bool)
    elif kind is int:
        bad = isinstance(v, bool) or not isinstance(v, (int, float)) or not float(v).is_integer()
        v = v if bad else int(v)
    elif kind is float:
        if isinstance(v, str):  # YAML 1.1 reads 1e-3 (no dot) as a string: accept numbers written so
            try:
                v = float(v)
            except ValueError:
                pass
        bad = isinstance(v, bool) or not isinstance(v, (int, float))
        v = v if bad else float(v)
    elif kind in (list, tuple):
        bad = not isinstance(v, (list, tuple))
        v = v if bad else kind(v)
    elif kind in (str, dict):
        bad = not isinstance(v, kind)
    if bad:
        expect = "a path or null" if kind is str and optional else _EXPECT[kind]
        return v, f"{f.name}={v!r} must be {expect}"
    choices = f.metadata.get("choices")
    if choices is not None and v not in choices:
        return v, f"{f.name}={v!r} is not one of: {', '.join(map(str, choices))}"
    return v, None


def check_values(cls: type, values: dict[str, Any], where: str = "") -> dict[str, Any]:
    """`values` checked against the fields of `cls` and normalised; ValueError naming every bad one."""
    where = where or cls.__name__
    valid = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise UsageError(f"{where}: unknown keys {unknown}; known keys: {', '.join(valid)}")
    out, problems = {}, []
    for name, v in values.items():
        out[name], problem = _check_value(cls, valid[name], v, where)
        if problem:
            problems.append(problem)
    if problems:
        raise UsageError(f"{where}: {'; '.join(problems)}")
    return out


def config_from_dict(cls: type[C], values: dict[str, Any] | None, where: str = "") -> C:
    """Build `cls` from plain values (YAML/JSON): names, types, choices and nested configs checked;
    fields not given keep their defaults. `where` (a file, a flag, a model name) starts the error."""
    return cls(**check_values(cls, dict(values or {}), where))


def check_config(obj: Any, where: str = "") -> None:
    """Check a config instance in place (for `__post_init__`): normalise its values, or raise."""
    current = {f.name: getattr(obj, f.name) for f in fields(obj)}
    for name, v in check_values(type(obj), current, where).items():
        if v is not current[name]:
            object.__setattr__(obj, name, v)


def flag_fields(cls: type) -> list[tuple[Field, type]]:
    """Fields that get a command-line flag, with their base type: scalars (bool, int, float, str,
    optional str) not marked `flag=False`; lists, tuples, mappings and nested configs are YAML-only."""
    out = []
    for f in fields(cls):
        kind, _ = field_kind(cls, f)
        if f.metadata.get("flag", True) and kind in (bool, int, float, str):
            out.append((f, kind))
    return out
