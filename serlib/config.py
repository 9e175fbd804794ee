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
    protocol: str = "loso"
    fold: int = 1                      # 1-based
    seed: int = 1
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
    compile: bool = False
    num_workers: int = 0
    feature_workers: int = 4
    grad_norm_every: int = 10          # record per-layer gradient norms every N steps (0: never)
    output_dir: str | None = None      # default: outputs/
    resume: bool = False
    progress: bool = True

    def __post_init__(self):
        if self.selection not in ("val", "test"):
            raise ConfigError(f"selection must be 'val' or 'test', got {self.selection!r}")
        if self.fold < 1:
            raise ConfigError(f"fold is 1-based, got {self.fold}")
        self.classes = tuple(self.classes)

    @property
    def leaky(self) -> bool:
        """True when the protocol lets test data steer model selection or shares speakers."""
        return self.selection == "test" or self.protocol.startswith("stratified")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Convert a command-line string to the field's type."""
    if not isinstance(value, str):
        return value
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
    return parsed


def from_dict(cls: type[T], values: dict[str, Any] | None = None) -> T:
    """Build ``cls`` from a dict, rejecting unknown keys and coercing strings."""
    values = dict(values or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - names)
    if unknown:
        close = {k: [n for n in names if n.startswith(k[:3])] for k in unknown}
        raise ConfigError(f"unknown config key(s) for {cls.__name__}: {unknown} (similar: {close})")
    return cls(**{k: _coerce(v, hints[k], k) for k, v in values.items()})


def parse_overrides(items: list[str] | None) -> dict[str, str]:
    """``["epochs=3", "vtlp=none"]`` -> ``{"epochs": "3", "vtlp": "none"}``."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out
