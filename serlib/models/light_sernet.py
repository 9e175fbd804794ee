"""Light-SERNet (Aftab et al. 2022), the official TensorFlow architecture in PyTorch.

Input: MFCC ``(B, 40, T)`` (coefficients × frames, the ``light_sernet`` preset), seen as
an image ``(B, 1, T, 40)`` (time × cepstrum) as in the official code.

* Three parallel paths, Conv2d(32) with kernels (11,1) (time), (1,9) (cepstral) and (3,3),
  each BN → ReLU → AvgPool 2×2; concatenated to 96 channels.
* Body (convolutions without bias, L2 1e-6 in the paper): 3×3 conv 64 → pool (2,2),
  96 → (2,2), 128 → (2,1), 160 → (2,1), 1×1 conv 320; each BN → ReLU.
* Global average pooling, dropout 0.3, linear.

Pooling follows TensorFlow's ``padding="same"``: the output size is the ceiling of
input / 2 and a window that runs past the edge averages only the elements inside it
(``ceil_mode=True, count_include_pad=False``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..fields import setting, validate_fields


@dataclass
class LightSERNetConfig:
    n_classes: int = setting(4, ge=1)
    n_mfcc: int = setting(40, ge=1)
    path_channels: int = setting(32, ge=1)
    body_channels: tuple[int, ...] = setting((64, 96, 128, 160, 320), ge=1)
    body_pools: tuple[tuple[int, int], ...] = ((2, 2), (2, 2), (2, 1), (2, 1))
    dropout: float = setting(0.3, ge=0, lt=1)

    def __post_init__(self):
        validate_fields(self)


def tf_avg_pool(kernel: tuple[int, int]) -> nn.Module:
    """AvgPool2d matching TensorFlow's ``AveragePooling2D(padding="same")`` for stride = kernel."""
    return nn.AvgPool2d(kernel, stride=kernel, ceil_mode=True, count_include_pad=False)


def _block(c_in: int, c_out: int, kernel, pool=None, bias: bool = False) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, kernel, padding="same", bias=bias), nn.BatchNorm2d(c_out), nn.ReLU()]
    if pool is not None:
        layers.append(tf_avg_pool(pool))
    return nn.Sequential(*layers)


class LightSERNet(nn.Module):
    """``forward(x (B, 40, T), lengths) -> logits``; lengths are unused (fixed-length
    input: 3 s or 7 s centre-cropped or zero-padded)."""

    def __init__(self, config: LightSERNetConfig):
        super().__init__()
        self.config = c = config
        self.paths = nn.ModuleList(_block(1, c.path_channels, k, (2, 2), bias=True)
                                   for k in ((11, 1), (1, 9), (3, 3)))
        layers, c_in = [], 3 * c.path_channels
        for i, c_out in enumerate(c.body_channels):
            last = i == len(c.body_channels) - 1
            layers.append(_block(c_in, c_out, (1, 1) if last else (3, 3), None if last else c.body_pools[i]))
            c_in = c_out
        self.body = nn.Sequential(*layers)
        self.dropout = nn.Dropout(c.dropout)
        self.classifier = nn.Linear(c_in, c.n_classes)

    def body_parameters(self) -> list[nn.Parameter]:
        """The body's conv kernels: the weights the paper regularises with L2."""
        return [m.weight for m in self.body.modules() if isinstance(m, nn.Conv2d)]

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The maps after the paths and after each body block (for shape checks)."""
        h = x.transpose(1, 2).unsqueeze(1)  # (B, 1, T, n_mfcc)
        h = torch.cat([p(h) for p in self.paths], dim=1)
        maps = [h]
        for block in self.body:
            h = block(h)
            maps.append(h)
        return maps

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        h = self.feature_maps(x)[-1]
        return self.classifier(self.dropout(h.mean(dim=(-2, -1))))
