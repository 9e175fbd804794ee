"""What an experiment defines for the engine: its config, front end, model, optimiser,
loss, augmentation and prediction. The engine (:mod:`serlib.train`) does the rest."""

from __future__ import annotations

import torch
from torch import nn

from ..cache import FeatureStore, InputChecks, WaveCrop, extract
from ..config import ExperimentConfig
from ..features import FeatureConfig, FrontEnd


class Experiment:
    """An experiment bound to its run's config (``experiments.create(config)``); defaults
    shared by the experiments, subclasses override what their paper changes."""

    name = ""
    Config: type[ExperimentConfig] = ExperimentConfig
    neural = True  # False: the experiment fits itself (``fit_select_test``) instead of the Trainer
    compile_speedup = 1.0  # measured step-time ratio compiled/eager on the CPU (README, "Engine"); > 1.2: compile long runs

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

    def predict(self, model: nn.Module, x: torch.Tensor, lengths: torch.Tensor,
                prepare, test: bool, extras: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Class probabilities ``(B, C)`` and predicted indices ``(B,)``; ``prepare``
        normalises and masks raw features; ``test`` is True for the final test pass."""
        probs = torch.softmax(model(prepare(x), lengths, **(extras or {})).float(), -1)
        return probs, probs.argmax(-1)
