"""Config dataclasses from dicts and the command line: coercion and validation.

:func:`from_dict` builds any config dataclass, rejecting unknown keys (a misspelled key is
an error, never silently ignored) and converting strings from the command line
(``--set epochs=3``) to the field's type. Each field declares its own checks with
:func:`setting` (bounds, choices, whether it is a run-time switch) as dataclass metadata;
:func:`validate_fields` checks types, choices and bounds of any config generically. Models,
the recipe and the experiment configs all use it; it imports nothing of serlib but the
errors.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import types
import typing
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")

BOUNDS = ("ge", "gt", "le", "lt")


def setting(default: Any = dataclasses.MISSING, *, ge: float | None = None, gt: float | None = None,
            le: float | None = None, lt: float | None = None, choices: tuple | None = None,
            runtime: bool = False, default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with its checks as metadata, which :func:`validate_fields` applies.

    Args:
        ge, gt, le, lt: bounds (``>=``, ``>``, ``<=``, ``<``) of a number, or of every
            number of a tuple or dict value; ``None`` passes.
        choices: the allowed values.
        runtime: the field changes how a run executes, never what it computes (left out
            of the run's fingerprint, :func:`runtime_fields`).

    >>> @dataclasses.dataclass
    ... class C:
    ...     hidden: int = setting(128, ge=1)
    >>> validate_fields(C(0))
    Traceback (most recent call last):
    ...
    serlib.errors.ConfigError: hidden must be >= 1, got 0
    """
    metadata = {k: v for k, v in {"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices}.items()
                if v is not None}
    if runtime:
        metadata["runtime"] = True
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


def range_text(meta: typing.Mapping) -> str:
    """``">= 1"``, ``"in [0, 1)"``… for a field's declared bounds."""
    low = [(k, meta[k]) for k in ("ge", "gt") if k in meta]
    high = [(k, meta[k]) for k in ("le", "lt") if k in meta]
    if low and high:
        return (f"in {'[' if low[0][0] == 'ge' else '('}{low[0][1]:g}, "
                f"{high[0][1]:g}{']' if high[0][0] == 'le' else ')'}")
    symbol = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    return " and ".join(f"{symbol[k]} {v:g}" for k, v in low + high)


def checks_of(cls: type, name: str) -> typing.Mapping:
    """The checks declared for field ``name`` of dataclass ``cls``: its own metadata, or
    that of the nearest base class that declares the field (a subclass that only changes
    a default, ``epochs: int = 40``, keeps its base's bounds)."""
    for klass in cls.__mro__:
        f = getattr(klass, "__dataclass_fields__", {}).get(name)
        if f is not None and f.metadata:
            return f.metadata
    return {}


def _within(value: float, meta: typing.Mapping) -> bool:
    return (("ge" not in meta or value >= meta["ge"]) and ("gt" not in meta or value > meta["gt"])
            and ("le" not in meta or value <= meta["le"]) and ("lt" not in meta or value < meta["lt"]))


def _numbers(value: Any) -> list:
    """The numbers a field's value holds: itself, or the items of a tuple or dict."""
    items = value.values() if isinstance(value, dict) else value if isinstance(value, tuple) else (value,)
    return [v for v in items if isinstance(v, (int, float)) and not isinstance(v, bool)]


def runtime_fields(config) -> set[str]:
    """The names (nested ones dotted: ``upstream.path``) of the fields of ``config``
    declared ``runtime=True``."""
    out = set()
    for f in dataclasses.fields(config):
        if checks_of(type(config), f.name).get("runtime"):
            out.add(f.name)
        elif dataclasses.is_dataclass(getattr(config, f.name)):
            out |= {f"{f.name}.{name}" for name in runtime_fields(getattr(config, f.name))}
    return out


def _matches(value: Any, annotation: Any) -> bool:
    """Whether ``value`` has the type ``annotation`` (the annotations configs use)."""
    if annotation is Any:
        return True
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):
        return any(_matches(value, a) for a in args)
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return len(args) == len(value) and all(_matches(v, a) for v, a in zip(value, args))
    if origin is dict:
        return isinstance(value, dict) and all(_matches(k, args[0]) and _matches(v, args[1])
                                               for k, v in value.items())
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def validate_fields(config, prefix: str = "") -> None:
    """Check every field of a config dataclass against its annotation and the checks it
    declares with :func:`setting` (choices, bounds); raises :class:`ConfigError` naming
    the field, the value and what it should be."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name in hints and not _matches(value, hints[f.name]):
            raise ConfigError(f"{prefix}{f.name} must be {_type_name(hints[f.name])}, got {value!r}")
        if any(v != v for v in _numbers(value)):
            raise ConfigError(f"{prefix}{f.name} must be a number, got NaN")
        if hints.get(f.name) is float and isinstance(value, int):
            setattr(config, f.name, float(value))
        meta = checks_of(type(config), f.name)
        if "choices" in meta and value not in meta["choices"]:
            raise ConfigError(f"{prefix}{f.name} must be one of {meta['choices']}, got {value!r}")
        if any(k in meta for k in BOUNDS):
            bad = [v for v in _numbers(value) if not _within(v, meta)]
            if bad:
                got = value if not isinstance(value, (tuple, dict)) else f"{value!r} ({bad[0]})"
                raise ConfigError(f"{prefix}{f.name} must be {range_text(meta)}, got {got}")


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if not typing.get_args(annotation) else None
    return {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}.get(
        text or "", str(annotation).replace("typing.", ""))


def _from_json(value: Any, annotation: Any) -> Any:
    """Lists (JSON's only sequence) back to the tuples a field is declared with."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):
        if value is None:
            return None
        for arg in (a for a in args if a is not type(None)):
            converted = _from_json(value, arg)
            if _matches(converted, arg):
                return converted
        return value
    if origin is tuple and isinstance(value, (list, tuple)):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_json(v, args[0]) for v in value)
        if len(args) == len(value):
            return tuple(_from_json(v, a) for v, a in zip(value, args))
        return tuple(value)
    return value


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Convert a command-line string (or a JSON value) to the field's type."""
    if not isinstance(value, str):
        return _from_json(value, annotation)
    hint = typing.get_origin(annotation) or annotation
    args = typing.get_args(annotation)
    if hint in (types.UnionType, typing.Union):
        if value.lower() in ("none", "null"):
            return None
        non_none = [a for a in args if a is not type(None)]
        return _coerce(value, non_none[0], key) if non_none else value
    if annotation is str:
        return value
    if annotation is bool:
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected a boolean, got {value!r}")
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        if hint in (tuple, list):  # a,b,c
            parsed = tuple(v.strip() for v in value.split(","))
        else:
            raise ConfigError(f"{key}: cannot parse {value!r} as {annotation}") from None
    if hint is tuple and isinstance(parsed, (list, str)):
        parsed = tuple(parsed) if isinstance(parsed, list) else (parsed,)
    if annotation is float and isinstance(parsed, int):
        parsed = float(parsed)
    return _from_json(parsed, annotation)


