"""Looking inside trained runs: reload a record's model, attention on test utterances."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from . import experiments
from .cache import FeatureStore
from .errors import DataError
from .features import Normalizer
from .fold_setup import setup_fold
from .text import tokenize
from .weights import checkpoint_weights, rebuild_model


@dataclass
class TrainedRun:
    """A record's selected model (on the CPU, eval mode) with its data."""

    record: dict
    config: object
    model: torch.nn.Module
    normalizer: Normalizer
    store: FeatureStore
    predictions: pd.DataFrame
    context: dict
    manifest: pd.DataFrame

    def inputs(self, utt_id: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The normalised model input ``(1, ...)`` and its length, as in training."""
        x = self.store[utt_id]
        return self.normalizer(x.unsqueeze(0)), torch.tensor([x.shape[-1]])


def load_trained(record: dict) -> TrainedRun:
    """Rebuild the model of ``record`` with its selected (best-epoch) weights."""
    config = experiments.make_config(record["config"]["experiment"], record["config"])
    # the test utterances' features and the per-fold context (e.g. the token ids), from
    # the same training ids
    setup = setup_fold(config, train_ids=record["train_ids"])
    if setup.fingerprint != record["fingerprint"]:
        raise DataError(record.get("path"), "the corpus or settings changed since this record was made "
                                            "(fingerprints differ); its model cannot be rebuilt faithfully")
    # the weights file, or the checkpoint of an older run (whose metadata the fold set-up stands in for)
    model, normalizer, _ = rebuild_model(config, checkpoint_weights(record["path"]), record["classes"],
                                         known={"n_features": setup.n_features, "context": setup.context})
    return TrainedRun(record, config, model, normalizer, setup.store, pd.read_csv(record["predictions_path"]),
                      setup.context, setup.manifest)


@torch.no_grad()
def attention_examples(run: TrainedRun, per_class: int = 1) -> list[dict]:
    """For each true class: up to ``per_class`` correctly and wrongly classified test
    utterances with their features and attention weights."""
    out = []
    preds = run.predictions
    for label in run.record["classes"]:
        rows = preds[preds.truth == label]
        for correct in (True, False):
            chosen = rows[(rows.prediction == label) == correct].head(per_class)
            for row in chosen.itertuples():
                x, n = run.inputs(row.utt_id)
                _, alpha = run.model.forward_with_attention(x, n)
                out.append({"utt_id": row.utt_id, "truth": label, "prediction": row.prediction,
                            "correct": correct, "features": run.store[row.utt_id], "attention": alpha[0]})
    return out


@torch.no_grad()
def text_attention_examples(run: TrainedRun, n: int = 4) -> list[dict]:
    """MSCNN-SPU-ATT: the attention weights over the words of ``n`` test utterances,
    one row per γ ∈ {max, avg, std}."""
    token_ids = run.context["extras"]["text"]
    texts = experiments.create(run.config).texts(run.manifest)  # the texts it was trained on (ASR too)
    out = []
    for row in run.predictions.head(n).itertuples():
        x, lengths = run.inputs(row.utt_id)
        ids = token_ids[row.utt_id][None]
        extras = {"text": ids, "text_lengths": torch.tensor([ids.shape[1]])}
        if "utterance" in run.context["extras"]:
            extras["utterance"] = run.context["extras"]["utterance"][row.utt_id][None]
        _, weights = run.model.forward_with_attention(x, lengths, **extras)
        tokens = tokenize(texts[row.utt_id]) or ["<unk>"]
        out.append({"utt_id": row.utt_id, "truth": row.truth, "prediction": row.prediction, "tokens": tokens,
                    "weights": {g: w[0].tolist() for g, w in weights.items()}})
    return out


def attention_entropy(alpha: torch.Tensor) -> float:
    """Entropy (nats) of one utterance's attention weights over its valid positions."""
    p = alpha.flatten()
    p = p[p > 0]
    return float(-(p * p.log()).sum())


def model_size(model: torch.nn.Module) -> dict:
    """Parameter count and float32 size of the weights."""
    n = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for b in model.buffers())
    return {"parameters": n, "buffers": buffers, "megabytes_float32": 4 * (n + buffers) / 2**20}
