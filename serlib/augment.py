"""Augmentation: VTLP (Etienne et al. 2018, eq. 1), training strategies, test-time
α voting, and class oversampling of the training split.

All of it runs on the batch's device and never touches val/test membership: the
sampler only sees training indices, and voting only changes how test copies are scored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

# Test-time copies: α = 0.90, 0.92, …, 1.10 (section 2 of the paper).
TEST_ALPHAS = tuple(round(0.9 + 0.02 * i, 2) for i in range(11))
STRATEGIES = ("none", "per_epoch", "per_example")


def warp_frequencies(f: torch.Tensor, alpha: torch.Tensor, fmax: float, f0_ratio: float = 0.9) -> torch.Tensor:
    r"""The warping function G(f) of eq. 1:

    .. math:: G(f) = \alpha f \; (f \le f_0), \quad
              \frac{f_{max} - \alpha f_0}{f_{max} - f_0}(f - f_0) + \alpha f_0 \; (f > f_0)

    with :math:`f_0 = f0\_ratio \cdot f_{max}`. ``alpha`` broadcasts against ``f``.
    """
    f0 = f0_ratio * fmax
    upper = (fmax - alpha * f0) / (fmax - f0) * (f - f0) + alpha * f0
    return torch.where(f <= f0, alpha * f, upper)


def _inverse_warp(f: torch.Tensor, alpha: torch.Tensor, fmax: float, f0_ratio: float) -> torch.Tensor:
    """G^{-1}: the source frequency whose content lands on ``f``."""
    f0 = f0_ratio * fmax
    lower = f / alpha
    upper = f0 + (f - alpha * f0) * (fmax - f0) / (fmax - alpha * f0)
    return torch.where(f <= alpha * f0, lower, upper)


def vtlp_warp(spec: torch.Tensor, alpha: float | torch.Tensor, f0_ratio: float = 0.9) -> torch.Tensor:
    """Warp the frequency axis of a linear-frequency spectrogram by eq. 1.

    Args:
        spec: ``(F, T)`` or ``(B, ..., F, T)``; bin ``k`` is frequency ``k / (F - 1) · fmax``
            (fmax = the top of the kept range, e.g. 4 kHz).
        alpha: a float, or a ``(B,)`` tensor with one α per example.
        f0_ratio: f0 / fmax (0.9 in the paper).

    Returns:
        The warped spectrogram, same shape: content at frequency f moves to G(f) (α > 1
        moves formants up), by linear interpolation between bins; the top bin stays put.
    """
    n_freq = spec.shape[-2]
    alpha = torch.as_tensor(alpha, dtype=spec.dtype, device=spec.device)
    if alpha.dim() == 0 or spec.dim() == 2:
        alpha_b = alpha.reshape(-1)[:1] if spec.dim() == 2 else alpha.expand(spec.shape[0])
    else:
        alpha_b = alpha
    if spec.dim() > 2 and alpha_b.shape[0] != spec.shape[0]:
        raise ValueError(f"{alpha_b.shape[0]} alphas for a batch of {spec.shape[0]}")
    fmax = float(n_freq - 1)
    bins = torch.arange(n_freq, device=spec.device, dtype=spec.dtype)
    src = _inverse_warp(bins[None, :], alpha_b[:, None], fmax, f0_ratio).clamp(0, fmax)  # (B, F)
    lo = src.floor().long().clamp(max=n_freq - 2)
    frac = (src - lo).unsqueeze(-1)  # (B, F, 1)
    batch = spec if spec.dim() > 2 else spec.unsqueeze(0)
    flat = batch.reshape(batch.shape[0], -1, n_freq, batch.shape[-1])  # (B, C, F, T)
    index = lo[:, None, :, None].expand(-1, flat.shape[1], -1, flat.shape[-1])
    below = flat.gather(2, index)
    above = flat.gather(2, index + 1)
    out = (below + frac[:, None] * (above - below)).reshape(batch.shape)
    return out if spec.dim() > 2 else out[0]


class VTLP(nn.Module):
    """Draws α ~ U(low, high) per example in training mode and warps; identity in eval
    mode. ``VTLP(alpha=a)`` always warps by ``a`` (``alpha=1`` is the identity)."""

    def __init__(self, low: float = 0.9, high: float = 1.1, f0_ratio: float = 0.9,
                 alpha: float | None = None):
        super().__init__()
        self.low, self.high, self.f0_ratio, self.alpha = low, high, f0_ratio, alpha

    def draw(self, n: int, device, generator: torch.Generator | None = None) -> torch.Tensor:
        u = torch.rand(n, generator=generator).to(device)
        return self.low + (self.high - self.low) * u

    def forward(self, spec: torch.Tensor, alpha: torch.Tensor | float | None = None) -> torch.Tensor:
        if alpha is None:
            if self.alpha is not None:
                alpha = self.alpha
            elif self.training:
                alpha = self.draw(spec.shape[0] if spec.dim() > 2 else 1, spec.device)
            else:
                return spec
        return vtlp_warp(spec, alpha, self.f0_ratio)


def vote(probabilities: torch.Tensor) -> torch.Tensor:
    """Majority vote over copies: ``(copies, B, C) -> (B,)`` class indices.

    Each copy votes for its argmax; ties between classes with the same number of votes
    are broken by the summed probabilities of the tied classes.
    """
    n_classes = probabilities.shape[-1]
    votes = torch.nn.functional.one_hot(probabilities.argmax(-1), n_classes).sum(0)  # (B, C)
    summed = probabilities.sum(0)  # (B, C), each < copies
    tied = votes == votes.max(dim=-1, keepdim=True).values
    score = torch.where(tied, summed, torch.full_like(summed, -1.0))
    return score.argmax(-1)


@torch.no_grad()
def predict_with_voting(
    predict_proba: Callable[[torch.Tensor], torch.Tensor], spec: torch.Tensor,
    alphas: Sequence[float] = TEST_ALPHAS, f0_ratio: float = 0.9,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Score ``len(alphas)`` warped copies of a test batch and vote.

    Returns (predicted class indices ``(B,)``, mean probabilities ``(B, C)``).
    """
    probs = torch.stack([predict_proba(vtlp_warp(spec, a, f0_ratio)) for a in alphas])
    return vote(probs), probs.mean(0)


def oversample_indices(labels: Sequence[str], factors: Mapping[str, int], seed: int | None = None) -> np.ndarray:
    """Indices of a training split with the classes in ``factors`` repeated ×k.

    ``oversample_indices(["a", "b"], {"b": 2}) -> [0, 1, 1]`` (shuffled when ``seed`` is
    given). Only ever call this on the training split.
    """
    labels = list(labels)
    for name, k in factors.items():
        if int(k) != k or k < 1:
            raise ValueError(f"oversampling factor for {name!r} must be a positive integer, got {k}")
    index = [i for i, y in enumerate(labels) for _ in range(int(factors.get(y, 1)))]
    index = np.asarray(index, dtype=np.int64)
    if seed is not None:
        np.random.default_rng(seed).shuffle(index)
    return index
