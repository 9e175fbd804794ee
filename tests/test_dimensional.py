"""Dimensional emotion (arousal, valence, dominance): CCC, losses, labels, the task."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from serlib import metrics
from serlib.losses import ccc_loss, regression_loss


def hand_ccc(x, y):
    """Lin 1989 written out a second way: 1 - mean squared difference over its value
    under independence (the definition's other form)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    msd = np.mean((x - y) ** 2)
    independent = np.mean((x[:, None] - y[None, :]) ** 2)
    return 1 - msd / independent


@pytest.mark.parametrize("seed", range(5))
def test_ccc_matches_an_independent_implementation(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(3, 1, 50)
    y = 0.6 * x + rng.normal(0.5, 0.7, 50)
    assert metrics.ccc(x, y) == pytest.approx(hand_ccc(x, y), abs=1e-12)
    audmetric = pytest.importorskip("audmetric")
    assert metrics.ccc(x, y) == pytest.approx(audmetric.concordance_cc(x, y), abs=1e-9)


def test_ccc_penalises_shift_and_scale_where_pearson_does_not():
    x = np.arange(10.0)
    assert metrics.pearson(x, 2 * x + 5) == pytest.approx(1.0)
    assert metrics.ccc(x, 2 * x + 5) < 0.5
    assert metrics.ccc(x, x) == 1.0
    assert np.isnan(metrics.ccc([1.0], [1.0]))
    with pytest.raises(ValueError):
        metrics.ccc([1, 2], [1, 2, 3])


def test_dimensional_scores_per_dimension_and_mean():
    truth = np.array([[1, 5], [2, 4], [3, 3], [4, 2.0]])
    scores = metrics.dimensional_scores(truth, truth[:, ::-1], ["arousal", "valence"])
    assert scores["ccc_arousal"] == pytest.approx(hand_ccc([1, 2, 3, 4], [5, 4, 3, 2]))
    assert scores["ccc_mean"] == pytest.approx(np.mean([scores["ccc_arousal"], scores["ccc_valence"]]))
    assert scores["rmse_arousal"] == pytest.approx(np.sqrt(6.0))
    assert scores["n"] == 4 and scores["dims"] == ["arousal", "valence"]


def test_ccc_loss_is_one_minus_ccc_averaged_over_dimensions():
    rng = np.random.default_rng(0)
    t = rng.normal(size=(40, 3))
    p = t + rng.normal(scale=0.8, size=(40, 3))
    expected = np.mean([1 - metrics.ccc(t[:, j], p[:, j]) for j in range(3)])
    assert float(ccc_loss(torch.tensor(p), torch.tensor(t))) == pytest.approx(expected, abs=1e-6)
    mse = regression_loss("mse")(torch.tensor(p), torch.tensor(t))
    assert float(mse) == pytest.approx(np.mean((p - t) ** 2), abs=1e-6)
    # the loss has gradients (it trains)
    q = torch.tensor(p, requires_grad=True)
    ccc_loss(q, torch.tensor(t)).backward()
    assert torch.isfinite(q.grad).all()


# -- labels in the manifest -------------------------------------------------------------

def test_iemocap_tree_yields_the_vad_of_every_labelled_turn(tmp_path):
    from serlib.corpora import load_corpus
    from tests import fixtures

    root = fixtures.write_iemocap(tmp_path)
    df = load_corpus("iemocap", root).set_index("utt_id")
    expected = {}
    for s in range(1, 6):
        for i, (name, turns) in enumerate(fixtures.IEMOCAP_DIALOGS.items()):
            for j, (suffix, code) in enumerate(turns):
                if code != "xxx":
                    expected[f"Ses{s:02d}{'FM'[i]}_{name}_{suffix}"] = fixtures.iemocap_vad(s, i, j)
    assert set(df.index) == set(expected)
    for utt, (v, a, d) in expected.items():  # the file's order is valence, activation, dominance
        assert (df.at[utt, "valence"], df.at[utt, "arousal"], df.at[utt, "dominance"]) == (v, a, d)


def test_corpora_without_dimensions_get_nan_columns(tmp_path):
    from serlib.corpora import load_corpus
    from tests import fixtures

    df = load_corpus("emodb", fixtures.write_emodb(tmp_path))
    assert df[["arousal", "valence", "dominance"]].isna().all().all()


def test_csv_dimension_columns_are_optional_numbers(tmp_path):
    import pandas as pd

    from serlib.corpora import load_corpus
    from serlib.errors import DataError
    from tests import fixtures

    csv = fixtures.write_csv_corpus(tmp_path)
    table = pd.read_csv(csv)
    table["valence"] = [0.1 * i if i % 3 else None for i in range(len(table))]
    table.to_csv(csv, index=False)
    df = load_corpus("csv", csv)
    assert df["valence"].isna().sum() == sum(1 for i in range(len(table)) if i % 3 == 0)
    assert df["arousal"].isna().all()
    table["valence"] = table["valence"].astype(object)
    table.loc[4, "valence"] = "high"
    table.to_csv(csv, index=False)
    with pytest.raises(DataError, match=r"corpus.csv:6.*'valence'.*not a number"):
        load_corpus("csv", csv)


def test_synthetic_dimensions_follow_the_categories_deterministically(tmp_path):
    from serlib.corpora import synthetic

    size = {"utterances_per_session": 40}
    df = synthetic.load(tmp_path, **size)
    again = synthetic.load(tmp_path, **size)
    assert df[["arousal", "valence", "dominance"]].equals(again[["arousal", "valence", "dominance"]])
    assert df[["arousal", "valence", "dominance"]].notna().all().all()
    means = df.groupby("label")[["arousal", "valence", "dominance"]].mean()
    assert means.at["angry", "arousal"] > means.at["neutral", "arousal"] > means.at["sad", "arousal"]
    assert means.at["happy", "valence"] > means.at["angry", "valence"]
    assert means.at["angry", "dominance"] > means.at["sad", "dominance"]
    assert df["arousal"].std() > 0.2 and df["arousal"].between(1, 5).all()
