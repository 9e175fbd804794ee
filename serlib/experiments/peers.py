"""Numbers that peer systems report (not a paper serlib reproduces), for the reference
table beside serlib's own results (docs/statistics.md)."""

from __future__ import annotations

from .base import Reference

PEERS: tuple[Reference, ...] = (
    Reference("emotion2vec", "leave-one-session-out", "iemocap", "session 5-fold", 71.8, None, True, "74.5 when selecting on test"),
    Reference("EmoBox wav2vec2-base", "UA only", "iemocap", "session 5-fold", None, 58.3, True),
    Reference("EmoBox WavLM-large", "UA only", "iemocap", "session 5-fold", None, 69.5, True),
    Reference("EmoBox Whisper-large-v3", "UA only", "iemocap", "session 5-fold", None, 73.5, True),
    Reference("EmoBox wav2vec2-base", "UA only", "emodb", "loso", None, 82.1, True),
    Reference("EmoBox WavLM-large", "UA only", "emodb", "loso", None, 92.6, True),
    Reference("EmoBox Whisper-large-v3", "UA only", "emodb", "loso", None, 91.3, True),
    Reference("EmoBox wav2vec2-base", "UA only", "ravdess", "6-fold actor-disjoint", None, 54.3, True),
    Reference("EmoBox WavLM-large", "UA only", "ravdess", "6-fold actor-disjoint", None, 72.0, True),
    Reference("EmoBox Whisper-large-v3", "UA only", "ravdess", "6-fold actor-disjoint", None, 75.3, True),
    Reference("SpeechBrain ECAPA", "accuracy only", "iemocap", "random split", 65.7, None, False),
    Reference("SpeechBrain wav2vec2", "accuracy only", "iemocap", "random split", 78.7, None, False),
    Reference("SpeechBrain HuBERT", "accuracy only", "iemocap", "random split", 79.1, None, False),
)
