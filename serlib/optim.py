"""Optimisers that the papers define themselves, and per-layer gradient norms."""

from __future__ import annotations

import math
from collections import defaultdict

import torch
from torch import nn


class LayerwiseMomentumSGD(torch.optim.Optimizer):
    r"""SGD with momentum in the form of eq. 6 of Etienne et al. (2018):

    .. math:: v_t = \gamma v_{t-1} + \eta (\nabla_w J + \lambda w), \qquad w \leftarrow w - \beta v_t

    with learning rate η (``lr``), momentum γ (``momentum``), the extra step factor β
    (``beta``; it does not accumulate in the velocity) and L2 regularisation λ
    (``weight_decay``), each settable per parameter group — e.g. one group for the conv
    layers and one for the LSTM. With β = 1 it is PyTorch's SGD with momentum.
    """

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.9, beta: float = 1.0,
                 weight_decay: float = 0.0):
        if lr <= 0 or not 0 <= momentum < 1 or beta <= 0 or weight_decay < 0:
            raise ValueError(f"invalid settings lr={lr} momentum={momentum} beta={beta} weight_decay={weight_decay}")
        super().__init__(params, {"lr": lr, "momentum": momentum, "beta": beta, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            eta, gamma, beta, decay = group["lr"], group["momentum"], group["beta"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad.add(p, alpha=decay) if decay else p.grad
                state = self.state[p]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(p)
                v = state["velocity"]
                v.mul_(gamma).add_(grad, alpha=eta)   # v_t = γ v_{t-1} + η ∇J
                p.add_(v, alpha=-beta)                # w = w − β v_t
        return loss


def layer_grad_norms(model: nn.Module) -> dict[str, float]:
    """L2 norm of the gradient per layer (parameters grouped by their module path)."""
    layers, parts = [], []
    for name, p in model.named_parameters():
        if p.grad is not None:
            layer = name.rsplit(".", 1)[0] if "." in name else name
            layers.append(layer.removesuffix(".conv"))
            parts.append(p.grad.detach().float().pow(2).sum())
    sq = defaultdict(float)
    # one read from the device for all parameters (not one per parameter); summed per layer
    # in double on the host, in the same order as before
    for layer, v in zip(layers, torch.stack(parts).tolist() if parts else []):
        sq[layer] += v
    return {k: math.sqrt(v) for k, v in sq.items()}
