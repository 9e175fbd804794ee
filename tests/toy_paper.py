"""A toy paper written as CONTRIBUTING.md says, as the two files a paper adds (here in one
module, so that tests and a subprocess of the CLI can load it): its model with its own
config dataclass, and its experiment. :func:`register` makes it available; a test
registers it for its own duration (``tests/test_contributing.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from serlib import experiments
from serlib.config import ExperimentConfig
from serlib.experiments import Experiment, Reference
from serlib.features import FeatureConfig, lengths_to_mask
from serlib.fields import setting, validate_fields


# -- "serlib/models/toy.py": tensors in, logits out, its own dataclass ------------------------
@dataclass
class ToyConfig:
    n_features: int = setting(40, ge=1)
    n_classes: int = setting(4, ge=1)
    hidden: int = setting(8, ge=1)  # the paper's own field: a bad value must be a clear error

    def __post_init__(self):
        validate_fields(self)


class Toy(nn.Module):
    """Attention pooling over the log-mel frames, then a small MLP."""

    def __init__(self, config: ToyConfig):
        super().__init__()
        self.score = nn.Linear(config.n_features, 1)
        self.net = nn.Sequential(nn.Linear(config.n_features, config.hidden), nn.ReLU(),
                                 nn.Linear(config.hidden, config.n_classes))

    def forward_with_attention(self, x, lengths):  # (B, F, T) -> logits (B, C), α (B, T)
        frames = x.transpose(1, 2)  # (B, T, F)
        mask = lengths_to_mask(lengths, x.shape[-1])
        alpha = torch.softmax(self.score(frames).squeeze(-1).masked_fill(~mask, float("-inf")), -1)
        return self.net((alpha[..., None] * frames).sum(1)), alpha

    def forward(self, x, lengths):
        return self.forward_with_attention(x, lengths)[0]


# -- "serlib/experiments/toy.py": config with the paper's values, then the experiment --------
@dataclass
class ToyExperimentConfig(ExperimentConfig):
    experiment: str = "toy_paper"
    epochs: int = 2
    batch_size: int = 8
    lr: float = setting(1e-2, gt=0)
    model: ToyConfig = field(default_factory=ToyConfig)


class ToyExperiment(Experiment):
    name = "toy_paper"
    Config = ToyExperimentConfig
    feature_presets = {"toy_logmel": FeatureConfig("logmel", 16000, 25, 10, 512, "hann", 2.0, n_mels=40)}
    preset_lr_scale = {"modern": 3.0}
    reference = (Reference("Toy et al. 2031", "best", "csv", "loso", 55.0, 50.0, True, "Table 9"),)
    has_attention = True  # without it, predict --attention draws nothing for this paper

    def features(self):
        return self.feature_presets["toy_logmel"], None

    def model(self, n_features, n_classes, context=None):
        return Toy(ToyConfig(n_features, n_classes, self.config.model.hidden))

    def optimizer(self, model):
        return torch.optim.Adam(model.parameters(), lr=self.config.lr), None

    @torch.no_grad()
    def attention(self, model, x, lengths):
        _, alpha = model.forward_with_attention(x, lengths)
        return [a[:int(n)].float().cpu().numpy() for a, n in zip(alpha, lengths)]


def register() -> type[Experiment]:
    return experiments.register(ToyExperiment)


def unregister() -> None:
    experiments.EXPERIMENTS.pop(ToyExperiment.name, None)
