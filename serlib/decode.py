"""Decoding audio without torch: soundfile, numpy and soxr.

What the torch-free prediction path (:mod:`serlib.onnx_predict`) reads audio with, and
the checks the corpora make, on numpy arrays: a mono float32 waveform ``(time,)`` at the
model's rate (channels averaged, any rate resampled with soxr), or an
:class:`~serlib.errors.AudioError` naming the file and the reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from .errors import AudioError

SILENCE_PEAK = 1e-4  # -80 dBFS: below the noise floor of any 16-bit recording
RATES = (4_000, 768_000)  # sample rates a header may claim (Hz): telephone speech to studio oversampling


def read_checked(path: str | Path) -> tuple[np.ndarray, int]:
    """``(samples (time, channels) float32, rate)`` of a file that exists, decodes, has an
    audio rate in :data:`RATES`, and holds finite samples; else :class:`AudioError`."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "file not found")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)  # (time, channels)
    except Exception as e:
        raise AudioError(path, f"cannot decode audio ({e})") from e
    if not RATES[0] <= rate <= RATES[1]:
        raise AudioError(path, f"the header's sample rate {rate} Hz is not an audio rate "
                               f"({RATES[0]}..{RATES[1]} Hz): a damaged or mislabelled file?")
    if data.shape[0] == 0:
        raise AudioError(path, "empty audio (0 samples)")
    if not np.isfinite(data).all():
        raise AudioError(path, "audio contains NaN or Inf samples")
    return data, int(rate)


def read_mono(path: str | Path) -> tuple[np.ndarray, int]:
    """``(samples (time,) float32, rate)``: channels averaged; missing, undecodable,
    empty or non-finite audio raises :class:`AudioError`."""
    data, rate = read_checked(path)
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return np.ascontiguousarray(mono, dtype=np.float32), int(rate)


def resample(wave: np.ndarray, orig: int, new: int) -> np.ndarray:
    """soxr's polyphase resampling (quality ``HQ``) of a mono float32 waveform; both
    rates must lie in :data:`RATES` (else an :class:`AudioError`)."""
    for rate in (orig, new):
        if not RATES[0] <= rate <= RATES[1]:
            raise AudioError(None, f"sample rate {rate} Hz is not an audio rate ({RATES[0]}..{RATES[1]} Hz)")
    if orig == new:
        return wave
    import soxr

    return soxr.resample(wave, orig, new, quality="HQ").astype(np.float32, copy=False)


def load_checked(path: str | Path, sample_rate: int, min_seconds: float, silence_peak: float) -> tuple[np.ndarray, list[str]]:
    """The checked mono waveform at ``sample_rate`` and its notes (a WAV header that
    promises more audio than the file holds), as
    :meth:`serlib.audio.InputChecks.load` gives them."""
    wave, rate = read_mono(path)
    wave = resample(wave, rate, sample_rate)
    if len(wave) < min_seconds * sample_rate:
        raise AudioError(path, f"too short: {len(wave) / sample_rate:.3f} s < minimum {min_seconds:.3f} s")
    peak = float(np.abs(wave).max())
    if silence_peak and not peak >= silence_peak:
        raise AudioError(path, f"silent (peak amplitude {peak:.1e} < {silence_peak:.0e})")
    return wave, [m for m in [wav_length_mismatch(path)] if m]


def crop_or_pad(x: np.ndarray, n: int, mode: str = "center") -> np.ndarray:
    """numpy twin of :func:`serlib.audio.crop_or_pad`: the middle (or first) ``n``
    samples, zero-padded equally on both sides (or at the end).

    >>> crop_or_pad(np.arange(5.0), 3).tolist()
    [1.0, 2.0, 3.0]
    >>> crop_or_pad(np.ones(2), 4, mode="start").tolist()
    [1.0, 1.0, 0.0, 0.0]
    """
    length = x.shape[-1]
    if length >= n:
        start = (length - n) // 2 if mode == "center" else 0
        return x[start:start + n]
    missing = n - length
    left = missing // 2 if mode == "center" else 0
    return np.pad(x, (left, missing - left))


def wav_length_mismatch(path: str | Path) -> str | None:
    """A message when a WAV header promises more audio than the file holds (a truncated
    copy: libsndfile then quietly reads only what is there), else None.

    Reads the RIFF chunk headers only; other formats return None.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        offset = 12
        while offset + 8 <= size:
            f.seek(offset)
            chunk = f.read(8)
            name, length = chunk[:4], int.from_bytes(chunk[4:8], "little")
            if name == b"data":
                actual = size - offset - 8
                if length > actual and length != 0xFFFFFFFF:  # 0xFFFFFFFF: streamed, length unknown
                    return (f"header says {length} bytes of audio, the file holds {actual} "
                            f"({100 * actual / length:.0f} %): truncated?")
                return None
            offset += 8 + length + (length & 1)
    return None
