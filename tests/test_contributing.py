"""CONTRIBUTING.md's recipe, followed once: a paper added from this file alone (its model,
its experiment with @register) is trained, tabled and compared like the four papers,
with no edit anywhere else in serlib."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch
from torch import nn

from serlib import experiments, results
from serlib.config import ExperimentConfig
from serlib.experiments import Experiment, Reference, register
from serlib.features import FeatureConfig, lengths_to_mask
from serlib.fields import validate_fields
from serlib.train import run_fold
from tests.fixtures import write_csv_corpus


# -- "serlib/models/toy.py": tensors in, logits out, its own dataclass ------------------------
@dataclass
class ToyConfig:
    n_features: int = 40
    n_classes: int = 4
    hidden: int = 8

    def __post_init__(self):
        validate_fields(self, "model.")


class Toy(nn.Module):
    """Masked mean over time of log-mel frames, then a small MLP."""

    def __init__(self, config: ToyConfig):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(config.n_features, config.hidden), nn.ReLU(),
                                 nn.Linear(config.hidden, config.n_classes))

    def forward(self, x, lengths):  # (B, F, T)
        mask = lengths_to_mask(lengths, x.shape[-1]).to(x.dtype)[:, None]
        return self.net((x * mask).sum(-1) / mask.sum(-1).clamp_min(1))


# -- "serlib/experiments/toy.py": config with the paper's values, then the experiment --------
@dataclass
class ToyExperimentConfig(ExperimentConfig):
    experiment: str = "toy_paper"
    epochs: int = 2
    batch_size: int = 8
    lr: float = 1e-2
    model: ToyConfig = field(default_factory=ToyConfig)


@pytest.fixture
def toy():
    @register
    class ToyExperiment(Experiment):
        name = "toy_paper"
        Config = ToyExperimentConfig
        feature_presets = {"toy_logmel": FeatureConfig("logmel", 16000, 25, 10, 512, "hann", 2.0, n_mels=40)}
        preset_lr_scale = {"modern": 3.0}
        reference = (Reference("Toy et al. 2031", "best", "csv", "loso", 55.0, 50.0, True, "Table 9"),)

        def features(self):
            return self.feature_presets["toy_logmel"], None

        def model(self, n_features, n_classes, context=None):
            return Toy(ToyConfig(n_features, n_classes, self.config.model.hidden))

        def optimizer(self, model):
            return torch.optim.Adam(model.parameters(), lr=self.config.lr), None

    yield ToyExperiment
    del experiments.EXPERIMENTS["toy_paper"]


def test_a_paper_registered_from_one_file_runs_and_is_tabled(toy, tmp_path):
    assert experiments.get("toy_paper") is toy
    assert experiments.feature_preset("toy_logmel").n_mels == 40
    assert experiments.make_config("toy_paper", {"recipe": "modern"}).recipe.lr_scale == 3.0
    table = experiments.reference_table()
    row = table[table.experiment == "toy_paper"].iloc[0]
    assert (row.paper, row.wa, row.ua, row.protocol) == ("Toy et al. 2031", 55.0, 50.0, "loso")

    csv = write_csv_corpus(tmp_path / "corpus")
    config = experiments.make_config("toy_paper", {"corpus": "csv", "data_root": str(csv), "output_dir": str(tmp_path),
                                                   "progress": False, "feature_workers": 1, "fold": 2})
    record = run_fold(config)
    assert record["config"]["experiment"] == "toy_paper" and len(record["history"]) == 2
    assert record["n_parameters"] == sum(p.numel() for p in Toy(ToyConfig(40, 4, 8)).parameters())
    collected = results.collect(tmp_path / "results")
    assert collected.experiment.tolist() == ["toy_paper"]
    beside = results.compare_with_papers(results.summarise(collected)["mean"])
    assert set(beside[beside.experiment == "toy_paper"].source) == {"measured", "paper"}


def test_a_second_experiment_cannot_take_a_registered_name(toy):
    with pytest.raises(Exception, match="taken"):
        register(type("Other", (Experiment,), {"name": "toy_paper"}))
