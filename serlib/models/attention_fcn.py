"""Attention-based fully convolutional networks for SER.

2-D (Zhang et al. 2019, "Attention Based Fully Convolutional Network for Speech Emotion
Recognition"): an AlexNet conv stack without its FC layers on 3-channel (static, Δ, ΔΔ)
spectrograms ``(B, 3, F, T)``; attention over the F'·T' positions of the last map:

    e_i = uᵀ tanh(W a_i + b),   α = softmax(λ e) over the valid positions,   c = Σ α_i a_i

then a linear classifier on c. The paper initialises the encoder from ImageNet; that
checkpoint is not available offline, so it trains from scratch by default and
``encoder_state_dict`` loads user-supplied weights (torchvision AlexNet ``features.*``
names are accepted).

1-D ("Emotion in Motion"): the frequency-averaged log-mel series ``(B, 1, T)``; Conv1d
channels 5/10/20/30, kernels 11/5/3/3, strides 4/1/1/1, ReLU, max-pool 3/2, a dense tanh
layer per time step, attention with λ = 0.8. Their code normalised the attention softmax
across the *batch*; here it runs over the time steps of each utterance, padding masked.
Which conv layers are followed by a pool, and the conv padding, are not stated: we use
"same" padding and pools after the first two layers (``pool_after``), which leaves 15
attention steps for 3 s.

Both return logits from ``forward``; ``forward_with_attention`` also returns the
attention weights ``(B, F', T')`` / ``(B, T')`` (zero on padding) for the notebooks.
Optional segment mode (the best public reproduction): the input is cut into
``segment_frames`` windows, each scored, and the utterance's logits are the max or mean
over its segments.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..features import conv_lengths, lengths_to_mask
from ..fields import setting, validate_fields


@dataclass
class AttentionFCNConfig:
    n_classes: int = setting(4, ge=1)
    variant: str = setting("2d", choices=("2d", "1d"))  # Zhang et al. (2d) or Emotion in Motion (1d)
    attention_lambda: float = setting(0.3, gt=0)  # λ; 0.8 in Emotion in Motion
    attention_dim: int = setting(256, ge=1)  # width of W in e_i = uᵀ tanh(W a_i + b) (not stated)
    # 1-D variant
    channels_1d: tuple[int, ...] = setting((5, 10, 20, 30), ge=1)
    kernels_1d: tuple[int, ...] = setting((11, 5, 3, 3), ge=1)
    strides_1d: tuple[int, ...] = setting((4, 1, 1, 1), ge=1)
    pool_after: tuple[int, ...] = setting((0, 1), ge=0)  # indices of the conv layers followed by a pool
    dense_1d: int = setting(30, ge=1)
    dropout: float = setting(0.0, ge=0, lt=1)
    segment_frames: int | None = setting(None, ge=1)  # e.g. 300 (3 s at 10 ms)
    segment_pool: str = setting("max", choices=("max", "mean"))  # over segments

    def __post_init__(self):
        validate_fields(self)


class Attention(nn.Module):
    """e_i = uᵀ tanh(W a_i + b); α = softmax(λ e) over valid positions; c = Σ α_i a_i."""

    def __init__(self, dim: int, hidden: int, lam: float):
        super().__init__()
        self.proj = nn.Linear(dim, hidden)
        self.u = nn.Linear(hidden, 1, bias=False)
        self.lam = lam

    def forward(self, a: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``a (B, N, D)``, ``mask (B, N)`` → context ``(B, D)``, weights ``(B, N)``."""
        e = self.u(torch.tanh(self.proj(a))).squeeze(-1).float()
        e = e.masked_fill(~mask, float("-inf"))
        alpha = torch.softmax(self.lam * e, dim=-1)
        alpha = torch.nan_to_num(alpha)  # an utterance with no valid position gets zeros
        return (alpha.unsqueeze(-1).to(a.dtype) * a).sum(1), alpha


