"""Trained models beyond their fold: weights on disk, export → load → predict through
the program, bad and unusual inputs, attention, and the rebuild of a record's model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from serlib import bundle, weights
from serlib.errors import ConfigError, DataError
from serlib.experiments import make_config
from serlib.train import run_fold
from tests import fixtures
from tests.fixtures import write_csv_corpus

LS = {"epochs": "2", "batch_size": "4", "input_seconds": "0.5", "progress": "false", "feature_workers": "1"}
FCN1D = {"epochs": "2", "batch_size": "4", "input_seconds": "0.4", "offset_seconds": "0", "progress": "false",
         "feature_workers": "1"}


def cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "serlib", *map(str, args)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=300, cwd=cwd)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two folds of a small Light-SERNet and one of the 1-D attention FCN on the fixture corpus."""
    tmp = tmp_path_factory.mktemp("bundle")
    csv = write_csv_corpus(tmp / "corpus")
    common = {"corpus": "csv", "data_root": str(csv), "subset": None, "output_dir": str(tmp / "out")}
    ls = [run_fold(make_config("light_sernet", {**LS, **common, "fold": f})) for f in (1, 2)]
    fcn = run_fold(make_config("attention_fcn_1d", {**FCN1D, **common}))
    return {"tmp": tmp, "csv": csv, "ls": ls, "fcn": fcn}


def by_file(frame: pd.DataFrame, column: str) -> pd.Series:
    return frame.set_index(frame[column].map(lambda p: Path(p).stem))


def test_selected_weights_stay_on_disk(trained):
    record = trained["ls"][0]
    path = weights.weights_path(record["path"])
    assert path.is_file() and json.loads(Path(record["path"]).read_text())["weights"] == path.name
    model_state, normalizer_state, meta = weights.read_weights(path)
    assert meta["fold"] == 1 and meta["classes"] == record["classes"] and meta["n_features"] == record["n_features"]
    ckpt = torch.load(Path(record["path"].removesuffix(".json") + ".run") / "checkpoint.pt", weights_only=True)
    assert all(torch.equal(ckpt["best_state"][k], v) for k, v in model_state.items())


@pytest.mark.slow  # a subprocess of the program
def test_export_load_predict_round_trips_to_the_record(trained, tmp_path):
    """The program as a user runs it: export, then predict on the test files of each
    fold with that fold's model gives the record's probabilities."""
    result_set = Path(trained["ls"][0]["path"]).parent
    out = tmp_path / "ls-bundle"
    done = cli("export", result_set, out)
    assert done.returncode == 0, done.stderr
    card = json.loads((out / "card.json").read_text())
    assert [m["fold"] for m in card["members"]] == [1, 2] and "every speaker" in card["ensemble"]
    assert card["test_scores"]["ua_mean"] == pytest.approx(np.mean([r["metrics"]["ua"] for r in trained["ls"]]))
    csv_dir = trained["csv"].parent
    for record in trained["ls"]:
        truth = pd.read_csv(record["predictions_path"])
        files = [csv_dir / f"{u.split('/')[-1].split('_')[0]}/{u.split('/')[-1]}.wav" for u in truth.utt_id]
        listing = tmp_path / f"fold{record['config']['fold']}.csv"
        pd.DataFrame({"path": [str(f) for f in files]}).to_csv(listing, index=False)
        target = tmp_path / f"pred{record['config']['fold']}.csv"
        done = cli("predict", out, listing, "--fold", record["config"]["fold"], "--out", target)
        assert done.returncode == 0, done.stderr
        got = by_file(pd.read_csv(target), "path")
        want = by_file(truth, "utt_id")
        for c in record["classes"]:
            assert np.abs(got.loc[want.index, f"p_{c}"] - want[f"p_{c}"]).max() <= 1e-5
        assert (got.loc[want.index, "prediction"] == want["prediction"]).all()
    # the ensemble is the mean of the fold models
    both = bundle.load_model(out)
    one, two = bundle.load_model(out, fold=1), bundle.load_model(out, fold=2)
    wav = next(csv_dir.rglob("*.wav"))
    p = [b.predict([wav]).files.iloc[0] for b in (both, one, two)]
    c = f"p_{record['classes'][0]}"
    assert p[0][c] == pytest.approx((p[1][c] + p[2][c]) / 2, abs=1e-6)


