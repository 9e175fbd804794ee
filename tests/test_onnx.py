"""Deployable models: ONNX graphs of a bundle (front end included, checked at export),
predict through onnxruntime without torch, int8 and its cost (issue 32)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from serlib import bundle, decode, onnx_export
from serlib.audio import InputChecks, crop_or_pad
from serlib.errors import AudioError, DataError
from serlib.experiments import create, make_config
from serlib.features import FrontEnd
from serlib.train import run_fold
from tests import fixtures

ort = pytest.importorskip("onnxruntime")
ROOT = Path(__file__).resolve().parents[1]
# one fold each of the synthetic corpus, one epoch: enough to have weights that are not the initial ones
LS = {"epochs": "1", "input_seconds": "2", "progress": "false", "feature_workers": "1"}
FCN = {"epochs": "1", "batch_size": "16", "progress": "false", "feature_workers": "1"}


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "serlib", *map(str, args)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=600, cwd=ROOT)


@pytest.fixture(scope="module")
def ls_run(tmp_path_factory):
    """A Light-SERNet run (fold 1) on the synthetic corpus."""
    out = tmp_path_factory.mktemp("onnx-ls")
    return run_fold(make_config("light_sernet", {**LS, "corpus": "synthetic", "output_dir": str(out)}))


@pytest.fixture(scope="module")
def runs(ls_run, tmp_path_factory):
    """... and a 2-D attention-FCN run (fold 1) on the synthetic corpus."""
    out = tmp_path_factory.mktemp("onnx-fcn")
    fcn = run_fold(make_config("attention_fcn", {**FCN, "corpus": "synthetic", "output_dir": str(out)}))
    return {"ls": ls_run, "fcn": fcn}


def test_graph_front_end_equals_the_front_end():
    """The exportable front end (one length per batch) gives FrontEnd's features for every preset."""
    torch.manual_seed(0)
    for name in ("light_sernet", "attention_fcn", "attention_fcn_1d", "cnn_lstm"):
        front = FrontEnd(create(make_config(name, {})).features()[0])
        wave = torch.randn(3, int(front.config.sample_rate * 1.3))
        want = front(wave, torch.tensor([wave.shape[1]] * 3))[0]
        got = onnx_export.GraphFrontEnd(front)(wave)
        assert got.shape == want.shape and torch.allclose(got, want, atol=1e-5), name


def test_numpy_decoding_matches_the_corpora(tmp_path):
    """serlib.decode (no torch) reads, crops and refuses files as serlib.audio does."""
    good = fixtures.write_wav(tmp_path / "a.wav", seconds=0.6, freq=300)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(8000), 16000)
    short = fixtures.write_wav(tmp_path / "short.wav", seconds=0.1)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"not audio at all")
    checks = InputChecks(0.25, None, decode.SILENCE_PEAK)
    wave, _ = decode.load_checked(good, 16000, 0.25, decode.SILENCE_PEAK)
    assert np.array_equal(wave, checks.load(good, 16000)[0].numpy())
    assert np.array_equal(decode.crop_or_pad(wave, 5000), crop_or_pad(torch.from_numpy(wave), 5000).numpy())
    for bad in (silent, short, garbage, tmp_path / "missing.wav"):
        with pytest.raises(AudioError) as torch_side:
            checks.load(bad, 16000)
        with pytest.raises(AudioError) as numpy_side:
            decode.load_checked(bad, 16000, 0.25, decode.SILENCE_PEAK)
        assert numpy_side.value.reason.split(" (")[0] == torch_side.value.reason.split(" (")[0]


def test_export_refuses_a_graph_beyond_the_tolerance(ls_run, tmp_path, monkeypatch):
    """A graph that disagrees with PyTorch is not written (here: a tolerance no float
    graph meets), and the card gets no ONNX entry."""
    out = bundle.export(Path(ls_run["path"]).parent, tmp_path / "b")
    monkeypatch.setattr(onnx_export, "TOLERANCE", -1.0)
    with pytest.raises(DataError, match="disagrees with the PyTorch model"):
        onnx_export.export_onnx(out, Path(ls_run["path"]).parent)
    assert not list(out.glob("*.onnx")) and not list(out.glob(".*.tmp"))
    assert "onnx" not in json.loads((out / "card.json").read_text())


