"""Metrics against scikit-learn, including classes missing from predictions."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score

from serlib import metrics

LABELS = ["neutral", "happy", "sad", "angry"]


@pytest.mark.parametrize("seed", range(5))
def test_against_sklearn(seed):
    rng = np.random.default_rng(seed)
    truth = rng.choice(LABELS, 60, p=[0.5, 0.2, 0.2, 0.1]).tolist()
    pred = rng.choice(LABELS[:3], 60).tolist()  # "angry" is never predicted
    assert metrics.weighted_accuracy(truth, pred, LABELS) == pytest.approx(accuracy_score(truth, pred))
    assert metrics.unweighted_accuracy(truth, pred, LABELS) == pytest.approx(
        balanced_accuracy_score(truth, pred))
    present = sorted(set(truth) | set(pred))
    assert metrics.macro_f1(truth, pred, LABELS) == pytest.approx(
        f1_score(truth, pred, labels=present, average="macro", zero_division=0))
    assert (metrics.confusion(truth, pred, LABELS) == confusion_matrix(truth, pred, labels=LABELS)).all()


def test_ua_is_not_wa_on_imbalanced_data():
    truth = ["neutral"] * 9 + ["angry"]
    pred = ["neutral"] * 10
    assert metrics.weighted_accuracy(truth, pred, LABELS) == 0.9
    assert metrics.unweighted_accuracy(truth, pred, LABELS) == 0.5  # absent classes left out
    assert metrics.per_class_recall(truth, pred, LABELS)["angry"] == 0.0
    assert np.isnan(metrics.per_class_recall(truth, pred, LABELS)["sad"])


def test_unknown_values_and_lengths():
    with pytest.raises(ValueError, match="not in labels"):
        metrics.confusion(["a"], ["z"], ["a"])
    with pytest.raises(ValueError, match="truth has 2 items"):
        metrics.confusion(["a", "a"], ["a"], ["a"])


def test_summary_keys():
    s = metrics.scores(["a", "b"], ["a", "a"], ["a", "b"])
    assert s["wa"] == 0.5 and s["ua"] == 0.5 and s["confusion"] == [[1, 0], [1, 0]] and s["n"] == 2
