"""Start-up and throughput of ``predict`` with PyTorch fp32, ONNX fp32 and ONNX int8, on
the same bundle (exported with ``--onnx --int8``) and the same files, in one run.

    python benchmarks/onnx_predict.py BUNDLE FOLDER [--fold 1] [--repeats 3]

Each row times whole processes of ``python -m serlib predict BUNDLE … --runtime R --out
CSV`` (the program as a user runs it; medians of ``--repeats``): *start-up* is one file
(the folder's first), *folder* is every file of the folder; throughput is the folder's
seconds of audio over (folder − start-up), i.e. × real time once started. Ratios are
against PyTorch. The labels of the runtimes are compared on the folder's files.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

RUNTIMES = ("torch", "onnx", "onnx-int8")


def timed(args: list[str], repeats: int) -> float:
    """Median wall-clock seconds of ``python -m serlib ARGS`` (a failure stops the run)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "serlib", *args], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"error: {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle")
    parser.add_argument("folder")
    parser.add_argument("--fold", default=None, help="one fold's model (default: every fold, averaged)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    files = sorted(p for p in Path(args.folder).rglob("*") if p.suffix.lower() in (".wav", ".flac"))
    if not files:
        raise SystemExit(f"error: {args.folder}: no audio files")
    fold = ["--fold", args.fold] if args.fold else []
    rows, labels = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for runtime in RUNTIMES:
            one = timed(["predict", args.bundle, str(files[0]), "--runtime", runtime, *fold,
                         "--out", os.path.join(tmp, "one.csv")], args.repeats)
            out = os.path.join(tmp, f"{runtime}.csv")
            whole = timed(["predict", args.bundle, args.folder, "--runtime", runtime, *fold, "--out", out],
                          args.repeats)
            table = pd.read_csv(out)
            audio = float(table.seconds.sum())
            labels[runtime] = table.prediction.tolist()
            rows.append({"runtime": runtime, "start-up s": one, "folder s": whole,
                         "× real time": audio / max(whole - one, 1e-9)})
    t = pd.DataFrame(rows)
    t["start-up ratio"] = t["start-up s"] / t["start-up s"][0]
    t["throughput ratio"] = t["× real time"] / t["× real time"][0]
    print(f"{len(files)} files, {audio:.1f} s of audio; {os.cpu_count()} CPUs; medians of {args.repeats} processes")
    print(t.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    for runtime in RUNTIMES[1:]:
        same = sum(a == b for a, b in zip(labels[runtime], labels["torch"]))
        print(f"{runtime}: same label as torch for {same} of {len(files)} files")


if __name__ == "__main__":
    main()
