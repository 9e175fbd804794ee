"""Bad inputs and fault cases, table-driven: every case checks the exit code or the error,
that the message names the file or the field, and that no record is written or lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from serlib import results
from serlib.__main__ import main
from serlib.corpora import load_corpus
from serlib.errors import AudioError, ConfigError, DataError, LabelError
from serlib.train import Trainer, run_fold
from tests import fixtures
from tests.fixtures import TINY, records_under, tiny_config, write_csv_corpus

ROOT = Path(__file__).resolve().parents[1]
# --- configuration and command line (in-process: exit code 2, a message naming the field) ---

CLI_CASES = [
    # (id, extra CLI arguments, --set items, expected text in stderr)
    ("epochs-float", [], ["epochs=2.5"], "epochs must be an integer, got 2.5"),
    ("batch-zero", [], ["batch_size=0"], "batch_size must be >= 1, got 0"),
    ("epochs-zero", [], ["epochs=0"], "epochs must be >= 1, got 0"),
    ("epochs-negative", [], ["epochs=-1"], "epochs must be >= 1, got -1"),
    ("lr-zero", [], ["lr_conv=0"], "lr_conv must be > 0"),
    ("dropout-one", [], ["model.dropout=1.0"], "model.dropout must be in [0, 1)"),
    ("model-key", [], ["model.n_convs=2"], "unknown config key(s) for CNNLSTMConfig: model.n_convs (model.n_convs: did you mean model.n_conv?)"),
    ("model-range", [], ["model.n_conv=9"], "model.n_conv=9 needs that many conv_channels"),
    ("model-type", [], ["model.lstm_hidden=wide"], "model.lstm_hidden: cannot parse 'wide'"),
    ("model-whole", [], ["model=3"], "model takes fields such as model.n_classes"),
    ("no-subfield", [], ["epochs.max=3"], "epochs has no fields"),
    ("selection", [], ["selection=best"], "selection must be one of"),
    ("normalization", [], ["normalization=zscore"], "normalization must be one of"),
    ("vtlp", [], ["vtlp=always"], "vtlp must be one of"),
    ("min-seconds", [], ["min_seconds=-1"], "min_seconds must be >= 0"),
    ("max-below-min", [], ["max_seconds=0.1", "min_seconds=0.2"], "max_seconds (0.1) is below min_seconds"),
    ("bad-audio", [], ["bad_audio=ignore"], "bad_audio must be one of"),
    ("unknown-key", [], ["lstm_hiden=3"], "unknown config key(s) for CNNLSTMExperimentConfig: lstm_hiden"),
    ("set-without-value", [], ["epochs"], "--set expects key=value, got 'epochs'"),
    ("device-name", [], ["device=tpu"], "device must be auto, cpu, cuda, cuda:N or mps, got 'tpu'"),
    ("unknown-class", ["--classes", "neutral,hapy"], [], "unknown label(s) ['hapy']"),
    ("one-class", ["--classes", "neutral"], [], "classes must be at least 2 distinct labels"),
    ("protocol", ["--protocol", "kfold"], [], "unknown protocol 'kfold'"),
    ("corpus", ["--corpus", "imeocap"], [], "unknown corpus 'imeocap'"),
    ("folds-text", ["--folds", "a"], [], "folds must be 'all' or numbers such as 1,2,3, got 'a'"),
    ("folds-range", ["--folds", "11"], [], "folds [11] do not exist: the protocol has folds 1..10"),
    ("merge-label", ["--merge", "excited=hapy"], [], "unknown label(s) ['hapy']"),
    ("patience-zero", [], ["patience=0"], "patience must be >= 1, got 0"),
]


@pytest.mark.parametrize("extra,items,message", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_sweep_rejects_bad_settings(extra, items, message, tmp_path, capsys):
    code = main(["sweep", "--experiment", "cnn_lstm", *extra, "--set", *items, f"output_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and message in err and "Traceback" not in err
    assert records_under(tmp_path) == []


ARGPARSE_CASES = [
    ("jobs-zero", ["--jobs", "0"], "argument --jobs: must be >= 1, got 0"),
    ("seeds-zero", ["--seeds", "0"], "argument --seeds: must be >= 1, got 0"),
    ("merge-no-pair", ["--merge", "excited"], "expected FROM=TO pairs such as excited=happy"),
    ("subset", ["--subset", "bogus"], "argument --subset: invalid choice: 'bogus'"),
    ("threads", ["--threads", "x"], "argument --threads: expected a whole number"),
]


@pytest.mark.parametrize("extra,message", [c[1:] for c in ARGPARSE_CASES], ids=[c[0] for c in ARGPARSE_CASES])
def test_command_line_errors_exit_2(extra, message, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["sweep", "--experiment", "cnn_lstm", *extra])
    assert stop.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_machine_without_it(tmp_path, capsys):
    csv = write_csv_corpus(tmp_path / "c")
    code = main(["run", "--experiment", "cnn_lstm", "--corpus", "csv", "--root", str(csv),
                 "--set", *[f"{k}={v}" for k, v in TINY.items()], "device=cuda", f"output_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2 and "device='cuda' but this machine has no CUDA device" in err
    assert records_under(tmp_path) == []


@pytest.mark.slow  # a subprocess of the program
def test_cli_errors_as_a_user_sees_them(tmp_path):
    """The real program in a subprocess: message on stderr, exit 2, no traceback."""
    cases = [
        (["run", "--experiment", "cnn_lstm", "--set", "epochs=2.5"], "epochs must be an integer"),
        (["sweep", "--experiment", "cnn_lstm", "--folds", "a"], "folds must be 'all'"),
        (["sweep", "--experiment", "cnn_lstm", "--jobs", "0"], "--jobs: must be >= 1"),
        (["run", "--experiment", "cnn_lstm", "--corpus", "emodb", "--root", str(tmp_path / "nope")],
         f"{tmp_path / 'nope'}: emodb root does not exist"),
    ]
    env = {**os.environ, "SERLIB_OUTPUTS": str(tmp_path / "out")}
    for argv, message in cases:
        done = subprocess.run([sys.executable, "-m", "serlib", *argv], capture_output=True, text=True, cwd=ROOT,
                              env=env, stdin=subprocess.DEVNULL, timeout=120)
        assert done.returncode == 2, (argv, done.stderr[-2000:])
        assert message in done.stderr and "Traceback" not in done.stderr, (argv, done.stderr[-2000:])
    assert not (tmp_path / "out" / "results").exists()


# --- corpora ---------------------------------------------------------------------------

def test_csv_lists_a_file_twice(tmp_path):
    csv = write_csv_corpus(tmp_path, extra_rows=[("s1/s1_neutral0.wav", "neutral", "s1")])
    with pytest.raises(DataError, match=r"corpus.csv: 1 audio file\(s\) listed more than once, e.g. .*s1_neutral0.wav"):
        load_corpus("csv", csv)


def test_csv_unknown_label_names_the_line(tmp_path):
    csv = write_csv_corpus(tmp_path, extra_rows=[("s1/s1_neutral0.wav", "grumpy", "s9")])
    with pytest.raises(LabelError, match=r"corpus.csv:34: unknown label 'grumpy'"):
        load_corpus("csv", csv)


def test_csv_missing_file_names_it(tmp_path):
    csv = write_csv_corpus(tmp_path, extra_rows=[("s1/gone.wav", "sad", "s1")])
    with pytest.raises(AudioError, match=r"gone.wav: file not found"):
        load_corpus("csv", csv)
    assert load_corpus("csv", csv, on_error="skip").attrs["skipped_by_reason"] == {"file not found": 1}


def test_ravdess_stray_names_and_broken_links_are_counted(tmp_path):
    base = fixtures.write_ravdess(tmp_path, actors=(1, 2))
    fixtures.write_wav(base / "Actor_01" / "take2.wav")
    (base / "Actor_02" / "03-01-05-01-01-02-02.wav").symlink_to(tmp_path / "missing.wav")
    df = load_corpus("ravdess", tmp_path)
    reasons = dict((Path(p).name, r) for p, r in df.attrs["skipped"])
    assert reasons["take2.wav"].startswith("file name ignored: not a RAVDESS name")
    assert reasons["03-01-05-01-01-02-02.wav"] == "broken symbolic link"
    assert len(df) == 20


def test_emodb_stray_name_is_counted(tmp_path):
    fixtures.write_emodb(tmp_path)
    fixtures.write_wav(tmp_path / "wav" / "notes.wav")
    df = load_corpus("emodb", tmp_path)
    assert [Path(p).name for p, _ in df.attrs["skipped"]] == ["notes.wav"]


def test_emodb_corrupt_header_names_the_file(tmp_path):
    fixtures.write_emodb(tmp_path)
    (tmp_path / "wav" / "03a01Wa.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(AudioError, match=r"03a01Wa.wav: unreadable audio header"):
        load_corpus("emodb", tmp_path)
    assert len(load_corpus("emodb", tmp_path, on_error="skip").attrs["skipped"]) == 1


def test_iemocap_bad_subset_is_a_config_error(iemocap_root):
    with pytest.raises(ConfigError, match="subset must be one of"):
        load_corpus("iemocap", iemocap_root, subset="bogus")


# --- degenerate audio in the training path: counted skips, listed in the record ----------

def _write_bad(root: Path, kind: str) -> tuple[str, str, str]:
    path = root / "s2" / f"{kind}.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "one_sample":
        sf.write(path, np.array([0.1]), 16000)
    elif kind == "very_short":
        fixtures.write_wav(path, seconds=0.01)
    elif kind == "silent":
        sf.write(path, np.zeros(8000), 16000, subtype="PCM_16")
    elif kind == "truncated":  # the header says 2 s, the file holds 1 s
        fixtures.write_wav(path, seconds=2.0)
        data = path.read_bytes()
        path.write_bytes(data[: 44 + 32000])
    elif kind == "long":
        fixtures.write_wav(path, seconds=3.0)
    return (f"s2/{kind}.wav", "sad", "s2")


@pytest.mark.parametrize("kind,reason", [("one_sample", "too short"), ("very_short", "too short"),
                                         ("silent", "silent (peak amplitude")])
def test_degenerate_audio_is_a_counted_skip(kind, reason, tmp_path):
    csv = write_csv_corpus(tmp_path / "c", [_write_bad(tmp_path / "c", kind)])
    rec = run_fold(tiny_config(csv, tmp_path / "out", fold=2))  # s2 is the test speaker
    [skip] = rec["skipped_inputs"]
    assert skip["path"].endswith(f"{kind}.wav") and skip["reason"].startswith(reason)
    assert kind not in pd.read_csv(rec["predictions_path"]).utt_id.tolist()
    with pytest.raises(DataError, match=f"{kind}.wav: {reason.split(' (')[0]}"):
        run_fold(tiny_config(csv, tmp_path / "out2", fold=2, bad_audio="raise"))
    assert records_under(tmp_path / "out2") == []


@pytest.mark.slow  # trains a fold
def test_truncated_and_long_files_are_used_with_a_warning(tmp_path):
    root = tmp_path / "c"
    csv = write_csv_corpus(root, [_write_bad(root, "truncated"), _write_bad(root, "long")])
    rec = run_fold(tiny_config(csv, tmp_path / "out", fold=2, max_seconds=1.5))
    messages = {Path(w["path"]).name: w["message"] for w in rec["input_warnings"]}
    assert "header says 64000 bytes of audio, the file holds 32000" in messages["truncated.wav"]
    assert "3.0 s is longer than max_seconds=1.5: centre-cropped" in messages["long.wav"]
    assert {"truncated", "long"} <= set(pd.read_csv(rec["predictions_path"]).utt_id)


# --- damaged output files ----------------------------------------------------------------

@pytest.fixture
def csv_corpus(tmp_path):
    return write_csv_corpus(tmp_path / "c")


def _sweep(csv: Path, out: Path, *extra: str) -> int:
    return main(["sweep", "--experiment", "cnn_lstm", "--corpus", "csv", "--root", str(csv), "--folds", "1,2",
                 *extra, "--set", *[f"{k}={v}" for k, v in TINY.items()], f"output_dir={out}"])


def test_truncated_record_is_reported_and_rerun(csv_corpus, tmp_path, capsys):
    out = tmp_path / "out"
    assert _sweep(csv_corpus, out) == 0
    first = records_under(out)[0]
    first.write_text(first.read_text()[:100])
    table = results.collect(out / "results")
    assert len(table) == 1 and table.attrs["damaged"][0][0] == str(first)
    capsys.readouterr()
    assert main(["collect", "--path", str(out / "results")]) == 0
    assert f"damaged record skipped: {first}" in capsys.readouterr().err
    assert _sweep(csv_corpus, out) == 0
    captured = capsys.readouterr().out
    assert "1 runs to do, 1 already recorded" in captured and f"{first}: damaged results record" in captured
    assert len(results.collect(out / "results")) == 2


def test_truncated_checkpoint_is_moved_aside_and_the_fold_restarts(csv_corpus, tmp_path, caplog):
    out = tmp_path / "out"
    config = tiny_config(csv_corpus, out, epochs=2)
    straight = run_fold(config)
    checkpoint = Path(straight["path"].removesuffix(".json") + ".run") / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:200])
    Path(straight["path"]).unlink()
    again = run_fold(tiny_config(csv_corpus, out, epochs=2, resume=True))
    assert "damaged checkpoint" in caplog.text and str(checkpoint) in caplog.text
    assert checkpoint.with_name("checkpoint.pt.corrupt").is_file()
    assert again["metrics"] == straight["metrics"] and len(again["history"]) == 2


def test_damaged_feature_cache_is_extracted_again(csv_corpus, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("SERLIB_OUTPUTS", str(tmp_path / "outputs"))
    first = run_fold(tiny_config(csv_corpus, tmp_path / "out"))
    [cache] = (tmp_path / "outputs" / "cache").glob("spectrogram-*.pt")
    cache.write_bytes(cache.read_bytes()[:300])
    again = run_fold(tiny_config(csv_corpus, tmp_path / "out"))
    assert f"{cache}: damaged feature cache" in caplog.text
    assert again["metrics"] == first["metrics"]


def test_cache_missing_an_utterance_is_an_error(csv_corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("SERLIB_OUTPUTS", str(tmp_path / "outputs"))
    run_fold(tiny_config(csv_corpus, tmp_path / "out"))
    [cache] = (tmp_path / "outputs" / "cache").glob("spectrogram-*.pt")
    blob = torch.load(cache, weights_only=True)
    del blob["features"]["s1_neutral0"]
    torch.save(blob, cache)
    with pytest.raises(DataError, match=r"spectrogram-.*\.pt: 1 utterances of the .* split have no features"):
        run_fold(tiny_config(csv_corpus, tmp_path / "out2"))
    assert records_under(tmp_path / "out2") == []


def test_records_are_strict_json(csv_corpus, tmp_path):
    """A class absent from the test fold has no recall: null, never NaN."""
    table = pd.read_csv(csv_corpus)
    table[~table.path.str.startswith("s1/s1_angry")].to_csv(csv_corpus, index=False)
    rec = run_fold(tiny_config(csv_corpus, tmp_path / "out", fold=1))
    text = Path(rec["path"]).read_text()
    assert "NaN" not in text
    stored = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert stored["metrics"]["recall"]["angry"] is None
    assert results.collect(tmp_path / "out" / "results").ua.notna().all()


def test_nan_loss_writes_no_record(csv_corpus, tmp_path, monkeypatch):
    from serlib.train import TrainingError

    monkeypatch.setattr(Trainer, "train_epoch", lambda self, epoch, alpha: (_ for _ in ()).throw(
        TrainingError(f"cnn_lstm fold 1: loss is nan at epoch {epoch}, batch 1")))
    with pytest.raises(TrainingError, match="loss is nan at epoch 1"):
        run_fold(tiny_config(csv_corpus, tmp_path / "out"))
    assert records_under(tmp_path / "out") == []


def test_duplicate_audio_never_crosses_a_split(tmp_path):
    """A byte-identical copy of a test utterance under another speaker and name is taken
    out of training (dedup is on by default) and the record says so."""
    root = tmp_path / "c"
    csv = write_csv_corpus(root)
    (root / "s3" / "copy.wav").write_bytes((root / "s2" / "s2_sad0.wav").read_bytes())
    table = pd.read_csv(csv)
    pd.concat([table, pd.DataFrame([{"path": "s3/copy.wav", "label": "sad", "speaker": "s3"}])]).to_csv(csv, index=False)
    rec = run_fold(tiny_config(csv, tmp_path / "out", fold=2))  # test s2, val s3
    assert rec["dedup"] and "copy" not in rec["train_ids"]
    assert any("removed duplicate audio: 1 from val" in note for note in rec["fold_notes"])
    kept = run_fold(tiny_config(csv, tmp_path / "out", fold=2, dedup=False))
    assert kept["fingerprint"] != rec["fingerprint"] and kept["split_sizes"]["val"] == rec["split_sizes"]["val"] + 1


def test_evaluation_batches_keep_long_utterances_apart():
    from serlib.data import BucketBatchSampler

    lengths = [100] * 40 + [30000]
    batches = list(BucketBatchSampler(lengths, 16, shuffle=False))
    assert batches[-1] == [40] and max(len(b) for b in batches) == 16
    assert sorted(i for b in batches for i in b) == list(range(41))
    assert len(BucketBatchSampler(lengths, 16, shuffle=False)) == len(batches)


# === issue 22: no silent wrong result, no hang, no raw traceback ===========================

def _run(csv: Path, out: Path, *extra: str, experiment: str = "cnn_lstm", sets=()) -> int:
    tiny = TINY if experiment == "cnn_lstm" else {"progress": "false", "feature_workers": "1"}
    return main(["run", "--experiment", experiment, "--corpus", "csv", "--root", str(csv), *extra, "--set",
                 *[f"{k}={v}" for k, v in tiny.items()], *sets, f"output_dir={out}"])


# --- one class left after merge / label map: an error, or a counted failure, never a record ---

def test_one_class_after_merging_is_an_error(csv_corpus, tmp_path, capsys):
    code = _run(csv_corpus, tmp_path / "out", "--classes", "neutral,happy,sad,angry",
                "--merge", "neutral=angry,happy=angry,sad=angry")
    err = capsys.readouterr().err
    assert code == 2 and "hold 1 of the classes" in err and "after merging" in err and str(csv_corpus) in err
    assert records_under(tmp_path / "out") == []


def test_one_class_after_a_label_map_in_a_cross_corpus_run(csv_corpus, tmp_path, capsys):
    other = write_csv_corpus(tmp_path / "other")
    label_map = tmp_path / "all_one.json"
    label_map.write_text(json.dumps({c: "angry" for c in fixtures.LABELS4}))
    code = _run(csv_corpus, tmp_path / "out", "--protocol", "cross:csv", "--test-root", str(other),
                "--label-map", str(label_map))
    err = capsys.readouterr().err
    assert code == 2 and "hold 1 of the classes" in err and "a run needs at least 2" in err
    assert records_under(tmp_path / "out") == []


def test_a_one_class_split_is_a_counted_failure_in_a_sweep(tmp_path, capsys):
    """Speaker s2 has only sad utterances: fold 2 (s2 tests) and fold 1 (s2 validates) fail
    with the reason, fold 3 is recorded; a run of fold 2 alone is an error."""
    root = tmp_path / "c"
    csv = write_csv_corpus(root)
    table = pd.read_csv(csv)
    table[~table.path.str.startswith("s2/") | table.label.eq("sad")].to_csv(csv, index=False)
    code = main(["sweep", "--experiment", "cnn_lstm", "--corpus", "csv", "--root", str(csv), "--folds", "1,2,3",
                 "--set", *[f"{k}={v}" for k, v in TINY.items()], f"output_dir={tmp_path / 'out'}"])
    out = capsys.readouterr().out
    assert code == 1 and "1 done, 0 skipped, 2 failed" in out
    assert "fold 1 seed 1 FAILED: fold 1: the val split holds only ['sad']" in out
    assert "fold 2 seed 1 FAILED: fold 2: the test split holds only ['sad']" in out
    assert [p.name for p in records_under(tmp_path / "out")] == ["fold03-seed1.json"]
    assert _run(csv, tmp_path / "out2", "--fold", "2") == 2
    assert "the test split holds only ['sad']" in capsys.readouterr().err
    assert records_under(tmp_path / "out2") == []


# --- bundles: the weights file's metadata is the truth --------------------------------------

@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """Folds 1 and 2 of the tiny CNN+LSTM (one sweep), shared by the bundle and record cases."""
    tmp = tmp_path_factory.mktemp("runs")
    csv = write_csv_corpus(tmp / "c")
    assert _sweep(csv, tmp / "out") == 0
    return {"csv": csv, "out": tmp / "out", "records": records_under(tmp / "out")}


@pytest.fixture
def tiny_bundle(tiny_runs, tmp_path):
    from serlib import bundle

    return bundle.export(tiny_runs["records"][0].parent, tmp_path / "bundle")


def _edit_card(root: Path, edit) -> None:
    card = json.loads((root / "card.json").read_text())
    (root / "card.json").write_text(json.dumps(edit(card)))


def _swap_classes(card):
    card["classes"] = card["classes"][::-1]
    return card


def _other_fold_file(root: Path):
    (root / "fold01-seed1.safetensors").write_bytes((root / "fold02-seed1.safetensors").read_bytes())


def _other_fingerprint(card):
    card["fingerprint"] = "0123456789abcdef"
    return card


def _other_features(root: Path):
    config = json.loads((root / "config.json").read_text())
    config["freq_khz"] = 8  # the weights were trained on 4 kHz of spectrogram
    (root / "config.json").write_text(json.dumps(config))


def _member(key, value):
    def edit(card):
        card["members"][0][key] = value
        return card
    return edit


def _drop_file(card):
    del card["members"][0]["file"]
    return card


BUNDLE_CASES = [
    # (id, how the bundle is damaged, the file the message names, expected text)
    ("classes-reordered", lambda r: _edit_card(r, _swap_classes), "fold01-seed1.safetensors", "its classes is"),
    ("weights-of-another-fold", _other_fold_file, "fold01-seed1.safetensors", "its fold is 2 but"),
    ("another-fingerprint", lambda r: _edit_card(r, _other_fingerprint), "fold01-seed1.safetensors",
     "its fingerprint is"),
    ("config-other-features", _other_features, "fold01-seed1.safetensors", "config.json's features give"),
    ("card-a-list", lambda r: (r / "card.json").write_text("[]"), "card.json", "expected a JSON object, got list"),
    ("config-a-list", lambda r: (r / "config.json").write_text("[]"), "config.json", "expected a JSON object"),
    ("config-null", lambda r: (r / "config.json").write_text("null"), "config.json", "got NoneType"),
    ("member-without-file", lambda r: _edit_card(r, _drop_file), "card.json", "members[0] needs 'file'"),
    ("member-absolute", lambda r: _edit_card(r, _member("file", "/etc/passwd")), "card.json",
     "member file '/etc/passwd' is not a file of the bundle folder"),
    ("member-parent", lambda r: _edit_card(r, _member("file", "../bundle/fold01-seed1.safetensors")), "card.json",
     "is not a file of the bundle folder"),
    ("weights-truncated", lambda r: (r / "fold01-seed1.safetensors").write_bytes(b"\x08"), "fold01-seed1.safetensors",
     "not a readable weights file"),
]


@pytest.mark.parametrize("damage,named,message", [c[1:] for c in BUNDLE_CASES], ids=[c[0] for c in BUNDLE_CASES])
def test_damaged_or_mismatched_bundles_are_refused(damage, named, message, tiny_bundle, tmp_path, capsys):
    damage(tiny_bundle)
    wav = fixtures.write_wav(tmp_path / "x.wav", seconds=0.5)
    code = main(["predict", str(tiny_bundle), str(wav), "--out", str(tmp_path / "p.csv")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and named in err and message in err, err
    assert not (tmp_path / "p.csv").exists()


def test_a_bundle_loads_and_scores_when_untouched(tiny_bundle, tmp_path, capsys):
    """The control of the table above: the same bundle and file, not damaged."""
    wav = fixtures.write_wav(tmp_path / "x.wav", seconds=0.5)
    assert main(["predict", str(tiny_bundle), str(wav), "--out", str(tmp_path / "p.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "p.csv")) == 1


# --- predict: window, hop, speaker normalisation, destination, inputs -------------------------

PREDICT_CASES = [
    # (id, extra predict arguments, expected text in stderr)
    ("window-negative", ["--window", "-1"], "--window must be a number of seconds in (0, 600.0], got -1.0"),
    ("window-zero", ["--window", "0"], "--window must be a number of seconds in (0, 600.0], got 0.0"),
    ("window-nan", ["--window", "nan"], "--window must be a number of seconds"),
    ("window-inf", ["--window", "inf"], "--window must be a number of seconds"),
    ("hop-zero", ["--hop", "0"], "--hop must be a number of seconds in (0, 600.0], got 0.0"),
    ("hop-negative", ["--hop", "-1"], "--hop must be a number of seconds"),
    ("hop-above-window", ["--window", "1", "--hop", "2"], "--hop (2 s) must not exceed --window (1 s)"),
    ("speaker-norm-not-trained", ["--speaker-norm"], "trained without per-speaker normalisation"),
]


@pytest.mark.parametrize("extra,message", [c[1:] for c in PREDICT_CASES], ids=[c[0] for c in PREDICT_CASES])
def test_predict_refuses_bad_timelines(extra, message, tiny_bundle, tmp_path, capsys):
    wav = fixtures.write_wav(tmp_path / "x.wav", seconds=3.0)
    code = main(["predict", str(tiny_bundle), str(wav), *extra, "--out", str(tmp_path / "p.csv")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "p.csv").exists()


def test_predict_caps_the_windows_of_a_file(tiny_bundle, tmp_path, capsys):
    wav = fixtures.write_wav(tmp_path / "long.wav", seconds=3.0)
    fixtures.write_wav(tmp_path / "ok.wav", seconds=0.5)
    code = main(["predict", str(tiny_bundle), str(wav), str(tmp_path / "ok.wav"), "--window", "0.5",
                 "--hop", "0.0001", "--out", str(tmp_path / "p.csv")])
    err = capsys.readouterr().err
    assert code == 1 and f"failed {wav}: 3.0 s in windows of 0.5 s every 0.0001 s" in err and "more than 10000" in err
    table = pd.read_csv(tmp_path / "p.csv")
    assert table.error.isna().tolist() == [False, True]


def test_predict_checks_its_destination_before_scoring(tiny_bundle, tmp_path, capsys, monkeypatch):
    from serlib import bundle

    monkeypatch.setattr(bundle, "load_model", lambda *a, **k: pytest.fail("scored before checking --out"))
    wav = fixtures.write_wav(tmp_path / "x.wav", seconds=0.5)
    (tmp_path / "a-file").write_text("x")
    for out, message in ((tmp_path, "--out: is a folder"), (tmp_path / "a-file" / "p.csv", "--out: is not a folder")):
        assert main(["predict", str(tiny_bundle), str(wav), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err and str(out.parent if out.name == "p.csv" else out) in err


def test_predict_inputs_as_the_corpora_read_them(tiny_bundle, tmp_path, capsys):
    """macOS ``._*`` files are not audio; a folder listed in a CSV is searched; a truncated
    file is scored with its warning; a CSV that lists nothing is an error."""
    folder = tmp_path / "in"
    fixtures.write_wav(folder / "a.wav", seconds=0.5)
    (folder / "._a.wav").write_bytes(b"\x00\x05\x16\x07")
    truncated = fixtures.write_wav(tmp_path / "t" / "cut.wav", seconds=1.0)
    truncated.write_bytes(truncated.read_bytes()[: 44 + 8000])
    listing = tmp_path / "list.csv"
    pd.DataFrame({"path": ["in", "t/cut.wav"]}).to_csv(listing, index=False)
    assert main(["predict", str(tiny_bundle), str(listing), "--out", str(tmp_path / "p.csv")]) == 0
    err = capsys.readouterr().err
    scored = pd.read_csv(tmp_path / "p.csv")
    assert sorted(Path(p).name for p in scored.path) == ["a.wav", "cut.wav"] and scored.error.isna().all()
    assert f"warning {tmp_path / 't' / 'cut.wav'}: header says 32000 bytes of audio, the file holds 8000" in err
    empty = tmp_path / "empty.csv"
    empty.write_text("path\n")
    assert main(["predict", str(tiny_bundle), str(empty)]) == 2
    assert f"{empty}: the list names no files" in capsys.readouterr().err


# --- export: destination, and each copied file verified ---------------------------------------

def test_export_into_a_file_or_below_one_is_an_error(tiny_runs, tmp_path, capsys):
    (tmp_path / "a-file").write_text("keep me")
    record = str(tiny_runs["records"][0])
    for target, message in ((tmp_path / "a-file", "exists and is not a folder"),
                            (tmp_path / "a-file" / "bundle", "cannot create the bundle folder")):
        assert main(["export", record, str(target)]) == 2
        err = capsys.readouterr().err
        assert f"error: {target}: {message}" in err and "Traceback" not in err
    assert (tmp_path / "a-file").read_text() == "keep me"


def test_export_verifies_the_weights_it_copies(tiny_runs, tmp_path, capsys):
    runs = tmp_path / "runs"
    import shutil

    shutil.copytree(tiny_runs["out"], runs)
    weights = next(runs.rglob("fold01-seed1.weights.safetensors"))
    weights.write_bytes(weights.read_bytes()[:1000])
    assert main(["export", str(next(runs.rglob("fold01-seed1.json"))), str(tmp_path / "b")]) == 2
    assert f"{weights}: not a readable weights file" in capsys.readouterr().err
    assert not (tmp_path / "b" / "card.json").exists()


# --- records of an older layout or hand-edited: skipped and counted, and run again -------------

def _drop(*keys):
    def edit(rec, stem):
        target = rec
        for k in keys[:-1]:
            target = target[k]
        del target[keys[-1]]
    return edit


def _rename_wa(rec, stem):
    rec["metrics"]["weighted_accuracy"] = rec["metrics"].pop("wa")


def _config_list(rec, stem):
    rec["config"] = list(rec["config"].items())


def _predictions_gone(rec, stem):
    stem.with_name(stem.name + ".predictions.csv").unlink()


def _predictions_outside(rec, stem):
    rec["predictions"] = "../../../../../../etc/passwd"


def _predictions_without_speaker(rec, stem):
    path = stem.with_name(stem.name + ".predictions.csv")
    pd.read_csv(path).drop(columns=["speaker"]).to_csv(path, index=False)


RECORD_CASES = [
    ("no-leaky", _drop("leaky"), "field 'leaky' is missing"),
    ("no-best-epoch", _drop("best_epoch"), "field 'best_epoch' is missing"),
    ("no-device", _drop("device"), "field 'device' is missing"),
    ("no-seconds-per-epoch", _drop("timing", "seconds_per_epoch"), "field 'timing.seconds_per_epoch' is missing"),
    ("wa-renamed", _rename_wa, "field 'metrics.wa' is missing"),
    ("config-a-list", _config_list, "field 'config' is a list, expected dict"),
    ("predictions-deleted", _predictions_gone, "predictions file fold01-seed1.predictions.csv cannot be read"),
    ("predictions-outside", _predictions_outside, "field 'predictions' must name a file beside the record"),
    ("predictions-no-speaker", _predictions_without_speaker, "lacks the column(s) ['speaker']"),
]


@pytest.mark.parametrize("edit,message", [c[1:] for c in RECORD_CASES], ids=[c[0] for c in RECORD_CASES])
def test_collect_skips_and_counts_records_of_another_layout(edit, message, tiny_runs, tmp_path, capsys):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(tiny_runs["out"], out)
    first = records_under(out)[0]
    rec = json.loads(first.read_text())
    edit(rec, first.with_suffix(""))
    first.write_text(json.dumps(rec))
    before = first.read_bytes()
    assert main(["collect", "--path", str(out / "results")]) == 0
    captured = capsys.readouterr()
    assert f"damaged record skipped: {first}: " in captured.err and message in captured.err, captured.err
    assert "1 record(s) skipped" in captured.err and "Traceback" not in captured.err
    assert "cnn_lstm" in captured.out  # the other fold is still in the table
    assert first.read_bytes() == before  # reading never replaces it


def test_sweep_runs_a_record_of_another_layout_again(tiny_runs, tmp_path, capsys):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(tiny_runs["out"], out)
    first = records_under(out)[0]
    rec = json.loads(first.read_text())
    del rec["leaky"]
    first.write_text(json.dumps(rec))
    assert _sweep(tiny_runs["csv"], out) == 0
    printed = capsys.readouterr().out
    assert "1 runs to do, 1 already recorded" in printed and "field 'leaky' is missing" in printed
    assert "leaky" in json.loads(first.read_text())


def test_collect_of_a_missing_folder_is_an_error(tmp_path, capsys):
    assert main(["collect", "--path", str(tmp_path / "nonexistent")]) == 2
    assert f"error: {tmp_path / 'nonexistent'}: no such folder of results records" in capsys.readouterr().err


# --- settings: names, sizes, Ray options -------------------------------------------------------

NAME_CASES = [
    ("name-long", "x" * 300), ("name-empty", ""), ("name-dot", "."), ("name-dotdot", ".."),
    ("name-newline", "a\nb"), ("name-tab", "a\tb"), ("name-slash", "a/b"),
]


@pytest.mark.parametrize("name", [c[1] for c in NAME_CASES], ids=[c[0] for c in NAME_CASES])
def test_result_names_are_a_safe_set(name, tmp_path, capsys):
    code = main(["sweep", "--experiment", "cnn_lstm", "--set", f"name={name}", f"output_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2 and "name must be 1-80 characters" in err and repr(name) in err
    assert records_under(tmp_path) == []


def test_huge_input_seconds_is_a_config_error(tmp_path, capsys):
    code = main(["sweep", "--experiment", "light_sernet", "--set", "input_seconds=1e7", f"output_dir={tmp_path}"])
    assert code == 2 and "input_seconds must be in (0, 3600]" in capsys.readouterr().err


@pytest.mark.parametrize("flag,value", [("--cpus-per-run", "nan"), ("--cpus-per-run", "inf"),
                                        ("--gpus-per-run", "nan"), ("--cpus-per-run", "0")])
def test_ray_options_must_be_finite(flag, value, tmp_path, capsys):
    code = main(["sweep", "--experiment", "cnn_lstm", "--backend", "ray", flag, value, "--set", f"output_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2 and f"{flag} must be a finite number" in err


def test_ray_requests_are_checked_against_the_cluster():
    from serlib.sweep import RayOptions, check_request

    nodes = [{"CPU": 2.0, "memory": 1e9}]
    check_request(RayOptions(cpus_per_run=2), nodes)
    with pytest.raises(ConfigError, match=r"--gpus-per-run 1 asks for more than any node .* \(largest: 0 GPU\)"):
        check_request(RayOptions(gpus_per_run=1), nodes)
    with pytest.raises(ConfigError, match=r"--cpus-per-run 64 asks for more .* \(largest: 2 CPU\)"):
        check_request(RayOptions(cpus_per_run=64), nodes)


@pytest.mark.parametrize("address,message", [("notahost", "--address must be 'auto' or HOST:PORT"),
                                             ("127.0.0.1:9", "--address 127.0.0.1:9: no Ray cluster reachable"),
                                             ("notahost.invalid:6379", "no Ray cluster reachable")])
def test_unreachable_ray_address_is_a_clear_error(address, message):
    from serlib.sweep import check_address

    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        check_address(address, timeout=2)


# --- corpora and caches ---------------------------------------------------------------------------

def test_undecodable_file_is_a_counted_skip_in_the_corpus(tmp_path, capsys):
    """bad_audio=skip (the default): an unreadable header is a counted skip while the
    corpus is read (as in feature extraction), in the network and the functionals paths;
    bad_audio=raise stops with the file's name."""
    root = tmp_path / "c"
    (root / "s2").mkdir(parents=True)
    (root / "s2" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    csv = write_csv_corpus(root, [("s2/broken.wav", "sad", "s2")])
    assert _run(csv, tmp_path / "out", "--fold", "2") == 0
    [rec] = records_under(tmp_path / "out")
    skipped = json.loads(rec.read_text())["manifest_skipped"]
    assert len(skipped) == 1 and skipped[0][0].endswith("broken.wav") and "unreadable audio header" in skipped[0][1]
    assert _run(csv, tmp_path / "out-f", "--fold", "2", experiment="functionals",
                sets=["feature_set=mfcc_stats"]) == 0
    assert len(records_under(tmp_path / "out-f")) == 1
    capsys.readouterr()
    assert _run(csv, tmp_path / "out-r", "--fold", "2", sets=["bad_audio=raise"]) == 2
    assert "broken.wav: unreadable audio header" in capsys.readouterr().err
    assert records_under(tmp_path / "out-r") == []


@pytest.mark.parametrize("content", ["[]", "null", '{"a": 3}', "\x00\x01"])
def test_audio_hash_cache_of_another_shape_is_rebuilt(content, csv_corpus, tmp_path, caplog):
    from serlib.cache import audio_hashes
    from serlib.corpora import load_corpus as load

    manifest = load("csv", csv_corpus)
    (tmp_path / "audio-hashes.json").write_text(content)
    hashes = audio_hashes(manifest, tmp_path)
    assert "audio-hashes.json: unreadable hash cache" in caplog.text
    assert hashes == audio_hashes(manifest, tmp_path / "fresh")
    assert isinstance(json.loads((tmp_path / "audio-hashes.json").read_text()), dict)


def test_functionals_with_a_one_utterance_class(tmp_path, capsys):
    csv = write_csv_corpus(tmp_path / "c")
    table = pd.read_csv(csv)
    table[~table.label.eq("angry") | table.path.str.endswith("s1_angry0.wav")].to_csv(csv, index=False)
    code = _run(csv, tmp_path / "out", "--fold", "2", experiment="functionals",
                sets=["feature_set=mfcc_stats", "classifier=svm_linear"])
    err = capsys.readouterr().err
    assert code == 2 and "class(es) ['angry'] have 1 training utterance" in err and "Traceback" not in err
    assert records_under(tmp_path / "out") == []


def test_baseline_when_every_fold_fails(csv_corpus, tmp_path, capsys, monkeypatch):
    from serlib import sweep as sweep_module
    from serlib.errors import SerlibError

    def fail(config, *a, **k):
        raise SerlibError(f"fold {config.fold}: made to fail")

    monkeypatch.setattr(sweep_module, "run_fold", fail)
    code = main(["baseline", "--corpus", "csv", "--root", str(csv_corpus), "--set", f"output_dir={tmp_path}"])
    captured = capsys.readouterr()
    assert code == 1 and "no fold finished: all 4 failed" in captured.err and "made to fail" in captured.out
    assert records_under(tmp_path) == []


# --- progress off a terminal, run locks ------------------------------------------------------------

def test_progress_off_a_terminal_prints_lines():
    import io

    from serlib.progress import bar

    stream = io.StringIO()
    for _ in bar(range(1000), desc="features", file=stream):
        pass
    text = stream.getvalue()
    assert "\r" not in text and 10 <= len(text.splitlines()) <= 12 and text.splitlines()[-1].startswith("features: 100%")
    quiet = io.StringIO()
    for _ in bar(range(100), desc="epoch 1", lines=False, file=quiet):  # an epoch's batches: the epochs' bar reports
        pass
    assert quiet.getvalue() == ""


def test_a_fold_locked_by_a_live_process_is_left_to_it(csv_corpus, tmp_path, capsys):
    """A second sweep on the same outputs skips the fold another live process trains; a
    lock whose process is gone is taken over."""
    out = tmp_path / "out"
    config = tiny_config(csv_corpus, out)
    from serlib.manifests import resolve_values
    from serlib.records import run_fingerprint, run_stem
    from serlib.train import RunBusy

    _, manifest = resolve_values("cnn_lstm", {**TINY, "corpus": "csv", "data_root": str(csv_corpus), "subset": None,
                                             "output_dir": str(out)})
    lock = run_stem(config, run_fingerprint(config, manifest)[0]).with_suffix(".lock")
    lock.parent.mkdir(parents=True)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        lock.write_text(f"{os.uname().nodename}:{sleeper.pid}")
        with pytest.raises(RunBusy, match=f"{lock.name}: fold 1 seed 1 is being trained by another process"):
            run_fold(config)
        assert main(["sweep", "--experiment", "cnn_lstm", "--corpus", "csv", "--root", str(csv_corpus), "--folds",
                     "1", "--set", *[f"{k}={v}" for k, v in TINY.items()], f"output_dir={out}"]) == 0
        assert "fold 1 seed 1: skipped" in capsys.readouterr().out and records_under(out) == []
    finally:
        sleeper.kill()
        sleeper.wait()
    rec = run_fold(config)  # the holder is gone: a stale lock
    assert Path(rec["path"]).is_file() and not lock.exists()


# --- through the program, as a user types it ------------------------------------------------------

@pytest.mark.slow
def test_issue22_cases_as_a_user_sees_them(tiny_runs, tmp_path):
    from serlib import bundle as bundle_module

    exported = bundle_module.export(tiny_runs["records"][0].parent, tmp_path / "b")
    wav = fixtures.write_wav(tmp_path / "x.wav", seconds=3.0)
    (tmp_path / "a-file").write_text("x")
    cases = [
        (["predict", exported, wav, "--window", "-1"], 2, "--window must be a number of seconds"),
        (["predict", exported, wav, "--hop", "0"], 2, "--hop must be a number of seconds"),
        (["predict", exported, wav, "--speaker-norm"], 2, "trained without per-speaker normalisation"),
        (["predict", exported, wav, "--out", tmp_path], 2, "--out: is a folder"),
        (["export", tiny_runs["records"][0], tmp_path / "a-file"], 2, "exists and is not a folder"),
        (["collect", "--path", tmp_path / "nonexistent"], 2, "no such folder of results records"),
        (["sweep", "--experiment", "cnn_lstm", "--set", "name=" + "x" * 300], 2, "name must be 1-80 characters"),
        (["sweep", "--experiment", "cnn_lstm", "--backend", "ray", "--cpus-per-run", "nan"], 2,
         "--cpus-per-run must be a finite number"),
        (["sweep", "--experiment", "cnn_lstm", "--backend", "ray", "--address", "notahost"], 2,
         "--address must be 'auto' or HOST:PORT, got 'notahost'"),
        (["sweep", "--experiment", "cnn_lstm", "--backend", "ray", "--address", "127.0.0.1:9"], 2,
         "--address 127.0.0.1:9: no Ray cluster reachable there"),
        (["run", "--experiment", "cnn_lstm", "--corpus", "csv", "--root", tiny_runs["csv"], "--classes",
          "neutral,happy", "--merge", "neutral=happy"], 2, "hold 1 of the classes"),
    ]
    env = {**os.environ, "SERLIB_OUTPUTS": str(tmp_path / "outputs")}
    for argv, code, message in cases:
        done = subprocess.run([sys.executable, "-m", "serlib", *map(str, argv)], capture_output=True, text=True,
                              cwd=ROOT, env=env, stdin=subprocess.DEVNULL, timeout=300)
        assert done.returncode == code, (argv, done.stderr[-2000:])
        assert message in done.stderr and "Traceback" not in done.stderr, (argv, done.stderr[-2000:])
    assert not (tmp_path / "outputs" / "results").exists()


@pytest.mark.slow
def test_a_ray_request_no_node_can_meet_fails_at_once(tmp_path):
    """``--gpus-per-run 1`` on a machine without a GPU: exit 2 naming both numbers, instead
    of a task that waits for ever."""
    pytest.importorskip("ray")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    csv = write_csv_corpus(tmp_path / "c")
    done = subprocess.run([sys.executable, "-m", "serlib", "sweep", "--experiment", "cnn_lstm", "--corpus", "csv",
                           "--root", str(csv), "--folds", "1", "--backend", "ray", "--gpus-per-run", "1", "--set",
                           *[f"{k}={v}" for k, v in TINY.items()], f"output_dir={tmp_path / 'out'}"],
                          capture_output=True, text=True, cwd=ROOT, stdin=subprocess.DEVNULL, timeout=300,
                          env={**os.environ, "SERLIB_OUTPUTS": str(tmp_path / "outputs"),
                               "RAY_USAGE_STATS_ENABLED": "0"})
    assert done.returncode == 2, done.stderr[-2000:]
    assert "--gpus-per-run 1 asks for more than any node of the Ray cluster has (largest: 0 GPU)" in done.stderr
    assert "Traceback" not in done.stderr and records_under(tmp_path / "out") == []


@pytest.mark.slow
@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGTERM"])
def test_killing_a_parallel_sweep_driver_stops_its_workers(signal_name, tmp_path):
    """SIGKILL or SIGTERM of a ``--jobs 2`` driver: its workers exit within seconds (they watch the
    driver) and leave whole checkpoints, from which the next sweep resumes as after a
    serial sweep's interruption (that resume is tested in test_sweep)."""
    import signal
    import time

    import psutil

    csv = write_csv_corpus(tmp_path / "c")
    argv = [sys.executable, "-m", "serlib", "sweep", "--experiment", "cnn_lstm", "--corpus", "csv", "--root", str(csv),
            "--folds", "1,2", "--jobs", "2", "--threads", "1", "--set",
            *[f"{k}={v}" for k, v in {**TINY, "epochs": "400"}.items()], f"output_dir={tmp_path / 'out'}"]
    env = {**os.environ, "SERLIB_OUTPUTS": str(tmp_path / "outputs")}
    driver = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = []
    try:
        deadline = time.monotonic() + 240
        checkpoints = []
        while time.monotonic() < deadline and len(checkpoints) < 2:  # both workers are training
            time.sleep(1)
            checkpoints = list((tmp_path / "out").rglob("checkpoint.pt"))
        assert len(checkpoints) == 2, "the workers never started training"
        workers = [p for p in psutil.Process(driver.pid).children(recursive=True) if "python" in p.name().lower()]
        assert workers
        driver.send_signal(getattr(signal, signal_name))
        driver.wait()
        gone, alive = psutil.wait_procs(workers, timeout=30)
        assert not alive, [p.pid for p in alive]
    finally:
        if driver.poll() is None:
            driver.kill()
        for worker in workers:  # never leave a worker behind, even when the test fails
            if worker.is_running():
                worker.kill()
    assert records_under(tmp_path / "out") == []
    for checkpoint in checkpoints:  # what the next sweep resumes from is whole
        assert torch.load(checkpoint, weights_only=True)["epoch"] >= 1


def test_a_lock_of_another_host_is_respected_unless_it_is_our_own_retry(tmp_path):
    from serlib.atomic import Locked, RunLock

    lock = tmp_path / "fold01-seed1.lock"
    lock.write_text("node-b:4242:sweep1")  # a Ray task of sweep1 that died on another node
    for owner in (None, "sweep2"):
        with pytest.raises(Locked, match="held by node-b:4242:sweep1"):
            RunLock(lock, owner).__enter__()
    with RunLock(lock, "sweep1"):  # sweep1's retry of that task
        assert lock.read_text().endswith(":sweep1") and not lock.read_text().startswith("node-b")
    assert not lock.exists()
