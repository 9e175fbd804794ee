"""Acoustic front ends as pure functions plus thin ``nn.Module``s (the torchaudio pattern).

Shapes: ``(..., time) -> (..., freq, time)``; with Δ/ΔΔ as channels,
``(..., 3, freq, time)``. Modules hold only settings and buffers (window, filterbank,
DCT matrix), so ``.to(device)`` moves them and they run on the batch's device.

Frames: every front end frames like ``center=True`` STFTs — the signal is reflect-padded
by ``n_fft // 2`` on both sides — so a signal of ``n`` samples gives
``1 + n // hop`` frames (:meth:`FrontEnd.frames`). Padding is done per item from its
true length, so a zero-padded batch gives exactly the per-item features in each item's
valid frames ("batched == per item"). The Light-SERNet preset follows TensorFlow's
``tf.signal.stft`` instead (no centring: ``1 + (n - n_fft) // hop`` frames).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from torch import nn

WINDOWS = {"hamming": torch.hamming_window, "hann": torch.hann_window}


@dataclass(frozen=True)
class FeatureConfig:
    """Settings of one front end. Each paper's are in its experiment file
    (:func:`serlib.experiments.feature_presets`).

    kind: ``spectrogram`` (linear frequency), ``logmel``, ``mfcc`` or ``mel_mean``
    (log-mel averaged over frequency: a 1-D series, "Emotion in Motion").
    """

    kind: str = "spectrogram"
    sample_rate: int = 16000
    win_ms: float = 64.0
    hop_ms: float = 32.0
    n_fft: int | None = None          # default: the window length
    window: str = "hamming"
    power: float = 1.0                # 1 magnitude, 2 power
    fmin: float = 0.0
    fmax: float | None = None         # upper frequency limit (spectrogram: bins below it)
    n_mels: int = 128
    mel_scale: str = "slaney"         # "slaney" (librosa's default) or "htk" (TensorFlow's)
    mel_norm: str | None = "slaney"
    n_mfcc: int = 40
    dct_norm: str = "ortho"           # "ortho" (librosa) or "tf" (tf.signal.mfccs_from_log_mel_spectrograms)
    log: str = "log"                  # "log": log(x + eps); "db": 10·log10 with top_db; "none"
    eps: float = 1e-6
    top_db: float | None = 80.0
    deltas: str = "none"              # "none", "stack" (extra features) or "channels"
    delta_width: int = 9              # librosa.feature.delta's default width
    center: bool = True
    amplitude_norm: str = "none"      # "none" or "percentile" (|x| / 99.9th percentile, clip ±1)
    clip: float | None = None         # clip the output to ±clip
    notes: tuple[str, ...] = field(default=(), compare=False)

    def key(self) -> str:
        """A stable JSON string of the settings that change the output."""
        d = asdict(self)
        d.pop("notes")
        return json.dumps(d, sort_keys=True)


def ms_to_samples(ms: float, sample_rate: int) -> int:
    return int(round(ms * sample_rate / 1000))


# --- pure functions -----------------------------------------------------------------

def percentile_normalize(wave: torch.Tensor, lengths: torch.Tensor | None = None, q: float = 0.999) -> torch.Tensor:
    """Light-SERNet's amplitude normalisation: divide by the 99.9th percentile of |x|
    over each item's valid samples, then clip to ±1."""
    out = torch.empty_like(wave)
    flat, flat_out = wave.reshape(-1, wave.shape[-1]), out.reshape(-1, wave.shape[-1])
    n = lengths.reshape(-1) if lengths is not None else torch.full((flat.shape[0],), flat.shape[-1])
    for i in range(flat.shape[0]):
        scale = torch.quantile(flat[i, : int(n[i])].abs(), q).clamp_min(1e-8)
        flat_out[i] = (flat[i] / scale).clamp(-1, 1)
    return out


