"""Numbers that peer systems report (not a paper serlib reproduces), for the reference
table beside serlib's own results (docs/statistics.md), each with the protocol, class
count and metric it was measured with.

EmoBox (Ma et al., Interspeech 2024) scores on its own published folds (``data/<corpus>/
fold_k`` of github.com/emo-box/EmoBox): its EMO-DB folds are speaker-DEPENDENT (fold 1's
test set holds all ten speakers), its RAVDESS folds are 6 actor-disjoint folds of 4
shuffled actors on all 8 classes — neither is serlib's LOSO on EMO-DB nor its contiguous
``group_kfold:6`` on 4 RAVDESS classes. Its public leaderboard lists WA only; the UA
numbers are the ones recorded here before (the SPEC's peer list), the WA numbers the
leaderboard's. ``protocol folds_file:PATH`` scores serlib on exactly such published folds.
"""

from __future__ import annotations

from .base import Reference

_EMOBOX_UA = "UA as recorded from EmoBox (no WA given)"
_EMOBOX_BOTH = "UA as recorded from EmoBox; WA from its public leaderboard (which lists WA only)"
_EMOBOX_EMODB = "EmoBox 5-fold, speaker-DEPENDENT (fold 1's test set holds all 10 speakers)"
_EMOBOX_RAVDESS = "EmoBox 6-fold, 4 shuffled actors per fold (actor-disjoint), 8 classes"

PEERS: tuple[Reference, ...] = (
    Reference("emotion2vec", "linear head", "iemocap", "leave-one-session-out 5-fold", 71.8, None, True,
              "74.5 when selecting on test", 4, "WA only"),
    Reference("EmoBox wav2vec2-base", "frozen, EmoBox recipe", "iemocap", "leave-one-session-out 5-fold (EmoBox folds)",
              None, 58.3, True, "", 4, _EMOBOX_UA),
    Reference("EmoBox WavLM-large", "frozen, EmoBox recipe", "iemocap", "leave-one-session-out 5-fold (EmoBox folds)",
              None, 69.5, True, "", 4, _EMOBOX_UA),
    Reference("EmoBox Whisper-large-v3", "frozen, EmoBox recipe", "iemocap",
              "leave-one-session-out 5-fold (EmoBox folds)", None, 73.5, True, "", 4, _EMOBOX_UA),
    Reference("EmoBox wav2vec2-base", "frozen, EmoBox recipe", "emodb", _EMOBOX_EMODB, 83.1, 82.1, False,
              "not comparable with a LOSO number", 7, _EMOBOX_BOTH),
    Reference("EmoBox WavLM-large", "frozen, EmoBox recipe", "emodb", _EMOBOX_EMODB, 92.7, 92.6, False,
              "not comparable with a LOSO number", 7, _EMOBOX_BOTH),
    Reference("EmoBox Whisper-large-v3", "frozen, EmoBox recipe", "emodb", _EMOBOX_EMODB, 92.4, 91.3, False,
              "not comparable with a LOSO number", 7, _EMOBOX_BOTH),
    Reference("EmoBox wav2vec2-base", "frozen, EmoBox recipe", "ravdess", _EMOBOX_RAVDESS, 55.4, 54.3, True,
              "8 classes: not comparable with a 4-class number", 8, _EMOBOX_BOTH),
    Reference("EmoBox WavLM-large", "frozen, EmoBox recipe", "ravdess", _EMOBOX_RAVDESS, 72.2, 72.0, True,
              "8 classes: not comparable with a 4-class number", 8, _EMOBOX_BOTH),
    Reference("EmoBox Whisper-large-v3", "frozen, EmoBox recipe", "ravdess", _EMOBOX_RAVDESS, 75.9, 75.3, True,
              "8 classes: not comparable with a 4-class number", 8, _EMOBOX_BOTH),
    Reference("SpeechBrain ECAPA", "IEMOCAP recipe", "iemocap", "random utterance split (the recipe's default)", 65.7,
              None, False, "", 4, "accuracy (WA) only"),
    Reference("SpeechBrain wav2vec2", "IEMOCAP recipe", "iemocap", "random utterance split (the recipe's default)", 78.7,
              None, False, "", 4, "accuracy (WA) only"),
    Reference("SpeechBrain HuBERT", "IEMOCAP recipe", "iemocap", "random utterance split (the recipe's default)", 79.1,
              None, False, "", 4, "accuracy (WA) only"),
)
