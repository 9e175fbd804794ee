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
