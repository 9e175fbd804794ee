"""The error browser's logic (serlib.explore): per-utterance tables, the queries, and
calibration (ECE/MCE against netcal and hand-computed cases, temperature scaling)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serlib import explore
from serlib.stats import ResultSet, load_set
from tests import fixtures

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["neutral", "happy", "sad", "angry"]


def _set(rows, label="m", task=None) -> ResultSet:
    """A result set from rows (fold, utt_id, speaker, truth, prediction, confidence of the prediction)."""
    frames = []
    for fold, utt, speaker, truth, pred, conf in rows:
        p = {f"p_{c}": (conf if c == pred else (1 - conf) / 3) for c in CLASSES}
        frames.append({"fold": fold, "seed": 1, "utt_id": utt, "speaker": speaker, "truth": truth,
                       "prediction": pred, **p})
    records = [{"config": {"fold": f, "seed": 1, "experiment": "cnn_lstm"}, **({"task": task} if task else {})}
               for f in sorted({r[0] for r in rows})]
    return ResultSet(label, records, pd.DataFrame(frames), CLASSES)


MANIFEST = pd.DataFrame({"utt_id": [f"u{i}" for i in range(6)], "path": [f"/a/u{i}.wav" for i in range(6)],
                         "gender": ["f", "f", "f", "m", "m", "m"], "text": [""] * 6})
ROWS_A = [(1, "u0", "s1", "neutral", "angry", 0.9), (1, "u1", "s1", "neutral", "angry", 0.6),
          (1, "u2", "s1", "happy", "happy", 0.7), (2, "u3", "s2", "sad", "neutral", 0.5),
          (2, "u4", "s2", "angry", "angry", 0.8), (2, "u5", "s2", "neutral", "angry", 0.4)]
ROWS_B = [(1, "u0", "s1", "neutral", "neutral", 0.9), (1, "u1", "s1", "neutral", "angry", 0.6),
          (1, "u2", "s1", "happy", "sad", 0.7), (2, "u3", "s2", "sad", "happy", 0.5),
          (2, "u4", "s2", "angry", "angry", 0.8), (2, "u5", "s2", "neutral", "neutral", 0.4)]


def test_table_cell_and_default_cell():
    table = explore.utterances({"a": _set(ROWS_A)}, MANIFEST)
    assert list(table.columns[:10]) == ["model", "fold", "utt_id", "speaker", "gender", "truth", "prediction",
                                        "correct", "confidence", "margin"]
    assert table.set_index("utt_id").loc["u0", "path"] == "/a/u0.wav"
    assert table.set_index("utt_id").loc["u0", "margin"] == pytest.approx(0.9 - 0.1 / 3)
    assert explore.largest_off_diagonal(table, CLASSES) == ("neutral", "angry")
    cell = explore.cell(table, "neutral", "angry")
    assert cell.utt_id.tolist() == ["u0", "u1", "u5"]  # most confident first
    counts, rows = explore.confusion(table, CLASSES), explore.confusion(table, CLASSES, normalize=True)
    assert counts.loc["neutral", "angry"] == 3 and rows.loc["neutral"].sum() == pytest.approx(1.0)


def test_wrong_everywhere_and_discordant_pairs():
    table = explore.utterances({"a": _set(ROWS_A), "b": _set(ROWS_B)}, MANIFEST)
    assert explore.wrong_everywhere(table).utt_id.tolist() == ["u1", "u3"]  # u1 more confident
    d = explore.discordant(table, "a", "b")
    assert sorted(d.loc[d.which == "a right", "utt_id"]) == ["u2"]
    assert sorted(d.loc[d.which == "b right", "utt_id"]) == ["u0", "u5"]
    with pytest.raises(explore.DataError, match="no model 'c'"):
        explore.discordant(table, "a", "c")


def test_speaker_ua_interval_holds_the_estimate():
    table = explore.utterances({"a": _set(ROWS_A)}, MANIFEST)
    s = explore.speaker_ua(table, CLASSES, n_boot=200).set_index("speaker")
    assert s.loc["s1", "UA"] == pytest.approx(0.5)  # neutral 0/2, happy 1/1
    assert s.loc["s1", "UA low"] <= 0.5 <= s.loc["s1", "UA high"]
    assert s.loc["s2", "gender"] == "m"


def test_a_set_without_class_probabilities_is_skipped_with_a_message():
    regression = _set(ROWS_A, "dims", task="regression")
    kept, skipped = explore.usable({"a": _set(ROWS_A), "dims": regression})
    assert list(kept) == ["a"] and "dims: task ['regression']" in skipped[0]
    no_probs = ResultSet("old", _set(ROWS_A).records, _set(ROWS_A).predictions[["fold", "seed", "utt_id", "speaker",
                                                                                   "truth", "prediction"]], CLASSES)
    with pytest.raises(explore.NotCategorical, match="lack the class probabilities"):
        explore.utterances(no_probs, MANIFEST)


def test_ece_and_mce_by_hand():
    # four utterances at confidence 0.8, two right: one bin, gap 0.3
    probs = np.array([[0.8, 0.2]] * 4)
    assert explore.calibration_errors(probs, np.array([0, 0, 1, 1])) == pytest.approx((0.3, 0.3))
    # two bins: 0.95 (3 of 3 right, gap 0.05) and 0.55 (0 of 1 right, gap 0.55)
    probs = np.array([[0.95, 0.05]] * 3 + [[0.55, 0.45]])
    ece, mce = explore.calibration_errors(probs, np.array([0, 0, 0, 1]), n_bins=10)
    assert ece == pytest.approx((3 * 0.05 + 0.55) / 4) and mce == pytest.approx(0.55)


def test_ece_and_mce_agree_with_netcal():
    netcal = pytest.importorskip("netcal.metrics")
    rng = np.random.default_rng(0)
    for n_bins in (10, 15):
        probs = rng.dirichlet(np.ones(4) * 0.5, 500)
        labels = rng.integers(0, 4, 500)
        ece, mce = explore.calibration_errors(probs, labels, n_bins)
        assert ece == pytest.approx(netcal.ECE(bins=n_bins).measure(probs, labels), abs=1e-9)
        assert mce == pytest.approx(netcal.MCE(bins=n_bins).measure(probs, labels), abs=1e-9)


def test_temperature_recovers_an_overconfident_model_and_keeps_every_prediction():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 1.5, (4000, 4))
    p_true = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    labels = np.array([rng.choice(4, p=p) for p in p_true])
    overconfident = np.exp(3 * z) / np.exp(3 * z).sum(1, keepdims=True)  # logits × 3: temperature 3 undoes it
    t = explore.fit_temperature(overconfident, labels)
    assert t == pytest.approx(3.0, rel=0.1)
    scaled = explore.scale(overconfident, t)
    assert (scaled.argmax(1) == overconfident.argmax(1)).all()  # so WA and UA cannot change
    before, after = explore.calibration_errors(overconfident, labels)[0], explore.calibration_errors(scaled, labels)[0]
    assert after < before / 2


@pytest.mark.slow
def test_records_keep_validation_outputs_and_the_cli_reports_calibration(tmp_path):
    csv = fixtures.write_csv_corpus(tmp_path / "corpus")
    out = tmp_path / "out"
    from serlib.train import run_fold

    rec = run_fold(fixtures.tiny_config(csv, out))
    val = pd.read_csv(Path(rec["path"]).with_name(rec["val_predictions"]))
    assert set(val.speaker) == set(rec["val_speakers"]) and {f"p_{c}" for c in rec["classes"]} <= set(val.columns)
    test = pd.read_csv(rec["predictions_path"])
    assert not set(val.utt_id) & set(test.utt_id)

    result_set = load_set(out / "results")
    per_run, _, skipped = explore.calibrate(result_set)
    assert not skipped and per_run["UA before"].tolist() == per_run["UA after"].tolist()

    env = {**os.environ, "PYTHONPATH": str(ROOT), "SERLIB_OUTPUTS": str(out)}
    done = subprocess.run([sys.executable, "-m", "serlib", "calibration", "cnn_lstm"], capture_output=True,
                          text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "pooled test ECE" in done.stdout and "temperature" in done.stdout

    # a record from before validation outputs were kept: skipped and counted; nothing left -> error, exit 2
    record = Path(rec["path"])
    fields = json.loads(record.read_text())
    del fields["val_predictions"]
    record.write_text(json.dumps(fields))
    done = subprocess.run([sys.executable, "-m", "serlib", "calibration", "cnn_lstm"], capture_output=True,
                          text=True, env=env, cwd=tmp_path)
    assert done.returncode == 2 and "error:" in done.stderr and "run the fold again" in done.stderr
