"""serlib.stats on constructed cases (checked against scipy and by hand), and the
functionals baseline as an ordinary experiment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from serlib import metrics, records, results, stats
from serlib.errors import SplitError
from serlib.sweep import sweep
from tests.fixtures import write_csv_corpus

CLASSES = ["angry", "happy", "neutral", "sad"]


def make_set(label: str, truth_pred: dict[int, list[tuple[str, str, str]]], seed: int = 1) -> stats.ResultSet:
    """A result set from ``{fold: [(speaker, truth, prediction), …]}``."""
    records, frames = [], []
    for fold, rows in truth_pred.items():
        p = pd.DataFrame(rows, columns=["speaker", "truth", "prediction"])
        p.insert(0, "utt_id", [f"f{fold}-u{i}" for i in range(len(p))])
        frames.append(p.assign(fold=fold, seed=seed))
        records.append({"config": {"fold": fold, "seed": seed},
                        "metrics": {"ua": metrics.unweighted_accuracy(p.truth, p.prediction, CLASSES),
                                    "wa": metrics.weighted_accuracy(p.truth, p.prediction, CLASSES)}})
    return stats.ResultSet(label, records, pd.concat(frames, ignore_index=True), CLASSES)


def folds_of(correct_per_fold: list[int], n: int = 8) -> dict:
    """Fold k: speaker sk, n utterances cycling through the classes, the first
    ``correct_per_fold[k]`` predicted right, the rest predicted as the next class."""
    out = {}
    for k, right in enumerate(correct_per_fold, start=1):
        rows = []
        for i in range(n):
            truth = CLASSES[i % 4]
            rows.append((f"s{k}", truth, truth if i < right else CLASSES[(i + 1) % 4]))
        out[k] = rows
    return out


def test_identical_predictions_give_p_1_and_a_zero_difference():
    a = make_set("a", folds_of([5, 6, 4, 7, 3]))
    b = make_set("b", folds_of([5, 6, 4, 7, 3]))
    r = stats.compare(a, b)
    assert r["p_perm_ua"] == 1.0 and r["p_wilcoxon_ua"] == 1.0 and r["mcnemar_p"] == 1.0
    assert r["ua_diff_low"] == r["ua_diff_high"] == r["ua_diff_pooled"] == 0.0
    assert (r["folds_won"], r["folds_lost"], r["folds_tied"]) == (0, 0, 5)


def test_winning_every_fold_of_ten():
    a = make_set("a", folds_of([6] * 10))
    b = make_set("b", folds_of([4] * 10))
    r = stats.compare(a, b)
    assert r["p_perm_ua"] == pytest.approx(2 / 2**10) and r["folds_won"] == 10
    assert r["p_wilcoxon_ua"] == pytest.approx(sps.wilcoxon(np.full(10, 0.25)).pvalue)
    assert r["ua_diff_mean"] == pytest.approx(0.25) and r["ua_diff_low"] > 0
    assert r["only_a_right"] == 20 and r["only_b_right"] == 0
    assert r["mcnemar_p"] == pytest.approx(sps.binomtest(20, 20, 0.5).pvalue)


def test_sign_flip_matches_scipy_permutation_test():
    d = np.array([0.05, -0.02, 0.08, 0.01, 0.03, -0.01, 0.04])
    ours = stats.sign_flip_test(d)
    theirs = sps.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf,
                                  alternative="two-sided").pvalue
    assert ours == pytest.approx(theirs)


def test_bootstrap_resamples_speakers_not_utterances():
    """One speaker all right, one all wrong: resampling speakers gives UA 0, 0.5 or 1, so
    the interval spans [0, 1]; an utterance bootstrap would have been narrow."""
    rows = [("good", c, c) for c in CLASSES * 5] + [("bad", c, CLASSES[(i + 1) % 4])
                                                     for i, c in enumerate(CLASSES * 5)]
    interval = stats.ci(make_set("x", {1: rows}))
    assert interval["ua_pooled"] == pytest.approx(0.5)
    assert interval["ua_low"] == 0.0 and interval["ua_high"] == 1.0 and interval["n_speakers"] == 2


def test_different_splits_are_refused():
    a = make_set("a", folds_of([5, 6, 4]))
    b = make_set("b", folds_of([5, 6, 4]))
    b.predictions.loc[0, "utt_id"] = "another"
    with pytest.raises(SplitError, match="fold 1: a and b test different utterances"):
        stats.compare(a, b)
    with pytest.raises(SplitError, match="cover different folds"):
        stats.compare(a, make_set("c", folds_of([5, 6])))
    assert stats.compare(a, make_set("c", folds_of([5, 6])), folds=[1, 2])["n_folds"] == 2


def test_holm_and_the_pairwise_matrix():
    assert stats.holm([0.01, 0.04, 0.03]) == [0.03, 0.06, 0.06]
    sets = [make_set(n, folds_of(c)) for n, c in (("a", [6] * 6), ("b", [4] * 6), ("c", [6] * 6))]
    matrix = stats.pairwise(sets)
    raw = 2 / 2**6
    assert matrix.loc["a", "b"] == pytest.approx(3 * raw) and matrix.loc["a", "c"] == 1.0
    assert (np.diag(matrix) == 1).all() and (matrix == matrix.T).all().all()


@pytest.mark.slow  # three baseline sweeps
def test_functionals_baseline_is_an_ordinary_record(tmp_path):
    corpus = write_csv_corpus(tmp_path / "c")
    values = {"corpus": "csv", "data_root": str(corpus), "subset": None, "output_dir": str(tmp_path / "out"),
              "progress": False, "feature_workers": 1}
    for feature_set, classifier in (("mfcc_stats", "logreg"), ("egemaps", "svm_linear"), ("mfcc_stats", "svm_rbf")):
        table = sweep("functionals", {**values, "feature_set": feature_set, "classifier": classifier,
                                      "name": f"{feature_set}-{classifier}"}, echo=None)
        assert (table.status == "done").all() and len(table) == 4
        rec = records.read_record(table.path[0])
        grid = [row["c"] for row in rec["history"]]
        assert len(grid) >= 4 and "test_ua" not in rec["history"][0]  # selected on validation only
        best = max(rec["history"], key=lambda r: r["val_ua"])
        assert rec["best_epoch"] == best["epoch"] and rec["selected_on"] == "val"
        preds = pd.read_csv(rec["predictions_path"])
        probs = preds[[f"p_{c}" for c in rec["classes"]]].to_numpy()
        assert np.allclose(probs.sum(1), 1, atol=1e-3)
    runs = records.load_records(tmp_path / "out" / "results")
    mean = stats.baseline_columns(results.summarise(results.collect(runs), runs)["mean"], runs)
    assert len(mean) == 3 and mean.ua_pooled_low.le(mean.ua_pooled).all() and mean.ua_pooled_high.ge(mean.ua_pooled).all()
    chosen = mean.val_ua_mean.idxmax()  # the comparator is chosen on validation UA, never on test
    assert mean.loc[chosen, "baseline"] == "(this is the baseline)"
    assert (mean.baseline_chosen_on == "validation UA").all()
    others = mean.drop(index=chosen)
    assert others.p_raw_vs_baseline.between(0, 1).all()
    assert (others.p_holm_vs_baseline >= others.p_raw_vs_baseline).all()


def test_functionals_bad_settings():
    from serlib.errors import ConfigError
    from serlib.experiments import make_config

    with pytest.raises(ConfigError, match="feature_set must be one of"):
        make_config("functionals", {"feature_set": "gemaps"})
    with pytest.raises(ConfigError, match="classifier must be one of"):
        make_config("functionals", {"classifier": "svm"})
    with pytest.raises(ConfigError, match="c_grid must be > 0"):
        make_config("functionals", {"c_grid": (0.0, 1.0)})
