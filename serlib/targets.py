"""What a run predicts (``config.task``): the classes (``"categorical"``, the default),
the dimensions of ``config.dims`` — arousal, valence, dominance — as continuous values
(``"dimensional"``), or both from one model (``"multitask"``: the first ``n_classes``
outputs are logits, the rest the dimensions).

Dimensional targets are standardised with the mean and standard deviation of the fold's
training split only (:class:`TargetScaler`, kept in the fold's context and so in the
weights file and the bundle); predictions go back to the corpus's own scale before they
are scored (CCC, Pearson r, RMSE per dimension, :func:`serlib.metrics.dimensional_scores`)
or written. Model selection: validation UA (categorical), validation mean CCC
(dimensional), their mean (multitask).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from . import metrics
from .losses import MultitaskLoss, regression_loss

TASKS = ("categorical", "dimensional", "multitask")
SCALER_KEY = "target_scaler"  # the fold context's (and the weights file's) key of the scaler's state


def n_outputs(task: str, n_classes: int, dims: Sequence[str]) -> int:
    """The model's output size for ``task``.

    >>> n_outputs("categorical", 4, ("arousal",)), n_outputs("multitask", 4, ("arousal", "valence"))
    (4, 6)
    """
    return {"categorical": n_classes, "dimensional": len(dims), "multitask": n_classes + len(dims)}[task]


@dataclass
class TargetScaler:
    """Per-dimension standardisation fitted on a training split (a constant dimension
    keeps scale 1)."""

    dims: list[str]
    mean: list[float]
    std: list[float]

    @classmethod
    def fit(cls, values: np.ndarray, dims: Sequence[str]) -> TargetScaler:
        values = np.asarray(values, dtype=float)
        std = values.std(axis=0)
        return cls(list(dims), values.mean(axis=0).tolist(), np.where(std > 0, std, 1.0).tolist())

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (np.asarray(values, dtype=float) - self.mean) / self.std

    def inverse(self, values: np.ndarray) -> np.ndarray:
        """Standardised values back to the corpus's scale.

        >>> s = TargetScaler.fit(np.array([[1.0], [3.0]]), ["arousal"])
        >>> s.inverse(s.transform([[2.0]])).tolist()
        [[2.0]]
        """
        return np.asarray(values, dtype=float) * self.std + self.mean

    def state(self) -> dict:
        return {"dims": list(self.dims), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_state(cls, state: dict) -> TargetScaler:
        return cls(list(state["dims"]), list(state["mean"]), list(state["std"]))


def task_loss(task: str, dim_loss: str, classification: nn.Module, n_classes: int, weight: float) -> nn.Module:
    """The training loss: the experiment's classification loss, the regression loss
    (``dim_loss``: CCC or MSE) or their weighted sum (multitask, ``weight`` on the
    dimensions)."""
    if task == "categorical":
        return classification
    if task == "dimensional":
        return regression_loss(dim_loss)
    return MultitaskLoss(classification, regression_loss(dim_loss), n_classes, weight)


def selection_score(task: str, scores: dict) -> float:
    """The number model selection maximises (module docstring)."""
    if task == "categorical":
        return scores["ua"]
    if task == "dimensional":
        return scores["ccc_mean"]
    return (scores["ua"] + scores["ccc_mean"]) / 2


def summary(task: str, scores: dict) -> str:
    """A progress line's scores."""
    parts = []
    if task != "dimensional":
        parts.append(f"WA {scores['wa']:.3f} UA {scores['ua']:.3f}")
    if task != "categorical":
        each = ", ".join(f"{d[0].upper()} {scores['ccc_' + d]:.3f}" for d in scores["dims"])
        parts.append(f"CCC {scores['ccc_mean']:.3f} ({each})")
    return ", ".join(parts)


CATEGORICAL_METRICS = ("wa", "ua", "macro_f1", "recall", "confusion", "labels", "n")


def record_metrics(task: str, scores: dict) -> dict:
    """The record's ``metrics`` of a test split's scores."""
    keys = [k for k in CATEGORICAL_METRICS if task != "dimensional"]
    if task != "categorical":
        keys += [k for k in scores if k.startswith(("ccc_", "pearson_", "rmse_"))] + ["dims", "n"]
    return {k: scores[k] for k in dict.fromkeys(keys)}


def value_columns(dims: Sequence[str]) -> list[str]:
    """The predictions file's columns of a dimensional run: ``true_<dim>``, ``pred_<dim>``."""
    return [f"{side}_{d}" for d in dims for side in ("true", "pred")]


def batch_values(table: dict[str, torch.Tensor], ids: Sequence[str], device) -> torch.Tensor:
    """The standardised targets ``(B, D)`` of a batch's utterances."""
    return torch.stack([table[u] for u in ids]).to(device)


def split_scores(task: str, classes: Sequence[str], out: torch.Tensor, truth: Sequence[int],
                 predicted: Sequence[int], ids: Sequence[str], loss: float, scaler: TargetScaler | None = None,
                 true_values=None, dims: Sequence[str] = ()) -> dict:
    """A split's scores from the model's outputs ``out`` (N, K) on the CPU: the loss, ids and
    true class names; for the classes (``categorical``: ``out`` holds the probabilities and
    ``predicted`` the experiment's own decisions; ``multitask``: softmax of the leading
    logits, argmax) WA/UA/F1 (:func:`serlib.metrics.scores`), predictions and probabilities;
    for the dimensions (after any logits) the values back in the corpus's scale
    (``scaler``), the true ones from ``true_values`` (a table indexed by utterance id) and
    CCC, r and RMSE per dimension."""
    names_t = [classes[i] for i in truth]
    n_classes = len(classes) if task == "multitask" else 0
    if task != "dimensional":
        probs = out if task == "categorical" else torch.softmax(out[:, :n_classes], -1)
        names_p = [classes[i] for i in (predicted if task == "categorical" else probs.argmax(-1).tolist())]
        class_scores = {**metrics.scores(names_t, names_p, classes), "prediction": names_p,
                        "probabilities": probs.numpy()}
    scores = {"loss": loss, "ids": ids, "truth": names_t}
    if task == "categorical":
        return {**class_scores, **scores}
    values, true = scaler.inverse(out[:, n_classes:].numpy()), true_values.loc[ids].to_numpy()
    scores = {**metrics.dimensional_scores(true, values, dims), **scores, "values": values, "true_values": true}
    if task == "multitask":
        scores.update(class_scores)
    return scores
