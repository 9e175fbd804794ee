"""MSCNN-SPU(-ATT) (Peng et al. 2021) as an experiment: the paper's settings (section 4).

IEMOCAP, all sessions, 4 classes with excited merged into happy (5531 utterances),
10-fold 8/1/1 speakers (``loso``: test one speaker, validate on the session partner),
each configuration run with 3 seeds (``sweep --seeds 3``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pandas as pd
import torch

from ..config import ExperimentConfig
from ..constants import UTT_ID
from ..errors import ConfigError, DataError
from ..features import FeatureConfig
from ..fields import setting
from ..models.mscnn_spu import MSCNNSPU, MSCNNSPUConfig
from ..text import Vocabulary, load_glove, read_utterance_embeddings
from .base import Experiment, Reference, register


@dataclass
class MSCNNSPUExperimentConfig(ExperimentConfig):
    """Adam 5e-4, gradient clipping at norm 1, dropout 0.3, batch 64 (section 4.2).
    Not in the paper (our choices): epochs, kernel sizes, FC width, MFCC normalisation."""

    experiment: str = "mscnn_spu"
    subset: str | None = "all"
    merge: dict[str, str] = field(default_factory=lambda: {"excited": "happy"})
    epochs: int = 30
    batch_size: int = 64
    lr: float = setting(5e-4, gt=0)
    grad_clip: float | None = 1.0
    glove_path: str | None = None            # GloVe text file; None = trainable embeddings
    text_column: str = setting("text", choices=("text", "asr_text"))  # asr_text: with asr_csv
    asr_csv: str | None = None               # CSV with utt_id,asr_text (the paper's ASR setting)
    utterance_embeddings: str | None = None  # x-vectors: .npz (key = utt_id) or .csv (utt_id, e0, e1, …)
    normalization: str = "per_feature"
    # variant (audio | text | mscnn_spu | mscnn_spu_att), kernels, filters, SPU, SWEM, dropout 0.3:
    # ``model.variant=audio``…; n_classes, audio_dim, vocab_size and utterance_dim come from the data
    model: MSCNNSPUConfig = field(default_factory=MSCNNSPUConfig)


@register
class MSCNNSPUExperiment(Experiment):
    name = "mscnn_spu"
    title = "MSCNN-SPU-ATT, audio + text (Peng et al. 2021)"
    notebook, docs = "05_mscnn_spu_att", "docs/papers/mscnn_spu.md"
    Config = MSCNNSPUExperimentConfig
    # 32 MFCC + Δ + ΔΔ (96 dims), 25 ms Hamming, 10 ms hop (librosa) (section 4.1); n_fft
    # and the number of mel bands are not stated: 512 and 40
    feature_presets = {"mscnn": FeatureConfig("mfcc", 16000, 25, 10, 512, "hamming", 2.0, n_mels=40, n_mfcc=32,
                                              log="db", deltas="stack")}
    reference = tuple(Reference("Peng et al. 2021", variant, "iemocap-all-exc→hap", "10-fold 8/1/1 speakers", wa, ua, True,
                                table, 4)
                      for variant, wa, ua, table in (
        ("Audio-CNN", 65.4, 66.7, "Table 1"), ("Audio-CNN-xvector", 66.6, 68.4, "Table 1"),
        ("Text-CNN", 67.8, 67.7, "Table 1"), ("MSCNN-SPU", 79.5, 80.4, "Table 1"),
        ("MSCNN-SPU-ATT", 80.3, 81.4, "Table 1"), ("MSCNN-SPU (ASR text)", 77.4, 78.2, "Table 1"),
        ("MSCNN-SPU-ATT (ASR text)", 78.0, 79.1, "Table 1"), ("w/o x-vectors", 78.5, 79.3, "Table 2"),
        ("w/o text SPU", 77.7, 78.6, "Table 2"), ("w/o SWEM", 77.2, 78.3, "Table 2"),
        ("w/o audio SPU", 73.5, 74.0, "Table 2")))

    @property
    def needs_transcripts(self) -> bool:
        return self.config.model.variant != "audio"

    def features(self):
        return self.feature_presets["mscnn"], None

    def prepare(self, manifest, split_ids):
        context, extras = {}, {}
        if self.needs_transcripts:
            texts = self.texts(manifest)
            vocab = Vocabulary.build(texts[u] for u in split_ids["train"])  # training split only
            extras["text"] = {u: vocab.encode(t) for u, t in texts.items()}
            context["vocabulary_size"] = len(vocab)
            if self.config.glove_path:
                context["embeddings"], context["glove_coverage"] = load_glove(self.config.glove_path, vocab)
        if self.config.utterance_embeddings and self.config.model.variant != "text":
            table = read_utterance_embeddings(self.config.utterance_embeddings)
            missing = [u for u in manifest[UTT_ID] if u not in table]
            if missing:
                raise DataError(self.config.utterance_embeddings, f"no embedding for {len(missing)} utterances, e.g. {missing[:3]}")
            extras["utterance"] = table
            context["utterance_dim"] = int(next(iter(table.values())).numel())
        context["extras"] = extras
        return context

    def texts(self, manifest) -> dict[str, str]:
        column = self.config.text_column
        frame = manifest
        if self.config.asr_csv:
            asr = pd.read_csv(self.config.asr_csv, dtype={UTT_ID: str})
            if column not in asr.columns or UTT_ID not in asr.columns:
                raise DataError(self.config.asr_csv, f"needs columns '{UTT_ID}' and '{column}'")
            frame = manifest.drop(columns=[column], errors="ignore").merge(asr[[UTT_ID, column]], on=UTT_ID, how="left")
        if column not in frame.columns:
            raise ConfigError(f"corpus {self.config.corpus!r} has no '{column}' column: variant {self.config.model.variant!r} "
                              "needs transcripts; use variant='audio'")
        missing = frame[frame[column].isna()]
        if len(missing) == len(frame):
            raise DataError(None, f"corpus {self.config.corpus!r} has no transcripts ('{column}' is empty): variant "
                                  f"{self.config.model.variant!r} needs them; use variant='audio', or asr_csv=FILE")
        if len(missing):
            raise DataError(None, f"variant {self.config.model.variant!r} needs a transcript for every utterance, but "
                                  f"{len(missing)} of {len(frame)} have no '{column}' in corpus {self.config.corpus!r} "
                                  f"(e.g. {missing[UTT_ID].head(3).tolist()}); use variant='audio'")
        return dict(zip(frame[UTT_ID], frame[column].astype(str)))

    def model(self, n_features, n_classes, context=None):
        context = context or {}
        embeddings = context.get("embeddings")
        return MSCNNSPU(replace(
            self.config.model, n_classes=n_classes, audio_dim=n_features, vocab_size=context.get("vocabulary_size", 2),
            embedding_dim=embeddings.shape[1] if embeddings is not None else self.config.model.embedding_dim,
            utterance_dim=context.get("utterance_dim", 0)), embeddings)

    def optimizer(self, model):
        return torch.optim.Adam(model.parameters(), lr=self.config.lr), None