def reflect_pad_items(wave: torch.Tensor, lengths: torch.Tensor, pad: int) -> torch.Tensor:
    """Reflect-pad each item by ``pad`` on both sides at its true length, then zero-pad
    to a common length: ``(B, T) -> (B, max_len + 2 pad)``."""
    out = wave.new_zeros(wave.shape[0], int(lengths.max()) + 2 * pad)
    for i, n in enumerate(lengths.tolist()):
        item = wave[i, :n].reshape(1, 1, n)
        mode = "reflect" if n > pad else "replicate"  # reflect needs pad < length
        out[i, : n + 2 * pad] = F.pad(item, (pad, pad), mode=mode).reshape(-1)
    return out


def stft_magnitude(wave: torch.Tensor, n_fft: int, win_length: int, hop: int, window: torch.Tensor,
                   power: float) -> torch.Tensor:
    """``(B, T) -> (B, n_fft // 2 + 1, frames)`` without centring (framing is done by
    the caller)."""
    return AF.spectrogram(wave, pad=0, window=window, n_fft=n_fft, hop_length=hop,
                          win_length=win_length, power=power, normalized=False, center=False)


def compress(x: torch.Tensor, mode: str, eps: float, top_db: float | None, power: float) -> torch.Tensor:
    """Log compression. ``db`` is librosa's ``power_to_db``/``amplitude_to_db`` with
    ``top_db`` applied per item (over the last two axes)."""
    if mode == "none":
        return x
    if mode == "log":
        return torch.log(x + eps)
    if mode == "db":
        db = (10.0 if power == 2.0 else 20.0) * torch.log10(x.clamp_min(1e-10))
        if top_db is not None:
            peak = db.amax(dim=(-2, -1), keepdim=True)
            db = torch.maximum(db, peak - top_db)
        return db
    raise ValueError(f"unknown log mode {mode!r}")


def deltas(x: torch.Tensor, width: int = 9) -> torch.Tensor:
    """First-order regression deltas over time (librosa.feature.delta's formula in the
    interior; edges replicate): ``(..., F, T) -> (..., F, T)``."""
    return AF.compute_deltas(x, win_length=width, mode="replicate")


def lengths_to_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """``(B,) -> (B, max_len)`` boolean mask, True on valid steps."""
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def conv_lengths(lengths: torch.Tensor, kernel: int, stride: int = 1, padding: int = 0,
                 dilation: int = 1, ceil_mode: bool = False) -> torch.Tensor:
    """Valid output steps of a conv/pool layer along time for inputs of ``lengths`` steps
    (PyTorch's output-size formula; ``ceil_mode`` for TF-style "same" pooling)."""
    span = lengths + 2 * padding - dilation * (kernel - 1) - 1
    out = torch.div(span, stride, rounding_mode="floor") + 1
    if ceil_mode:
        out = torch.div(span + stride - 1, stride, rounding_mode="floor") + 1
    return out.clamp_min(0)


# --- the module ---------------------------------------------------------------------

