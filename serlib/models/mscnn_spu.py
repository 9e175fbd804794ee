"""MSCNN-SPU(-ATT) of Peng et al. (2021), "Efficient speech emotion recognition using
multi-scale CNN and attention" (no official code: built from the paper).

* MSCNN (section 3.1): for each modality, parallel single-layer convolutions whose
  kernels span the whole feature dimension (96 MFCC+Δ+ΔΔ for audio, the word-embedding
  size for text), one per kernel size, 128 filters each, ReLU. The paper does not give
  the kernel sizes: audio 5/7/9/11 and text 2/3/4/5 (an unofficial port's values) are
  the defaults. We use "same" padding so every scale has one output per input step.
* SPU (section 3.2): global max, mean and standard deviation over the valid time steps
  of each map, concatenated.
* Attention (eq. 4–6): for γ ∈ {max, avg, std} the audio SPU vector e_γ scores each text
  position, s_k = softmax_k(e_γᵀ h_k) over valid positions, S_γ = Σ_k s_k h_k, and
  S = concat(S_max, S_avg, S_std). When the audio and text map widths differ, e_γ goes
  through a linear projection to the text width first (not needed with equal kernel
  counts).
* Classifier (section 3.4): concat(audio SPU [+ utterance embedding, the paper's
  x-vector], text SPU + SWEM-max/avg, S) → FC (dimension reduction, ReLU) → dropout →
  linear. The FC width is not given: 256.

Variants: ``audio`` (Audio-CNN: audio MSCNN+SPU), ``text`` (Text-CNN: text MSCNN+SPU+SWEM),
``mscnn_spu`` (both, no attention), ``mscnn_spu_att`` (all); ablations by the flags
``audio_spu="max"``, ``text_spu="max"``, ``swem=False``, ``utterance_dim=0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..features import lengths_to_mask
from ..fields import setting, validate_fields
from ..text import swem

VARIANTS = ("audio", "text", "mscnn_spu", "mscnn_spu_att")


@dataclass
class MSCNNSPUConfig:
    n_classes: int = setting(4, ge=1)
    variant: str = setting("mscnn_spu_att", choices=VARIANTS)
    audio_dim: int = setting(96, ge=1)
    vocab_size: int = setting(2, ge=2)
    embedding_dim: int = setting(300, ge=1)
    audio_kernels: tuple[int, ...] = setting((5, 7, 9, 11), ge=1)
    text_kernels: tuple[int, ...] = setting((2, 3, 4, 5), ge=1)
    filters: int = setting(128, ge=1)
    audio_spu: str = setting("all", choices=("all", "max"))  # (max, avg, std) or max (Table 2 ablation)
    text_spu: str = setting("all", choices=("all", "max"))
    swem: bool = True
    utterance_dim: int = setting(0, ge=0)  # x-vector size; 0 = none
    fc_dim: int = setting(256, ge=1)
    dropout: float = setting(0.3, ge=0, lt=1)
    freeze_embeddings: bool = False

    def __post_init__(self):
        validate_fields(self)

    @property
    def uses_audio(self) -> bool:
        return self.variant != "text"

    @property
    def uses_text(self) -> bool:
        return self.variant != "audio"


class MSCNN(nn.Module):
    """Parallel full-width convolutions: ``(B, D, T) -> (B, len(kernels)·filters, T)``,
    zero past each item's length."""

    def __init__(self, dim: int, kernels: tuple[int, ...], filters: int):
        super().__init__()
        # A Conv1d over D input channels is the paper's 2-D convolution with a (s, D) kernel.
        self.convs = nn.ModuleList(nn.Conv1d(dim, filters, k) for k in kernels)
        # "same" output length; padded here because padding="same" copies the input (and
        # warns) for even kernels. The extra zero goes on the right, as padding="same" does.
        self.pads = [((k - 1) // 2, k // 2) for k in kernels]
        self.out_dim = filters * len(kernels)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = lengths_to_mask(lengths, x.shape[-1])[:, None, :].to(x.dtype)
        x = x * mask
        return torch.cat([torch.relu(conv(F.pad(x, pad))) for conv, pad in zip(self.convs, self.pads)],
                         dim=1) * mask


def spu(h: torch.Tensor, lengths: torch.Tensor, stats: str = "all") -> dict[str, torch.Tensor]:
    """Statistical pooling unit: masked max, mean and std over time of ``(B, C, T)``."""
    mask = lengths_to_mask(lengths, h.shape[-1])[:, None, :]
    out = {"max": h.masked_fill(~mask, float("-inf")).amax(-1)}
    if stats == "all":
        m = mask.to(h.dtype)
        n = m.sum(-1).clamp_min(1)
        mean = (h * m).sum(-1) / n
        var = (((h - mean[..., None]) * m) ** 2).sum(-1) / n
        out.update({"avg": mean, "std": torch.sqrt(var + 1e-8)})
    return out


def text_attention(e: torch.Tensor, h: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 4–5: ``e (B, C)``, text maps ``h (B, C, L)`` → S ``(B, C)`` and weights ``(B, L)``
    (zero on padded positions)."""
    scores = torch.einsum("bc,bcl->bl", e, h).float()
    scores = scores.masked_fill(~lengths_to_mask(lengths, h.shape[-1]), float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return torch.einsum("bl,bcl->bc", weights.to(h.dtype), h), weights


class MSCNNSPU(nn.Module):
    """``forward(audio (B, 96, T), lengths, text (B, L) ids, text_lengths, utterance (B, U))
    -> logits``; the inputs a variant does not use may be None."""

    def __init__(self, config: MSCNNSPUConfig, embeddings: torch.Tensor | None = None):
        super().__init__()
        self.config = c = config
        width = 0
        if c.uses_audio:
            self.audio = MSCNN(c.audio_dim, c.audio_kernels, c.filters)
            width += self.audio.out_dim * (3 if c.audio_spu == "all" else 1) + c.utterance_dim
        if c.uses_text:
            if embeddings is not None:
                self.embedding = nn.Embedding.from_pretrained(embeddings, freeze=c.freeze_embeddings, padding_idx=0)
            else:
                self.embedding = nn.Embedding(c.vocab_size, c.embedding_dim, padding_idx=0)
            dim = self.embedding.embedding_dim
            self.text = MSCNN(dim, c.text_kernels, c.filters)
            width += self.text.out_dim * (3 if c.text_spu == "all" else 1) + (2 * dim if c.swem else 0)
        if c.variant == "mscnn_spu_att":
            if c.audio_spu != "all":
                raise ValueError("attention needs the audio SPU's max, avg and std vectors (audio_spu='all')")
            self.project = (nn.Identity() if self.audio.out_dim == self.text.out_dim
                            else nn.Linear(self.audio.out_dim, self.text.out_dim))
            width += 3 * self.text.out_dim
        self.fc = nn.Linear(width, c.fc_dim)
        self.dropout = nn.Dropout(c.dropout)
        self.classifier = nn.Linear(c.fc_dim, c.n_classes)

    def forward_with_attention(self, audio=None, lengths=None, text=None, text_lengths=None, utterance=None):
        c, parts, weights = self.config, [], {}
        if c.uses_audio:
            a_spu = spu(self.audio(audio, lengths), lengths, c.audio_spu)
            parts += list(a_spu.values())
            if c.utterance_dim:
                parts.append(utterance)
        if c.uses_text:
            emb = self.embedding(text)  # (B, L, d)
            h = self.text(emb.transpose(1, 2), text_lengths)
            parts += list(spu(h, text_lengths, c.text_spu).values())
            if c.swem:
                parts.append(swem(emb, text_lengths))
            if c.variant == "mscnn_spu_att":
                for gamma in ("max", "avg", "std"):
                    s, weights[gamma] = text_attention(self.project(a_spu[gamma]), h, text_lengths)
                    parts.append(s)
        z = torch.relu(self.fc(torch.cat(parts, dim=-1)))
        return self.classifier(self.dropout(z)), weights

    def forward(self, audio=None, lengths=None, text=None, text_lengths=None, utterance=None):
        return self.forward_with_attention(audio, lengths, text, text_lengths, utterance)[0]
