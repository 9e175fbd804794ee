"""Cross-corpus runs (protocol cross:TEST_CORPUS) and the transfer matrix."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from serlib import records, results, transfer
from serlib.errors import ConfigError
from serlib.experiments import make_config
from serlib.manifests import run_manifest
from serlib.protocols import make_folds
from tests import fixtures

FAST = {"epochs": "1", "batch_size": "4", "input_seconds": "0.4", "offset_seconds": "0", "progress": "false",
        "feature_workers": "1"}
FOUR = ("neutral", "happy", "sad", "angry")


def write_corpus(root: Path, speakers, labels=FOUR, files=2) -> Path:
    rows = []
    for s in speakers:
        for i, label in enumerate(labels):
            for k in range(files):
                rel = f"{s}/{s}_{label}{k}.wav"
                fixtures.write_wav(root / rel, seconds=0.5, freq=150 + 60 * i + 7 * k)
                rows.append((rel, label, s))
    csv = root / "corpus.csv"
    pd.DataFrame(rows, columns=["path", "label", "speaker"]).to_csv(csv, index=False)
    return csv


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("transfer")
    a = write_corpus(tmp / "a", ["a1", "a2", "a3", "a4"])
    b = write_corpus(tmp / "b", ["b1", "b2", "b3"], labels=(*FOUR, "fearful"))
    return tmp, a, b


def test_cross_fold_trains_on_one_corpus_and_tests_on_all_of_the_other(corpora):
    tmp, a, b = corpora
    config = make_config("attention_fcn_1d", {**FAST, "corpus": "csv", "data_root": str(a), "subset": None,
                                              "protocol": "cross:csv", "test_data_root": str(b)})
    manifest = run_manifest(config)
    assert manifest.attrs["cross_dropped"] == {"train": {}, "test": {"fear": 6}}  # canonical label
    [fold] = make_folds(manifest, config.protocol)
    role = dict(zip(manifest.utt_id, manifest.role))
    assert {role[u] for u in fold.train + fold.val} == {"train"} and {role[u] for u in fold.test} == {"test"}
    assert len(fold.test) == 3 * 4 * 2 and fold.val_speakers == ["train:a4"]
    assert fold.test_speakers == ["test:b1", "test:b2", "test:b3"]


@pytest.mark.slow  # a subprocess of the program
def test_cross_corpus_through_the_program(corpora, tmp_path):
    _, a, b = corpora
    out = tmp_path / "out"
    label_map = tmp_path / "map.json"
    label_map.write_text(json.dumps({"fear": "sad"}))
    base = [sys.executable, "-m", "serlib", "run", "--experiment", "attention_fcn_1d", "--corpus", "csv",
            "--root", str(a), "--set", *[f"{k}={v}" for k, v in FAST.items()], f"output_dir={out}"]
    cross = base + ["--protocol", "cross:csv", "--test-root", str(b), "--label-map", str(label_map)]
    for cmd in (cross, base):  # a cross-corpus run and a within-corpus LOSO fold
        done = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
        assert done.returncode == 0, done.stderr
    table = results.collect(out / "results")
    assert sorted(table.protocol) == ["cross:csv", "loso"]
    record = records.read_record(table[table.protocol == "cross:csv"].path.iloc[0])
    assert record["cross_corpus"] is True and record["test_corpus"] == "csv-corpus"  # named by its manifest
    assert record["cross_dropped"] == {"train": {}, "test": {}}  # fear → sad by the map
    assert record["split_sizes"]["test"] == 3 * 5 * 2
    summary = results.summarise(table)["mean"]
    assert len(summary) == 2  # never averaged with the LOSO run


def test_shared_classes_and_errors(corpora):
    _, a, b = corpora
    from serlib.manifests import resolve_values

    config, _ = resolve_values("attention_fcn_1d", {"corpus": "csv", "data_root": str(a), "subset": None,
                                                    "protocol": "cross:csv", "test_data_root": str(b), "classes": "all"})
    assert config.classes == tuple(sorted(FOUR))  # fearful is only in the test corpus
    with pytest.raises(ConfigError, match="unknown test corpus"):  # before any corpus is read
        resolve_values("attention_fcn_1d", {"protocol": "cross:nope"})


@pytest.mark.slow  # trains a 2×2 grid of sweeps
def test_matrix_has_loso_on_the_diagonal(corpora, tmp_path):
    _, a, b = corpora
    corpora_ = {"A": {"corpus": "csv", "data_root": str(a)}, "B": {"corpus": "csv", "data_root": str(b)}}
    out = transfer.matrix("attention_fcn_1d", corpora_, {**FAST, "output_dir": str(tmp_path), "subset": None},
                          diagonal_folds="1", echo=None)
    runs = out["runs"].set_index(["train", "test"])
    assert list(out["ua"].index) == ["A", "B"] and list(out["ua"].columns) == ["A", "B"]
    assert runs.loc[("A", "A"), "within_corpus"] and not runs.loc[("A", "B"), "within_corpus"]
    cross = records.read_record(runs.loc[("B", "A"), "records"][0])
    assert cross["cross_corpus"] and cross["metrics"]["ua"] == pytest.approx(out["ua"].loc["B", "A"])
    loso = records.read_record(runs.loc[("A", "A"), "records"][0])
    assert loso["config"]["protocol"] == "loso" and not loso["cross_corpus"]
    from serlib import viz

    assert viz.transfer_matrix(out["ua"]).data[0].z.shape == (2, 2)
