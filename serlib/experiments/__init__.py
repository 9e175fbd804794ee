"""The registry of experiments (one file per paper) that the engine, the CLI, the
bundle and the tables use.

Every module of this package is imported here, and each registers its experiment with
:func:`register` when imported: adding a paper needs no edit to this file.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import asdict, replace

import pandas as pd

from ..features import FeatureConfig
from ..fields import from_dict
from ..recipe import preset_values
from .base import EXPERIMENTS, Experiment, Reference, get, register
from .peers import PEERS

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def create(config) -> Experiment:
    """The experiment of ``config``, bound to it (its methods read ``self.config``)."""
    return get(config.experiment)(config)


def make_config(name: str, values: dict | None = None):
    """The experiment's config with ``values`` applied (unknown keys are an error);
    ``recipe="modern"`` is the preset with this experiment's learning-rate factor."""
    values = {k: v for k, v in (values or {}).items() if k != "experiment"}
    if isinstance(values.get("recipe"), str):
        values["recipe"] = preset_values(values["recipe"], get(name).preset_lr_scale)
    return from_dict(get(name).Config, values)


def feature_presets() -> dict[str, FeatureConfig]:
    """Every paper's front ends by name (each experiment's ``feature_presets``)."""
    return {name: config for cls in EXPERIMENTS.values() for name, config in cls.feature_presets.items()}


def feature_preset(name: str, **overrides) -> FeatureConfig:
    """A paper's front end by name, optionally with some fields changed."""
    presets = feature_presets()
    if name not in presets:
        raise KeyError(f"unknown feature preset {name!r}; choose from {sorted(presets)}")
    return replace(presets[name], **overrides)


def reference_table() -> pd.DataFrame:
    """Every number the papers (and the peer systems of the docs) report, in percent, one
    row per :class:`Reference` with the experiment it belongs to."""
    rows = [{"experiment": name, **asdict(ref)} for name, cls in EXPERIMENTS.items() for ref in cls.reference]
    rows += [{"experiment": "peers", **asdict(ref)} for ref in PEERS]
    columns = ["experiment", *Reference.__dataclass_fields__]
    return pd.DataFrame(rows, columns=columns)

__all__ = ["EXPERIMENTS", "Experiment", "Reference", "create", "feature_preset", "feature_presets", "get",
           "make_config", "reference_table", "register"]
