"""Utterance-level functionals: openSMILE eGeMAPSv02 / ComParE_2016, and MFCC statistics.

The standard baselines of speech emotion recognition describe an utterance by statistics
("functionals") of frame-level descriptors and classify the vector with an SVM or a
linear model. :func:`extract_functionals` computes one vector per utterance, once per
corpus and feature set, and caches it under ``outputs/cache/`` with the same key rules
and input checks as the spectrogram features (:mod:`serlib.cache`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import pandas as pd
import torch

from .audio import InputChecks, WaveCrop
from .cache import FeatureStore, cache_key, map_files, read_store, store_path, write_store
from .errors import AudioError, ConfigError
from .progress import line as progress_line

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
FEATURE_SETS = {
    # name: (openSMILE feature set or None, dimension)
    "egemaps": ("eGeMAPSv02", 88),
    "compare": ("ComParE_2016", 6373),
    "mfcc_stats": (None, 40),
}


@dataclass(frozen=True)
class FunctionalsConfig:
    """Settings of a functionals extraction (its ``key()`` enters the cache key)."""

    feature_set: str = "egemaps"
    sample_rate: int = SAMPLE_RATE
    n_mfcc: int = 20          # mfcc_stats: mean and std of 20 MFCCs

    @property
    def kind(self) -> str:
        return f"functionals-{self.feature_set}"

    def key(self) -> str:
        return f"{self.kind}/sr{self.sample_rate}/mfcc{self.n_mfcc}"


def mfcc_stats(wave: np.ndarray, sample_rate: int = SAMPLE_RATE, n_mfcc: int = 20) -> np.ndarray:
    """Mean and standard deviation over time of ``n_mfcc`` MFCCs (librosa defaults:
    25.6 ms / 32 ms frames at 16 kHz): ``(2 * n_mfcc,)``."""
    mfcc = librosa.feature.mfcc(y=wave, sr=sample_rate, n_mfcc=n_mfcc)
    return np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)])


def _smile(feature_set: str):
    import opensmile

    return opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, FEATURE_SETS[feature_set][0]),
                           feature_level=opensmile.FeatureLevel.Functionals)


def extract_functionals(manifest: pd.DataFrame, config: FunctionalsConfig, checks: InputChecks | None = None,
                        on_error: str = "raise", workers: int = 2, progress: bool = True,
                        cache_dir: str | Path | None = None) -> FeatureStore:
    """One ``(D,)`` float32 vector per utterance, from the cache when possible.

    Audio is decoded and checked as for every model (mono, resampled to 16 kHz,
    ``checks``: too short / silent files are errors or, with ``on_error="skip"``,
    counted skips; long files are centre-cropped to ``max_seconds``).
    """
    if config.feature_set not in FEATURE_SETS:
        raise ConfigError(f"feature_set must be one of {sorted(FEATURE_SETS)}, got {config.feature_set!r}")
    checks = checks or InputChecks()
    key = cache_key(manifest, config, WaveCrop(), checks)
    path = store_path(cache_dir, config.kind, key)
    if path.is_file():
        store = read_store(path, config, key)
        if store is not None:
            return store
    start = time.perf_counter()
    local = threading.local()  # one openSMILE instance per thread

    def one(wav_path):
        wave, notes = checks.load(wav_path, config.sample_rate)
        x = wave.numpy()
        if FEATURE_SETS[config.feature_set][0] and not hasattr(local, "smile"):
            local.smile = _smile(config.feature_set)
        smile = getattr(local, "smile", None)
        if smile is None:
            vector = mfcc_stats(x, config.sample_rate, config.n_mfcc)
        else:
            vector = smile.process_signal(x, config.sample_rate).to_numpy()[0]
        if not np.isfinite(vector).all():
            raise AudioError(wav_path, f"{config.feature_set} functionals are not finite")
        return torch.from_numpy(vector.astype(np.float32)), notes

    features, skipped, warnings = map_files(manifest, one, workers, on_error, progress, desc=config.kind)
    if skipped:
        log.warning("functionals skipped %d files: %s", len(skipped), [s[1:] for s in skipped[:3]])
    progress_line(f"{config.kind}: {len(features)} utterances in {time.perf_counter() - start:.1f} s", progress)
    store = FeatureStore(features, config, key, path, skipped, time.perf_counter() - start, False, warnings)
    write_store(store)
    return store
