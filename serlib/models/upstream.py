"""A light head on a pretrained speech encoder's hidden states (SUPERB style).

Yang et al. 2021, "SUPERB: Speech processing Universal PERformance Benchmark", section 3:
the upstream's hidden states of every layer are combined by a learnable softmax-weighted
sum, ``h_t = Σ_l softmax(w)_l · h_t^(l)``, and a small downstream model is trained on
``h``; the upstream stays frozen. Here the downstream model is a pooling over time (a
masked mean, mean + standard deviation, or attentive statistics pooling, Okabe et al.
2018, eqs. 1-6) and an MLP.

Two input layouts (what :mod:`serlib.upstream` caches):

* frame-level states ``x: (B, L, H, T)`` with ``lengths: (B,)`` valid frames;
* pooled per-layer statistics ``x: (B, 2, L, H, 1)`` (mean and standard deviation over
  each utterance's frames, per layer). Mean pooling commutes with the layer weighting
  (both are linear), so ``pooling="mean"`` gives exactly the same logits from the pooled
  statistics as from the frames. With ``mean_std`` the pooled input uses the layer-weighted
  per-layer standard deviations (not the standard deviation of the weighted sum), and
  ``attentive`` needs frames.

Tensors in, logits out; no corpus, no training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..fields import setting, validate_fields

POOLINGS = ("mean", "mean_std", "attentive")


@dataclass
class UpstreamHeadConfig:
    """The head's settings; ``n_layers``, ``n_features`` and ``n_classes`` come from the
    checkpoint and the data."""

    n_layers: int = setting(13, ge=1)    # hidden states used (a base encoder: the CNN output + 12 layers)
    n_features: int = setting(768, ge=1)  # the encoder's hidden size
    n_classes: int = setting(4, ge=1)
    pooling: str = setting("mean", choices=POOLINGS)  # attentive needs frame-level states
    hidden: int = setting(256, ge=0)     # MLP width (0: a linear classifier on the pooled vector)
    dropout: float = setting(0.2, ge=0, lt=1)
    attention_dim: int = setting(128, ge=1)  # attentive statistics pooling's hidden size

    def __post_init__(self):
        validate_fields(self)


class LayerWeights(nn.Module):
    """``Σ_l softmax(w)_l · x[:, l]`` over the layer axis ``dim`` (SUPERB, section 3);
    ``w`` starts at zero: every layer weighs ``1 / L``."""

    def __init__(self, n_layers: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(n_layers))

    def weights(self) -> torch.Tensor:
        """The layer weights ``(L,)``; they sum to 1."""
        return torch.softmax(self.logits, dim=0)

    def forward(self, x: torch.Tensor, dim: int = 1) -> torch.Tensor:
        w = self.weights().to(x.dtype)
        shape = [1] * x.dim()
        shape[dim] = -1
        return (x * w.view(shape)).sum(dim)


def masked_mean_std(h: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation over each item's valid frames: ``(B, H, T) -> 2 × (B, H)``."""
    mask = (torch.arange(h.shape[-1], device=h.device)[None, :] < lengths[:, None]).to(h.dtype)  # (B, T)
    count = mask.sum(-1, keepdim=True).clamp_min(1)
    mean = (h * mask[:, None]).sum(-1) / count
    var = (((h - mean[..., None]) ** 2) * mask[:, None]).sum(-1) / count
    return mean, var.clamp_min(1e-8).sqrt()


class AttentiveStatsPooling(nn.Module):
    """Attentive statistics pooling (Okabe et al. 2018, eqs. 1-6): a frame score
    ``e_t = vᵀ tanh(W h_t + b) + k``, ``α = softmax(e)`` over the valid frames, and the
    weighted mean and standard deviation ``(B, H, T) -> (B, 2H)``."""

    def __init__(self, n_features: int, attention_dim: int):
        super().__init__()
        self.score = nn.Sequential(nn.Conv1d(n_features, attention_dim, 1), nn.Tanh(), nn.Conv1d(attention_dim, 1, 1))

    def forward(self, h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        e = self.score(h).squeeze(1)                                                # (B, T)
        valid = torch.arange(h.shape[-1], device=h.device)[None, :] < lengths[:, None]
        alpha = torch.softmax(e.masked_fill(~valid, float("-inf")), dim=-1)[:, None]  # (B, 1, T)
        mean = (alpha * h).sum(-1)
        var = (alpha * h * h).sum(-1) - mean**2
        return torch.cat([mean, var.clamp_min(1e-8).sqrt()], dim=-1)


class UpstreamHead(nn.Module):
    """Layer weights → pooling over time → MLP → logits ``(B, n_classes)``.

    ``forward(x, lengths)`` takes frame-level states ``(B, L, H, T)`` or pooled
    statistics ``(B, 2, L, H, 1)`` (module docstring)."""

    def __init__(self, config: UpstreamHeadConfig):
        super().__init__()
        c = self.config = config
        self.layers = LayerWeights(c.n_layers)
        self.attentive = AttentiveStatsPooling(c.n_features, c.attention_dim) if c.pooling == "attentive" else None
        width = c.n_features * (1 if c.pooling == "mean" else 2)
        if c.hidden:
            self.classifier = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(width, c.hidden), nn.ReLU(),
                                            nn.Dropout(c.dropout), nn.Linear(c.hidden, c.n_classes))
        else:
            self.classifier = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(width, c.n_classes))

    def embed(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The pooled utterance vector ``(B, H)`` or ``(B, 2H)`` the MLP classifies."""
        x = x.to(self.layers.logits.dtype)
        if x.dim() == 5:  # pooled statistics (B, 2, L, H, 1)
            if self.attentive is not None:
                raise ValueError("attentive pooling needs frame-level states (B, L, H, T), got pooled statistics")
            mean, std = self.layers(x[:, 0, ..., 0]), self.layers(x[:, 1, ..., 0])  # (B, H) each
            return mean if self.config.pooling == "mean" else torch.cat([mean, std], dim=-1)
        if x.dim() != 4:
            raise ValueError(f"expected states (B, L, H, T) or pooled statistics (B, 2, L, H, 1), got {tuple(x.shape)}")
        h = self.layers(x)                                       # (B, H, T)
        if self.attentive is not None:
            return self.attentive(h, lengths)
        mean, std = masked_mean_std(h, lengths)
        return mean if self.config.pooling == "mean" else torch.cat([mean, std], dim=-1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x, lengths))
