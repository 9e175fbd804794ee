"""Classification metrics with explicit label lists (audmetric style), and the
concordance correlation coefficient (CCC), Pearson r and RMSE of continuous targets.

WA (weighted accuracy) is the overall accuracy; UA (unweighted accuracy) is the mean of
per-class recalls (= scikit-learn's balanced accuracy). Some papers swap the names
("Emotion in Motion"); serlib never does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion(truth: Sequence, prediction: Sequence, labels: Sequence) -> np.ndarray:
    """Confusion matrix ``C[i, j]`` = number of utterances of class ``labels[i]``
    predicted as ``labels[j]``.

    >>> confusion(["a", "a", "b"], ["a", "b", "b"], labels=["a", "b"]).tolist()
    [[1, 1], [0, 1]]
    """
    index = {label: i for i, label in enumerate(labels)}
    if len(index) != len(labels):
        raise ValueError("labels contains duplicates")
    if len(truth) != len(prediction):
        raise ValueError(f"truth has {len(truth)} items, prediction {len(prediction)}")
    unknown = (set(truth) | set(prediction)) - set(index)
    if unknown:
        raise ValueError(f"values not in labels: {sorted(map(str, unknown))}")
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(matrix, ([index[t] for t in truth], [index[p] for p in prediction]), 1)
    return matrix


def weighted_accuracy(truth: Sequence, prediction: Sequence, labels: Sequence) -> float:
    r"""WA: overall accuracy, :math:`\frac{1}{N}\sum_i [\hat y_i = y_i]`.

    >>> weighted_accuracy(["a", "a", "a", "b"], ["a", "a", "a", "a"], labels=["a", "b"])
    0.75
    """
    matrix = confusion(truth, prediction, labels)
    return float(np.trace(matrix) / max(matrix.sum(), 1))


def per_class_recall(truth: Sequence, prediction: Sequence, labels: Sequence) -> dict:
    """Recall of each label; NaN for a label absent from ``truth``."""
    matrix = confusion(truth, prediction, labels)
    support = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.diag(matrix) / support
    return {label: float(r) for label, r in zip(labels, recall)}


def unweighted_accuracy(truth: Sequence, prediction: Sequence, labels: Sequence) -> float:
    r"""UA: mean recall over the labels present in ``truth``,
    :math:`\frac{1}{K}\sum_k \frac{TP_k}{N_k}`.

    Labels absent from ``truth`` are left out of the mean (as balanced accuracy does);
    labels absent from ``prediction`` count with recall 0.

    >>> unweighted_accuracy(["a", "a", "a", "b"], ["a", "a", "a", "a"], labels=["a", "b"])
    0.5
    """
    recalls = np.array(list(per_class_recall(truth, prediction, labels).values()))
    return float(np.nanmean(recalls)) if np.isfinite(recalls).any() else float("nan")


def macro_f1(truth: Sequence, prediction: Sequence, labels: Sequence) -> float:
    """Mean F1 over the labels present in ``truth`` or ``prediction`` (a label that is
    neither true nor predicted is left out; one predicted but never true scores 0).

    >>> round(macro_f1(["a", "a", "b", "b"], ["a", "b", "b", "b"], labels=["a", "b"]), 4)
    0.7333
    """
    matrix = confusion(truth, prediction, labels)
    tp = np.diag(matrix).astype(float)
    support, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    present = (support + predicted) > 0
    f1 = np.where(present, 2 * tp / np.maximum(support + predicted, 1), np.nan)
    return float(np.nanmean(f1)) if present.any() else float("nan")


def scores(truth: Sequence, prediction: Sequence, labels: Sequence) -> dict:
    """WA, UA, macro-F1, per-class recall and the confusion matrix in one dict."""
    return {
        "wa": weighted_accuracy(truth, prediction, labels),
        "ua": unweighted_accuracy(truth, prediction, labels),
        "macro_f1": macro_f1(truth, prediction, labels),
        "recall": per_class_recall(truth, prediction, labels),
        "confusion": confusion(truth, prediction, labels).tolist(),
        "labels": list(labels),
        "n": len(truth),
    }


# -- dimensional (continuous) targets ---------------------------------------------------

def ccc(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    r"""Lin's (1989) concordance correlation coefficient,

    .. math:: \rho_c = \frac{2 s_{xy}}{s_x^2 + s_y^2 + (\bar x - \bar y)^2}

    with population (1/N) variances and covariance. 1 is perfect agreement, 0 none; unlike
    Pearson's r it penalises a shift or a scale difference. NaN for fewer than two items or
    when both sides are constant and equal in mean (0/0).

    >>> ccc([1, 2, 3], [1, 2, 3])
    1.0
    >>> round(ccc([1, 2, 3], [2, 3, 4]), 4)   # shifted by 1: 2*(2/3) / (2/3 + 2/3 + 1)
    0.5714
    >>> ccc([1, 2, 3], [3, 2, 1])
    -1.0
    """
    x, y = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"y_true has shape {x.shape}, y_pred {y.shape}")
    if x.size < 2:
        return float("nan")
    mx, my = x.mean(), y.mean()
    sxy = ((x - mx) * (y - my)).mean()
    denominator = x.var() + y.var() + (mx - my) ** 2
    return float(2 * sxy / denominator) if denominator > 0 else float("nan")


def pearson(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Pearson's r; NaN when either side is constant.

    >>> pearson([1, 2, 3], [2, 4, 6])
    1.0
    """
    x, y = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    if x.size < 2 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.clip(np.corrcoef(x, y)[0, 1], -1.0, 1.0))


