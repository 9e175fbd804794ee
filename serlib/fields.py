"""Config dataclasses from dicts and the command line: coercion and validation.

:func:`from_dict` builds any config dataclass, rejecting unknown keys (a misspelled key is
an error, never silently ignored) and converting strings from the command line
(``--set epochs=3``) to the field's type; :func:`validate_fields` checks types, choices
and bounds by field name. Models, the recipe and the experiment configs all use it; it
imports nothing of serlib but the errors.
"""

from __future__ import annotations

import ast
import dataclasses
import types
import typing
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")

CHOICES = {
    "selection": ("val", "test"),
    "normalization": ("global", "per_feature", "none"),
    "bad_audio": ("skip", "raise"),
    "subset": (None, "improvised", "scripted", "all"),
    "test_subset": (None, "improvised", "scripted", "all"),
}

# (lower bound, inclusive?) by field name; applied to every config that has the field.
LOWER_BOUNDS = {
    "epochs": (1, True), "batch_size": (1, True), "fold": (1, True), "seed": (0, True),
    "patience": (1, True), "grad_clip": (0, False), "num_workers": (0, True),
    "feature_workers": (1, True), "grad_norm_every": (0, True), "min_seconds": (0, True),
    "max_seconds": (0, False), "weight_decay": (0, True), "body_weight_decay": (0, True),
    "focal_gamma": (0, True), "filters": (1, True), "fc_dim": (1, True), "embedding_dim": (1, True),
    "lstm_hidden": (1, True), "n_conv": (1, True), "n_lstm": (1, True), "attention_dim": (1, True),
    "input_seconds": (0, False), "segment_seconds": (0, False), "offset_seconds": (0, True),
    "lr_decay_start": (1, True), "lr_decay_every": (1, True), "lr_decay": (0, False),
}


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
    """The generic checks of :func:`validate` for any config dataclass (types, choices,
    lower bounds, learning rates, dropout, momentum); raises :class:`ConfigError`."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name in hints and not _matches(value, hints[f.name]):
            raise ConfigError(f"{prefix}{f.name} must be {_type_name(hints[f.name])}, got {value!r}")
        if isinstance(value, float) and value != value:
            raise ConfigError(f"{prefix}{f.name} must be a number, got NaN")
        if hints.get(f.name) is float and isinstance(value, int):
            setattr(config, f.name, float(value))
    for name, allowed in CHOICES.items():
        if hasattr(config, name) and getattr(config, name) not in allowed:
            raise ConfigError(f"{prefix}{name} must be one of {allowed}, got {getattr(config, name)!r}")
    for name, (low, inclusive) in LOWER_BOUNDS.items():
        value = getattr(config, name, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if value < low or (value == low and not inclusive):
                raise ConfigError(f"{prefix}{name} must be {'>=' if inclusive else '>'} {low}, got {value}")
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if not isinstance(value, float):
            continue
        if (f.name == "lr" or f.name.startswith("lr_")) and f.name not in LOWER_BOUNDS and not value > 0:
            raise ConfigError(f"{prefix}{f.name} must be > 0, got {value}")
        if f.name == "dropout" and not 0 <= value < 1:
            raise ConfigError(f"{prefix}dropout must be in [0, 1), got {value}")
        if f.name.startswith("momentum") and not 0 <= value <= 1:
            raise ConfigError(f"{prefix}{f.name} must be in [0, 1], got {value}")


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
        close = {k: [f"{prefix}{n}" for n in fields if n.startswith(k.removeprefix(prefix)[:3])] for k in unknown}
        raise ConfigError(f"unknown config key(s) for {cls.__name__}: {unknown} (similar: {close})")
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


