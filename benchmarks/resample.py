"""Resampling quality and cost: soxr (serlib.audio.resample) vs torchaudio's windowed sinc
(the resampler serlib used before), on real speech.

    python benchmarks/resample.py [--root ../shared/data/emodb-2s] [--files 100]

For each file (EMO-DB-2s: 22.05 kHz), both resamplers are compared with an ideal
band-limited resampling (an FFT brick wall, ``scipy.signal.resample``):

* 22.05 -> 16 kHz: the file itself;
* 48 -> 16 kHz: the file brought to 48 kHz by the FFT first (exact: its content is below
  11 kHz), so the reference is the same as above.

Prints the median SNR (dB) of each output against the reference over the whole band and
below 7 kHz (where both filters pass the signal; above it they differ by their transition
bands), the median milliseconds per file and the cost of one odd rate (44 056 -> 16 kHz).
The first and last 50 ms are left out (the FFT reference wraps around). No thresholds.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import scipy.signal as sps
import soundfile as sf
import torch
import torchaudio

from serlib.audio import resample as soxr_resample

EDGE = 0.05


def ideal(x: np.ndarray, orig: int, new: int) -> np.ndarray:
    return sps.resample(x, int(round(len(x) * new / orig))).astype(np.float32)


def lowpass(x: np.ndarray, rate: int, cutoff: float) -> np.ndarray:
    spec = np.fft.rfft(x)
    spec[np.fft.rfftfreq(len(x), 1 / rate) > cutoff] = 0
    return np.fft.irfft(spec, len(x))


def snr(out: np.ndarray, ref: np.ndarray, rate: int, cutoff: float | None = None) -> float:
    n = min(len(out), len(ref))
    out, ref = out[:n].astype(np.float64), ref[:n].astype(np.float64)
    if cutoff:
        out, ref = lowpass(out, rate, cutoff), lowpass(ref, rate, cutoff)
    edge = int(EDGE * rate)
    out, ref = out[edge:n - edge], ref[edge:n - edge]
    return float(10 * np.log10(np.sum(ref ** 2) / max(np.sum((out - ref) ** 2), 1e-30)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="../shared/data/emodb-2s")
    parser.add_argument("--files", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    files = sorted(Path(args.root).rglob("*.wav"))[:args.files]
    rows, kernels = {}, {}  # torchaudio's kernel built once per pair, as serlib cached it
    for path in files:
        x, rate = sf.read(str(path), dtype="float32")
        ref = ideal(x, rate, 16000)
        for pair, source, orig in (("22.05->16", x, rate), ("48->16", ideal(x, rate, 48000), 48000)):
            for name in ("torchaudio", "soxr"):
                start = time.perf_counter()
                if name == "soxr":
                    out = soxr_resample(torch.from_numpy(source), orig, 16000).numpy()
                else:
                    if orig not in kernels:
                        kernels[orig] = torchaudio.transforms.Resample(orig, 16000)
                    out = kernels[orig](torch.from_numpy(source)).numpy()
                ms = 1000 * (time.perf_counter() - start)
                rows.setdefault((pair, name), []).append((snr(out, ref, 16000), snr(out, ref, 16000, 7000), ms))
    print(f"{len(files)} files from {args.root}; SNR against an ideal (FFT) resampling, median over files")
    print(f"{'pair':10} {'resampler':11} {'SNR dB':>8} {'<7 kHz':>8} {'ms/file':>8}")
    for (pair, name), values in rows.items():
        full, low, ms = np.median(np.array(values), axis=0)
        print(f"{pair:10} {name:11} {full:8.1f} {low:8.1f} {ms:8.2f}")
    wave = torch.from_numpy(sf.read(str(files[0]), dtype="float32")[0])
    odd = soxr_resample(wave, 22050, 44056)
    start = time.perf_counter()
    soxr_resample(odd, 44056, 16000)
    print(f"soxr 44056 -> 16000 Hz, {odd.numel() / 44056:.1f} s of audio: {1000 * (time.perf_counter() - start):.1f} ms")


if __name__ == "__main__":
    main()