def rmse(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Root mean squared error.

    >>> rmse([0, 0], [3, 4])
    3.5355...
    """
    x, y = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    return float(np.sqrt(np.mean((x - y) ** 2))) if x.size else float("nan")


def dimensional_scores(truth: np.ndarray, prediction: np.ndarray, dims: Sequence[str]) -> dict:
    """``ccc_<dim>``, ``pearson_<dim>``, ``rmse_<dim>`` per dimension, their means
    (``ccc_mean``, the selection and headline metric), the dimensions and ``n``, of
    ``(N, D)`` arrays in the corpus's scale."""
    truth, prediction = np.asarray(truth, dtype=float), np.asarray(prediction, dtype=float)
    out: dict = {}
    for name, fn in (("ccc", ccc), ("pearson", pearson), ("rmse", rmse)):
        values = [fn(truth[:, j], prediction[:, j]) for j in range(len(dims))]
        out.update({f"{name}_{d}": v for d, v in zip(dims, values)})
        out[f"{name}_mean"] = float(np.mean(values)) if values else float("nan")
    out.update({"dims": list(dims), "n": len(truth)})
    return out


def fold_stats(folds: Sequence, values: Sequence) -> tuple[float, float, float]:
    """``(mean, fold std, seed std)`` of one score over the runs of one result set, given
    each run's fold number and score — the one definition of "mean ± std" that the tables,
    the statistics, the command line and the bundle card use:

    * per fold, the mean over seeds first;
    * ``mean``: the mean of those fold means;
    * ``fold std``: their population std (ddof = 0: the spread of these folds, not an
      estimate of a wider population; 0 with one fold);
    * ``seed std``: the population std over seeds within a fold, averaged over the folds
      that have several seeds (NaN when none has): training noise, apart from the folds.

    Missing scores (None or NaN) are left out.

    >>> [round(x, 3) for x in fold_stats([1, 1, 2, 2], [0.5, 0.7, 0.8, 0.8])]
    [0.7, 0.1, 0.05]
    """
    by_fold: dict = {}
    for fold, value in zip(folds, values):
        if value is not None and not np.isnan(float(value)):
            by_fold.setdefault(fold, []).append(float(value))
    if not by_fold:
        return float("nan"), float("nan"), float("nan")
    means = np.array([np.mean(v) for v in by_fold.values()])
    seed_stds = [np.std(v) for v in by_fold.values() if len(v) > 1]
    return float(means.mean()), float(means.std()), float(np.mean(seed_stds)) if seed_stds else float("nan")
