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
    ("model-key", [], ["model.n_convs=2"], "unknown config key(s) for CNNLSTMConfig: ['model.n_convs']"),
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
    ("unknown-key", [], ["lstm_hiden=3"], "unknown config key(s) for CNNLSTMExperimentConfig: ['lstm_hiden']"),
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
