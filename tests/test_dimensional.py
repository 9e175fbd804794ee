"""Dimensional emotion (arousal, valence, dominance): CCC, losses, labels, the task."""

from __future__ import annotations

import numpy as np
import pandas as pd
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


# -- MSP-Podcast and its partitions --------------------------------------------------------

def test_msp_podcast_tree_gives_labels_dimensions_and_quirks(tmp_path):
    from serlib.corpora import load_corpus
    from tests import fixtures

    root = fixtures.write_msp_podcast(tmp_path, missing=2)
    table = pd.read_csv(root / "Labels" / "labels_consensus.csv", dtype={"SpkrID": str})
    df = load_corpus("msp_podcast", root).set_index("utt_id")
    x_rows = table.EmoClass == "X"
    # X (no agreement) dropped and counted; 2 listed files missing: counted skips
    assert df.attrs["dropped"] == {"X (no agreement)": int(x_rows.sum())}
    assert [reason for _, reason in df.attrs["skipped"]].count(
        "listed in labels_consensus.csv but missing from Audios/") == int((~x_rows[:2]).sum())
    kept = table[~x_rows]
    kept = kept[kept.FileName.map(lambda n: (root / "Audios" / n).is_file())]
    assert len(df) == len(kept)
    for rec in kept.itertuples():
        row = df.loc[rec.FileName[:-4]]
        assert (row.arousal, row.valence, row.dominance) == (rec.EmoAct, rec.EmoVal, rec.EmoDom)  # 1-7 kept
        assert row.partition == rec.Split_Set
        assert row.speaker == rec.SpkrID
    assert set(df.label) >= {"angry", "sad", "happy", "neutral", "contempt", "other"}
    assert (df.speaker == "Unknown").sum() > 0 and df[df.speaker == "Unknown"].gender.isna().all()
    kept_x = load_corpus("msp_podcast", root, keep_no_majority=True)
    assert (kept_x.label == "other").sum() > (df.label == "other").sum()


def test_partition_protocol_gives_the_official_sets_one_fold_per_test_set(tmp_path):
    from serlib.corpora import load_corpus
    from serlib.errors import SplitError
    from serlib.protocols import make_folds
    from tests import fixtures

    df = load_corpus("msp_podcast", fixtures.write_msp_podcast(tmp_path, test3=True), keep_no_majority=True)
    folds = make_folds(df, "partition")
    assert [f.test_set for f in folds] == ["Test1", "Test2", "Test3"]
    part = dict(zip(df.utt_id, df.partition))
    for fold in folds:
        assert {part[u] for u in fold.train} == {"Train"} and {part[u] for u in fold.val} == {"Development"}
        assert {part[u] for u in fold.test} == {fold.test_set}
        assert len(fold.test) == (df.partition == fold.test_set).sum()
        assert fold.speaker_independent and "Unknown" not in fold.test_speakers
    with pytest.raises(SplitError, match="official partitions"):
        make_folds(load_corpus("emodb", fixtures.write_emodb(tmp_path / "emodb")), "partition")


def test_unknown_speaker_is_never_a_test_speaker(tmp_path):
    from serlib.corpora import load_corpus
    from serlib.protocols import make_folds
    from tests import fixtures

    df = load_corpus("msp_podcast", fixtures.write_msp_podcast(tmp_path), keep_no_majority=True)
    for protocol in ("loso", "group_kfold:3"):
        folds = make_folds(df, protocol)
        unknown = set(df.utt_id[df.speaker == "Unknown"])
        assert all("Unknown" not in f.test_speakers + f.val_speakers for f in folds)
        assert all(unknown <= set(f.train) for f in folds)
    assert len(make_folds(df, "loso")) == df.speaker.nunique() - 1


