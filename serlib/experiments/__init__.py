"""The registry of experiments (one per paper) that ``run_fold`` and the CLI use."""

from __future__ import annotations

from ..errors import ConfigError
from .attention_fcn import AttentionFCN1DExperiment, AttentionFCNExperiment
from .base import Experiment
from .cnn_lstm import CNNLSTMExperiment
from .functionals import FunctionalsExperiment
from .light_sernet import LightSERNetExperiment
from .mscnn_spu import MSCNNSPUExperiment
from .pretrained import PretrainedExperiment

EXPERIMENTS: dict[str, type[Experiment]] = {e.name: e for e in (
    CNNLSTMExperiment, AttentionFCNExperiment, AttentionFCN1DExperiment, LightSERNetExperiment,
    MSCNNSPUExperiment, FunctionalsExperiment, PretrainedExperiment)}


def get(name: str) -> type[Experiment]:
    """The experiment class registered as ``name``."""
    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {name!r}; choose from {sorted(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def create(config) -> Experiment:
    """The experiment of ``config``, bound to it (its methods read ``self.config``)."""
    return get(config.experiment)(config)


def make_config(name: str, values: dict | None = None):
    """The experiment's config with ``values`` applied (unknown keys are an error)."""
    from ..config import from_dict
    from ..recipe import preset_values

    values = {k: v for k, v in (values or {}).items() if k != "experiment"}
    if isinstance(values.get("recipe"), str):  # recipe=modern: the preset, as measured for this experiment
        values["recipe"] = preset_values(values["recipe"], name)
    return from_dict(get(name).Config, values)


__all__ = ["EXPERIMENTS", "Experiment", "create", "get", "make_config"]
