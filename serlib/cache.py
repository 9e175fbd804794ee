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

from . import atomic
from .audio import InputChecks, WaveCrop, file_hash
from .constants import AUDIO_HASH, PATH, UTT_ID
from .errors import AudioError
from .features import FeatureConfig, FrontEnd
from .paths import outputs_dir
from .progress import bar as progress_bar
from .progress import line as progress_line

log = logging.getLogger(__name__)


CACHE_VERSION = 3    # bump when the stored layout or the decoding changes (3: soxr resampling): re-extracted


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
    path = store_path(cache_dir, config.kind, key)
    if use_cache and path.is_file():
        store = read_store(path, config, key)
        if store is not None:
            return store

    start = time.perf_counter()
    frontend = FrontEnd(config).to(device)
    sr = config.sample_rate

    def load(wav_path):
        wave, notes = checks.load(wav_path, sr)
        return crop.apply(wave, sr), notes

    decoded, skipped, warnings = map_files(manifest, load, workers, on_error, progress=False)
    features = {}
    bar = progress_bar(None, progress, total=len(manifest), desc=f"features {config.kind}", leave=False)
    waves = sorted(decoded.items(), key=lambda w: w[1].numel())
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
    store = FeatureStore(features, config, key, path if use_cache else None, skipped, seconds, False, warnings)
    if use_cache:
        write_store(store)
    return store


def map_files(manifest: pd.DataFrame, fn, workers: int = 4, on_error: str = "raise", progress: bool = True,
              desc: str = "files") -> tuple[dict, list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """``fn(path) -> (value, notes)`` on every file of ``manifest``, in ``workers``
    threads (libsndfile, resampling and openSMILE release the GIL).

    Returns ``({utt_id: value}`` in the manifest's order, ``skipped``, ``warnings)``:
    a file for which ``fn`` raises :class:`AudioError` is a counted skip
    ``(utt_id, path, reason)`` with ``on_error="skip"``, else the error propagates;
    ``warnings`` lists ``(utt_id, path, note)`` of the notes.
    """
    def one(row):
        utt, wav_path = row
        try:
            value, notes = fn(wav_path)
            return utt, value, None, notes
        except AudioError as e:
            if on_error == "raise":
                raise
            return utt, None, e, []

    rows = list(zip(manifest[UTT_ID], manifest[PATH]))
    with ThreadPoolExecutor(max(1, workers)) as pool:
        out = list(progress_bar(pool.map(one, rows), progress, total=len(rows), desc=desc, leave=False))
    values = {utt: v for utt, v, err, _ in out if err is None}
    skipped = [(utt, err.path, err.reason) for utt, _, err, _ in out if err is not None]
    warnings = [(utt, wav_path, note) for (utt, _, _, notes), (_, wav_path) in zip(out, rows) for note in notes]
    return values, skipped, warnings


def store_path(cache_dir: str | Path | None, kind: str, key: str) -> Path:
    """Where the store of ``kind`` with cache key ``key`` lives (default ``outputs/cache``)."""
    return (Path(cache_dir) if cache_dir is not None else outputs_dir() / "cache") / f"{kind}-{key}.pt"


def write_store(store: FeatureStore) -> None:
    """Write ``store`` to its ``path``, atomically."""
    atomic.torch_save({"version": CACHE_VERSION, "features": store.features, "skipped": store.skipped,
                       "warnings": store.warnings, "config": store.config.key()}, store.path)


def read_store(path: Path, config, key: str) -> FeatureStore | None:
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


def audio_hashes(manifest: pd.DataFrame, cache_dir: str | Path | None = None, exact: bool = False) -> list[str]:
    """SHA-1 of every file's bytes (the manifest's order), cached by path, size and
    modification time in ``outputs/cache/audio-hashes.json``: byte-identical audio under
    two names gets one hash, and a re-run hashes only new or changed files.

    ``exact=True`` (checkpoint weights) also keys the cache by inode and status-change
    time: a file replaced by another of the same size and modification time (``cp -p``,
    ``touch -r``) is hashed again, since no program can set the change time back."""
    cache_path = (Path(cache_dir) if cache_dir is not None else outputs_dir() / "cache") / "audio-hashes.json"
    try:
        known = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
        if not isinstance(known, dict) or not all(isinstance(v, str) for v in known.values()):
            raise ValueError(f"expected an object of path entries to hashes, got a {type(known).__name__}")
    except (OSError, UnicodeDecodeError, ValueError) as e:  # damaged: rebuilt (and rewritten) below
        log.warning("%s: unreadable hash cache (%s); hashing again", cache_path, e)
        known, damaged = {}, True
    else:
        damaged = False
    out, changed = [], damaged
    for wav in manifest[PATH]:
        st = os.stat(wav)
        entry = f"{wav}\0{st.st_size}\0{st.st_mtime_ns}" + (f"\0{st.st_ino}\0{st.st_ctime_ns}" if exact else "")
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