@pytest.mark.slow
def test_describe_shows_msp_podcast_partitions_through_the_program(tmp_path):
    import subprocess
    import sys

    from tests import fixtures

    root = fixtures.write_msp_podcast(tmp_path)
    out = subprocess.run([sys.executable, "-m", "serlib", "describe", "--corpus", "msp_podcast", "--root", str(root),
                          "--classes", "all", "--protocol", "partition"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "2 folds (partition)" in out.stdout and "Test1" in out.stdout and "Test2" in out.stdout
    assert "dimensions (the corpus's scale): arousal" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "serlib", "describe", "--corpus", "msp_podcast", "--root", str(tmp_path / "none")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error:")


# -- the task -------------------------------------------------------------------------------

def test_task_fields_leave_categorical_fingerprints_alone(tmp_path):
    from serlib.experiments import make_config
    from serlib.records import run_fingerprint
    from tests import fixtures

    csv = fixtures.write_rated_csv_corpus(tmp_path)
    from serlib.manifests import run_manifest

    base = {**fixtures.TINY, "corpus": "csv", "data_root": str(csv), "subset": None}
    categorical = make_config("cnn_lstm", base)
    manifest = run_manifest(categorical)
    fp, identity = run_fingerprint(categorical, manifest)
    assert not {"task", "dims", "dim_loss", "task_weight"} & set(identity["settings"])
    dimensional = make_config("cnn_lstm", {**base, "task": "dimensional"})
    fp_dim, identity_dim = run_fingerprint(dimensional, run_manifest(dimensional))
    assert fp_dim != fp and identity_dim["settings"]["task"] == "dimensional"
    # the ratings are data of a dimensional run: another rating, another fingerprint
    import pandas as pd

    table = pd.read_csv(csv)
    table.loc[0, "valence"] += 1
    table.to_csv(csv, index=False)
    assert run_fingerprint(dimensional, run_manifest(dimensional))[0] != fp_dim
    assert run_fingerprint(categorical, run_manifest(categorical))[0] == fp


def test_bad_task_settings_are_config_errors():
    from serlib.errors import ConfigError
    from serlib.experiments import make_config

    with pytest.raises(ConfigError, match="dims must be"):
        make_config("light_sernet", {"task": "dimensional", "dims": ("arousal", "joy")})
    with pytest.raises(ConfigError, match="task"):
        make_config("light_sernet", {"task": "ordinal"})
    with pytest.raises(ConfigError, match="recipe switches"):
        make_config("light_sernet", {"task": "dimensional", "recipe": "modern"})


def test_a_corpus_without_ratings_is_a_clear_error(tmp_path):
    from serlib.errors import DataError
    from serlib.experiments import make_config
    from serlib.manifests import run_manifest
    from tests import fixtures

    config = make_config("light_sernet", {"corpus": "emodb", "data_root": str(fixtures.write_emodb(tmp_path)),
                                          "classes": ("angry", "sad"), "task": "dimensional"})
    with pytest.raises(DataError, match="no arousal/valence/dominance ratings"):
        run_manifest(config)


@pytest.mark.parametrize("task", ["dimensional", "multitask"])
def test_a_dimensional_fold_trains_and_records_ccc(tmp_path, task):
    from serlib.records import read_predictions, read_record
    from serlib.targets import TargetScaler
    from serlib.train import run_fold
    from tests import fixtures

    csv = fixtures.write_rated_csv_corpus(tmp_path / "data")
    config = fixtures.tiny_config(csv, tmp_path / "out", task=task, epochs="2")
    rec = run_fold(config)
    m = rec["metrics"]
    for d in ("arousal", "valence", "dominance"):
        assert -1 <= m[f"ccc_{d}"] <= 1 and m[f"rmse_{d}"] >= 0 and f"pearson_{d}" in m
    assert m["ccc_mean"] == pytest.approx(np.mean([m[f"ccc_{d}"] for d in ("arousal", "valence", "dominance")]))
    assert ("ua" in m) == (task == "multitask")
    assert rec["task"] == task and rec["history"][0]["val_ccc_mean"] is not None
    # the scaler: the training split's statistics only
    table = pd.read_csv(csv).assign(utt_id=lambda t: t.path.map(lambda p: p.split("/")[-1][:-4])).set_index("utt_id")
    scaler = TargetScaler.from_state(rec["context"]["target_scaler"])
    assert scaler.mean == pytest.approx(table.loc[rec["train_ids"], ["arousal", "valence", "dominance"]].mean().tolist())
    # predictions in the corpus's scale, truth exactly the manifest's
    again = read_record(rec["path"])
    predictions = read_predictions(again).set_index("utt_id")
    assert predictions["true_valence"].to_dict() == pytest.approx(table.loc[predictions.index, "valence"].to_dict())
    assert predictions["pred_arousal"].between(0, 6).all()


def test_functionals_regress_each_dimension_choosing_on_validation(tmp_path):
    from serlib.experiments import make_config
    from serlib.train import run_fold
    from tests import fixtures

    csv = fixtures.write_rated_csv_corpus(tmp_path / "data")
    for regressor in ("svr_linear", "ridge"):
        config = make_config("functionals", {"corpus": "csv", "data_root": str(csv), "subset": None,
                                             "output_dir": str(tmp_path / "out"), "feature_set": "mfcc_stats",
                                             "task": "dimensional", "regressor": regressor, "progress": False,
                                             "feature_workers": 1})
        rec = run_fold(config)
        history = rec["history"]
        assert [h["c"] for h in history] == list(config.grid) and len(history) == 5
        best = max(history, key=lambda h: h["val_ccc_mean"])
        assert rec["best_epoch"] == best["epoch"] and rec["best_selection_ua"] == best["val_ccc_mean"]
        assert "ccc_valence" in rec["metrics"] and "wa" not in rec["metrics"]


# -- tables, statistics, predict ------------------------------------------------------------

def _rated_runs(tmp_path):
    """Functionals (the baseline) and CNN+LSTM, dimensional, on every fold of the rated
    CSV corpus, and one categorical CNN+LSTM fold."""
    from serlib.experiments import make_config
    from serlib.records import load_records
    from serlib.train import run_fold
    from tests import fixtures

    csv = fixtures.write_rated_csv_corpus(tmp_path / "data")
    out = tmp_path / "out"
    for fold in (1, 2, 3, 4):
        run_fold(make_config("functionals", {"corpus": "csv", "data_root": str(csv), "subset": None, "fold": fold,
                                             "output_dir": str(out), "feature_set": "mfcc_stats", "task": "dimensional",
                                             "regressor": "ridge", "progress": False, "feature_workers": 1}))
        run_fold(fixtures.tiny_config(csv, out, task="dimensional", fold=str(fold)))
    run_fold(fixtures.tiny_config(csv, out))
    return load_records(out / "results"), csv, out


def test_dimensional_table_compares_with_the_baseline_chosen_on_validation(tmp_path):
    from serlib import dimensional, metrics
    from serlib.records import read_predictions
    from serlib.results import collect
    from serlib.stats import sign_flip_test

    runs, _, _ = _rated_runs(tmp_path)
    assert len(collect(runs)) == 1  # the categorical table: the categorical record only
    table = dimensional.table(runs, n_boot=200).set_index("experiment")
    assert set(table.index) == {"functionals", "cnn_lstm"}  # never the categorical row
    assert (table.baseline == "functionals/default").all() and (table.baseline_chosen_on == "validation CCC").all()
    cnn = [r for r in runs if r["config"]["experiment"] == "cnn_lstm" and r["config"].get("task") == "dimensional"]
    base = [r for r in runs if r["config"]["experiment"] == "functionals"]
    by_fold = lambda rs: {r["config"]["fold"]: r["metrics"]["ccc_mean"] for r in rs}  # noqa: E731
    d = np.array([by_fold(cnn)[f] - by_fold(base)[f] for f in (1, 2, 3, 4)])
    row = table.loc["cnn_lstm"]
    assert row.ccc_vs_baseline == pytest.approx(d.mean()) and row.p_raw_vs_baseline == pytest.approx(sign_flip_test(d))
    assert row.p_holm_vs_baseline == pytest.approx(row.p_raw_vs_baseline)  # one comparison
    assert row.ccc_std == pytest.approx(np.std(list(by_fold(cnn).values())))  # population std over folds
    # pooled CCC: recomputed on all folds' predictions together
    p = pd.concat([read_predictions(r) for r in cnn])
    pooled = np.mean([metrics.ccc(p[f"true_{d}"], p[f"pred_{d}"]) for d in ("arousal", "valence", "dominance")])
    assert row.ccc_pooled == pytest.approx(pooled)
    assert row.ccc_pooled_low <= row.ccc_pooled_high


def test_weighted_ccc_is_the_ccc_of_the_resampled_speakers():
    from serlib import dimensional

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=12), rng.normal(size=12)
    counts = rng.integers(0, 3, size=12).astype(float)
    resampled = np.repeat(np.arange(12), counts.astype(int))
    assert dimensional.weighted_ccc(x, y, counts[None])[0] == pytest.approx(metrics.ccc(x[resampled], y[resampled]))


def test_a_dimensional_bundle_predicts_the_dimensions_in_the_corpus_scale(tmp_path):
    from serlib.bundle import export, load_model
    from serlib.train import run_fold
    from tests import fixtures

    csv = fixtures.write_rated_csv_corpus(tmp_path / "data")
    rec = run_fold(fixtures.tiny_config(csv, tmp_path / "out", task="dimensional"))
    bundle = load_model(export(rec["path"].rsplit("/", 1)[0], tmp_path / "bundle"))
    wavs = sorted((tmp_path / "data").rglob("*.wav"))[:3]
    out = bundle.predict([str(w) for w in wavs], window=0.25)
    assert list(out.files.columns[:6]) == ["path", "seconds", "windows", "arousal", "valence", "dominance"]
    assert "prediction" not in out.files and out.files.error.isna().all()
    assert {"arousal", "valence", "dominance"} <= set(out.windows.columns) and len(out.windows) >= 3 * 2
    # the values are the model's outputs through the fold's training scaler, as in its test
    test = pd.read_csv(rec["predictions_path"]).set_index("utt_id")
    for w, row in zip(wavs, out.files.itertuples()):
        if w.stem in test.index:
            assert row.arousal == pytest.approx(test.at[w.stem, "pred_arousal"], abs=1e-3)


@pytest.mark.slow  # subprocesses of the program: sweep, collect, export, predict
def test_dimensional_sweeps_collect_and_predict_through_the_program(tmp_path):
    import os
    import subprocess
    import sys

    from tests import fixtures

    csv = fixtures.write_rated_csv_corpus(tmp_path / "data")
    env = {**os.environ, "SERLIB_OUTPUTS": str(tmp_path / "outputs")}

    def serlib(*args):
        return subprocess.run([sys.executable, "-m", "serlib", *args], capture_output=True, text=True, env=env)

    common = ["--corpus", "csv", "--root", str(csv), "--set", "task=dimensional", "epochs=1", "progress=false",
              "feature_workers=1"]
    ls = serlib("sweep", "--experiment", "light_sernet", *common)
    assert ls.returncode == 0, ls.stderr
    assert "ccc" in ls.stdout.splitlines()[-5] or " CCC " in ls.stdout
    fn = serlib("sweep", "--experiment", "functionals", *common, "feature_set=mfcc_stats")
    assert fn.returncode == 0, fn.stderr
    records = sorted((tmp_path / "outputs" / "results").rglob("fold*-seed1.json"))
    assert len(records) == 8
    import json

    for path in records:
        metrics = json.loads(path.read_text())["metrics"]
        assert {"ccc_arousal", "ccc_valence", "ccc_dominance", "ccc_mean", "pearson_valence", "rmse_valence"} <= set(metrics)
    collect = serlib("collect")
    assert collect.returncode == 0, collect.stderr
    assert "== dimensional group" in collect.stdout and "p_holm_vs_baseline" in collect.stdout
    assert "functionals/default" in collect.stdout  # the baseline, chosen on validation CCC
    result_set = records[0].parent if "light_sernet" in str(records[0]) else records[-1].parent
    exported = serlib("export", str(result_set), str(tmp_path / "bundle"))
    assert exported.returncode == 0, exported.stderr
    out = tmp_path / "pred.csv"
    predicted = serlib("predict", str(tmp_path / "bundle"), str(tmp_path / "data" / "s1"), "--out", str(out))
    assert predicted.returncode == 0, predicted.stderr
    table = pd.read_csv(out)
    assert {"arousal", "valence", "dominance"} <= set(table.columns) and table.arousal.notna().all()
    assert len(table) == 8


def test_an_experiment_without_a_regression_head_is_refused(tmp_path):
    from serlib.errors import ConfigError
    from serlib.experiments import make_config
    from serlib.fold_setup import setup_fold

    config = make_config("mscnn_spu", {"task": "dimensional", "output_dir": str(tmp_path)})
    with pytest.raises(ConfigError, match="no regression head.*light_sernet"):
        setup_fold(config)