def test_predict_takes_stereo_other_rates_long_and_bad_files(trained, tmp_path):
    out = bundle.export(Path(trained["ls"][0]["path"]).parent, tmp_path / "b")
    model = bundle.load_model(out, fold=1)
    folder = tmp_path / "inputs"
    mono = fixtures.write_wav(folder / "mono.wav", seconds=0.5, sr=16000, freq=210)
    x, sr = sf.read(mono)
    sf.write(folder / "stereo.wav", np.stack([x, x], axis=1), sr)           # two equal channels
    sf.write(folder / "rate44k.wav", np.interp(np.arange(int(0.5 * 44100)) / 44100, np.arange(len(x)) / sr, x), 44100)
    fixtures.write_wav(folder / "long.wav", seconds=3.2, sr=16000, freq=260)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    fixtures.write_wav(folder / "short.wav", seconds=0.05, sr=16000)
    pred = model.predict(folder, window=1.0, hop=0.5)
    files = by_file(pred.files, "path")
    assert set(pred.failures.path.map(lambda p: Path(p).stem)) == {"empty", "corrupt", "short"}
    assert "too short" in files.loc["short", "error"]
    c = [f"p_{k}" for k in model.classes]
    assert np.allclose(files.loc["stereo", c].astype(float), files.loc["mono", c].astype(float), atol=1e-5)
    assert np.allclose(files.loc["rate44k", c].astype(float), files.loc["mono", c].astype(float), atol=0.05)
    # 3.2 s in 1-s windows every 0.5 s: starts 0, 0.5, …, 2.0, then one ending at 3.2 s
    long = pred.windows[pred.windows.path.str.endswith("long.wav")]
    assert list(long.start.round(2)) == [0.0, 0.5, 1.0, 1.5, 2.0, 2.2] and long.end.max() == pytest.approx(3.2)
    assert files.loc["long", "windows"] == 6
    # the file's result is the model's own rule (a centre crop of 0.5 s), the windows' mean on request
    wave = model._load(folder / "long.wav")
    centre = wave[(wave.numel() - 8000) // 2:][:8000]
    alone = model.predict({"centre": (centre, 16000)}).files.iloc[0]
    assert np.allclose(files.loc["long", c].astype(float), alone[c].astype(float), atol=1e-6)
    means = model.predict([folder / "long.wav"], window=1.0, hop=0.5, per_file="windows").files.iloc[0]
    assert np.allclose(means[c].astype(float), long[c].mean().to_numpy(), atol=1e-6)


@pytest.mark.slow  # a subprocess of the program
def test_predict_through_the_program_lists_failures(trained, tmp_path):
    out = bundle.export(trained["fcn"]["path"], tmp_path / "fcn")
    folder = tmp_path / "some-bad"
    fixtures.write_wav(folder / "good.wav", seconds=1.5, sr=22050)
    (folder / "bad.wav").write_bytes(b"not audio")
    done = cli("predict", out, folder, tmp_path / "missing.wav", "--out", tmp_path / "p.csv",
               "--attention", tmp_path / "attention")
    assert done.returncode == 1, done.stderr
    assert f"failed {folder / 'bad.wav'}" in done.stderr and "missing.wav: file not found" in done.stderr
    table = pd.read_csv(tmp_path / "p.csv")
    assert table.error.isna().sum() == 1 and (tmp_path / "p.windows.csv").is_file()
    assert (tmp_path / "attention" / "good.attention.html").stat().st_size > 10_000


def test_attention_covers_the_model_input(trained, tmp_path):
    model = bundle.load_model(bundle.export(trained["fcn"]["path"], tmp_path / "fcn"))
    wav = fixtures.write_wav(tmp_path / "x.wav", seconds=2.0, sr=22050)
    pred = model.predict([wav], attention=True, hop=0.4)  # the hop may not exceed the 0.4-s window
    entry = pred.attention[str(wav)]
    assert len(entry["windows"]) == len(pred.windows)
    start, end, alpha = entry["windows"][0]
    assert (start, end) == pytest.approx((0.0, 0.4)) and alpha.sum() == pytest.approx(1.0, abs=1e-4)
    from serlib import viz

    figure = viz.attention_over_audio(entry)  # the spectrogram and one line: the windows' mean attention
    assert len(figure.data) == 2 and max(figure.data[1].x) > entry["windows"][-1][0]


def test_export_refuses_mixed_settings_and_missing_weights(trained, tmp_path):
    root = Path(trained["ls"][0]["path"]).parents[1]  # protocol folder: one fingerprint so far
    run_fold(make_config("light_sernet", {**LS, "epochs": "1", "corpus": "csv", "data_root": str(trained["csv"]),
                                          "subset": None, "output_dir": str(trained["tmp"] / "out")}))
    with pytest.raises(DataError, match="different settings; export one of"):
        bundle.export(root, tmp_path / "x")
    with pytest.raises(DataError, match="not a serlib bundle"):
        bundle.load_model(tmp_path)
    with pytest.raises(ConfigError, match="no fold 7"):
        bundle.load_model(bundle.export(trained["ls"][0]["path"], tmp_path / "one"), fold=7)


def test_rebuilt_fold_gives_the_record_predictions_exactly(trained):
    """``weights.rebuild_model`` (through ``analysis.load_trained``, with the fold's data from
    ``setup_fold``) rebuilds a record's model: the same test probabilities, to the record's
    precision."""
    from serlib.analysis import load_trained

    record = trained["ls"][1]
    run = load_trained(record)
    want = pd.read_csv(record["predictions_path"])
    x = torch.stack([run.store[u] for u in want.utt_id])
    lengths = torch.tensor([x.shape[-1]] * len(x))
    with torch.no_grad():
        probs = torch.softmax(run.model(run.normalizer(x), lengths), -1).numpy()
    # the record keeps 5 decimals; batches of another size may move the last float32 bit
    assert np.abs(probs - want[[f"p_{c}" for c in record["classes"]]].to_numpy()).max() <= 1e-5
    assert [record["classes"][i] for i in probs.argmax(1)] == want.prediction.tolist()


@pytest.mark.slow
def test_predicting_with_a_bundle_loads_no_trainer_corpora_sweep_or_sklearn(trained, tmp_path):
    """``load_model`` + ``predict`` in a fresh process: the modules a prediction needs, and
    not the trainer, the corpora, the sweep or scikit-learn (issue 19's layering)."""
    out = tmp_path / "fcn-bundle"
    bundle.export(Path(trained["fcn"]["path"]).parent, out)
    wav = next(trained["csv"].parent.rglob("*.wav"))
    code = ("import json, sys; from serlib.bundle import load_model; "
            "p = load_model(sys.argv[1]).predict([sys.argv[2]], attention=True); "
            "print(json.dumps([p.files.prediction.tolist(), "
            "sorted(m for m in sys.modules if m.startswith(('serlib', 'sklearn')))]))")
    done = subprocess.run([sys.executable, "-c", code, str(out), str(wav)], capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    predictions, loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(predictions) == 1 and predictions[0] in trained["fcn"]["classes"]
    assert "serlib.bundle" in loaded and "serlib.features" in loaded  # the check sees modules
    forbidden = [m for m in loaded if m.startswith(("serlib.train", "serlib.fold_setup", "serlib.planning",
                                                    "serlib.manifests", "serlib.checkpoint", "serlib.corpora",
                                                    "serlib.sweep", "serlib.stats", "sklearn"))]
    assert not forbidden, forbidden
