"""CNN+LSTM of Etienne et al. (2018), "CNN+LSTM Architecture for Speech Emotion
Recognition with Data Augmentation".

Spectrogram ``(B, F, T)`` → ``n_conv`` conv layers (no pooling: it hurt, section 3) →
``n_lstm`` bidirectional LSTM layers over time → dense softmax layer. Padding in time is
masked: after every conv layer the frames past each item's length (which follows the
conv strides) are zeroed, and the LSTM runs on packed sequences, so a padded batch gives
exactly the per-item outputs.

Not stated in the paper (config fields, our choices): filter counts 32/32/64/64, 3×3
kernels, strides (2,2)/(2,2)/(2,1)/(2,1) in (frequency, time), LSTM width 128 per
direction, classification from the last hidden state of each direction.

Recurrent batch normalisation (eq. 3–5) is an option (off by default):
``h_t = a(W_h h_{t-1} + BN(W_x x_t))`` with BN statistics over batch, valid time steps
and features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from ..errors import ConfigError
from ..features import conv_lengths, lengths_to_mask
from ..fields import setting, validate_fields


@dataclass
class CNNLSTMConfig:
    """Architecture of the CNN+LSTM; the paper's best model is 4 conv + 1 BiLSTM."""

    n_classes: int = setting(4, ge=1)
    n_freq: int = setting(256, ge=1)       # input frequency bins (4 kHz: 256, 8 kHz: 512)
    n_conv: int = setting(4, ge=1)         # 1–6 in the paper
    conv_channels: tuple[int, ...] = setting((32, 32, 64, 64, 64, 64), ge=1)
    conv_kernel: tuple[int, int] = setting((3, 3), ge=1)  # (freq, time)
    conv_strides: tuple[tuple[int, int], ...] = ((2, 2), (2, 2), (2, 1), (2, 1), (1, 1), (1, 1))
    n_lstm: int = setting(1, ge=1)         # 1–4 in the paper
    lstm_hidden: int = setting(128, ge=1)  # per direction
    bidirectional: bool = True
    recurrent_bn: bool = False             # eq. 3–5
    dropout: float = setting(0.0, ge=0, lt=1)
    pooling: str = setting("last", choices=("last", "mean"))  # last hidden states, or masked mean over time

    def __post_init__(self):
        validate_fields(self)
        if self.n_conv > len(self.conv_channels) or len(self.conv_strides) < self.n_conv:
            raise ConfigError(f"n_conv={self.n_conv} needs that many conv_channels and conv_strides")


class MaskedConv(nn.Module):
    """Conv2d + ReLU whose output frames past each item's length are zeroed."""

    def __init__(self, c_in: int, c_out: int, kernel: tuple[int, int], stride: tuple[int, int]):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.padding = (kernel[0] // 2, kernel[1] // 2)
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, self.padding)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.relu(self.conv(x))  # (B, C, F', T')
        lengths = conv_lengths(lengths, self.kernel[1], self.stride[1], self.padding[1])
        mask = lengths_to_mask(lengths, x.shape[-1])
        return x * mask[:, None, None, :].to(x.dtype), lengths


