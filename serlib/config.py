"""Experiment configs: dataclasses whose defaults are the paper's values.

Configs are built with :func:`from_dict`, which rejects unknown keys (a misspelled key
is an error, never silently ignored) and converts strings from the command line
(``--set epochs=3``) to the field's type.
"""

from __future__ import annotations

import ast
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .constants import FOUR_CLASSES
from .errors import ConfigError
from .recipe import RecipeConfig

T = TypeVar("T")


@dataclass
class ExperimentConfig:
    """Fields every experiment has: data, protocol, run and engine settings."""

    experiment: str = ""
    name: str = "default"              # variant name (e.g. a Table 1 column); part of the result key
    # data
    corpus: str = "synthetic"
    data_root: str | None = None
    subset: str | None = None          # IEMOCAP/synthetic: improvised | scripted | all
    classes: tuple[str, ...] = FOUR_CLASSES
    merge: dict[str, str] = field(default_factory=dict)
    protocol: str = "loso"             # or cross:TEST_CORPUS (serlib.transfer)
    test_data_root: str | None = None  # cross:…: the test corpus's folder
    test_subset: str | None = None     # cross:…: the test corpus's IEMOCAP/synthetic subset
    fold: int = 1                      # 1-based
    seed: int = 1
    # input checks (each failure is a counted skip listed in the record, or an error)
    dedup: bool = True                 # byte-identical audio never on two sides of a split
    min_seconds: float = 0.25          # shorter files are skipped
    max_seconds: float | None = 60.0   # longer files are centre-cropped to this, with a warning
    bad_audio: str = "skip"            # "skip": undecodable/too short/silent files are counted skips; "raise"
    normalization: str = "global"      # feature normalisation fitted on the training split: global | per_feature | none
    # training-recipe switches, all off by default (the paper's recipe): ``recipe=modern``
    # or ``recipe.mixup=0.2``… (:mod:`serlib.recipe`)
    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    # training
    epochs: int = 30
    batch_size: int = 16
    patience: int | None = None        # early stopping on validation UA (epochs without improvement)
    selection: str = "val"             # "val"; "test" reproduces a leaky published protocol
    grad_clip: float | None = None
    bucket: bool = True                # batch utterances of similar length (less padding)
    # engine
    device: str = "auto"               # auto -> cuda, then mps, then cpu
    amp: bool = True                   # autocast on CUDA only
    channels_last: bool = False
    compile: bool | None = None        # None: on for long runs of models it speeds up (train.COMPILE_MIN_STEPS)
    num_workers: int = 0
    features_on_device: bool | None = None  # batches formed on the device; None: on for CUDA within the budget
    device_feature_mb: int = 2048           # budget of features_on_device=None
    feature_workers: int = 4
    grad_norm_every: int = 10          # record per-layer gradient norms every N steps (0: never)
    output_dir: str | None = None      # default: outputs/
    resume: bool = False
    progress: bool = True

    def __post_init__(self):
        if isinstance(self.classes, list):
            self.classes = tuple(self.classes)
        validate(self)

    @property
    def leaky(self) -> bool:
        """True when the protocol lets test data steer model selection or shares speakers."""
        return self.selection == "test" or self.protocol.startswith("stratified")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Fields that change how a run executes, never what it computes: left out of a run's
# fingerprint (see :func:`serlib.results.fingerprint`). ``data_root`` is covered by the
# manifest's content; ``name`` is a label; fold and seed are part of the record's key.
RUNTIME_FIELDS = frozenset({
    "name", "data_root", "fold", "seed", "device", "channels_last", "compile", "num_workers",
    "feature_workers", "grad_norm_every", "output_dir", "resume", "progress", "features_on_device",
    "device_feature_mb", "test_data_root",
    # a nested field by its dotted name: where a checkpoint lies (its name and hash stay) and
    # how many chunks go through the encoder at once
    "upstream.path", "upstream.batch_size",
})

# Fields added after the first records: left out of a fingerprint while at these values,
# so that runs made before them keep their fingerprints (see serlib.results.run_identity).
LATER_FIELDS = {"test_subset": None}

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


def validate(config) -> None:
    """Type, range and choice checks of every field; raises :class:`ConfigError` naming
    the field, the value and what it should be.

    >>> from serlib.experiments import make_config
    >>> make_config("cnn_lstm", {"batch_size": 0})
    Traceback (most recent call last):
    ...
    serlib.errors.ConfigError: batch_size must be >= 1, got 0
    """
    from .constants import LABELS
    from .protocols import parse_protocol

    validate_fields(config)
    if getattr(config, "max_seconds", None) is not None and config.max_seconds < config.min_seconds:
        raise ConfigError(f"max_seconds ({config.max_seconds}) is below min_seconds ({config.min_seconds})")
    bad = [c for c in (*config.classes, *config.merge, *config.merge.values()) if c not in LABELS]
    if bad:
        raise ConfigError(f"unknown label(s) {bad} in classes/merge; canonical labels: {', '.join(LABELS)}")
    if len(set(config.classes)) != len(config.classes) or (config.classes and len(config.classes) < 2):
        raise ConfigError(f"classes must be at least 2 distinct labels, got {list(config.classes)}")
    parse_protocol(config.protocol)
    from .corpora import ADAPTERS

    if config.corpus not in ADAPTERS:
        raise ConfigError(f"unknown corpus {config.corpus!r}; choose from {sorted(ADAPTERS)}")
    if config.protocol.startswith("cross:") and config.protocol[6:] not in ADAPTERS:
        raise ConfigError(f"protocol {config.protocol!r}: unknown test corpus; choose from {sorted(ADAPTERS)}")
    check_device_name(config.device)


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


def check_device_name(name: str) -> None:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (availability is checked when
    the run starts, on the machine that runs it)."""
    kind, _, index = name.partition(":")
    if kind not in ("auto", "cpu", "cuda", "mps") or (index and not (kind == "cuda" and index.isdigit())):
        raise ConfigError(f"device must be auto, cpu, cuda, cuda:N or mps, got {name!r}")


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


def parse_overrides(items: list[str] | None) -> dict[str, str]:
    """``["epochs=3", "vtlp=none"]`` -> ``{"epochs": "3", "vtlp": "none"}``."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def config_table(config) -> Any:
    """The resolved config as a two-column table (nested model fields as ``model.x``),
    for notebooks: one row per field instead of one long wrapped line."""
    import pandas as pd

    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            if isinstance(v, dict) and dataclasses.is_dataclass(getattr(config, k, None)) and not prefix:
                out.update(flat(v, f"{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    rows = flat(config.to_dict())
    return pd.DataFrame({"field": list(rows), "value": [str(v) for v in rows.values()]}).set_index("field")