def masked_stack(layers: nn.Sequential, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``layers`` on ``(B, ..., T)``, carrying each item's valid length along time
    through every conv/pool and zeroing the steps past it, so padding changes nothing."""
    for layer in layers:
        x = layer(x)
        if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.MaxPool1d, nn.MaxPool2d)):
            k, s, p = (v[-1] if isinstance(v, tuple) else v for v in (layer.kernel_size, layer.stride, layer.padding))
            lengths = conv_lengths(lengths, k, s, p)
            mask = lengths_to_mask(lengths, x.shape[-1]).to(x.dtype)
            x = x * mask.view(mask.shape[0], *([1] * (x.dim() - 2)), mask.shape[1])
    return x, lengths


class AlexNetEncoder(nn.Module):
    """AlexNet's conv stack; each stage zeroes the time steps past each item's length."""

    def __init__(self, in_channels: int = 3):
        super().__init__()
        C = nn.Conv2d
        self.features = nn.Sequential(
            C(in_channels, 96, 11, stride=4, padding=2), nn.ReLU(), nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0),
            nn.MaxPool2d(3, 2),
            C(96, 256, 5, padding=2), nn.ReLU(), nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0), nn.MaxPool2d(3, 2),
            C(256, 384, 3, padding=1), nn.ReLU(), C(384, 384, 3, padding=1), nn.ReLU(),
            C(384, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
        )
        self.out_channels = 256

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return masked_stack(self.features, x, lengths)


class Conv1dEncoder(nn.Module):
    def __init__(self, c: AttentionFCNConfig):
        super().__init__()
        layers, c_in = [], 1
        for i, (ch, k, s) in enumerate(zip(c.channels_1d, c.kernels_1d, c.strides_1d)):
            layers += [nn.Conv1d(c_in, ch, k, stride=s, padding=k // 2), nn.ReLU()]
            if i in c.pool_after:
                layers.append(nn.MaxPool1d(3, 2))
            c_in = ch
        self.features = nn.Sequential(*layers)
        self.dense = nn.Linear(c_in, c.dense_1d)
        self.out_channels = c.dense_1d

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, lengths = masked_stack(self.features, x, lengths)
        return torch.tanh(self.dense(x.transpose(1, 2))).transpose(1, 2), lengths  # (B, D, T')


class AttentionFCN(nn.Module):
    """``forward(x, lengths) -> logits``; ``x`` is ``(B, 3, F, T)`` (2-D) or ``(B, 1, T)``
    / ``(B, T)`` (1-D)."""

    def __init__(self, config: AttentionFCNConfig, encoder_state_dict: dict | None = None):
        super().__init__()
        self.config = c = config
        self.encoder = AlexNetEncoder() if c.variant == "2d" else Conv1dEncoder(c)
        if encoder_state_dict is not None:
            self.load_encoder(encoder_state_dict)
        d = self.encoder.out_channels
        self.attention = Attention(d, c.attention_dim if c.variant == "2d" else d, c.attention_lambda)
        self.dropout = nn.Dropout(c.dropout)
        self.classifier = nn.Linear(d, c.n_classes)

    def load_encoder(self, state: dict) -> None:
        """Load encoder weights, e.g. torchvision AlexNet's ``features.*`` (ImageNet)."""
        state = {k.removeprefix("encoder."): v for k, v in state.items()}
        state = {k: v for k, v in state.items() if k.startswith("features.")}
        missing, unexpected = self.encoder.load_state_dict(state, strict=False)
        if unexpected or len(missing) == len(self.encoder.state_dict()):
            raise ValueError(f"encoder_state_dict does not fit the encoder (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]})")

    def _single(self, x: torch.Tensor, lengths: torch.Tensor):
        if self.config.variant == "1d" and x.dim() == 2:
            x = x.unsqueeze(1)
        a, out_len = self.encoder(x, lengths)
        if self.config.variant == "2d":
            b, d, f, t = a.shape
            mask = lengths_to_mask(out_len, t)[:, None, :].expand(b, f, t).reshape(b, f * t)
            context, alpha = self.attention(a.flatten(2).transpose(1, 2), mask)
            alpha = alpha.reshape(b, f, t)
        else:
            mask = lengths_to_mask(out_len, a.shape[-1])
            context, alpha = self.attention(a.transpose(1, 2), mask)
        return self.classifier(self.dropout(context)), alpha

    def forward_with_attention(self, x: torch.Tensor, lengths: torch.Tensor):
        """Logits and attention weights (segment mode: the weights of every segment,
        ``(B, n_segments, …)``)."""
        n = self.config.segment_frames
        if n is None:
            return self._single(x, lengths)
        pad = (-x.shape[-1]) % n
        x = nn.functional.pad(x, (0, pad))
        n_seg = x.shape[-1] // n
        segs = x.unfold(-1, n, n)  # (B, ..., n_seg, n)
        segs = segs.movedim(-2, 1).reshape(-1, *x.shape[1:-1], n)  # (B·n_seg, ..., n)
        seg_len = (lengths[:, None] - n * torch.arange(n_seg, device=lengths.device)[None]).clamp(0, n)
        valid = seg_len > 0  # (B, n_seg)
        logits, alpha = self._single(segs, seg_len.reshape(-1).clamp_min(1))
        logits = logits.reshape(len(lengths), n_seg, -1)
        if self.config.segment_pool == "max":
            pooled = logits.masked_fill(~valid[..., None], float("-inf")).amax(1)
        else:
            w = valid[..., None].to(logits.dtype)
            pooled = (logits * w).sum(1) / w.sum(1).clamp_min(1)
        return pooled, alpha.reshape(len(lengths), n_seg, *alpha.shape[1:])

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.forward_with_attention(x, lengths)[0]