class SequenceBatchNorm(nn.Module):
    """Batch normalisation of ``(B, T, D)`` pre-activations with one mean and variance over
    the batch, the valid time steps and the features (eq. 3–4: "averaging the samples
    over all the axes"), and a per-feature affine transform."""

    def __init__(self, dim: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_mean", torch.zeros(()))
        self.register_buffer("running_var", torch.ones(()))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.training:
            m = mask[..., None].to(x.dtype)  # (B, T, 1)
            count = m.sum() * x.shape[-1]
            mean = (x * m).sum() / count
            var = (((x - mean) * m) ** 2).sum() / count
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(var.detach(), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class RecurrentBNLSTM(nn.Module):
    """One (bi)directional LSTM layer with BN on the input contribution only (eq. 5):
    gates_t = BN(W_x x_t) + W_h h_{t-1} + b. A Python loop over time: slower than cuDNN,
    which cannot normalise inside the recurrence."""

    def __init__(self, input_size: int, hidden: int, bidirectional: bool = True):
        super().__init__()
        self.hidden = hidden
        self.directions = 2 if bidirectional else 1
        self.w_x = nn.ModuleList(nn.Linear(input_size, 4 * hidden, bias=False) for _ in range(self.directions))
        self.bn = nn.ModuleList(SequenceBatchNorm(4 * hidden) for _ in range(self.directions))
        self.cell = nn.ModuleList(nn.LSTMCell(4 * hidden, hidden) for _ in range(self.directions))
        for cell in self.cell:  # the cell's input weights become the identity on the gates
            with torch.no_grad():
                cell.weight_ih.copy_(torch.eye(4 * hidden))
            cell.weight_ih.requires_grad_(False)

    @staticmethod
    def _reverse(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Reverse each sequence within its own length (padding stays at the end)."""
        t = torch.arange(x.shape[1], device=x.device)[None, :]
        idx = (lengths[:, None] - 1 - t).clamp_min(0)
        idx = torch.where(t < lengths[:, None], idx, t)
        return x.gather(1, idx[..., None].expand_as(x))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, D) -> outputs (B, T, dirs·H)`` and final states ``(B, dirs·H)``."""
        mask = lengths_to_mask(lengths, x.shape[1])
        outputs, finals = [], []
        for d in range(self.directions):
            seq = x if d == 0 else self._reverse(x, lengths)
            gates_in = self.bn[d](self.w_x[d](seq), mask)  # (B, T, 4H)
            h = x.new_zeros(x.shape[0], self.hidden)
            c = torch.zeros_like(h)
            steps = []
            for t in range(x.shape[1]):
                h_new, c_new = self.cell[d](gates_in[:, t], (h, c))
                valid = mask[:, t, None]
                h, c = torch.where(valid, h_new, h), torch.where(valid, c_new, c)
                steps.append(h_new * valid)
            out = torch.stack(steps, dim=1)
            outputs.append(out if d == 0 else self._reverse(out, lengths))
            finals.append(h)
        return torch.cat(outputs, -1), torch.cat(finals, -1)


class CNNLSTM(nn.Module):
    """``forward(x (B, F, T), lengths (B,)) -> logits (B, n_classes)``."""

    def __init__(self, config: CNNLSTMConfig):
        super().__init__()
        self.config = c = config
        convs, c_in, freq = [], 1, c.n_freq
        for i in range(c.n_conv):
            convs.append(MaskedConv(c_in, c.conv_channels[i], c.conv_kernel, c.conv_strides[i]))
            c_in = c.conv_channels[i]
            pad = c.conv_kernel[0] // 2
            freq = (freq + 2 * pad - c.conv_kernel[0]) // c.conv_strides[i][0] + 1
        self.convs = nn.ModuleList(convs)
        lstm_in = c_in * freq
        dirs = 2 if c.bidirectional else 1
        if c.recurrent_bn:
            self.lstms = nn.ModuleList(
                RecurrentBNLSTM(lstm_in if i == 0 else dirs * c.lstm_hidden, c.lstm_hidden, c.bidirectional)
                for i in range(c.n_lstm))
        else:
            self.lstm = nn.LSTM(lstm_in, c.lstm_hidden, num_layers=c.n_lstm, batch_first=True,
                                bidirectional=c.bidirectional, dropout=c.dropout if c.n_lstm > 1 else 0.0)
        self.dropout = nn.Dropout(c.dropout)
        self.classifier = nn.Linear(dirs * c.lstm_hidden, c.n_classes)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by part, for the layer-wise optimiser (eq. 6)."""
        recurrent = self.lstms if self.config.recurrent_bn else self.lstm
        return {"conv": list(self.convs.parameters()),
                "lstm": [p for p in recurrent.parameters() if p.requires_grad],
                "dense": list(self.classifier.parameters())}

    def encode(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Conv stack: ``(B, F, T) -> (B, T', C·F')`` sequence and its lengths."""
        h = (x * lengths_to_mask(lengths, x.shape[-1])[:, None, :].to(x.dtype)).unsqueeze(1)  # (B, 1, F, T)
        for conv in self.convs:
            h, lengths = conv(h, lengths)
        b, ch, f, t = h.shape
        return h.permute(0, 3, 1, 2).reshape(b, t, ch * f), lengths

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        seq, lengths = self.encode(x, lengths)
        lengths = lengths.clamp_min(1)
        if self.config.recurrent_bn:
            for layer in self.lstms:
                seq, final = layer(seq, lengths)
        else:
            packed = pack_padded_sequence(seq, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out_packed, (h_n, _) = self.lstm(packed)
            dirs = 2 if self.config.bidirectional else 1
            final = h_n[-dirs:].transpose(0, 1).reshape(seq.shape[0], -1)  # last layer, both directions
            if self.config.pooling == "mean":
                seq, _ = nn.utils.rnn.pad_packed_sequence(out_packed, batch_first=True, total_length=seq.shape[1])
        if self.config.pooling == "mean":
            mask = lengths_to_mask(lengths, seq.shape[1])[..., None].to(seq.dtype)
            final = (seq * mask).sum(1) / mask.sum(1)
        return self.classifier(self.dropout(final))