def from_dict(cls: type[T], values: dict[str, Any] | None = None, prefix: str = "") -> T:
    """Build ``cls`` from a dict, rejecting unknown keys and coercing strings.

    A field that is itself a config dataclass (an experiment's ``model``) takes a dict
    or dotted keys, applied over its defaults: ``{"model.n_conv": 3}`` or
    ``{"model": {"n_conv": 3}}`` (``--set model.n_conv=3`` on the command line).
    """
    values = dict(values or {})
    nested: dict[str, dict] = {}
    for key in [k for k in values if "." in k]:
        head, _, rest = key.partition(".")
        nested.setdefault(head, {})[rest] = values.pop(key)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(f"{prefix}{k}" for k in (set(values) | set(nested)) - set(fields))
    if unknown:
        hints_text = []
        for k in unknown:
            close = difflib.get_close_matches(k.removeprefix(prefix), list(fields), n=3)
            if close:
                hints_text.append(f"{k}: did you mean {', '.join(prefix + c for c in close)}?")
        raise ConfigError(f"unknown config key(s) for {cls.__name__}: {', '.join(unknown)}"
                          + (f" ({'; '.join(hints_text)})" if hints_text else ""))
    out = {}
    for name in set(values) | set(nested):
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            given = values.get(name, {})
            if dataclasses.is_dataclass(given):
                given = dataclasses.asdict(given)
            if not isinstance(given, dict):
                raise ConfigError(f"{prefix}{name} takes fields such as {prefix}{name}.{next(iter(fields_of(hint)))}=…, "
                                  f"got {given!r}")
            default = fields[name].default_factory() if fields[name].default_factory is not dataclasses.MISSING \
                else hint()
            merged = {**dataclasses.asdict(default), **given, **nested.get(name, {})}
            try:
                out[name] = from_dict(hint, merged, f"{prefix}{name}.")
            except ConfigError as e:
                message = str(e)
                raise ConfigError(message if message.startswith(f"{prefix}{name}.") or "unknown config key" in message
                                  else f"{prefix}{name}.{message}") from None
        elif name in nested:
            raise ConfigError(f"{prefix}{name} has no fields (got {prefix}{name}.{next(iter(nested[name]))})")
        else:
            out[name] = _coerce(values[name], hint, f"{prefix}{name}")
    return cls(**out)


def fields_of(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init]


MAX_OVERRIDE_CHARS = 10_000  # a longer --set value is a mistake (and would exhaust the literal parser)


def parse_overrides(items: list[str] | None) -> dict[str, str]:
    """``["epochs=3", "vtlp=none"]`` -> ``{"epochs": "3", "vtlp": "none"}``; a key given
    twice or a value over :data:`MAX_OVERRIDE_CHARS` characters is an error.

    >>> parse_overrides(["epochs=3", "epochs=4"])
    Traceback (most recent call last):
    serlib.errors.ConfigError: --set gives epochs twice ('3' and '4'); give it once
    """
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {_short(item)!r}")
        if len(value) > MAX_OVERRIDE_CHARS:
            raise ConfigError(f"--set {key}: the value has {len(value):,} characters (at most "
                              f"{MAX_OVERRIDE_CHARS:,}): {_short(value)!r}")
        if key in out:
            raise ConfigError(f"--set gives {key} twice ({_short(out[key])!r} and {_short(value)!r}); give it once")
        out[key] = value
    return out


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[:n] + "…"


