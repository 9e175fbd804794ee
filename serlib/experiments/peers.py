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

_EMOBOX_MODELS = ("wav2vec2-base", "WavLM-large", "Whisper-large-v3")


def _emobox(corpus: str, protocol: str, speaker_independent: bool, note: str, n_classes: int, metric: str,
            scores: tuple[tuple[float | None, float | None], ...]) -> tuple[Reference, ...]:
    """EmoBox's rows for one corpus: ``(WA, UA)`` of each of its three encoders."""
    return tuple(Reference(f"EmoBox {model}", "frozen, EmoBox recipe", corpus, protocol, wa, ua, speaker_independent,
                           note, n_classes, metric) for model, (wa, ua) in zip(_EMOBOX_MODELS, scores))


_SPEECHBRAIN_SPLIT = "random utterance split (the recipe's default)"

PEERS: tuple[Reference, ...] = (
    Reference("emotion2vec", "linear head", "iemocap", "leave-one-session-out 5-fold", 71.8, None, True,
              "74.5 when selecting on test", 4, "WA only"),
    *_emobox("iemocap", "leave-one-session-out 5-fold (EmoBox folds)", True, "", 4, _EMOBOX_UA,
             ((None, 58.3), (None, 69.5), (None, 73.5))),
    *_emobox("emodb", _EMOBOX_EMODB, False, "not comparable with a LOSO number", 7, _EMOBOX_BOTH,
             ((83.1, 82.1), (92.7, 92.6), (92.4, 91.3))),
    *_emobox("ravdess", _EMOBOX_RAVDESS, True, "8 classes: not comparable with a 4-class number", 8, _EMOBOX_BOTH,
             ((55.4, 54.3), (72.2, 72.0), (75.9, 75.3))),
    *(Reference(f"SpeechBrain {model}", "IEMOCAP recipe", "iemocap", _SPEECHBRAIN_SPLIT, wa, None, False, "", 4,
                "accuracy (WA) only") for model, wa in (("ECAPA", 65.7), ("wav2vec2", 78.7), ("HuBERT", 79.1))),
)
