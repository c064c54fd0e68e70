"""Typed parameter schemas for stages, validated from TOML tables.

A plugin declares its parameters as a dataclass whose fields carry types,
defaults and constraints (through :func:`param`). :func:`build_params` turns a
raw TOML table into an instance, rejecting unknown keys (with "did you mean"),
wrong types and out-of-range values, each error naming the TOML path.

Example:
    >>> from dataclasses import dataclass
    >>> from mlegpipe.schema import param, build_params
    >>> @dataclass
    ... class Params:
    ...     events: int = param(1000, min=1, doc="number of events")
    ...     preset: str = param("hera", choices=("hera", "eic"))
    >>> build_params(Params, {"events": 50}, "truth").events
    50
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from mlegpipe.exceptions import ConfigError

__all__ = ["build_params", "describe_params", "fill_none", "param", "suggest"]

T = TypeVar("T")


def param(
    default: Any = dataclasses.MISSING,
    *,
    min: float | None = None,  # noqa: A002
    max: float | None = None,  # noqa: A002
    choices: tuple[Any, ...] | None = None,
    doc: str = "",
    exclusive_min: bool = False,
) -> Any:
    """Declare a stage parameter with a default and constraints.

    Arguments:
        default: default value (lists and dicts are copied per instance).
        min, max: inclusive numeric bounds (``exclusive_min`` makes min strict).
        choices: allowed values.
        doc: one line shown by ``mlegpipe plugins --params``.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class P:
        ...     steps: int = param(100, min=1)
    """
    meta = {"min": min, "max": max, "choices": choices, "doc": doc, "exclusive_min": exclusive_min}
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def suggest(name: str, candidates: typing.Iterable[str]) -> str | None:
    """Return a "did you mean" hint for ``name`` among ``candidates``, or None.

    Example:
        >>> suggest("evnts", ["events", "seed"])
        "did you mean 'events'?"
    """
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in get_args(tp))
        return f"{origin.__name__}[{args}]"
    if tp is type(None):
        return "nothing"
    return getattr(tp, "__name__", str(tp))


def _coerce(tp: Any, value: Any, path: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return the converted value."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        errors = []
        for arg in get_args(tp):
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(arg, value, path)
            except ConfigError as err:
                errors.append(err)
        raise ConfigError(f"expected {_type_name(tp)}", path=path, value=value)
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"expected {_type_name(tp)}", path=path, value=value)
        return value
    if origin is list or origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"expected a list ({_type_name(tp)})", path=path, value=value)
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"expected {len(args)} values", path=path, value=value)
            return tuple(_coerce(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
        inner = args[0] if args else Any
        items = [_coerce(inner, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError("expected a table", path=path, value=value)
        kt, vt = get_args(tp) or (str, Any)
        return {k: _coerce(vt, v, f"{path}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError("expected a table", path=path, value=value)
        return build_params(tp, value, path)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError("expected true or false", path=path, value=value)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError("expected an integer", path=path, value=value)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError("expected a number", path=path, value=value)
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError("expected a finite number", path=path, value=value)
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError("expected a string", path=path, value=value)
        return value
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"expected {_type_name(tp)}", path=path, value=value)


def _check_constraints(field: dataclasses.Field, value: Any, path: str) -> None:
    meta = field.metadata
    if value is None:
        return
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        hint = suggest(str(value), [str(c) for c in choices]) if isinstance(value, str) else None
        raise ConfigError(
            "expected one of " + ", ".join(repr(c) for c in choices), path=path, value=value, hint=hint
        )
    lo, hi = meta.get("min"), meta.get("max")
    values = value if isinstance(value, list | tuple) else [value]
    for v in values:
        if not isinstance(v, int | float) or isinstance(v, bool):
            continue
        if lo is not None and (v < lo or (meta.get("exclusive_min") and v == lo)):
            op = ">" if meta.get("exclusive_min") else ">="
            raise ConfigError(f"must be {op} {lo}", path=path, value=value)
        if hi is not None and v > hi:
            raise ConfigError(f"must be <= {hi}", path=path, value=value)


def build_params(cls: type[T], raw: dict[str, Any], path: str) -> T:
    """Validate the TOML table ``raw`` against the dataclass ``cls``.

    Arguments:
        cls: a dataclass whose fields declare types, defaults and constraints; an optional class attribute
            ``misplaced_keys: ClassVar[dict[str, str]]`` maps keys that belong to another plugin to the
            message rejecting them (``{where}`` is replaced by the table's path).
        raw: the table as parsed by tomllib.
        path: the TOML path of the table, used in error messages.

    Returns:
        An instance of ``cls``.

    Raises:
        ConfigError: naming the TOML path and value of the first problem.
    """
    if not isinstance(raw, dict):
        raise ConfigError("expected a table", path=path, value=raw)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    misplaced: dict[str, str] = getattr(cls, "misplaced_keys", {})
    for key in raw:
        if key not in fields and key in misplaced:
            where = path or "parameters"
            raise ConfigError(misplaced[key].format(where=where), path=f"{path}.{key}" if path else key)
        if key not in fields:
            raise ConfigError(
                "unknown parameter; known: " + ", ".join(sorted(fields)),
                path=f"{path}.{key}" if path else key,
                hint=suggest(key, fields),
            )
    kwargs: dict[str, Any] = {}
    for name, field in fields.items():
        sub = f"{path}.{name}" if path else name
        if name in raw:
            value = _coerce(hints[name], raw[name], sub)
            _check_constraints(field, value, sub)
            kwargs[name] = value
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError("required parameter is missing", path=sub)
    try:
        instance = cls(**kwargs)
    except (ValueError, TypeError) as err:  # __post_init__ checks
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(str(err), path=path) from None
    return instance


def fill_none(params: Any, *defaults: typing.Mapping[str, Any]) -> dict[str, Any]:
    """Every parameter of the dataclass ``params`` by name, each ``None`` taken from the first of ``defaults``
    that names it (``None`` if none does).

    Stages with presets declare their tunable parameters ``None`` and fill
    them from the chosen preset, then from the model's own defaults.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class P:
        ...     width: int | None = None
        ...     steps: int | None = 5
        ...     lr: float | None = None
        >>> fill_none(P(), {"width": 128}, {"width": 64, "lr": 1e-3})
        {'width': 128, 'steps': 5, 'lr': 0.001}
    """
    out: dict[str, Any] = {}
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        if value is None:
            value = next((layer[f.name] for layer in defaults if f.name in layer), None)
        out[f.name] = value
    return out


def describe_params(cls: type) -> list[tuple[str, str, Any, str]]:
    """List ``(name, type, default, doc)`` for every parameter of ``cls``.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class P:
        ...     steps: int = param(100, doc="optimizer steps")
        >>> describe_params(P)
        [('steps', 'int', 100, 'optimizer steps')]
    """
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = "(required)"
        rows.append((f.name, _type_name(hints[f.name]), default, f.metadata.get("doc", "")))
    return rows
