"""Issue 30, the fourth bad-input round: any sample rate, reproducible pretrained runs, run
locks and outputs that survive a full disk, only regular files of our own written, broken
checkpoint folders, and the low-severity cases. Each test failed on the code before."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from serlib import atomic, audio, records, upstream
from serlib.__main__ import main
from serlib.errors import AudioError, DataError
from serlib.upstream import UpstreamError
from tests import fixtures
from tests.fixtures import TINY, records_under, tiny_config, write_csv_corpus
from tests.test_bad_inputs import tiny_bundle, tiny_runs  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[1]
FULL = OSError(errno.ENOSPC, "No space left on device")


def write_rate(path: Path, rate: int, seconds: float = 0.5) -> Path:
    """A 220 Hz tone of ``seconds`` (at 16 kHz's sample count) under a header claiming ``rate``."""
    n = int(16000 * seconds) if rate < 4000 or rate > 768_000 else int(rate * seconds)
    sf.write(path, 0.1 * np.sin(2 * np.pi * 220 * np.arange(n) / max(rate, 1)) + 0.05, rate, subtype="PCM_16")
    return path


# === 1. sample rates ========================================================================

@pytest.mark.parametrize("rate", [1, 3999, 2**31 - 1])
def test_a_header_rate_that_is_no_audio_rate_is_an_audio_error(rate, tmp_path):
    path = write_rate(tmp_path / f"r{rate}.wav", rate)
    with pytest.raises(AudioError, match=rf"{path}: the header's sample rate {rate} Hz is not an audio rate"):
        audio.load(path, 16000)


@pytest.mark.parametrize("rate", [16001, 24414, 44056, 8000, 768000])
def test_odd_real_rates_resample_to_the_right_length(rate, tmp_path):
    path = write_rate(tmp_path / f"r{rate}.wav", rate, seconds=1.0)
    wave = audio.load(path, 16000)
    assert abs(wave.numel() - 16000) <= 1 and wave.dtype == torch.float32


def test_resampling_keeps_a_tone_and_its_level():
    t = torch.arange(44056) / 44056
    out = audio.resample(0.5 * torch.sin(2 * torch.pi * 440 * t), 44056, 16000)
    spectrum = torch.fft.rfft(out).abs()
    assert abs(int(spectrum.argmax()) - 440) <= 1 and abs(float(out.abs().max()) - 0.5) < 0.01


def test_predict_skips_a_1_hz_file_and_scores_odd_rates(tiny_bundle, tmp_path, capsys):  # noqa: F811
    """The 1 Hz header is a counted failure; 44 056 Hz and 16 001 Hz files are scored; the
    windows column stays whole numbers although a row failed."""
    files = [write_rate(tmp_path / "one.wav", 1), write_rate(tmp_path / "ntsc.wav", 44056),
             write_rate(tmp_path / "odd.wav", 16001)]
    code = main(["predict", str(tiny_bundle), *map(str, files), "--out", str(tmp_path / "p.csv")])
    err = capsys.readouterr().err
    assert code == 1 and f"failed {files[0]}: the header's sample rate 1 Hz is not an audio rate" in err
    assert "Traceback" not in err
    table = pd.read_csv(tmp_path / "p.csv", dtype=str, keep_default_na=False)
    assert table.error.tolist() == [table.error[0], "", ""] and table.error[0]
    assert table.windows.tolist() == ["", "1", "1"]  # integers, not 1.0
    assert len(pd.read_csv(tmp_path / "p.windows.csv")) == 2


@pytest.mark.slow
def test_predict_of_odd_rates_through_the_program(tiny_runs, tmp_path):  # noqa: F811
    bundle_dir = tmp_path / "bundle"
    assert main(["export", str(tiny_runs["records"][0].parent), str(bundle_dir)]) == 0
    files = [write_rate(tmp_path / "one.wav", 1), write_rate(tmp_path / "huge.wav", 2**31 - 1),
             write_rate(tmp_path / "ntsc.wav", 44056, seconds=2.6)]
    done = subprocess.run([sys.executable, "-m", "serlib", "predict", str(bundle_dir), *map(str, files),
                           "--out", str(tmp_path / "p.csv")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "2147483647 Hz is not an audio rate" in done.stderr and "1 file(s) scored" in done.stdout
    assert pd.read_csv(tmp_path / "p.csv").prediction.notna().tolist() == [False, False, True]


# === 2. pretrained runs: the same with and without the state cache =========================

def test_a_pretrained_run_is_bit_identical_with_and_without_its_state_cache(tmp_path, monkeypatch):
    from serlib.experiments import make_config
    from serlib.train import run_fold

    monkeypatch.setenv("SERLIB_OUTPUTS", str(tmp_path / "outputs"))
    torch.set_num_threads(1)
    folder = upstream.write_random_encoder(tmp_path / "ckpt", "wavlm")
    csv = write_csv_corpus(tmp_path / "c")
    values = {"epochs": "2", "batch_size": "8", "progress": "false", "feature_workers": "1", "patience": "none",
              "corpus": "csv", "data_root": str(csv), "subset": None, "upstream.path": str(folder)}
    predictions = []
    for run, out in enumerate(("a", "b", "c")):
        if run != 1:  # runs a and c extract the states, b reads a's cache
            shutil.rmtree(tmp_path / "outputs" / "cache", ignore_errors=True)
        rec = run_fold(make_config("pretrained", {**values, "output_dir": str(tmp_path / out)}))
        predictions.append(pd.read_csv(rec["predictions_path"]))
    for other in predictions[1:]:
        pd.testing.assert_frame_equal(predictions[0], other)


# === 3. run locks ===========================================================================

@pytest.mark.parametrize("content", [b"", b"\xff\xfe\x00garbage", b"not a lock"], ids=["empty", "non-utf8", "garbled"])
def test_an_empty_or_garbled_lock_is_stale(content, tmp_path):
    lock = tmp_path / "fold01-seed1.lock"
    lock.write_bytes(content)
    with atomic.RunLock(lock):
        assert lock.read_text() == f"{os.uname().nodename}:{os.getpid()}"
    assert not lock.exists()


def test_a_full_disk_leaves_no_empty_lock(tmp_path, monkeypatch):
    real = os.fdopen

    class Full:
        def __init__(self, fd, *a, **k):
            self.f = real(fd, *a, **k)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, text):
            raise FULL

    monkeypatch.setattr(atomic.os, "fdopen", Full)
    lock = tmp_path / "fold01-seed1.lock"
    with pytest.raises(DataError, match=r"fold01-seed1.lock: cannot create the run's lock file \(No space left"):
        atomic.RunLock(lock).__enter__()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_fold_with_an_empty_lock_is_trained_through_the_program(tmp_path):
    csv = write_csv_corpus(tmp_path / "c")
    config = tiny_config(csv, tmp_path / "out")
    from serlib.manifests import run_manifest
    from serlib.planning import plan_run

    stem = records.run_stem(config, plan_run(config, run_manifest(config)).fingerprint)
    stem.parent.mkdir(parents=True)
    stem.with_suffix(".lock").write_bytes(b"")  # what a full disk left before
    done = subprocess.run([sys.executable, "-m", "serlib", "sweep", "--experiment", "cnn_lstm", "--corpus", "csv",
                           "--root", str(csv), "--folds", "1", "--threads", "1", "--set",
                           *[f"{k}={v}" for k, v in TINY.items()], f"output_dir={tmp_path / 'out'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "SERLIB_OUTPUTS": str(tmp_path / "outputs")})
    assert done.returncode == 0 and "1 done, 0 skipped" in done.stderr + done.stdout, done.stdout + done.stderr
    assert records_under(tmp_path / "out") and not stem.with_suffix(".lock").exists()


# === 4. only regular files of our own =======================================================

def _special(kind: str, path: Path) -> Path:
    if kind == "symlink":
        (path.parent / "target.csv").write_text("keep me\n")
        path.symlink_to(path.parent / "target.csv")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        if os.geteuid() != 0:
            pytest.skip("making a device node needs root")
        try:
            os.mknod(path, 0o666 | 0o020000, os.makedev(1, 3))  # a character device like /dev/null
        except PermissionError:
            pytest.skip("this container may not make device nodes")
    return path


@pytest.mark.parametrize("kind,message", [("symlink", "is a symbolic link"), ("fifo", "is a named pipe"),
                                          ("device", "is a device")])
def test_predict_out_refuses_what_is_not_a_regular_file(kind, message, tiny_bundle, tmp_path, capsys):  # noqa: F811
    wav = fixtures.write_wav(tmp_path / "x.wav", seconds=0.5)
    out = _special(kind, tmp_path / "p.csv")
    code = main(["predict", str(tiny_bundle), str(wav), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and f"{out}: --out: {message}; serlib writes only regular files" in err, err
    assert {"symlink": out.is_symlink, "fifo": out.is_fifo, "device": out.is_char_device}[kind]()
    if kind == "symlink":
        assert (tmp_path / "target.csv").read_text() == "keep me\n"


def test_atomic_write_never_replaces_a_link_or_a_pipe(tmp_path):
    for kind in ("symlink", "fifo"):
        path = _special(kind, tmp_path / f"{kind}.txt")
        with pytest.raises(DataError, match="serlib writes only regular files"):
            atomic.write_text(path, "x")
    assert (tmp_path / "symlink.txt").is_symlink() and (tmp_path / "fifo.txt").is_fifo()


# === 7. a full disk elsewhere ===============================================================

def _full_disk(monkeypatch, module, name):
    def fail(*a, **k):
        raise FULL

    monkeypatch.setattr(module, name, fail)


def test_predict_on_a_full_disk_is_an_error_and_writes_nothing(tiny_bundle, tmp_path, capsys, monkeypatch):  # noqa: F811
    wav = fixtures.write_wav(tmp_path / "x.wav", seconds=0.5)
    (tmp_path / "o").mkdir()
    _full_disk(monkeypatch, Path, "write_text")
    code = main(["predict", str(tiny_bundle), str(wav), "--out", str(tmp_path / "o" / "p.csv")])
    err = capsys.readouterr().err
    assert code == 2 and "p.windows.csv: cannot write (No space left on device)" in err and "Traceback" not in err
    assert list((tmp_path / "o").iterdir()) == []


def test_export_on_a_full_disk_leaves_no_bundle_folder(tiny_runs, tmp_path, capsys, monkeypatch):  # noqa: F811
    from serlib import bundle

    _full_disk(monkeypatch, bundle.shutil, "copyfile")
    code = main(["export", str(tiny_runs["records"][0].parent), str(tmp_path / "new" / "bundle")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write (No space left on device)" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_synthetic_generation_on_a_full_disk_is_an_error(tmp_path, monkeypatch):
    from serlib.corpora import synthetic

    def fail(*a, **k):
        raise sf.LibsndfileError(2, "System error")

    monkeypatch.setattr(synthetic.sf, "write", fail)
    with pytest.raises(DataError, match="cannot write the synthetic corpus"):
        synthetic.ensure(synthetic.SyntheticConfig(utterances_per_session=8), tmp_path)
    assert list(tmp_path.iterdir()) == []  # no half corpus


# === 5, 6, 8. checkpoint folders ============================================================

@pytest.fixture(scope="module")
def encoders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("encoders")
    return {kind: upstream.write_random_encoder(root / kind, kind) for kind in ("wavlm", "wav2vec2", "whisper")}


def _edit_json(name, edit):
    def damage(d: Path, encoders):
        (d / name).write_text(json.dumps(edit(json.loads((d / name).read_text()))))
    return damage


def _weights_of(kind):
    def damage(d: Path, encoders):
        shutil.copy(encoders[kind] / "model.safetensors", d / "model.safetensors")
    return damage


def _truncate(d: Path, encoders):
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])


def _pickle(d: Path, encoders):
    class Code:
        def __reduce__(self):
            return (print, ("pickled code ran",))

    (d / "model.safetensors").unlink()
    torch.save({"x": Code()}, d / "pytorch_model.bin")


def _index(weight_map):
    def damage(d: Path, encoders):
        (d / "model.safetensors").rename(d / "model-00001-of-00001.safetensors")
        (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return damage


CHECKPOINT_CASES = [
    # (id, kind of the folder, damage, expected text)
    ("wavlm-config-wav2vec2-weights", "wavlm", _weights_of("wav2vec2"), "7 weights the config needs are missing"),
    ("wav2vec2-config-wavlm-weights", "wav2vec2", _weights_of("wavlm"), "7 weights are not in the config's model"),
    ("wavlm-config-whisper-weights", "wavlm", _weights_of("whisper"), "weights the config needs are missing"),
    ("4-layers-weights-for-2", "wavlm", _edit_json("config.json", lambda c: {**c, "num_hidden_layers": 4}),
     "weights the config needs are missing (encoder.layers.2"),
    ("truncated-safetensors", "wavlm", _truncate, "SafetensorError"),
    ("hidden-size-changed", "wavlm", _edit_json("config.json", lambda c: {**c, "hidden_size": 64}),
     "the weights have other shapes than config.json describes"),
    ("no-num-hidden-layers", "wavlm",
     _edit_json("config.json", lambda c: {k: v for k, v in c.items() if k != "num_hidden_layers"}),
     "config.json: num_hidden_layers must be a positive integer, got None (missing)"),
    ("config-list", "wavlm", _edit_json("config.json", lambda c: [c]), "config.json: expected a JSON object"),
    ("preprocessor-list", "wavlm", _edit_json("preprocessor_config.json", lambda c: [c]),
     "preprocessor_config.json: expected a JSON object"),
    ("dunder-class", "wavlm", _edit_json("preprocessor_config.json", lambda c: {**c, "__class__": "x"}),
     "preprocessor_config.json: key(s) ['__class__'] are not settings"),
    ("pickle-bin", "wavlm", _pickle, "pytorch_model.bin holds pickled Python objects besides tensors: refused"),
    ("weight-map-list", "wavlm", _index(["model-00001-of-00001.safetensors"]), "weight_map must be a non-empty object"),
    ("shard-etc-passwd", "wavlm", _index({"a": "/etc/passwd"}), "shard file names must be files of the checkpoint"),
    ("shard-parent", "wavlm", _index({"a": "../wavlm/model.safetensors"}), "shard file names must be files"),
]


@pytest.mark.parametrize("kind,damage,message", [c[1:] for c in CHECKPOINT_CASES], ids=[c[0] for c in CHECKPOINT_CASES])
def test_broken_checkpoint_folders_are_clear_errors(kind, damage, message, encoders, tmp_path, capsys):
    folder = shutil.copytree(encoders[kind], tmp_path / "ckpt")
    damage(folder, encoders)
    with pytest.raises(UpstreamError) as e:
        upstream.load(folder)
    assert message in str(e.value) and str(folder) in str(e.value)
    assert "pickled code ran" not in capsys.readouterr().out


def test_a_shard_outside_the_folder_is_refused_before_it_is_read(encoders, tmp_path, monkeypatch):
    folder = shutil.copytree(encoders["wavlm"], tmp_path / "ckpt")
    _index({"a": "/etc/passwd"})(folder, encoders)
    read = []
    monkeypatch.setattr("serlib.cache.file_hash", lambda p: read.append(p) or "x")
    with pytest.raises(UpstreamError, match="shard file names"):
        upstream.describe(folder)
    assert read == []


def test_replaced_weights_of_the_same_size_and_time_get_a_new_hash(encoders, tmp_path):
    folder = shutil.copytree(encoders["wavlm"], tmp_path / "ckpt")
    weights = folder / "model.safetensors"
    before = upstream.describe(folder, cache_dir=tmp_path / "cache").hash
    st = weights.stat()
    other = tmp_path / "other.safetensors"
    upstream.write_random_encoder(tmp_path / "seed7", "wavlm", seed=7)
    shutil.copy(tmp_path / "seed7" / "model.safetensors", other)
    assert other.stat().st_size == st.st_size
    os.replace(other, weights)  # same size; the modification time set back below
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert weights.stat().st_mtime_ns == st.st_mtime_ns
    assert upstream.describe(folder, cache_dir=tmp_path / "cache").hash != before


@pytest.mark.slow
def test_mismatched_weights_through_the_program(encoders, tmp_path):
    folder = shutil.copytree(encoders["wavlm"], tmp_path / "ckpt")
    _weights_of("wav2vec2")(folder, encoders)
    csv = write_csv_corpus(tmp_path / "c")
    done = subprocess.run([sys.executable, "-m", "serlib", "run", "--experiment", "pretrained", "--corpus", "csv",
                           "--root", str(csv), "--threads", "1", "--set", "epochs=1", "progress=false",
                           f"upstream.path={folder}", f"output_dir={tmp_path / 'out'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "SERLIB_OUTPUTS": str(tmp_path / "outputs")})
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert f"error: {folder}: the weights do not match config.json: 7 weights the config needs are missing" \
        in done.stderr
    assert records_under(tmp_path / "out") == []


# === low: outputs, interrupts, settings =====================================================

def test_serlib_outputs_naming_a_file_is_an_error(tmp_path, capsys, monkeypatch):
    (tmp_path / "f").write_text("x")
    monkeypatch.setenv("SERLIB_OUTPUTS", str(tmp_path / "f"))
    assert main(["collect"]) == 2
    assert f"error: {tmp_path / 'f'}: SERLIB_OUTPUTS names a file, not a folder" in capsys.readouterr().err


def test_a_read_only_outputs_folder_in_run_is_an_error(tmp_path, capsys, monkeypatch):
    csv = write_csv_corpus(tmp_path / "c")
    out = tmp_path / "out"
    real = Path.mkdir

    def read_only(self, *a, **k):
        if str(self).startswith(str(out)):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", read_only)
    code = main(["run", "--experiment", "cnn_lstm", "--corpus", "csv", "--root", str(csv), "--threads", "1",
                 "--set", *[f"{k}={v}" for k, v in TINY.items()], f"output_dir={out}"])
    err = capsys.readouterr().err
    assert code == 2 and "Read-only file system" in err and str(out) in err and "Traceback" not in err


def test_ctrl_c_in_predict_exits_130_without_a_traceback(tiny_bundle, tmp_path, capsys, monkeypatch):  # noqa: F811
    from serlib import bundle

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(bundle.Bundle, "predict", interrupted)
    wav = fixtures.write_wav(tmp_path / "x.wav", seconds=0.5)
    assert main(["predict", str(tiny_bundle), str(wav), "--out", str(tmp_path / "p.csv")]) == 130
    err = capsys.readouterr().err
    assert "interrupted: predict stopped (Ctrl-C)" in err and "Traceback" not in err
    assert not (tmp_path / "p.csv").exists()


def _folds_file(csv: Path, path: Path) -> Path:
    ids = [Path(p).stem for p in pd.read_csv(csv).path]
    speakers = pd.read_csv(csv).speaker
    roles = ["test" if s == "s1" else "val" if s == "s2" else "train" for s in speakers]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"utt_id": ids, "fold": 1, "role": roles}).to_csv(path, index=False)
    return path


def test_a_folds_file_with_a_long_path_trains(tmp_path):
    from serlib.train import run_fold

    csv = write_csv_corpus(tmp_path / "c")
    deep = tmp_path.joinpath(*["d" * 60] * 5) / "official.csv"  # a path of 300+ characters
    rec = run_fold(tiny_config(csv, tmp_path / "out", protocol=f"folds_file:{_folds_file(csv, deep)}"))
    assert Path(rec["path"]).is_file() and "folds_file-official.csv" in rec["path"]


def test_one_folds_file_by_two_paths_is_one_fingerprint(tmp_path, monkeypatch):
    from serlib.manifests import run_manifest

    csv = write_csv_corpus(tmp_path / "c")
    _folds_file(csv, tmp_path / "f" / "official.csv")
    monkeypatch.chdir(tmp_path)
    prints = set()
    for spelling in (tmp_path / "f" / "official.csv", "f/official.csv", "f/../f/official.csv"):
        config = tiny_config(csv, tmp_path / "out", protocol=f"folds_file:{spelling}")
        prints.add((records.run_fingerprint(config, run_manifest(config))[0],
                    records.run_stem(config, "0" * 64).parent.parent.name))
    assert len(prints) == 1


def test_a_fold_number_of_1e30_is_refused_plainly(tmp_path):
    from serlib.protocols import read_folds_file

    path = tmp_path / "f.csv"
    path.write_text("speaker,fold,role\na,1e30,test\nb,1,train\n")
    with pytest.raises(DataError, match=r"row 1: fold '1e30' is not a whole number from 1 to 100000") as e:
        read_folds_file(path)
    assert "-9223372036854775808" not in str(e.value)


SET_CASES = [
    ("key-twice", ["epochs=2", "epochs=3"], "--set gives epochs twice ('2' and '3'); give it once"),
    ("huge-literal", ["lr_conv=" + "[" * 50_000], "--set lr_conv: the value has 50,000 characters (at most 10,000)"),
    ("accented-name", ["name=émotion"], "name must be 1-80 characters of ASCII letters (A-Z, a-z)"),
]


@pytest.mark.parametrize("items,message", [c[1:] for c in SET_CASES], ids=[c[0] for c in SET_CASES])
def test_bad_set_items(items, message, tmp_path, capsys):
    code = main(["sweep", "--experiment", "cnn_lstm", "--set", *items, f"output_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and message in err and "Traceback" not in err
    assert len(err) < 2000  # the 50 000 characters are not echoed back


def test_the_docs_say_which_letters_a_name_may_hold():
    assert "ASCII letters" in (ROOT / "docs" / "records.md").read_text()


def test_predict_windows_stay_integers_in_python(tiny_bundle, tmp_path):  # noqa: F811
    from serlib.bundle import load_model

    good = fixtures.write_wav(tmp_path / "x.wav", seconds=0.5)
    (tmp_path / "bad.wav").write_bytes(b"RIFF....WAVEnope")
    out = load_model(tiny_bundle).predict([str(good), str(tmp_path / "bad.wav")])
    assert str(out.files["windows"].dtype) == "Int64" and out.files["windows"][0] == 1


# === the CLI's thread choice =================================================================

def test_the_cli_chooses_the_free_cores_and_says_so(monkeypatch, capsys):
    from serlib import __main__ as cli
    from serlib import threads

    monkeypatch.delenv("SERLIB_THREADS", raising=False)
    monkeypatch.setattr(threads, "free_cores", lambda: 1)
    before = torch.get_num_threads()
    try:
        assert cli._choose_threads(None) == 1 and torch.get_num_threads() == 1
        assert "torch threads: 1 (the free cores" in capsys.readouterr().out
        assert cli._choose_threads(3) == 3 and "torch threads: 3 (asked for" in capsys.readouterr().out
        monkeypatch.setattr(threads, "free_cores", lambda: 4)
        assert cli._choose_threads(None, jobs=2) == 2 and "2 per run (2 parallel runs" in capsys.readouterr().out
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_run_prints_its_thread_choice_through_the_program(tmp_path):
    csv = write_csv_corpus(tmp_path / "c")
    env = {k: v for k, v in os.environ.items() if k != "SERLIB_THREADS"}
    done = subprocess.run([sys.executable, "-m", "serlib", "run", "--experiment", "cnn_lstm", "--corpus", "csv",
                           "--root", str(csv), "--set", *[f"{k}={v}" for k, v in TINY.items()],
                           f"output_dir={tmp_path / 'out'}"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**env, "SERLIB_OUTPUTS": str(tmp_path / "outputs")})
    assert done.returncode == 0, done.stderr
    assert "torch threads: " in done.stdout and "(the free cores: " in done.stdout
    threads = int(done.stdout.split("torch threads: ")[1].split()[0])
    rec = json.loads(records_under(tmp_path / "out")[0].read_text())
    assert rec["torch_threads"] == threads



@pytest.mark.slow
def test_issue30_cases_as_a_user_sees_them(tiny_runs, tmp_path):  # noqa: F811
    from serlib import bundle as bundle_module

    exported = bundle_module.export(tiny_runs["records"][0].parent, tmp_path / "b")
    wav = fixtures.write_wav(tmp_path / "x.wav", seconds=0.5)
    link, pipe = _special("symlink", tmp_path / "link.csv"), _special("fifo", tmp_path / "pipe.csv")
    (tmp_path / "a-file").write_text("x")
    folds = tmp_path / "folds.csv"
    folds.write_text("speaker,fold,role\ns1,1e30,test\ns2,1,train\n")
    csv = ["--corpus", "csv", "--root", tiny_runs["csv"]]
    cases = [
        (["predict", exported, wav, "--out", link], {}, "--out: is a symbolic link"),
        (["predict", exported, wav, "--out", pipe], {}, "--out: is a named pipe"),
        (["collect"], {"SERLIB_OUTPUTS": str(tmp_path / "a-file")}, "SERLIB_OUTPUTS names a file"),
        (["sweep", "--experiment", "cnn_lstm", "--set", "epochs=2", "epochs=3"], {}, "--set gives epochs twice"),
        (["sweep", "--experiment", "cnn_lstm", "--set", "lr_conv=" + "[" * 50_000], {}, "the value has 50,000"),
        (["sweep", "--experiment", "cnn_lstm", "--set", "name=émotion"], {}, "ASCII letters"),
        (["sweep", "--experiment", "cnn_lstm", *csv, "--protocol", f"folds_file:{folds}"], {},
         "row 1: fold '1e30' is not a whole number from 1 to 100000"),
    ]
    for argv, extra_env, message in cases:
        env = {**os.environ, "SERLIB_OUTPUTS": str(tmp_path / "outputs"), **extra_env}
        done = subprocess.run([sys.executable, "-m", "serlib", *map(str, argv)], capture_output=True, text=True,
                              cwd=ROOT, env=env, stdin=subprocess.DEVNULL, timeout=300)
        assert done.returncode == 2, (argv[:3], done.stderr[-2000:])
        assert message in done.stderr and "Traceback" not in done.stderr, (argv[:3], done.stderr[-2000:])
    assert link.is_symlink() and pipe.is_fifo() and (tmp_path / "target.csv").read_text() == "keep me\n"
    assert not (tmp_path / "outputs" / "results").exists()
