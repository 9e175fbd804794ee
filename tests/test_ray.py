"""The Ray backend through the real program, on a local Ray instance bound to loopback:
the same records as the local backend, and a killed worker's task is retried."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from serlib import results
from serlib.records import read_record
from tests.fixtures import TINY, write_csv_corpus

pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # Ray and subprocesses of the program

ROOT = Path(__file__).resolve().parents[1]
SETS = [f"{k}={v}" for k, v in TINY.items()]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_csv_corpus(tmp_path_factory.mktemp("csv"))


def command(corpus: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "serlib", "sweep", "--experiment", "cnn_lstm", "--corpus", "csv", "--root",
            str(corpus), "--folds", "1,2,3", *extra, "--set", *SETS, f"output_dir={out}"]


def env(tmp_path: Path) -> dict:
    return {**os.environ, "SERLIB_OUTPUTS": str(tmp_path / "outputs"), "RAY_USAGE_STATS_ENABLED": "0"}


def test_ray_records_match_the_local_backend(corpus, tmp_path):
    local = subprocess.run(command(corpus, tmp_path / "local", "--threads", "1"), capture_output=True, text=True,
                           cwd=ROOT, env=env(tmp_path), stdin=subprocess.DEVNULL, timeout=300)
    assert local.returncode == 0, local.stderr[-2000:]
    ray = subprocess.run(command(corpus, tmp_path / "ray", "--backend", "ray", "--cpus-per-run", "1"),
                         capture_output=True, text=True, cwd=ROOT, env=env(tmp_path), stdin=subprocess.DEVNULL,
                         timeout=300)
    assert ray.returncode == 0, ray.stderr[-3000:]
    assert "3 done, 0 skipped, 0 failed" in ray.stdout and "'node:127.0.0.1'" in ray.stdout
    a, b = (results.collect(tmp_path / d / "results").sort_values("fold") for d in ("local", "ray"))
    assert a.fingerprint.tolist() == b.fingerprint.tolist()
    assert a.wa.tolist() == b.wa.tolist() and a.ua.tolist() == b.ua.tolist()


def test_a_killed_worker_is_retried(corpus, tmp_path):
    out = tmp_path / "ray"
    extra = ["--backend", "ray", "--max-retries", "2"]
    argv = [a for a in command(corpus, out, *extra) if not a.startswith("epochs=")]  # each --set key once
    proc = subprocess.Popen(argv + ["epochs=4"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env(tmp_path),
                            stdin=subprocess.DEVNULL)
    running, killed, deadline = out / "sweeps" / "running", None, time.time() + 240
    while killed is None and time.time() < deadline and proc.poll() is None:
        for pid_file in running.glob("*.pid") if running.is_dir() else []:
            try:
                pid = int(pid_file.read_text())
                os.kill(pid, signal.SIGKILL)
                killed = (pid_file.name, pid)
                break
            except (ValueError, ProcessLookupError, FileNotFoundError):
                continue
        time.sleep(0.05)
    stdout, stderr = proc.communicate(timeout=300)
    assert killed is not None, "no running task to kill"
    assert proc.returncode == 0, stderr[-3000:]
    assert "3 done, 0 skipped, 0 failed" in stdout
    records = sorted((out / "results").rglob("*.json"))
    assert len(records) == 3 and all(read_record(r) for r in records)  # none missing, none torn
    assert not list(out.rglob("*.tmp")) and not list(running.glob("*.pid"))
    assert sorted(results.collect(out / "results").fold) == [1, 2, 3]


def test_ray_missing_is_a_clear_error(corpus, tmp_path, monkeypatch, capsys):
    import importlib.util

    from serlib.__main__ import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    code = main(command(corpus, tmp_path / "o", "--backend", "ray")[3:])
    err = capsys.readouterr().err
    assert code == 2 and "--backend ray needs Ray: pip install -e '.[ray]'" in err
    assert not (tmp_path / "o" / "results").exists()
