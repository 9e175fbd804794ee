"""Calibration of class probabilities: the reliability table, expected and maximum
calibration error (ECE, MCE) and temperature scaling (Guo et al. 2017). Numbers in, numbers
out: :mod:`serlib.explore` applies them to result sets, :mod:`serlib.bundle` to predict."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from .errors import DataError

N_BINS = 15  # equal-width confidence bins of ECE/MCE and the reliability diagram
EPS = 1e-7  # probabilities are stored with 5 decimals: a 0 becomes EPS before the log
TEMPERATURE_RANGE = (0.05, 20.0)


def reliability(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> pd.DataFrame:
    """The reliability table: equal-width bins of the confidence (the largest probability;
    the prediction is its class), each with its range, ``n``, mean confidence and accuracy.
    Empty bins are left out."""
    probs, labels = np.asarray(probs, float), np.asarray(labels)
    confidence, prediction = probs.max(1), probs.argmax(1)
    edges = np.linspace(0, 1, n_bins + 1)
    bins = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)  # (low, high], first [0, e1]
    rows = [{"low": edges[b], "high": edges[b + 1], "n": int((bins == b).sum()),
             "confidence": float(confidence[bins == b].mean()),
             "accuracy": float((prediction[bins == b] == labels[bins == b]).mean())}
            for b in range(n_bins) if (bins == b).any()]
    return pd.DataFrame(rows, columns=["low", "high", "n", "confidence", "accuracy"])


def calibration_errors(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> tuple[float, float]:
    """``(ECE, MCE)``: the bins' gaps |accuracy − confidence| weighted by their share of
    the utterances (expected) and the largest gap (maximum), over :func:`reliability`'s
    equal-width bins (Naeini et al. 2015; Guo et al. 2017)."""
    table = reliability(probs, labels, n_bins)
    if table.empty:
        return float("nan"), float("nan")
    gap = (table.accuracy - table.confidence).abs()
    return float((gap * table.n).sum() / table.n.sum()), float(gap.max())


def scale(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature scaling of probabilities: softmax(log p / T) (= softmax(z / T) of the
    logits z, whose log-softmax is log p up to a constant). The order of the classes in
    every row is kept, so the predicted class is too."""
    z = np.log(np.clip(np.asarray(probs, float), EPS, 1.0)) / temperature
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes (nats)."""
    return float(-np.mean(np.log(np.clip(np.asarray(probs, float)[np.arange(len(labels)), labels], EPS, 1.0))))


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the NLL of ``labels`` under :func:`scale` (searched on
    log T in :data:`TEMPERATURE_RANGE`): > 1 softens an over-confident model."""
    if len(labels) == 0:
        raise DataError(None, "no validation utterances to fit a temperature on")
    lo, hi = np.log(TEMPERATURE_RANGE)
    found = minimize_scalar(lambda t: nll(scale(probs, np.exp(t)), labels), bounds=(lo, hi), method="bounded",
                            options={"xatol": 1e-4})
    return float(np.exp(found.x))


