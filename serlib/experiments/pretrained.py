"""A pretrained speech encoder as a frozen upstream with a light head (SUPERB style).

Yang et al. 2021 (SUPERB), section 3: a frozen upstream, a learnable softmax-weighted sum
of its hidden layers, and a small downstream model; here masked mean (or mean + std, or
attentive statistics) pooling and an MLP (:mod:`serlib.models.upstream`). The encoder is
loaded from a local Hugging Face checkpoint folder only (:mod:`serlib.upstream`); its
states are extracted once per corpus and checkpoint and cached, so every fold and seed
trains only the head. A user with a checkpoint gets the paired table against the
ComParE baseline with::

    python -m serlib baseline --corpus emodb --root DIR --classes all --feature-set compare --classifier svm_linear
    python -m serlib sweep --experiment pretrained --corpus emodb --root DIR --classes all \\
        --set upstream.path=CHECKPOINT_DIR

and notebook 11 (or 08) for the fold-paired statistics.

The checkpoint's name and hash are config fields (``upstream.name``, ``upstream.hash``),
filled from the folder when the config is built, so they enter the run's fingerprint
(its location ``upstream.path`` does not: a moved checkpoint keeps its runs); a config
that names a hash (a record's, a bundle's) refuses a folder whose files differ.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ..audio import InputChecks, WaveCrop
from ..config import ExperimentConfig
from ..device import resolve_device
from ..errors import ConfigError
from ..fields import setting, validate_fields
from ..losses import classification_loss
from ..models.upstream import UpstreamHead, UpstreamHeadConfig
from ..upstream import (
    KINDS,
    Checkpoint,
    Upstream,
    UpstreamError,
    UpstreamFeatures,
    describe,
    extract_states,
    pooled_statistics,
)
from .base import Experiment, register


@dataclass
class UpstreamConfig:
    """Which encoder, and how its states are taken."""

    # a local Hugging Face checkpoint folder (config.json, preprocessor_config.json, weights);
    # where it lies is not part of a run's fingerprint (its name and hash are)
    path: str = setting("", runtime=True)
    kind: str = setting("auto", choices=("auto", *KINDS))  # auto: config.json's model_type
    name: str = ""                    # filled from the checkpoint (config.json's _name_or_path, else the folder's name)
    hash: str = ""                    # filled from the checkpoint's files; a different folder content is refused
    layers: tuple[int, ...] = setting((), ge=0)  # hidden states used (0 = the CNN/embedding output); () = all
    freeze: bool = True               # the encoder is frozen (fine-tuning is not built: docs/pretrained.md)
    max_seconds: float = setting(20.0, gt=0)  # longer files are cut into equal chunks of at most this, states joined
    frames: bool = False              # cache frame-level states (fp16, large) and train on them; else pooled statistics
    batch_size: int = setting(8, ge=1, runtime=True)  # chunks per encoder pass during extraction

    def __post_init__(self):
        validate_fields(self, "upstream.")
        if not self.freeze:
            raise ConfigError("upstream.freeze=false (fine-tuning the encoder) is not available: serlib trains a head "
                              "on cached states of a frozen encoder; use upstream.freeze=true")
        if len(set(self.layers)) != len(self.layers):
            raise ConfigError(f"upstream.layers must be distinct hidden-state indices (or () for all), "
                              f"got {self.layers!r}")


@dataclass
class PretrainedExperimentConfig(ExperimentConfig):
    """Our choices (SUPERB's emotion task trains its head with Adam at 1e-4 for 30k steps;
    a few hundred utterances need far fewer): AdamW at 1e-3, weight decay 1e-4, 30 epochs,
    early stopping on validation UA after 10 epochs without improvement."""

    experiment: str = "pretrained"
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    model: UpstreamHeadConfig = field(default_factory=UpstreamHeadConfig)
    normalization: str = "per_feature"  # per layer and dimension, training split only (linear: commutes with mean pooling)
    epochs: int = 30
    batch_size: int = 32
    patience: int | None = 10
    lr: float = setting(1e-3, gt=0)
    weight_decay: float = setting(1e-4, ge=0)
    loss: str = setting("ce", choices=("ce", "focal"))
    focal_gamma: float = setting(2.0, ge=0)
    class_weights: bool = False         # inverse-frequency weights in the loss

    def __post_init__(self):
        super().__post_init__()
        if self.model.pooling == "attentive" and not self.upstream.frames:
            raise ConfigError("model.pooling=attentive weighs frames: it needs upstream.frames=true")
        if self.recipe.time_masks and not self.upstream.frames:
            raise ConfigError("recipe time masks need frame-level states (upstream.frames=true); pooled statistics "
                              "have no time axis")
        if self.recipe.vtlp:
            raise ConfigError("recipe.vtlp warps spectrograms; the pretrained experiment's inputs are encoder states")
        if self.upstream.path:
            self.upstream = resolve_upstream(self.upstream)


def resolve_upstream(upstream: UpstreamConfig) -> UpstreamConfig:
    """``upstream`` with its kind, name and hash read from the checkpoint folder.

    Raises:
        ConfigError: the folder's files differ from the hash the config names (a record's
            or a bundle's), or the folder cannot be used (missing files, not a speech
            encoder: the message says which and how to get one).
    """
    try:
        found = describe(upstream.path, upstream.kind)
    except UpstreamError as e:
        raise ConfigError(f"upstream.path: {e}") from None
    if upstream.hash and upstream.hash != found.hash:
        raise ConfigError(f"upstream.path={upstream.path}: the checkpoint there has hash {found.hash[:12]}… but this "
                          f"config (a record's or a bundle's) was made with {upstream.hash[:12]}… ({upstream.name}): "
                          "another checkpoint, or its files changed; point upstream.path at the one it needs")
    max_layer = max(upstream.layers, default=0)
    if max_layer >= found.n_states:
        raise ConfigError(f"upstream.layers: {max_layer} does not exist; {found.name} has hidden states "
                          f"0..{found.n_states - 1}")
    return replace(upstream, path=str(Path(upstream.path).resolve()), kind=found.kind,
                   name=upstream.name or found.name, hash=found.hash)


class UpstreamFrontEnd(torch.nn.Module):
    """Waveforms → the states the head was trained on, for :class:`serlib.bundle.Bundle`
    (the same role as :class:`serlib.features.FrontEnd`): ``forward(wave (B, T), lengths)``
    → ``(features, frames)``, each item encoded alone at its own length."""

    def __init__(self, upstream: Upstream, layers: list[int], frames: bool):
        super().__init__()
        self.upstream, self.layers, self.frames = upstream, layers, frames

    @torch.no_grad()
    def forward(self, wave: torch.Tensor, lengths: torch.Tensor):
        items = [w[:n].cpu() for w, n in zip(wave, lengths.tolist())]
        states = self.upstream.batch_states(items)
        if self.frames:
            feats = [s[self.layers].half().float() for s in states]  # as cached: fp16
            counts = torch.tensor([f.shape[-1] for f in feats])
            out = torch.nn.utils.rnn.pad_sequence([f.movedim(-1, 0) for f in feats], batch_first=True).movedim(1, -1)
        else:
            out = torch.stack([pooled_statistics(s)[:, self.layers] for s in states])
            counts = torch.ones(len(states), dtype=torch.long)
        return out.to(wave.device), counts.to(wave.device)


@register
class PretrainedExperiment(Experiment):
    name = "pretrained"
    regression = True  # a linear head of any size: dimensional and multitask tasks
    title = ("pretrained speech encoders (wav2vec 2.0, HuBERT, WavLM, Whisper's encoder; SUPERB-style head: a "
             "learned weighted sum of the frozen encoder's layers, pooled, then a small MLP)")
    notebook, docs = "11_pretrained_upstreams", "docs/pretrained.md"
    features_note = "the checkpoint's own (`upstream.path=DIR`)"
    Config = PretrainedExperimentConfig

    def checkpoint(self) -> Checkpoint:
        if not self.config.upstream.path:
            raise ConfigError("the pretrained experiment needs a local checkpoint: --set upstream.path=DIR "
                              "(a Hugging Face folder with config.json, preprocessor_config.json and the weights)")
        if getattr(self, "_checkpoint", None) is None:
            self._checkpoint = describe(self.config.upstream.path, self.config.upstream.kind)
        return self._checkpoint

    def layers(self) -> list[int]:
        """The hidden states the head weighs."""
        return list(self.config.upstream.layers) or list(range(self.checkpoint().n_states))

    def features(self):
        c, up = self.checkpoint(), self.config.upstream
        return (UpstreamFeatures(f"upstream-{c.kind}", c.sample_rate, c.name, c.hash, float(up.max_seconds),
                                 "frames" if up.frames else "pooled"), WaveCrop())

    def frontend(self, device):
        up = self.config.upstream
        return UpstreamFrontEnd(Upstream(self.checkpoint(), up.max_seconds).to(device), self.layers(), up.frames)

    def extract(self, manifest):
        # serlib.device after the package's reorganisation (issue 19): then a top-level import
        up = self.config.upstream
        store = extract_states(manifest, self.checkpoint(), up.max_seconds, up.frames,
                               InputChecks.from_config(self.config), self.config.bad_audio,
                               resolve_device(self.config.device), self.config.feature_workers, up.batch_size,
                               self.config.progress)
        layers = self.layers()
        if layers == list(range(self.checkpoint().n_states)):
            return store
        index, dim = torch.tensor(layers), 0 if up.frames else 1
        return dataclasses.replace(store, features={u: x.index_select(dim, index) for u, x in store.features.items()})

    def model(self, n_features, n_classes, context=None):
        return UpstreamHead(replace(self.config.model, n_layers=len(self.layers()), n_features=n_features,
                                    n_classes=n_classes))

    def optimizer(self, model):
        return torch.optim.AdamW(model.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay), None

    def loss(self, class_counts):
        return classification_loss(self.config.loss, class_counts, self.config.class_weights, self.config.focal_gamma)
