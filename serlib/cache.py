"""Feature extraction with an on-disk cache under ``outputs/cache/``.

A corpus is processed once per (files, front-end settings, crop): the cache key hashes
every file's path, size and modification time together with the settings, so editing a
wav or a setting makes a new entry. Features are stored unpadded, one tensor per
utterance; batches are padded on the fly (:mod:`serlib.data`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from . import atomic, audio
from .constants import AUDIO_HASH, PATH, UTT_ID
from .errors import AudioError
from .features import FeatureConfig, FrontEnd
from .paths import outputs_dir
from .progress import bar as progress_bar
from .progress import line as progress_line

log = logging.getLogger(__name__)


@dataclass
class WaveCrop:
    """Fixed-length input: ``seconds`` from ``offset`` (centre crop or zero pad), as in
    Light-SERNet (3 s / 7 s) or "Emotion in Motion" (3 s from 0.5 s). None = whole file."""

    seconds: float | None = None
    offset: float = 0.0
    mode: str = "center"

    def apply(self, wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
        if self.offset:
            wave = wave[int(self.offset * sample_rate):]
        if self.seconds is None:
            return wave
        return audio.crop_or_pad(wave, int(round(self.seconds * sample_rate)), self.mode)


@dataclass
class InputChecks:
    """What a file must satisfy before it becomes features (part of the cache key).

    ``min_seconds``: shorter files are rejected ("too short"); ``silence_peak``: files
    whose peak amplitude is below this are rejected ("silent"); ``max_seconds``: longer
    files are centre-cropped to this length (counted in ``store.warnings``), so one
    stray 10-minute file cannot stall a fold.
    """

    min_seconds: float = 0.0
    max_seconds: float | None = None
    silence_peak: float = 0.0

    @classmethod
    def from_config(cls, config) -> InputChecks:
        return cls(config.min_seconds, config.max_seconds, SILENCE_PEAK)

    def load(self, path, sample_rate: int) -> tuple[torch.Tensor, list[str]]:
        """The checked mono waveform at ``sample_rate`` and the warnings it gets.

        Raises:
            AudioError: undecodable, too short or silent.
        """
        wave = audio.load(path, sample_rate, min_seconds=self.min_seconds, warn_silent=False)
        peak = float(wave.abs().max())
        if self.silence_peak and not peak >= self.silence_peak:
            raise AudioError(path, f"silent (peak amplitude {peak:.1e} < {self.silence_peak:.0e})")
        notes = [m for m in [audio.wav_length_mismatch(path)] if m]
        if self.max_seconds is not None and wave.numel() > self.max_seconds * sample_rate:
            notes.append(f"{wave.numel() / sample_rate:.1f} s is longer than max_seconds={self.max_seconds:g}: "
                         "centre-cropped")
            wave = audio.crop_or_pad(wave, int(self.max_seconds * sample_rate), "center")
        return wave, notes


SILENCE_PEAK = 1e-4  # -80 dBFS: below the noise floor of any 16-bit recording
CACHE_VERSION = 2    # bump when the stored layout changes: old entries are re-extracted


@dataclass
class FeatureStore:
    """utt_id -> feature tensor ``(..., F, T)``, with where it came from.

    ``skipped`` lists ``(utt_id, path, reason)`` of files that gave no features;
    ``warnings`` lists ``(utt_id, path, message)`` of files used with a warning (a
    header that promises more audio than the file holds, a capped long file).
    """

    features: dict[str, torch.Tensor]
    config: FeatureConfig
    key: str
    path: Path | None = None
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    seconds: float = 0.0      # extraction time (0 when read from the cache)
    from_cache: bool = False
    warnings: list[tuple[str, str, str]] = field(default_factory=list)

    def __getitem__(self, utt_id: str) -> torch.Tensor:
        return self.features[utt_id]

    def __contains__(self, utt_id: str) -> bool:
        return utt_id in self.features

    def __len__(self) -> int:
        return len(self.features)


def cache_key(manifest: pd.DataFrame, config: FeatureConfig, crop: WaveCrop, checks: InputChecks | None = None) -> str:
    checks = checks or InputChecks()
    h = hashlib.sha1()
    h.update(config.key().encode())
    h.update(json.dumps([CACHE_VERSION, crop.seconds, crop.offset, crop.mode, checks.min_seconds,
                         checks.max_seconds, checks.silence_peak]).encode())
    for utt, path in sorted(zip(manifest[UTT_ID], manifest[PATH])):
        st = os.stat(path)
        h.update(f"{utt}\0{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def extract(
    manifest: pd.DataFrame,
    config: FeatureConfig,
    crop: WaveCrop | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    batch_size: int = 32,
    workers: int = 4,
    device: str | torch.device = "cpu",
    on_error: str = "raise",
    progress: bool = True,
    checks: InputChecks | None = None,
) -> FeatureStore:
    """Features of every utterance of ``manifest``, from the cache when possible.

    Files are decoded in ``workers`` threads (libsndfile and resampling release the
    GIL), checked (``checks``), grouped by length into batches and run through
    :class:`FrontEnd` on ``device``; each item keeps only its own valid frames. A cache
    file that cannot be read is reported and re-extracted.

    Raises:
        AudioError: a file that cannot be used (unless ``on_error="skip"``, which counts
            it in ``store.skipped``).
    """
    crop = crop or WaveCrop()
    checks = checks or InputChecks()
    key = cache_key(manifest, config, crop, checks)
    cache_dir = Path(cache_dir) if cache_dir is not None else outputs_dir() / "cache"
    path = cache_dir / f"{config.kind}-{key}.pt"
    if use_cache and path.is_file():
        store = _read_cache(path, config, key)
        if store is not None:
            return store

    start = time.perf_counter()
    frontend = FrontEnd(config).to(device)
    sr = config.sample_rate

    def load(row):
        utt, wav_path = row
        try:
            wave, notes = checks.load(wav_path, sr)
            return utt, crop.apply(wave, sr), None, notes
        except AudioError as e:
            if on_error == "raise":
                raise
            return utt, None, e, []

    rows = list(zip(manifest[UTT_ID], manifest[PATH]))
    features = {}
    bar = progress_bar(None, progress, total=len(rows), desc=f"features {config.kind}", leave=False)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        waves = list(pool.map(load, rows))
    skipped = [(utt, err.path, err.reason) for utt, _, err, _ in waves if err is not None]
    warnings = [(utt, path_, note) for (utt, _, _, notes), path_ in zip(waves, manifest[PATH]) for note in notes]
    waves = sorted((w[:2] for w in waves if w[1] is not None), key=lambda w: w[1].numel())
    with torch.no_grad():
        for i in range(0, len(waves), batch_size):
            chunk = waves[i : i + batch_size]
            lengths = torch.tensor([w.numel() for _, w in chunk])
            batch = torch.nn.utils.rnn.pad_sequence([w for _, w in chunk], batch_first=True)
            feats, frames = frontend(batch.to(device, non_blocking=True), lengths.to(device))
            for (utt, _), f, t in zip(chunk, feats, frames.tolist()):
                features[utt] = f[..., :t].cpu().clone()
            bar.update(len(chunk))
    bar.close()
    if skipped:
        log.warning("feature extraction skipped %d files: %s", len(skipped), [s[1:] for s in skipped[:3]])
    for _, wav_path, note in warnings:
        log.warning("%s: %s", wav_path, note)
    seconds = time.perf_counter() - start
    progress_line(f"features {config.kind}: {len(features)} utterances in {seconds:.1f} s"
                  + (f", {len(skipped)} skipped" if skipped else ""), progress)
    if use_cache:
        atomic.torch_save({"version": CACHE_VERSION, "features": features, "skipped": skipped,
                           "warnings": warnings, "config": config.key()}, path)
    return FeatureStore(features, config, key, path if use_cache else None, skipped, seconds, False, warnings)


def _read_cache(path: Path, config: FeatureConfig, key: str) -> FeatureStore | None:
    """The cached store, or None (with a warning naming the file) when it is damaged."""
    try:
        blob = torch.load(path, weights_only=True)
        if blob.get("version") != CACHE_VERSION:
            raise ValueError(f"cache format {blob.get('version')}, expected {CACHE_VERSION}")
        features = blob["features"]
        skipped = [tuple(s) for s in blob["skipped"]]
        warnings = [tuple(w) for w in blob["warnings"]]
        if not all(isinstance(v, torch.Tensor) for v in features.values()):
            raise ValueError("entries are not tensors")
    except Exception as e:  # torch raises several kinds for a truncated or foreign file
        log.warning("%s: damaged feature cache (%s: %s); extracting again", path, type(e).__name__, e)
        return None
    return FeatureStore(features, config, key, path, skipped, 0.0, True, warnings)


def audio_hashes(manifest: pd.DataFrame, cache_dir: str | Path | None = None) -> list[str]:
    """SHA-1 of every file's bytes (the manifest's order), cached by path, size and
    modification time in ``outputs/cache/audio-hashes.json``: byte-identical audio under
    two names gets one hash, and a re-run hashes only new or changed files."""
    from .corpora._common import file_hash

    cache_path = (Path(cache_dir) if cache_dir is not None else outputs_dir() / "cache") / "audio-hashes.json"
    try:
        known = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    except (OSError, ValueError) as e:
        log.warning("%s: unreadable hash cache (%s); hashing again", cache_path, e)
        known = {}
    out, changed = [], False
    for wav in manifest[PATH]:
        st = os.stat(wav)
        entry = f"{wav}\0{st.st_size}\0{st.st_mtime_ns}"
        if entry not in known:
            known[entry], changed = file_hash(wav), True
        out.append(known[entry])
    if changed:
        atomic.write_text(cache_path, json.dumps(known))
    return out


def with_audio_hashes(manifest: pd.DataFrame, cache_dir: str | Path | None = None) -> pd.DataFrame:
    """``manifest`` with an ``audio_hash`` column (kept when already there)."""
    if AUDIO_HASH in manifest.columns:
        return manifest
    out = manifest.copy()
    out[AUDIO_HASH] = audio_hashes(manifest, cache_dir)
    out.attrs = dict(manifest.attrs)
    return out
