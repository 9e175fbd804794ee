"""Sweeps and run identity: fingerprints decide what is skipped, re-run and averaged;
``--jobs`` works through the real program; a failed run does not stop the others."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from serlib import records, results
from serlib.__main__ import main
from serlib.sweep import sweep
from serlib.train import Trainer
from tests.fixtures import TINY, write_csv_corpus

ROOT = Path(__file__).resolve().parents[1]
SETS = [f"{k}={v}" for k, v in TINY.items()]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_csv_corpus(tmp_path_factory.mktemp("csv"))


def values(corpus: Path, out: Path, **kw) -> dict:
    return {**TINY, "corpus": "csv", "data_root": str(corpus), "subset": None, "output_dir": str(out), **kw}


def cli(*args: str, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SERLIB_OUTPUTS": str(out / "outputs")}
    return subprocess.run([sys.executable, "-m", "serlib", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, stdin=subprocess.DEVNULL, timeout=600)


@pytest.mark.slow  # a subprocess of the program
def test_jobs_2_through_the_program_matches_a_serial_sweep(corpus, tmp_path):
    common = ["sweep", "--experiment", "cnn_lstm", "--corpus", "csv", "--root", str(corpus), "--folds", "1,2,3",
              "--threads", "1"]
    parallel = cli(*common, "--jobs", "2", "--set", *SETS, f"output_dir={tmp_path / 'p'}", out=tmp_path)
    assert parallel.returncode == 0, parallel.stderr[-3000:]
    assert "3 runs to do, 0 already recorded" in parallel.stdout and "3 done, 0 skipped, 0 failed" in parallel.stdout
    serial = cli(*common, "--jobs", "1", "--set", *SETS, f"output_dir={tmp_path / 's'}", out=tmp_path)
    assert serial.returncode == 0, serial.stderr[-3000:]
    p, s = (results.collect(tmp_path / d / "results").sort_values("fold") for d in ("p", "s"))
    assert len(p) == len(s) == 3
    assert p.fingerprint.tolist() == s.fingerprint.tolist() and p.fingerprint.nunique() == 1
    assert p.wa.tolist() == s.wa.tolist() and p.ua.tolist() == s.ua.tolist()
    threads = {json.loads(Path(x).read_text())["torch_threads"] for x in p.path}
    assert threads == {1}
    again = cli(*common, "--jobs", "2", "--set", *SETS, f"output_dir={tmp_path / 'p'}", out=tmp_path)
    assert "0 runs to do, 3 already recorded" in again.stdout and again.returncode == 0


@pytest.mark.slow  # trains four folds
def test_changed_setting_runs_again_same_setting_is_skipped(corpus, tmp_path, capsys):
    table = sweep("cnn_lstm", values(corpus, tmp_path), folds="1,2", echo=None)
    assert table.status.tolist() == ["done", "done"]
    same = sweep("cnn_lstm", values(corpus, tmp_path), folds="1,2", echo=None)
    assert same.status.tolist() == ["skipped", "skipped"] and same.path.tolist() == table.path.tolist()
    other = sweep("cnn_lstm", values(corpus, tmp_path, epochs="2"), folds="1,2")
    assert other.status.tolist() == ["done", "done"]
    assert "records with other settings exist" in capsys.readouterr().out
    assert all(Path(p).is_file() for p in table.path)  # nothing lost
    collected = results.collect(tmp_path / "results")
    mean = results.summarise(collected)["mean"]
    assert len(mean) == 2 and set(mean.n_folds) == {2}  # never averaged together
    assert set(mean.fingerprint) == set(collected.fingerprint) and mean.fingerprint.str.len().eq(10).all()


def test_other_data_is_another_fingerprint(corpus, tmp_path):
    full = sweep("cnn_lstm", values(corpus, tmp_path), folds="1", echo=None)
    subset = tmp_path / "subset.csv"
    table = pd.read_csv(corpus)
    table[~table.path.str.contains("happy1")].assign(path=lambda t: str(corpus.parent) + "/" + t.path).to_csv(
        subset, index=False)
    part = sweep("cnn_lstm", values(subset, tmp_path), folds="1", echo=None)
    assert part.status.tolist() == ["done"] and Path(part.path[0]).parent != Path(full.path[0]).parent
    rec_full, rec_part = (records.read_record(p) for p in (full.path[0], part.path[0]))
    assert records.identity_diff(rec_full["identity"], rec_part["identity"]) == ["manifest"]
    moved = sweep("cnn_lstm", values(corpus, tmp_path, data_root=str(corpus)), folds="1", echo=None)
    assert moved.status.tolist() == ["skipped"]  # the same data: the root is not part of the identity


@pytest.mark.slow  # trains twice
def test_force_retrains_from_scratch(corpus, tmp_path, monkeypatch):
    sweep("cnn_lstm", values(corpus, tmp_path), folds="1", echo=None)
    resumed = []
    original = Trainer.load_checkpoint
    monkeypatch.setattr(Trainer, "load_checkpoint", lambda self: resumed.append(1) or original(self))
    forced = sweep("cnn_lstm", values(corpus, tmp_path), folds="1", force=True, echo=None)
    assert forced.status.tolist() == ["done"] and resumed == []
    rec = records.read_record(forced.path[0])
    assert len(rec["history"]) == 1


def test_a_failed_run_is_reported_and_the_others_go_on(corpus, tmp_path, monkeypatch, capsys):
    from serlib import sweep as sweep_module

    real = sweep_module.run_fold

    def flaky(config, manifest=None, planned=None):
        if config.fold == 2:
            raise RuntimeError("simulated crash")
        return real(config, manifest, planned)

    monkeypatch.setattr(sweep_module, "run_fold", flaky)
    code = main(["sweep", "--experiment", "cnn_lstm", "--corpus", "csv", "--root", str(corpus), "--folds", "1,2,3",
                 "--set", *SETS, f"output_dir={tmp_path}"])
    out = capsys.readouterr().out
    assert code == 1
    assert "fold 2 seed 1 FAILED: RuntimeError: simulated crash" in out and "2 done, 0 skipped, 1 failed" in out
    assert sorted(results.collect(tmp_path / "results").fold) == [1, 3]


def test_sweep_loads_the_corpus_once(corpus, tmp_path, monkeypatch):
    from serlib import corpora

    calls = []
    real = corpora.load_corpus
    monkeypatch.setattr(corpora, "load_corpus", lambda *a, **k: calls.append(1) or real(*a, **k))
    sweep("cnn_lstm", values(corpus, tmp_path, classes="all"), folds="1,2", echo=None)
    assert len(calls) == 1  # for the label set of classes="all" and the runs alike


def test_all_classes_follow_the_merge(iemocap_root):
    from serlib.manifests import resolve_values

    config, manifest = resolve_values("cnn_lstm", {"corpus": "iemocap", "data_root": str(iemocap_root), "subset": "all",
                                                   "classes": "all", "merge": {"excited": "happy"}})
    assert "excited" not in config.classes and "happy" in config.classes
    assert set(manifest.label) == set(config.classes)
