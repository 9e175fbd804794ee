"""Evaluation protocols: folds of utterance ids, speaker-disjoint unless asked otherwise.

Every speaker-independent fold passes :func:`check_disjoint` when it is created. The
speaker :data:`~serlib.constants.UNKNOWN_SPEAKER` (segments of unidentified speakers,
MSP-Podcast's ``Unknown``) is not one speaker: the speaker protocols keep it in training,
never as a test or validation speaker, and no check counts it as shared.

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
* ``partition`` — a corpus's official partitions (the manifest's ``partition`` column,
  e.g. MSP-Podcast's ``Split_Set``, ESD's folders): train on ``Train``, validate on ``Development``
  (ESD: ``evaluation``), one
  fold per test set (``Test1``, ``Test2``, … in order), each scored and reported on its
  own (the fold's ``test_set``). The split is used as published; speakers shared
  between its sides are reported in the notes and flag the fold, as for ``folds_file``.
* ``folds_file:PATH`` — a benchmark's published folds (EmoBox's fold lists, MSP-Podcast's
  partitions), read from a CSV or JSONL file (:func:`read_folds_file`) or from a folder
  in EmoBox's layout, ``fold_K/<corpus>_{train,valid,test}_fold_K.jsonl`` (:func:`read_emobox`). The fold check
  runs and reports but does not refuse a split that is speaker-dependent by design: such
  a fold is flagged ``speaker_independent=False`` and ``leaky``, with the overlap in its
  notes; byte-identical audio on two sides is reported (and flagged), not removed, so the
  published split is scored exactly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .constants import (
    AUDIO_HASH,
    LABEL,
    PARTITION,
    PATH,
    ROLE,
    SESSION,
    SPEAKER,
    UNKNOWN_SPEAKER,
    UTT_ID,
)
from .errors import ConfigError, DataError, SplitError

log = logging.getLogger(__name__)

PROTOCOLS = ("loso", "session", "group_kfold:K", "stratified_kfold:K", "cross:TEST_CORPUS", "folds_file:PATH",
             "partition")
TRAIN_PARTITION, DEV_PARTITIONS = "train", ("development", "dev", "validation", "evaluation")  # ESD: evaluation
FOLD_ROLES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val", "test": "test"}
CROSS_VAL_FRACTION = 0.1  # cross:…: the training corpus's speakers held out for validation (at least 1)
EMOBOX_VAL_FRACTION = 0.2  # EmoBox folds without a valid list: the share of train held out (EmoBox's 80/20)
_EMOBOX_FILE = re.compile(r"^(?P<corpus>.+)_(?P<role>train|valid|test)_fold_?(?P<fold>\d+)\.jsonl$")


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
    leaky: bool = False  # the split shares speakers or identical audio across its sides (a record's ``leaky``)
    test_set: str = ""  # protocol ``partition``: the official test set of this fold (e.g. "Test1")

    def row(self) -> dict:
        return {
            "fold": self.number, "test_speakers": ",".join(self.test_speakers),
            "val_speakers": ",".join(self.val_speakers), "n_train": len(self.train),
            "n_val": len(self.val), "n_test": len(self.test),
            "speaker_independent": self.speaker_independent, "leaky": self.leaky,
            **({"test_set": self.test_set} if self.test_set else {}),
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
            overlap = set(speaker_of[list(ids[a])]) & set(speaker_of[list(ids[b])]) - {UNKNOWN_SPEAKER}
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
    if name in ("cross", "folds_file") and k:
        return name, None
    if name in ("loso", "session", "partition") and not k:
        return name, None
    if name in ("group_kfold", "stratified_kfold") and k.isdigit() and int(k) >= 3:
        return name, int(k)
    raise ConfigError(f"unknown protocol {protocol!r}; choose from {PROTOCOLS} (K >= 3)")


def make_folds(manifest: pd.DataFrame, protocol: str = "loso", seed: int = 0, dedup: bool = True) -> list[Fold]:
    """Build the folds of ``protocol`` (see the module docstring).

    Deterministic for a given manifest, protocol and seed. When the manifest has an
    ``audio_hash`` column (``load_corpus(..., hash_audio=True)``), byte-identical files
    never sit on two sides of a split: a copy of a test (or val) utterance is removed
    from the other splits, and the fold's ``notes`` say how many. With ``dedup=False``
    the copies stay, and are still reported: the fold is flagged ``leaky`` and its notes
    say how many (the check never depends on ``dedup``; a folds file is always scored as
    published, and checked).
    """
    name, k = parse_protocol(protocol)
    if name == "folds_file":
        return folds_from_file(manifest, protocol, seed)
    if name == "partition":
        return partition_folds(manifest, protocol)
    if name != "stratified_kfold" and manifest[SPEAKER].isna().any():
        raise SplitError(f"protocol {protocol!r} groups by speaker but the manifest has rows "
                         "without a speaker (folder corpus: pass speaker_regex=...)")
    folds: list[Fold] = []
    if name == "cross":
        folds.append(cross_fold(manifest, protocol))
    elif name == "loso":
        speakers = [s for s in speaker_order(manifest) if s != UNKNOWN_SPEAKER]
        if len(speakers) < 3:
            raise SplitError(too_few_speakers(manifest, protocol, 3, speakers))
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
        speakers = [s for s in speaker_order(manifest) if s != UNKNOWN_SPEAKER]
        if len(speakers) < k:
            raise SplitError(too_few_speakers(manifest, protocol, k, speakers))
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
                              ["speaker-dependent: speakers appear in train and test"], leaky=True))
    for fold in folds:
        if AUDIO_HASH in manifest.columns:
            if dedup:
                _drop_duplicate_audio(fold, manifest)
            else:
                _report_copies(fold, manifest.set_index(UTT_ID), "kept: dedup=false")
                for note in fold.notes:
                    log.warning("fold %d: %s", fold.number, note)
        check_disjoint(fold, manifest)
    return folds


def partition_folds(manifest: pd.DataFrame, protocol: str = "partition") -> list[Fold]:
    """The folds of ``partition``: Train / Development / each test set (module docstring)."""
    if PARTITION not in manifest.columns or manifest[PARTITION].isna().all():
        raise SplitError("protocol 'partition' needs a corpus with official partitions (a 'partition' column, "
                         "e.g. --corpus msp_podcast)")
    part = manifest[PARTITION].fillna("").astype(str).str.strip()
    ids = manifest[UTT_ID]
    train = ids[part.str.lower() == TRAIN_PARTITION].tolist()
    val = ids[part.str.lower().isin(DEV_PARTITIONS)].tolist()
    test_sets = sorted({p for p in part if p.lower().startswith("test")}, key=_natural)
    if not train or not val or not test_sets:
        raise SplitError(f"protocol 'partition' needs Train, Development and at least one Test partition; "
                         f"the manifest has {sorted(set(part))}")
    speakers = lambda members: sorted(set(manifest.loc[manifest[UTT_ID].isin(members), SPEAKER].dropna().astype(str))  # noqa: E731
                                      - {UNKNOWN_SPEAKER})
    folds = []
    for number, name in enumerate(test_sets, start=1):
        test = ids[part == name].tolist()
        fold = Fold(number, train, val, test, speakers(test), speakers(val), True, protocol,
                    [f"official partitions: train Train ({len(train)}), validation Development ({len(val)}), "
                     f"test {name} ({len(test)})"], test_set=name)
        _report_overlap(fold, manifest)
        check_disjoint(fold, manifest)
        folds.append(fold)
    return folds


MAX_FOLD = 100_000  # a folds file's largest fold number: beyond it, a typo (1e30 would overflow int64)


def too_few_speakers(manifest: pd.DataFrame, protocol: str, needed: int, speakers: list[str]) -> str:
    """Why a speaker-independent protocol cannot split this corpus, and what can."""
    corpus = manifest["corpus"].iloc[0] if "corpus" in manifest.columns and len(manifest) else "this corpus"
    shown = ", ".join(map(str, speakers[:5])) + (", …" if len(speakers) > 5 else "")
    return (f"{protocol} needs at least {needed} speakers, got {len(speakers)} speakers ({shown}) in {corpus}: "
            f"test on it from another corpus (--protocol cross:{corpus} with this corpus as --test-root), "
            "or use a speaker-dependent protocol, e.g. stratified_kfold:5 (flagged speaker-dependent and leaky)")


def folds_file_path(protocol: str) -> Path:
    """The file of ``folds_file:PATH``."""
    return Path(protocol.partition(":")[2]).expanduser()


def read_folds_file(path: str | Path) -> pd.DataFrame:
    """A fold file as a table with columns ``key`` (an utterance id or a speaker), ``by``
    (``"utt_id"`` or ``"speaker"``), ``fold`` (int) and ``role`` (train/val/test).

    The file is a CSV (``.csv``) or JSON lines (``.jsonl``) with one row per (key, fold):
    a column ``utt_id`` or ``speaker``, a column ``fold`` and a column ``role`` (``train``,
    ``val`` — also ``valid``, ``validation``, ``dev`` — or ``test``)::

        utt_id,fold,role
        03a01Fa,1,test
        03a01Wa,1,train

    Raises :class:`~serlib.errors.DataError` naming the file and the row when it cannot be
    read or a row lacks one of these.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such folds file (protocol folds_file:PATH)")
    try:
        if path.suffix.lower() == ".jsonl":
            lines = [line for line in path.read_text().splitlines() if line.strip()]
            table = pd.DataFrame([json.loads(line) for line in lines])
        elif path.suffix.lower() == ".csv":
            table = pd.read_csv(path, dtype=str, keep_default_na=False)
        else:
            raise DataError(path, f"folds file must be .csv or .jsonl, got {path.suffix!r}")
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise DataError(path, f"unreadable folds file ({e})") from e
    by = UTT_ID if UTT_ID in table.columns else SPEAKER if SPEAKER in table.columns else None
    missing = [c for c in ("fold", "role") if c not in table.columns] + ([] if by else [f"{UTT_ID} or {SPEAKER}"])
    if table.empty or missing:
        hint = "; this looks like one of EmoBox's fold files: give their folder (folds_file:DIR)" if "wav" in table else ""
        raise DataError(path, f"folds file needs columns {UTT_ID} (or {SPEAKER}), fold, role; missing {missing or 'rows'}"
                              + hint)
    roles = table["role"].astype(str).str.strip().str.lower()
    bad_role = roles[~roles.isin(FOLD_ROLES)]
    if len(bad_role):
        i = bad_role.index[0]
        raise DataError(path, f"row {i + 1}: role {table['role'][i]!r} is not one of {sorted(FOLD_ROLES)}")
    folds = pd.to_numeric(table["fold"], errors="coerce")
    bad = folds.isna() | (folds < 1) | (folds % 1 != 0) | (folds > MAX_FOLD)
    if bad.any():
        i = folds.index[bad][0]
        raise DataError(path, f"row {i + 1}: fold {table['fold'][i]!r} is not a whole number from 1 to {MAX_FOLD}")
    out = pd.DataFrame({"key": table[by].astype(str), "by": by, "fold": folds.astype(int), "role": roles.map(FOLD_ROLES)})
    twice = out[out.duplicated(["key", "fold"], keep=False)]
    if len(twice):
        key, fold = twice.iloc[0][["key", "fold"]]
        raise DataError(path, f"{by} {key!r} has {len(twice[(twice.key == key) & (twice.fold == fold)])} roles in fold {fold}")
    return out


