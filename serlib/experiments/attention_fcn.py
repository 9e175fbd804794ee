"""Attention-based FCN experiments: 2-D (Zhang et al., settings of the best public
reproduction) and 1-D ("Emotion in Motion"); see docs/papers/attention_fcn.md."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from ..audio import WaveCrop
from ..config import MAX_INPUT_SECONDS, ExperimentConfig
from ..errors import ConfigError
from ..features import FeatureConfig
from ..fields import setting
from ..models.attention_fcn import AttentionFCN, AttentionFCNConfig
from .base import Experiment, Reference, register


@dataclass
class AttentionFCNExperimentConfig(ExperimentConfig):
    """2-D: Hamming 40 ms / 10 ms, 0–4 kHz, static+Δ+ΔΔ; AdamW 1e-4, batch 64, 100 epochs,
    λ = 0.3; IEMOCAP improvised, excited not merged."""

    experiment: str = "attention_fcn"
    subset: str | None = "improvised"
    epochs: int = 100
    batch_size: int = 64
    lr: float = setting(1e-4, gt=0)
    weight_decay: float = setting(1e-2, ge=0)  # AdamW's default
    segment_seconds: float | None = setting(None, gt=0, le=MAX_INPUT_SECONDS)  # 3.0: score 3-s segments, utterance = model.segment_pool of them
    normalization: str = "per_feature"
    encoder_checkpoint: str | None = None  # a state_dict file (e.g. ImageNet AlexNet features.*)
    # λ = 0.3, attention width, dropout, segment pooling (``model.attention_lambda=…``);
    # n_classes and segment_frames are set from the data and segment_seconds
    model: AttentionFCNConfig = field(default_factory=lambda: AttentionFCNConfig(variant="2d", attention_lambda=0.3))

    def __post_init__(self):
        super().__post_init__()
        if self.model.variant != "2d":
            raise ConfigError("attention_fcn needs model.variant='2d' (use experiment attention_fcn_1d for 1-D)")


@dataclass
class AttentionFCN1DExperimentConfig(ExperimentConfig):
    """Emotion in Motion: 3 s from 0.5 s, 128-mel mean series; Adam 1e-3, batch 51,
    200 epochs, λ = 0.8. Its random 5-fold split is ``protocol="stratified_kfold:5"``."""

    experiment: str = "attention_fcn_1d"
    epochs: int = 200
    batch_size: int = 51
    lr: float = setting(1e-3, gt=0)
    input_seconds: float = setting(3.0, gt=0, le=MAX_INPUT_SECONDS)
    offset_seconds: float = setting(0.5, ge=0)
    model: AttentionFCNConfig = field(default_factory=lambda: AttentionFCNConfig(variant="1d", attention_lambda=0.8))

    def __post_init__(self):
        super().__post_init__()
        if self.model.variant != "1d":
            raise ConfigError("attention_fcn_1d needs model.variant='1d' (use experiment attention_fcn for 2-D)")


class _AttentionMaps:
    """Attention support shared by both variants: the weights of ``forward_with_attention``
    as a profile over the input's frames (averaged over frequency, segments joined)."""

    has_attention = True

    @torch.no_grad()
    def attention(self, model, x, lengths):
        _, alpha = model.forward_with_attention(x, lengths)
        out = []
        for a in alpha:
            a = a.float()
            if a.dim() == 3:  # segments × F' × T' (2-D, segment mode)
                a = a.mean(1).flatten()
            elif a.dim() == 2:  # F' × T' (2-D) or segments × T' (1-D, segment mode)
                a = a.mean(0) if self.config.model.variant == "2d" and self.config.segment_seconds is None \
                    else a.flatten()
            out.append(a.cpu().numpy())
        return out


@register
class AttentionFCNExperiment(_AttentionMaps, Experiment):
    name = "attention_fcn"
    regression = True  # a linear head of any size: dimensional and multitask tasks
    title = "Attention-based FCN, 2-D (Zhang et al. 2019)"
    notebook, docs = "04_attention_fcn", "docs/papers/attention_fcn.md"
    Config = AttentionFCNExperimentConfig
    # best public reproduction: Hamming 40 ms / 10 ms, n_fft 800, 0–4 kHz (200 bins),
    # static + Δ + ΔΔ as 3 channels
    feature_presets = {"attention_fcn": FeatureConfig("spectrogram", 16000, 40, 10, 800, "hamming", 1.0, fmax=4000,
                                                      deltas="channels")}
    inference_values = {"encoder_checkpoint": None}  # only initialises training; the bundle has the weights
    reference = (
        Reference("Zhang et al. 2019", "AlexNet FCN + attention (ImageNet init)", "iemocap-improvised",
                  "5-fold (session)", 70.4, 63.9, True, "arXiv 1806.01506", 4),
        Reference("best public reproduction", "2-D, from scratch", "iemocap-improvised", "loso 10-fold", 74.0, 64.4,
                  True, "Zhang et al. reproduction", 4),
    )

    def features(self):
        return self.feature_presets["attention_fcn"], None

    def model(self, n_features, n_classes, context=None):
        state = (torch.load(self.config.encoder_checkpoint, weights_only=True, map_location="cpu")
                 if self.config.encoder_checkpoint else None)
        hop_ms = self.feature_presets["attention_fcn"].hop_ms
        segment = round(self.config.segment_seconds * 1000 / hop_ms) if self.config.segment_seconds else None
        return AttentionFCN(replace(self.config.model, n_classes=n_classes, segment_frames=segment),
                            encoder_state_dict=state)

    def optimizer(self, model):
        return torch.optim.AdamW(model.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay), None


@register
class AttentionFCN1DExperiment(_AttentionMaps, Experiment):
    name = "attention_fcn_1d"
    regression = True  # a linear head of any size: dimensional and multitask tasks
    title = 'its 1-D RAVDESS reproduction ("Emotion in Motion")'
    notebook, docs = "04_attention_fcn", "docs/papers/attention_fcn.md"
    Config = AttentionFCN1DExperimentConfig
    # librosa at 44.1 kHz, 128 mels (n_fft 2048, hop 512) in dB, averaged over frequency
    # -> 259 steps for 3 s
    feature_presets = {"attention_fcn_1d": FeatureConfig("mel_mean", 44100, 2048 / 44.1, 512 / 44.1, 2048, "hann",
                                                         2.0, n_mels=128, log="db")}
    preset_lr_scale = {"modern": 10.0}  # chosen on validation with Light-SERNet's Adam-based recipe (docs/recipe.md)
    reference = (Reference("Emotion in Motion", "1-D (names un-swapped)", "ravdess-4class", "random 5-fold", 51.2, 41.9,
                           False, "its 'unweighted' 51.2 is WA", 4, "WA and UA (the paper's names swapped back)"),)

    def features(self):
        return self.feature_presets["attention_fcn_1d"], WaveCrop(self.config.input_seconds, self.config.offset_seconds, mode="start")

    def model(self, n_features, n_classes, context=None):
        return AttentionFCN(replace(self.config.model, n_classes=n_classes))

    def optimizer(self, model):
        return torch.optim.Adam(model.parameters(), lr=self.config.lr), None
