"""Evaluation protocols: folds of utterance ids, speaker-disjoint unless asked otherwise.

Every speaker-independent fold passes :func:`check_disjoint` when it is created.

Protocols (``make_folds(manifest, protocol)``):

* ``loso`` — one fold per speaker. Validation is the other speaker of the same
  session where sessions exist (IEMOCAP), else the next speaker in sorted order.
  With sessions, training excludes the whole test session; folds are ordered
  Session1 F, Session1 M, …, Session5 M (Table 2 of Etienne et al. 2018).
* ``session`` — leave one session out; validation is the next session.
* ``group_kfold:K`` — K folds of whole speakers (contiguous chunks of the sorted
  speaker list, e.g. RAVDESS actors 1–4, 5–8, … as in EmoBox); validation is the next
  chunk.
* ``stratified_kfold:K`` — speaker-DEPENDENT random stratified folds (only to reproduce
  papers that used them); validation is the next fold. Flagged
  ``speaker_independent=False``.
* ``cross:TEST_CORPUS`` — one fold: train on one corpus, test on every utterance of
  another (:func:`cross_fold`; the two-corpus manifest is
  :func:`serlib.corpora.cross.cross_manifest`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .constants import AUDIO_HASH, LABEL, ROLE, SESSION, SPEAKER, UTT_ID
from .errors import ConfigError, DataError, SplitError

log = logging.getLogger(__name__)

PROTOCOLS = ("loso", "session", "group_kfold:K", "stratified_kfold:K", "cross:TEST_CORPUS")
CROSS_VAL_FRACTION = 0.1  # cross:…: the training corpus's speakers held out for validation (at least 1)


@dataclass
class Fold:
    """One train/val/test split, as lists of utterance ids."""

    number: int  # 1-based
    train: list[str]
    val: list[str]
    test: list[str]
    test_speakers: list[str]
    val_speakers: list[str]
    speaker_independent: bool
    protocol: str = ""
    notes: list[str] = field(default_factory=list)

    def row(self) -> dict:
        return {
            "fold": self.number, "test_speakers": ",".join(self.test_speakers),
            "val_speakers": ",".join(self.val_speakers), "n_train": len(self.train),
            "n_val": len(self.val), "n_test": len(self.test),
            "speaker_independent": self.speaker_independent,
        }


def check_disjoint(fold: Fold, manifest: pd.DataFrame) -> None:
    """Raise :class:`SplitError` if two splits share an utterance or (when speaker
    independent) a speaker, or if a split is empty."""
    ids = {"train": set(fold.train), "val": set(fold.val), "test": set(fold.test)}
    for name, members in ids.items():
        if not members:
            raise SplitError(f"fold {fold.number}: empty {name} split")
    speaker_of = manifest.set_index(UTT_ID)[SPEAKER]
    pairs = (("train", "val"), ("train", "test"), ("val", "test"))
    for a, b in pairs:
        shared = ids[a] & ids[b]
        if shared:
            raise SplitError(f"fold {fold.number}: {len(shared)} utterances in both {a} and {b}, "
                             f"e.g. {sorted(shared)[:3]}")
        if fold.speaker_independent:
            overlap = set(speaker_of[list(ids[a])]) & set(speaker_of[list(ids[b])])
            if overlap:
                raise SplitError(f"fold {fold.number}: speaker(s) {sorted(overlap)} in both {a} and {b}")


def speaker_order(manifest: pd.DataFrame) -> list[str]:
    """Speakers in fold order: by session, then F before M (IEMOCAP: Ses01_F, Ses01_M,
    …, Ses05_M) where sessions exist; else sorted by name."""
    first = manifest.groupby(SPEAKER, sort=True).first()
    if first[SESSION].isna().any():
        return sorted(first.index, key=_natural)
    keys = [(_natural(str(first.loc[s, SESSION])), {"F": 0, "M": 1}.get(first.loc[s, "gender"], 2),
             _natural(s), s) for s in first.index]
    return [k[-1] for k in sorted(keys)]


def _natural(text: str) -> tuple:
    """Sort "Session10" after "Session9"."""
    digits = "".join(c for c in text if c.isdigit())
    return (text.rstrip("0123456789"), int(digits) if digits else -1, text)


def _cyclic(groups: list[list[str]]) -> list[tuple]:
    """(test groups, val groups) where val is the next chunk, cyclically."""
    return [(groups[k], groups[(k + 1) % len(groups)]) for k in range(len(groups))]


def _split_by(manifest, column, test_values, val_values, exclude_values=()):
    col = manifest[column]
    test = manifest.loc[col.isin(test_values), UTT_ID].tolist()
    val = manifest.loc[col.isin(val_values), UTT_ID].tolist()
    gone = set(test_values) | set(val_values) | set(exclude_values)
    train = manifest.loc[~col.isin(gone), UTT_ID].tolist()
    return train, val, test


def is_cross(protocol: str) -> bool:
    """Whether ``protocol`` is a cross-corpus one (``cross:TEST_CORPUS``)."""
    return protocol.startswith("cross:")


def test_corpus(protocol: str) -> str:
    """The test corpus of ``cross:TEST_CORPUS``."""
    return protocol.partition(":")[2]


def cross_fold(manifest: pd.DataFrame, protocol: str) -> Fold:
    """The one fold of ``cross:…``: test = every utterance of the test corpus; validation
    = the last ``CROSS_VAL_FRACTION`` of the training corpus's speakers in fold order (at
    least one); train = the other training speakers."""
    if ROLE not in manifest.columns:
        raise ConfigError(f"protocol {protocol!r} needs a cross-corpus manifest (serlib.corpora.cross.cross_manifest)")
    train_part = manifest[manifest[ROLE] == "train"]
    speakers = speaker_order(train_part)
    if len(speakers) < 2:
        raise DataError(None, f"cross-corpus training needs at least 2 speakers (one for validation), got {speakers}")
    n_val = max(1, round(CROSS_VAL_FRACTION * len(speakers)))
    val_speakers = speakers[-n_val:]
    val = train_part.loc[train_part[SPEAKER].isin(val_speakers), UTT_ID].tolist()
    train = train_part.loc[~train_part[SPEAKER].isin(val_speakers), UTT_ID].tolist()
    test_part = manifest[manifest[ROLE] == "test"]
    test = test_part[UTT_ID].tolist()
    test_speakers = sorted(test_part[SPEAKER].unique())
    return Fold(1, train, val, test, test_speakers, val_speakers, True, protocol,
                [f"cross-corpus: trained on {len(speakers) - n_val} speakers of the training corpus, "
                 f"tested on all {len(test_speakers)} speakers of {test_corpus(protocol)}"])


def parse_protocol(protocol: str) -> tuple[str, int | None]:
    name, _, k = protocol.partition(":")
    if name == "cross" and k:
        return name, None
    if name in ("loso", "session") and not k:
        return name, None
    if name in ("group_kfold", "stratified_kfold") and k.isdigit() and int(k) >= 3:
        return name, int(k)
    raise ConfigError(f"unknown protocol {protocol!r}; choose from {PROTOCOLS} (K >= 3)")


def make_folds(manifest: pd.DataFrame, protocol: str = "loso", seed: int = 0) -> list[Fold]:
    """Build the folds of ``protocol`` (see the module docstring).

    Deterministic for a given manifest, protocol and seed. When the manifest has an
    ``audio_hash`` column (``load_corpus(..., hash_audio=True)``), byte-identical files
    never sit on two sides of a split: a copy of a test (or val) utterance is removed
    from the other splits, and the fold's ``notes`` say how many.
    """
    name, k = parse_protocol(protocol)
    if name != "stratified_kfold" and manifest[SPEAKER].isna().any():
        raise SplitError(f"protocol {protocol!r} groups by speaker but the manifest has rows "
                         "without a speaker (folder corpus: pass speaker_regex=...)")
    folds: list[Fold] = []
    if name == "cross":
        folds.append(cross_fold(manifest, protocol))
    elif name == "loso":
        speakers = speaker_order(manifest)
        if len(speakers) < 3:
            raise SplitError(f"loso needs at least 3 speakers, got {len(speakers)}")
        has_sessions = manifest[SESSION].notna().all()
        session_of = manifest.groupby(SPEAKER)[SESSION].first()
        for i, spk in enumerate(speakers):
            partners = [s for s in speakers if s != spk and has_sessions and session_of[s] == session_of[spk]]
            val = partners[:1] or [speakers[(i + 1) % len(speakers)]]
            # With sessions, train on the other sessions only (the paper's construction).
            train, val_ids, test = _split_by(manifest, SPEAKER, [spk], val, partners)
            folds.append(Fold(i + 1, train, val_ids, test, [spk], val, True, protocol))
    elif name == "session":
        if manifest[SESSION].isna().any():
            raise SplitError("protocol 'session' needs a session for every row")
        sessions = sorted(manifest[SESSION].unique(), key=_natural)
        if len(sessions) < 3:
            raise SplitError(f"'session' needs at least 3 sessions, got {len(sessions)}")
        for i, (test_s, val_s) in enumerate(_cyclic([[s] for s in sessions])):
            train, val, test = _split_by(manifest, SESSION, test_s, val_s)
            spk = lambda ids: sorted(manifest.loc[manifest[UTT_ID].isin(ids), SPEAKER].unique())  # noqa: E731
            folds.append(Fold(i + 1, train, val, test, spk(test), spk(val), True, protocol))
    elif name == "group_kfold":
        speakers = speaker_order(manifest)
        if len(speakers) < k:
            raise SplitError(f"group_kfold:{k} needs at least {k} speakers, got {len(speakers)}")
        chunks = [list(c) for c in np.array_split(np.array(speakers, dtype=object), k)]
        for i, (test_s, val_s) in enumerate(_cyclic(chunks)):
            train, val, test = _split_by(manifest, SPEAKER, test_s, val_s)
            folds.append(Fold(i + 1, train, val, test, list(test_s), list(val_s), True, protocol))
    else:  # stratified_kfold: speaker-dependent, on request only
        # scikit-learn is imported by the one protocol that uses it (loading a trained
        # model for prediction needs the protocol names, not scikit-learn)
        from sklearn.model_selection import StratifiedKFold

        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        parts = [manifest[UTT_ID].iloc[idx].tolist()
                 for _, idx in splitter.split(np.zeros(len(manifest)), manifest[LABEL])]
        for i in range(k):
            test, val = parts[i], parts[(i + 1) % k]
            gone = set(test) | set(val)
            train = [u for u in manifest[UTT_ID] if u not in gone]
            folds.append(Fold(i + 1, train, val, test, [], [], False, protocol,
                              ["speaker-dependent: speakers appear in train and test"]))
    for fold in folds:
        if AUDIO_HASH in manifest.columns:
            _drop_duplicate_audio(fold, manifest)
        check_disjoint(fold, manifest)
    return folds


def _drop_duplicate_audio(fold: Fold, manifest: pd.DataFrame) -> None:
    """Keep identical audio on one side: test wins over val, val over train."""
    hash_of = manifest.set_index(UTT_ID)[AUDIO_HASH]
    test_h = set(hash_of[fold.test])
    val_before = len(fold.val)
    fold.val = [u for u in fold.val if hash_of[u] not in test_h]
    held_h = test_h | set(hash_of[fold.val])
    train_before = len(fold.train)
    fold.train = [u for u in fold.train if hash_of[u] not in held_h]
    removed = (val_before - len(fold.val), train_before - len(fold.train))
    if any(removed):
        note = f"removed duplicate audio: {removed[0]} from val, {removed[1]} from train"
        fold.notes.append(note)
        log.info("fold %d: %s", fold.number, note)


def folds_table(folds: list[Fold]) -> pd.DataFrame:
    """One row per fold: speakers and split sizes (printable)."""
    return pd.DataFrame([f.row() for f in folds]).set_index("fold")