def folds_from_file(manifest: pd.DataFrame, protocol: str, seed: int = 0) -> list[Fold]:
    """The folds of ``folds_file:PATH`` on ``manifest`` (:func:`read_folds_file`).

    Keys of the file that the manifest lacks (other classes, skipped files) are counted in
    each fold's notes; utterances of the manifest that a fold does not list take no part in
    it. Each fold is then checked: an utterance on two sides is an error; shared speakers
    or byte-identical audio on two sides are reported in the notes and flag the fold
    ``speaker_independent=False`` / ``leaky=True`` — a published split is scored as
    published, and said to be what it is.
    """
    path = folds_file_path(protocol)
    table = read_emobox(path, manifest, seed) if path.is_dir() else read_folds_file(path)
    by = table["by"].iloc[0]
    known = set(manifest[by].astype(str))
    ids_of = manifest.groupby(manifest[by].astype(str))[UTT_ID].apply(list) if by == SPEAKER else None
    speaker_of = manifest.set_index(UTT_ID)[SPEAKER]
    folds = []
    for number, rows in table.groupby("fold", sort=True):
        absent = sorted(set(rows.key) - known)
        rows = rows[rows.key.isin(known)]
        split = {}
        for role in ("train", "val", "test"):
            keys = rows.key[rows.role == role].tolist()
            split[role] = [u for k in keys for u in ids_of[k]] if by == SPEAKER else keys
            if not split[role]:
                raise DataError(path, f"fold {number}: no {role} utterances of this manifest "
                                      f"({len(absent)} keys of the file are not in it)")
        spk = {role: sorted(set(speaker_of[ids].dropna().astype(str))) for role, ids in split.items()}
        notes = [f"folds file {path.name}: {len(absent)} of its keys are not in the manifest, e.g. {absent[:3]}"] if absent else []
        notes += table.attrs.get("notes", {}).get(int(number), [])
        fold = Fold(int(number), split["train"], split["val"], split["test"], spk["test"], spk["val"], True, protocol, notes)
        _report_overlap(fold, manifest)
        check_disjoint(fold, manifest)
        folds.append(fold)
    numbers = [f.number for f in folds]
    if numbers != list(range(1, len(folds) + 1)):
        raise DataError(path, f"folds must be numbered 1..K without gaps, got {numbers}")
    return folds


