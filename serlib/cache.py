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
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from . import audio
from .constants import PATH, UTT_ID
from .errors import AudioError
from .features import FeatureConfig, FrontEnd
from .paths import outputs_dir

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
class FeatureStore:
    """utt_id -> feature tensor ``(..., F, T)``, with where it came from."""

    features: dict[str, torch.Tensor]
    config: FeatureConfig
    key: str
    path: Path | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0      # extraction time (0 when read from the cache)
    from_cache: bool = False

    def __getitem__(self, utt_id: str) -> torch.Tensor:
        return self.features[utt_id]

    def __contains__(self, utt_id: str) -> bool:
        return utt_id in self.features

    def __len__(self) -> int:
        return len(self.features)


def cache_key(manifest: pd.DataFrame, config: FeatureConfig, crop: WaveCrop) -> str:
    h = hashlib.sha1()
    h.update(config.key().encode())
    h.update(json.dumps([crop.seconds, crop.offset, crop.mode]).encode())
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
) -> FeatureStore:
    """Features of every utterance of ``manifest``, from the cache when possible.

    Files are decoded in ``workers`` threads (libsndfile and resampling release the
    GIL), grouped by length into batches and run through :class:`FrontEnd` on
    ``device``; each item keeps only its own valid frames.

    Raises:
        AudioError: a file that cannot be used (unless ``on_error="skip"``, which counts
            it in ``store.skipped``).
    """
    crop = crop or WaveCrop()
    key = cache_key(manifest, config, crop)
    cache_dir = Path(cache_dir) if cache_dir is not None else outputs_dir() / "cache"
    path = cache_dir / f"{config.kind}-{key}.pt"
    if use_cache and path.is_file():
        blob = torch.load(path, weights_only=True)
        return FeatureStore(blob["features"], config, key, path,
                            [tuple(s) for s in blob["skipped"]], 0.0, True)

    start = time.perf_counter()
    frontend = FrontEnd(config).to(device)
    sr = config.sample_rate

    def load(row):
        try:
            return row[0], crop.apply(audio.load(row[1], sr, warn_silent=False), sr), None
        except AudioError as e:
            if on_error == "raise":
                raise
            return row[0], None, e

    rows = list(zip(manifest[UTT_ID], manifest[PATH]))
    features = {}
    bar = tqdm(total=len(rows), desc=f"features {config.kind}", disable=not progress, leave=False)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        waves = list(pool.map(load, rows))
    skipped = [(err.path, err.reason) for _, _, err in waves if err is not None]
    waves = sorted((w for w in waves if w[1] is not None), key=lambda w: w[1].numel())
    with torch.no_grad():
        for i in range(0, len(waves), batch_size):
            chunk = waves[i : i + batch_size]
            lengths = torch.tensor([w.numel() for _, w, _ in chunk])
            batch = torch.nn.utils.rnn.pad_sequence([w for _, w, _ in chunk], batch_first=True)
            feats, frames = frontend(batch.to(device, non_blocking=True), lengths.to(device))
            for (utt, _, _), f, t in zip(chunk, feats, frames.tolist()):
                features[utt] = f[..., :t].cpu().clone()
            bar.update(len(chunk))
    bar.close()
    if skipped:
        log.warning("feature extraction skipped %d files: %s", len(skipped), skipped[:3])
    seconds = time.perf_counter() - start
    if use_cache:
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".tmp")
        os.close(fd)
        torch.save({"features": features, "skipped": skipped, "config": config.key()}, tmp)
        os.replace(tmp, path)  # atomic: a reader never sees half a file
    return FeatureStore(features, config, key, path if use_cache else None, skipped, seconds, False)
