"""Feature extraction speed: serlib's batched front ends vs a per-file librosa loop.

    python benchmarks/features.py [--corpus emodb --root ../shared/data/emodb-2s]

Times, in one process and on the same files: (1) a plain per-file loop with librosa
(what a user would write: load + resample + STFT/mel/MFCC), (2) serlib's batched
extraction with threaded decoding (`serlib.cache.extract`, no cache), and (3) the cached
re-run. Prints seconds and ratios against the librosa loop; no thresholds.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import librosa
import numpy as np
import torch

from serlib.cache import extract
from serlib.corpora import prepare_manifest
from serlib.experiments import feature_presets


def librosa_cnn_lstm(path: str) -> np.ndarray:
    y, _ = librosa.load(path, sr=16000)
    spec = np.abs(librosa.stft(y, n_fft=1024, hop_length=512, window="hamming", pad_mode="reflect"))
    return np.log(spec[:256] + 1e-6)


def librosa_light_sernet(path: str) -> np.ndarray:
    y, _ = librosa.load(path, sr=16000)
    y = np.clip(y / max(np.quantile(np.abs(y), 0.999), 1e-8), -1, 1)
    spec = np.abs(librosa.stft(y, n_fft=1024, hop_length=256, window="hann", center=False))
    mel = librosa.feature.melspectrogram(S=spec, sr=16000, n_mels=128, fmin=80, fmax=7600, htk=True, norm=None)
    return np.clip(librosa.feature.mfcc(S=np.log(mel + 1e-6), n_mfcc=40), -10, 10)


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="synthetic")
    parser.add_argument("--root", default=None)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    manifest = prepare_manifest(args.corpus, args.root, classes="all")
    print(f"corpus {args.corpus}: {len(manifest)} files, {manifest.duration.sum() / 60:.1f} min of audio; "
          f"torch threads {torch.get_num_threads()}")
    librosa_cnn_lstm(manifest.path.iloc[0])  # warm-up (imports, numba JIT) outside the timings
    librosa_light_sernet(manifest.path.iloc[0])
    for name in ("cnn_lstm", "light_sernet"):
        extract(manifest.head(4), feature_presets()[name], use_cache=False, progress=False)
    rows = []
    for name, reference in (("cnn_lstm", librosa_cnn_lstm), ("light_sernet", librosa_light_sernet)):
        t_ref, _ = timed(lambda: [reference(p) for p in manifest.path])  # noqa: B023
        with tempfile.TemporaryDirectory() as cache:
            t_batched, _ = timed(lambda: extract(manifest, feature_presets()[name], cache_dir=cache,  # noqa: B023
                                                 workers=args.workers, progress=False))
            t_cached, store = timed(lambda: extract(manifest, feature_presets()[name], cache_dir=cache, progress=False))  # noqa: B023
            assert store.from_cache
        rows.append((name, t_ref, t_batched, t_cached))
    print(f"\n{'preset':<14}{'librosa loop':>14}{'serlib batched':>16}{'cached':>10}"
          f"{'speed-up batched':>18}{'speed-up cached':>17}")
    for name, t_ref, t_batched, t_cached in rows:
        print(f"{name:<14}{t_ref:>13.2f}s{t_batched:>15.2f}s{t_cached:>9.3f}s"
              f"{t_ref / t_batched:>17.1f}x{t_ref / t_cached:>16.0f}x")


if __name__ == "__main__":
    main()