class FrontEnd(nn.Module):
    """Waveforms to features on the waveform's device.

    ``forward(wave, lengths=None)``: ``wave`` is ``(time,)`` or ``(B, time)`` (zero-padded
    batch, with ``lengths`` in samples); returns ``(…, F, T)`` or ``(…, 3, F, T)`` with
    Δ/ΔΔ as channels, and, when ``lengths`` is given, the frame counts too.
    """

    def __init__(self, config: FeatureConfig):
        super().__init__()
        c = self.config = config
        self.win_length = ms_to_samples(c.win_ms, c.sample_rate)
        self.hop = ms_to_samples(c.hop_ms, c.sample_rate)
        self.n_fft = c.n_fft or self.win_length
        if self.win_length > self.n_fft:
            raise ValueError(f"window ({self.win_length} samples) longer than n_fft ({self.n_fft})")
        n_freqs = self.n_fft // 2 + 1
        self.register_buffer("window", WINDOWS[c.window](self.win_length), persistent=False)
        if c.kind == "spectrogram":
            top = n_freqs if c.fmax is None else min(n_freqs, int(c.fmax * self.n_fft / c.sample_rate))
            self.n_bins = top
        elif c.kind in ("logmel", "mfcc", "mel_mean"):
            fmax = c.fmax if c.fmax is not None else c.sample_rate / 2
            fb = AF.melscale_fbanks(n_freqs, c.fmin, fmax, c.n_mels, c.sample_rate,
                                    norm=c.mel_norm, mel_scale=c.mel_scale)  # (n_freqs, n_mels)
            self.register_buffer("mel_fb", fb, persistent=False)
            if c.kind == "mfcc":
                dct = AF.create_dct(c.n_mfcc, c.n_mels, norm="ortho")  # (n_mels, n_mfcc)
                if c.dct_norm == "tf":  # TF scales DCT-II by 1/sqrt(2N): coefficient 0 is sqrt(2)·ortho
                    dct[:, 0] *= math.sqrt(2.0)
                self.register_buffer("dct", dct, persistent=False)
        else:
            raise ValueError(f"unknown feature kind {c.kind!r}")

    def frames(self, n_samples: int | torch.Tensor):
        """Number of frames for ``n_samples`` samples."""
        if self.config.center:
            return n_samples // self.hop + 1
        if isinstance(n_samples, torch.Tensor):
            return ((n_samples - self.n_fft).clamp_min(0) // self.hop + 1)
        return max(n_samples - self.n_fft, 0) // self.hop + 1

    @property
    def n_features(self) -> int:
        """Size of the frequency/feature axis of the output."""
        c = self.config
        base = {"spectrogram": getattr(self, "n_bins", 0), "logmel": c.n_mels, "mfcc": c.n_mfcc,
                "mel_mean": 1}[c.kind]
        return base * 3 if c.deltas == "stack" else base

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None):
        c = self.config
        single = wave.dim() == 1
        batch = wave.unsqueeze(0) if single else wave
        n = lengths if lengths is not None else torch.full((batch.shape[0],), batch.shape[-1],
                                                          device=batch.device, dtype=torch.long)
        if c.amplitude_norm == "percentile":
            batch = percentile_normalize(batch, n)
        if c.center:
            batch = reflect_pad_items(batch, n, self.n_fft // 2)
        elif batch.shape[-1] < self.n_fft:
            batch = F.pad(batch, (0, self.n_fft - batch.shape[-1]))
        spec = stft_magnitude(batch, self.n_fft, self.win_length, self.hop,
                              self.window.to(batch.dtype), c.power)  # (B, n_freqs, T)
        frames = self.frames(n).to(spec.device)
        spec = spec[..., : int(frames.max())]
        if c.kind == "spectrogram":
            feats = compress(spec[:, : self.n_bins], c.log, c.eps, c.top_db, c.power)
        else:
            mel = torch.matmul(spec.transpose(-1, -2), self.mel_fb).transpose(-1, -2)  # (B, n_mels, T)
            feats = compress(mel, c.log, c.eps, c.top_db, c.power)
            if c.kind == "mfcc":
                feats = torch.matmul(feats.transpose(-1, -2), self.dct).transpose(-1, -2)
            elif c.kind == "mel_mean":
                feats = feats.mean(dim=-2, keepdim=True)
        if c.deltas != "none":
            # Deltas of each item over its own valid frames only.
            d1, d2 = torch.zeros_like(feats), torch.zeros_like(feats)
            for i, t in enumerate(frames.tolist()):
                d1[i, :, :t] = deltas(feats[i, :, :t], c.delta_width)
                d2[i, :, :t] = deltas(d1[i, :, :t], c.delta_width)
            feats = torch.stack([feats, d1, d2], dim=1) if c.deltas == "channels" else torch.cat(
                [feats, d1, d2], dim=-2)
        if c.clip is not None:
            feats = feats.clamp(-c.clip, c.clip)
        # Zero the frames past each item's end so padding carries no signal.
        mask = lengths_to_mask(frames, feats.shape[-1])
        feats = feats * mask.view(mask.shape[0], *([1] * (feats.dim() - 2)), mask.shape[1])
        if single:
            feats = feats[0]
        return (feats, frames) if lengths is not None else feats


# --- normalisation (fitted on the training split only) --------------------------------

class Normalizer(nn.Module):
    """``(x - mean) / sqrt(var + eps)`` with statistics from the training split.

    ``mode="global"``: one mean/std over all valid pixels (CNN+LSTM eq. 2);
    ``mode="per_feature"``: one per frequency bin / coefficient (per channel too);
    ``mode="none"``: the identity (front ends that normalise themselves).
    """

    def __init__(self, mode: str = "global", eps: float = 1e-5):
        super().__init__()
        if mode not in ("global", "per_feature", "none"):
            raise ValueError(f"mode must be 'global', 'per_feature' or 'none', got {mode!r}")
        self.mode, self.eps = mode, eps
        self.register_buffer("mean", torch.zeros(1))
        self.register_buffer("var", torch.ones(1))
        self.register_buffer("fitted", torch.tensor(False))
        self._checked = False

    @torch.no_grad()
    def fit(self, items) -> Normalizer:
        """Fit on an iterable of unpadded ``(..., F, T)`` training features."""
        if self.mode == "none":
            self.fitted.fill_(True)
            return self
        total, total_sq, count = 0.0, 0.0, 0
        for x in items:
            x = x.double()
            if self.mode == "global":
                total, total_sq, count = total + x.sum(), total_sq + (x * x).sum(), count + x.numel()
            else:
                total = total + x.sum(dim=-1)
                total_sq = total_sq + (x * x).sum(dim=-1)
                count += x.shape[-1]
        if count == 0:
            raise ValueError("Normalizer.fit got no training features")
        mean = torch.as_tensor(total / count)
        var = (torch.as_tensor(total_sq / count) - mean**2).clamp_min(0)
        if self.mode == "per_feature":
            mean, var = mean.unsqueeze(-1), var.unsqueeze(-1)
        self.mean, self.var = mean.float(), var.float()
        self.fitted.fill_(True)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._checked:  # read from the device once, not at every batch
            if not bool(self.fitted):
                raise RuntimeError("Normalizer used before fit() on the training split")
            self._checked = True
        if self.mode == "none":
            return x
        return (x - self.mean) / torch.sqrt(self.var + self.eps)

    def state(self) -> dict:
        """The statistics as plain lists, for the results record."""
        return {"mode": self.mode, "mean": self.mean.flatten().tolist(), "var": self.var.flatten().tolist()}


def prepare_input(normalizer: Normalizer, x: torch.Tensor, lengths: torch.Tensor,
                  channels_last: bool = False) -> torch.Tensor:
    """Normalise with the training statistics and zero the padding: the model input of
    training, evaluation and prediction alike (``channels_last``: 4-D inputs in that
    memory format, as the model's weights)."""
    x = normalizer(x)
    mask = lengths_to_mask(lengths, x.shape[-1]).to(x.dtype)
    x = x * mask.view(mask.shape[0], *([1] * (x.dim() - 2)), mask.shape[1])
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


class Normalized(nn.Module):
    """A trained model behind its normaliser: raw features ``(B, ..., F, T)`` and lengths
    in, logits out (what :meth:`serlib.experiments.Experiment.predict` scores)."""

    def __init__(self, model: nn.Module, normalizer: Normalizer, channels_last: bool = False):
        super().__init__()
        self.model, self.normalizer, self.channels_last = model, normalizer, channels_last

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, **extras) -> torch.Tensor:
        return self.model(prepare_input(self.normalizer, x, lengths, self.channels_last), lengths, **extras)


def n_features(item: torch.Tensor) -> int:
    """The feature count of one utterance's features: the frequency axis of ``(..., F, T)``,
    or the length of a vector (utterance-level functionals)."""
    return item.shape[-2] if item.dim() > 1 else item.shape[-1]
