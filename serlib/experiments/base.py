"""What an experiment defines: its config, front end, model, optimiser, loss,
augmentation and prediction for the engine (:mod:`serlib.train`), and what the rest of
serlib asks about its paper — the reference numbers, the feature presets, the recipe
presets' learning-rate factor, attention maps, transcripts. One file per paper
subclasses :class:`Experiment` and registers it with :func:`register`
(CONTRIBUTING.md says how).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..audio import InputChecks, WaveCrop
from ..cache import FeatureStore, extract
from ..config import ExperimentConfig
from ..errors import ConfigError
from ..features import FeatureConfig, FrontEnd


@dataclass(frozen=True)
class Reference:
    """One number a paper (or a peer system) reports, in percent; ``None`` where it gives
    none. ``protocol``, ``speaker_independent``, ``n_classes`` and ``metric`` (which of WA
    and UA it reports, and where each comes from) say how it was measured, so that a table
    never puts it beside a serlib number measured otherwise without that label
    (:func:`serlib.results.compare_with_papers`)."""

    paper: str
    variant: str
    corpus: str
    protocol: str
    wa: float | None
    ua: float | None
    speaker_independent: bool
    note: str = ""
    n_classes: int | None = None
    metric: str = "WA and UA"


class Experiment:
    """An experiment bound to its run's config (``experiments.create(config)``); defaults
    shared by the experiments, subclasses override what their paper changes."""

    name = ""
    Config: type[ExperimentConfig] = ExperimentConfig
    neural = True  # False: the experiment fits itself (``fit_select_test``) instead of the Trainer
    # its model can end in a linear head of any size (``model(n_features, n_outputs)``), so
    # it regresses dimensions too (``task=dimensional`` / ``multitask``, serlib.targets)
    regression = False
    is_baseline = False  # the rows of other experiments are compared with (``collect``, ``baseline``)
    is_demo = False      # the experiment whose data ``python -m serlib demo`` shows (notebook 03, ``make demo``)
    compile_speedup = 1.0  # measured step-time ratio compiled/eager on the CPU (docs/engine.md); > 1.2: compile long runs
    reference: tuple[Reference, ...] = ()          # the paper's reported numbers
    feature_presets: dict[str, FeatureConfig] = {}  # the paper's front ends, by name
    preset_lr_scale: dict[str, float] = {}          # recipe preset -> learning-rate factor (serlib.recipe)
    # the README's map of the papers (:func:`serlib.experiments.papers_table`)
    title = ""          # the paper, e.g. "CNN+LSTM with VTLP (Etienne et al. 2018)"
    notebook = ""       # its notebook, e.g. "03_train_cnn_lstm"
    docs = ""           # its page, e.g. "docs/papers/cnn_lstm.md"
    model_file = ""     # default: the module of the config's ``model`` dataclass
    features_note = ""  # default: the names of ``feature_presets``
    # config values that loading a trained model for inference replaces (e.g. a file
    # needed only to initialise training)
    inference_values: dict = {}

    def __init__(self, config: ExperimentConfig):
        self.config = config

    def features(self) -> tuple[FeatureConfig, WaveCrop | None]:
        raise NotImplementedError

    def frontend(self, device) -> nn.Module:
        """Waveforms to this experiment's features, for prediction on new recordings
        (:class:`serlib.bundle.Bundle`): ``forward(wave (B, T), lengths)`` →
        ``(features (B, ..., F, T'), frames (B,))``, the layout :meth:`extract` caches."""
        return FrontEnd(self.features()[0]).to(device)

    def extract(self, manifest) -> FeatureStore:
        """The fold's features for every utterance of ``manifest`` (cached)."""
        feature_config, crop = self.features()
        return extract(manifest, feature_config, crop, workers=self.config.feature_workers, progress=self.config.progress,
                       on_error=self.config.bad_audio, checks=InputChecks.from_config(self.config))

    def prepare(self, manifest, split_ids: dict[str, list[str]]) -> dict:
        """Per-fold context for the model and data, built from the training split only
        (e.g. a vocabulary); ``context["extras"]`` holds per-utterance model inputs."""
        return {}

    def model(self, n_features: int, n_classes: int, context: dict | None = None) -> nn.Module:
        raise NotImplementedError

    def optimizer(self, model: nn.Module):
        """(optimiser, scheduler or None); the scheduler steps once per epoch."""
        return torch.optim.Adam(model.parameters(), lr=1e-3), None

    def loss(self, class_counts: torch.Tensor) -> nn.Module:
        return nn.CrossEntropyLoss()

    def train_oversampling(self) -> dict[str, int]:
        """Classes to repeat ×k in the training split."""
        return {}

    def augment(self, x: torch.Tensor, split: str, epoch_alpha: float | None) -> torch.Tensor:
        """Augment a batch of raw features of ``split`` ("train" or "val")."""
        return x

    def epoch_alpha(self, generator: torch.Generator) -> float | None:
        """A value drawn once per epoch (VTLP strategy 1), or None."""
        return None

    @property
    def needs_transcripts(self) -> bool:
        """Whether the model reads transcripts (then predict, which has audio only, refuses)."""
        return False

    @property
    def has_attention(self) -> bool:
        """Whether :meth:`attention` draws anything for this config's model."""
        return False

    def attention(self, model: nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> list[np.ndarray]:
        """Per item of a prepared batch, the model's attention as a profile over its
        input's frames (for overlays on the audio)."""
        raise ConfigError(f"{self.name} has no attention map to draw")

    def outputs(self, model: nn.Module, x: torch.Tensor, lengths: torch.Tensor, test: bool,
                extras: dict | None = None) -> torch.Tensor:
        """The model's raw outputs ``(B, n_outputs)`` of raw features ``x`` (the
        dimensional and multitask tasks: standardised dimensions after any logits)."""
        return model(x, lengths, **(extras or {})).float()

    def predict(self, model: nn.Module, x: torch.Tensor, lengths: torch.Tensor, test: bool,
                extras: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Class probabilities ``(B, C)`` and predicted indices ``(B,)`` of raw features
        ``x``; ``model`` normalises them itself (:class:`serlib.features.Normalized`);
        ``test`` is True for the final test pass and for prediction."""
        probs = torch.softmax(model(x, lengths, **(extras or {})).float(), -1)
        return probs, probs.argmax(-1)


EXPERIMENTS: dict[str, type[Experiment]] = {}


def register(cls: type[Experiment]) -> type[Experiment]:
    """Class decorator: make an experiment available by its ``name`` (``--experiment``)."""
    if not cls.name:
        raise ConfigError(f"{cls.__name__} has no name")
    if EXPERIMENTS.get(cls.name, cls) is not cls and EXPERIMENTS[cls.name].__qualname__ != cls.__qualname__:
        raise ConfigError(f"experiment name {cls.name!r} is taken by {EXPERIMENTS[cls.name].__qualname__}")
    EXPERIMENTS[cls.name] = cls
    return cls


def get(name: str) -> type[Experiment]:
    """The experiment class registered as ``name``."""
    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {name!r}; choose from {sorted(EXPERIMENTS)}")
    return EXPERIMENTS[name]