@pytest.mark.slow  # subprocesses of the program
@pytest.mark.parametrize("which", ["ls", "fcn"])
def test_export_onnx_and_predict_without_torch_through_the_program(runs, which, tmp_path):
    """export --onnx --int8, then predict the run's test files, a long file in windows
    and a bad file with torch and with onnxruntime: same labels, probabilities within
    the tolerance, same windows and errors; no torch module in the onnx process."""
    record = runs[which]
    out = tmp_path / "bundle"
    done = cli("export", Path(record["path"]).parent, out, "--onnx", "--int8")
    assert done.returncode == 0, done.stderr
    card = json.loads((out / "card.json").read_text())
    assert card["onnx"]["opset"] == onnx_export.OPSET and "int8" in card["onnx"]
    for m in card["members"]:
        for entry in ("onnx", "onnx_int8"):
            graph = out / m[entry]["file"]
            assert hashlib.sha256(graph.read_bytes()).hexdigest() == m[entry]["sha256"]
        assert m["onnx"]["check"]["max_abs_diff"] <= onnx_export.TOLERANCE
        assert m["onnx"]["check"]["n_inputs"] == record["metrics"]["n"]
    assert "calibrated" in card["onnx"]["int8"]["method"]  # the card says what was quantised, and on what
    cost = card["onnx"]["int8"]["cost"]
    assert cost["ua_fp32"] == pytest.approx(record["metrics"]["ua"], abs=1e-9)  # the record's own test UA
    # inputs: the fold's test files, a long file (windows), a bad one
    test_ids = pd.read_csv(record["predictions_path"]).utt_id
    from serlib.corpora import load_corpus

    manifest = load_corpus("synthetic").set_index("utt_id")
    files = [manifest.loc[u, "path"] for u in test_ids[:12]]
    long = tmp_path / "long.wav"
    sf.write(long, np.concatenate([sf.read(f)[0] for f in files[:4]]), 16000)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....WAVEjunk")
    listing = tmp_path / "inputs.csv"
    pd.DataFrame({"path": [*files, str(long), str(bad)]}).to_csv(listing, index=False)
    tables = {}
    for runtime in ("torch", "onnx", "onnx-int8"):
        target = tmp_path / f"{runtime}.csv"
        done = cli("predict", out, listing, "--runtime", runtime, "--out", target, "--window", "2", "--hop", "1")
        assert done.returncode == 1 and f"failed {bad}" in done.stderr, done.stderr  # the bad file, listed
        tables[runtime] = (pd.read_csv(target), pd.read_csv(str(target.with_suffix("")) + ".windows.csv"))
    (t_files, t_windows), (o_files, o_windows) = tables["torch"], tables["onnx"]
    assert list(o_files.columns) == list(t_files.columns) and list(o_windows.columns) == list(t_windows.columns)
    assert o_files.error.fillna("").tolist() == t_files.error.fillna("").tolist()
    assert o_files.prediction.fillna("").tolist() == t_files.prediction.fillna("").tolist()
    assert o_windows[["path", "start", "end", "prediction"]].equals(t_windows[["path", "start", "end", "prediction"]])
    p = [c for c in t_files.columns if c.startswith("p_")]
    assert np.nanmax(np.abs(o_files[p].to_numpy() - t_files[p].to_numpy())) <= onnx_export.TOLERANCE
    assert np.nanmax(np.abs(o_windows[p].to_numpy() - t_windows[p].to_numpy())) <= onnx_export.TOLERANCE
    # the same program, in one process, with its modules listed afterwards
    code = ("import json, sys; from serlib.__main__ import main; rc = main(sys.argv[1:]); "
            "print(json.dumps([rc, sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchaudio'))]))")
    done = subprocess.run([sys.executable, "-c", code, "predict", str(out), files[0], "--runtime", "onnx"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    rc, loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert rc == 0 and loaded == []
    assert Path(files[0]).name in done.stdout  # it printed the prediction


@pytest.mark.slow
def test_onnx_predict_refuses_bundles_without_graphs_and_changed_graphs(ls_run, tmp_path):
    out = bundle.export(Path(ls_run["path"]).parent, tmp_path / "b")
    wav = fixtures.write_wav(tmp_path / "x.wav", seconds=1.0)
    done = cli("predict", out, wav, "--runtime", "onnx")
    assert done.returncode == 2 and "export it with --onnx" in done.stderr, done.stderr
    onnx_export.export_onnx(out, Path(ls_run["path"]).parent)
    graph = next(out.glob("*.onnx"))
    graph.write_bytes(graph.read_bytes() + b"\0")
    done = cli("predict", out, wav, "--runtime", "onnx")
    assert done.returncode == 2 and "SHA-256 differs" in done.stderr, done.stderr
    done = cli("predict", out, wav, "--runtime", "onnx", "--attention", tmp_path / "figs")
    assert done.returncode == 2 and "--runtime torch" in done.stderr, done.stderr
