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

from ..errors import ConfigError
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


def is_baseline(name: str) -> bool:
    """Whether ``name`` is a registered experiment that declares itself a baseline."""
    return name in EXPERIMENTS and EXPERIMENTS[name].is_baseline


def declared(capability: str) -> str:
    """The one registered experiment that declares ``capability`` (a class attribute such
    as ``is_baseline`` or ``is_demo``)."""
    names = sorted(name for name, cls in EXPERIMENTS.items() if getattr(cls, capability))
    if len(names) != 1:
        raise ConfigError(f"{len(names)} registered experiments declare {capability} ({names}); one must")
    return names[0]


def papers_table() -> str:
    """The README's map of the papers as a markdown table, one row per registered
    experiment (by notebook), from what each declares (``title``, ``notebook``, ``docs``,
    its model's module, its feature presets); ``tests/test_docs.py`` checks that the README
    holds it."""
    rows = ["| paper | model | `--experiment` (serlib/experiments/) | feature preset | notebook | docs |",
            "|---|---|---|---|---|---|"]
    for name, cls in sorted(EXPERIMENTS.items(), key=lambda item: (item[1].notebook, item[0])):
        model = cls.model_file or "serlib/" + _model_module(cls.Config).removeprefix("serlib.").replace(".", "/") + ".py"
        source = cls.__module__.removeprefix("serlib.").replace(".", "/") + ".py"
        features = cls.features_note or ", ".join(f"`{p}`" for p in cls.feature_presets)
        rows.append(f"| {cls.title or name} | [{model}]({model}) | `{name}` ([{source.rsplit('/', 1)[-1]}](serlib/{source})) "
                    f"| {features} | [{cls.notebook[:2]}](notebooks/{cls.notebook}.ipynb) | [{cls.docs}]({cls.docs}) |")
    return "\n".join(rows)


def _model_module(config_class) -> str:
    field = config_class.__dataclass_fields__.get("model")
    default = field.default_factory() if field is not None else None
    return type(default).__module__ if default is not None else config_class.__module__


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

__all__ = ["EXPERIMENTS", "Experiment", "Reference", "create", "declared", "feature_preset", "feature_presets", "get",
           "is_baseline", "make_config", "papers_table", "reference_table", "register"]
