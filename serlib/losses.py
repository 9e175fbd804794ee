"""Losses beyond plain cross-entropy."""

from __future__ import annotations

import torch
from torch import nn


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
               weight: torch.Tensor | None = None, reduction: str = "mean") -> torch.Tensor:
    r"""Multi-class focal loss (Lin et al. 2017), as used by Light-SERNet:

    .. math:: FL = -\alpha_t (1 - p_t)^\gamma \log p_t

    with :math:`p_t` the softmax probability of the true class and :math:`\alpha_t` an
    optional class weight. ``gamma=0`` without weights is cross-entropy. With weights,
    ``reduction="mean"`` divides by the summed weights of the batch (as
    ``nn.CrossEntropyLoss`` does).
    """
    log_p = torch.log_softmax(logits.float(), dim=-1)
    log_pt = log_p.gather(-1, target[:, None]).squeeze(-1)
    loss = -((1 - log_pt.exp()) ** gamma) * log_pt
    w = weight[target] if weight is not None else torch.ones_like(loss)
    loss = loss * w
    if reduction == "mean":
        return loss.sum() / w.sum()
    if reduction == "sum":
        return loss.sum()
    return loss


class FocalLoss(nn.Module):
    def __init__(self, gamma: float = 2.0, weight: torch.Tensor | None = None):
        super().__init__()
        self.gamma = gamma
        self.register_buffer("weight", weight if weight is not None else None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return focal_loss(logits, target, self.gamma, self.weight)


def classification_loss(kind: str, class_counts: torch.Tensor, class_weights: bool = False,
                        gamma: float = 2.0) -> nn.Module:
    """Cross-entropy (``kind="ce"``) or focal loss (``"focal"``), optionally with
    inverse-frequency class weights ``N / (C · n_c)`` from the training split's counts."""
    weight = class_counts.sum() / (len(class_counts) * class_counts.clamp_min(1)) if class_weights else None
    if kind == "focal":
        return FocalLoss(gamma, weight)
    return nn.CrossEntropyLoss(weight=weight)


def ccc_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""``1 - CCC`` per dimension (Lin 1989, over the batch), averaged over dimensions:
    the loss of the dimensional emotion challenges (e.g. Odyssey 2024). ``(B, D)`` inputs.

    >>> t = torch.tensor([[1.0], [2.0], [3.0]])
    >>> float(ccc_loss(t, t))
    0.0
    """
    prediction, target = prediction.float(), target.float()
    mp, mt = prediction.mean(0), target.mean(0)
    covariance = ((prediction - mp) * (target - mt)).mean(0)
    denominator = prediction.var(0, unbiased=False) + target.var(0, unbiased=False) + (mp - mt) ** 2
    return (1 - 2 * covariance / denominator.clamp_min(1e-8)).mean()


class CCCLoss(nn.Module):
    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ccc_loss(prediction, target)


class MultitaskLoss(nn.Module):
    """``(1 - weight) · classification + weight · regression`` of a model whose first
    ``n_classes`` outputs are logits and the rest the dimensions; ``target`` is
    ``(class index, dimensions)``."""

    def __init__(self, classification: nn.Module, regression: nn.Module, n_classes: int, weight: float):
        super().__init__()
        self.classification, self.regression = classification, regression
        self.n_classes, self.weight = n_classes, weight

    def forward(self, outputs: torch.Tensor, target: tuple) -> torch.Tensor:
        labels, values = target
        return ((1 - self.weight) * self.classification(outputs[:, :self.n_classes], labels)
                + self.weight * self.regression(outputs[:, self.n_classes:], values))


def regression_loss(kind: str) -> nn.Module:
    """``"ccc"`` (1 − CCC per dimension, averaged) or ``"mse"``, on standardised targets."""
    return CCCLoss() if kind == "ccc" else nn.MSELoss()