def read_emobox(folder: Path, manifest: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """EmoBox's fold folder as the table of :func:`read_folds_file` (keys = utterance ids).

    ``folder`` holds ``fold_K/<corpus>_{train,valid,test}_fold_K.jsonl`` (EmoBox's
    ``data/<corpus>/``; ``…_foldK.jsonl`` is read too), one JSON object per line with the
    audio's path under ``wav`` (and EmoBox's ``key``, ``emo``, ``length``). Each line is
    matched to the manifest by its audio file: the file name, and where two files of the
    manifest share a name, the longest common path ending. Lines whose audio the manifest
    lacks are counted in the fold's notes. Where a fold has no ``valid`` list (most of
    EmoBox's corpora), :data:`EMOBOX_VAL_FRACTION` of its train list, drawn with ``seed``,
    validates — EmoBox's own 80/20 rule — and the fold's notes say so.
    """
    files = sorted(p for p in folder.rglob("*.jsonl") if _EMOBOX_FILE.match(p.name))
    if not files:
        raise DataError(folder, "no EmoBox fold files (fold_1/<corpus>_train_fold_1.jsonl, …_test_fold_1.jsonl)")
    by_name: dict[str, list[int]] = {}
    paths = [Path(p).parts for p in manifest[PATH]]
    for i, parts in enumerate(paths):
        by_name.setdefault(parts[-1], []).append(i)
    ids = manifest[UTT_ID].astype(str).tolist()
    rows, notes = [], {}
    for file in files:
        m = _EMOBOX_FILE.match(file.name)
        fold, role = int(m["fold"]), FOLD_ROLES[m["role"]]
        missing = []
        for n, line in enumerate(file.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                wav = Path(json.loads(line)["wav"]).parts
            except (ValueError, KeyError, TypeError) as e:
                raise DataError(file, f"line {n}: not an EmoBox entry with a 'wav' path ({e})") from e
            candidates = by_name.get(wav[-1], [])
            if len(candidates) > 1:  # the same file name in several folders: the longest common ending wins
                tails = [_common_tail(wav, paths[i]) for i in candidates]
                candidates = [i for i, t in zip(candidates, tails) if t == max(tails)]
                if len(candidates) > 1:
                    raise DataError(file, f"line {n}: {'/'.join(wav)} matches {len(candidates)} files of the manifest")
            if candidates:
                rows.append((ids[candidates[0]], fold, role))
            else:
                missing.append("/".join(wav[-2:]))
        if missing:
            notes.setdefault(fold, []).append(f"EmoBox {file.name}: {len(missing)} file(s) not in the manifest, "
                                              f"e.g. {missing[:3]}")
    # a checkout may hold both spellings of a file (…_fold_1.jsonl, …_fold1.jsonl): one line each
    table = (pd.DataFrame(rows, columns=["key", "fold", "role"]).drop_duplicates(ignore_index=True)
             .assign(by=UTT_ID)[["key", "by", "fold", "role"]])
    rng = np.random.default_rng(seed)
    for fold in sorted(table.fold.unique()):
        roles = table[table.fold == fold].role
        if (roles == "val").any():
            continue
        train = roles.index[roles == "train"]
        chosen = rng.choice(train, size=max(1, round(EMOBOX_VAL_FRACTION * len(train))), replace=False)
        table.loc[chosen, "role"] = "val"
        notes.setdefault(int(fold), []).append(
            f"EmoBox fold {fold} has no valid list: {len(chosen)} of its {len(train)} train utterances "
            f"(a random {EMOBOX_VAL_FRACTION:.0%}, seed {seed}) validate, as EmoBox's own recipe does")
    table.attrs["notes"] = notes
    return table


def _common_tail(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    """How many trailing path parts ``a`` and ``b`` share."""
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


def folds_source_sha256(protocol: str) -> str | None:
    """The content hash of a ``folds_file:`` protocol's file or EmoBox folder (its
    ``.jsonl`` files, by relative path), ``None`` for other protocols: a record's
    folds are the content, not the name."""
    if not protocol.startswith("folds_file:"):
        return None
    path = folds_file_path(protocol)
    if path.is_dir():
        h = hashlib.sha256()
        for file in sorted(path.rglob("*.jsonl")):
            h.update(str(file.relative_to(path)).encode() + b"\0" + file.read_bytes())
        return h.hexdigest()
    if not path.is_file():
        raise DataError(path, "no such folds file (protocol folds_file:PATH)")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _report_overlap(fold: Fold, manifest: pd.DataFrame) -> None:
    """Flag (not fix) shared speakers and identical audio across the sides of a fold."""
    frame = manifest.set_index(UTT_ID)
    sides = {role: getattr(fold, role) for role in ("train", "val", "test")}
    unknown_speaker = frame.loc[[u for ids in sides.values() for u in ids], SPEAKER].isna().any()
    for a, b in (("train", "test"), ("val", "test"), ("train", "val")):
        shared = set(frame.loc[sides[a], SPEAKER].dropna()) & set(frame.loc[sides[b], SPEAKER].dropna()) - {UNKNOWN_SPEAKER}
        if shared:
            fold.speaker_independent, fold.leaky = False, True
            fold.notes.append(f"speaker-dependent: {len(shared)} speaker(s) in both {a} and {b}, e.g. {sorted(map(str, shared))[:3]}")
    _report_copies(fold, frame, "kept: the split is scored as published")
    if unknown_speaker:
        fold.speaker_independent = False
        fold.notes.append("speaker-dependent: some utterances have no speaker, so speaker independence cannot be checked")
    for note in fold.notes:
        log.warning("fold %d: %s", fold.number, note)


def _report_copies(fold: Fold, frame: pd.DataFrame, why: str) -> None:
    """Flag (not fix) byte-identical audio on two sides of a fold (``frame``: the manifest
    indexed by utterance id, with its audio hashes)."""
    if AUDIO_HASH not in frame.columns:
        return
    for a, b in (("train", "test"), ("val", "test"), ("train", "val")):
        copies = set(frame.loc[getattr(fold, a), AUDIO_HASH]) & set(frame.loc[getattr(fold, b), AUDIO_HASH])
        if copies:
            fold.leaky = True
            fold.notes.append(f"{len(copies)} byte-identical file(s) in both {a} and {b} ({why})")


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
