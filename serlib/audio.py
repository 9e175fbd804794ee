"""Audio I/O: soundfile for decoding, soxr (a polyphase resampler) for resampling.

Everything returns mono float32 torch tensors of shape ``(time,)``.

A header's sample rate must lie in :data:`RATES` (4 kHz to 768 kHz): a file that claims
1 Hz would stand for hours of audio per second of samples. soxr's cost is bounded for any
rate pair (44 056 Hz or 24 414 Hz cost what 44 100 Hz does); torchaudio's windowed sinc,
used before, built a kernel for the exact ratio (4.5 GB for 44 056 -> 16 000 Hz).
Measured on EMO-DB-2s (docs/data.md#resampling), soxr's output is closer to an ideal
band-limited resampling than torchaudio's was.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from . import decode
from .decode import RATES, SILENCE_PEAK, read_checked, wav_length_mismatch  # noqa: F401  (RATES: upstream imports it from here)
from .errors import AudioError

log = logging.getLogger(__name__)

def info(path: str | Path) -> sf._SoundFileInfo:
    """Header information (rate, frames, channels) without decoding the samples."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "file not found")
    try:
        return sf.info(str(path))
    except Exception as e:  # soundfile raises RuntimeError/LibsndfileError
        raise AudioError(path, f"unreadable audio header ({e})") from e


def load(
    path: str | Path,
    sample_rate: int | None = None,
    channel: str | int = "mean",
    min_seconds: float = 0.0,
    warn_silent: bool = True,
) -> torch.Tensor:
    """Load a wav as a mono float32 tensor ``(time,)``, resampled to ``sample_rate``.

    Args:
        path: audio file readable by libsndfile.
        sample_rate: target rate in Hz; ``None`` keeps the file's rate.
        channel: for multi-channel files, ``"mean"`` averages the channels, an int picks
            one, ``"error"`` raises (e.g. to catch IEMOCAP dialog files, whose two
            channels are two speakers).
        min_seconds: raise if the audio is shorter than this (after resampling).
        warn_silent: warn when every sample is zero.

    Raises:
        AudioError: missing, unreadable, empty, non-finite or too short audio, or a
            multi-channel file with ``channel="error"``.
    """
    path = Path(path)
    data, rate = read_checked(path)  # (time, channels)
    n_channels = data.shape[1]
    if n_channels > 1:
        if channel == "error":
            raise AudioError(path, f"{n_channels} channels, expected mono (channel='error')")
        if channel == "mean":
            data = data.mean(axis=1, keepdims=True)
        elif isinstance(channel, int):
            if not -n_channels <= channel < n_channels:
                raise AudioError(path, f"channel {channel} requested, file has {n_channels}")
            data = data[:, [channel]]
        else:
            raise ValueError(f"channel must be 'mean', 'error' or an int, got {channel!r}")
    wav = torch.from_numpy(np.ascontiguousarray(data[:, 0]))
    if sample_rate is not None and rate != sample_rate:
        wav = resample(wav, rate, sample_rate)
        rate = sample_rate
    if wav.numel() < min_seconds * rate:
        raise AudioError(
            path, f"too short: {wav.numel() / rate:.3f} s < minimum {min_seconds:.3f} s"
        )
    if warn_silent and not bool(wav.abs().max() > 0):
        warnings.warn(f"{path}: audio is all zeros", stacklevel=2)
    return wav




def resample(wav: torch.Tensor, orig: int, new: int) -> torch.Tensor:
    """soxr's polyphase resampling (quality ``HQ``) of a mono ``(time,)`` waveform: the
    cost is bounded for any pair of rates in :data:`RATES` (:func:`serlib.decode.resample`,
    which the torch-free prediction path uses too).

    >>> resample(torch.ones(22050), 22050, 16000).shape
    torch.Size([16000])
    """
    out = decode.resample(wav.detach().cpu().numpy().astype(np.float32, copy=False), orig, new)
    return wav if orig == new else torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))


def crop_or_pad(x: torch.Tensor, n: int, mode: str = "center") -> torch.Tensor:
    """Cut or zero-pad the last axis to exactly ``n`` samples.

    ``mode="center"`` takes the middle ``n`` samples (Light-SERNet's centre crop) and
    pads equally on both sides; ``"start"`` keeps the beginning and pads at the end.

    >>> crop_or_pad(torch.arange(5.0), 3).tolist()
    [1.0, 2.0, 3.0]
    >>> crop_or_pad(torch.ones(2), 4, mode="start").tolist()
    [1.0, 1.0, 0.0, 0.0]
    """
    if mode not in ("center", "start"):
        raise ValueError(f"mode must be 'center' or 'start', got {mode!r}")
    length = x.shape[-1]
    if length >= n:
        start = (length - n) // 2 if mode == "center" else 0
        return x[..., start : start + n]
    missing = n - length
    left = missing // 2 if mode == "center" else 0
    return torch.nn.functional.pad(x, (left, missing - left))


def segments(x: torch.Tensor, n: int, hop: int | None = None, pad_last: bool = True) -> torch.Tensor:
    """Fixed-length windows over the last axis: ``(..., time) -> (..., n_segments, n)``.

    A signal shorter than ``n`` gives one zero-padded segment. With ``pad_last`` the tail
    that does not fill a whole window becomes a final zero-padded segment, so no audio
    is dropped.

    >>> segments(torch.arange(5.0), 2).tolist()
    [[0.0, 1.0], [2.0, 3.0], [4.0, 0.0]]
    """
    hop = hop or n
    length = x.shape[-1]
    if length <= n:
        return crop_or_pad(x, n, mode="start").unsqueeze(-2)
    n_full = 1 + (length - n) // hop
    covered = (n_full - 1) * hop + n
    if pad_last and covered < length:
        x = torch.nn.functional.pad(x, (0, (n_full * hop + n) - length))
    return x.unfold(-1, n, hop)


def file_hash(path: str | Path) -> str:
    """SHA-1 of the file bytes: identical audio stored under two names gets one hash."""
    with open(path, "rb") as f:  # streamed: a checkpoint of gigabytes is never read into memory at once
        return hashlib.file_digest(f, "sha1").hexdigest()


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
        return crop_or_pad(wave, int(round(self.seconds * sample_rate)), self.mode)


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
        wave = load(path, sample_rate, min_seconds=self.min_seconds, warn_silent=False)
        peak = float(wave.abs().max())
        if self.silence_peak and not peak >= self.silence_peak:
            raise AudioError(path, f"silent (peak amplitude {peak:.1e} < {self.silence_peak:.0e})")
        notes = [m for m in [wav_length_mismatch(path)] if m]
        if self.max_seconds is not None and wave.numel() > self.max_seconds * sample_rate:
            notes.append(f"{wave.numel() / sample_rate:.1f} s is longer than max_seconds={self.max_seconds:g}: "
                         "centre-cropped")
            wave = crop_or_pad(wave, int(self.max_seconds * sample_rate), "center")
        return wave, notes
