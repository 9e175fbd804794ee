"""User corpora: ``folder`` (one sub-folder per label) and ``csv`` (a user manifest)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ..constants import (
    DIMENSIONS,
    GENDER,
    LABEL,
    LABELS,
    MANIFEST_COLUMNS,
    PATH,
    SESSION,
    SPEAKER,
    TEXT,
    UTT_ID,
)
from ..errors import DataError, LabelError
from ._common import Skips, check_root, finish, wav_files

# Common spellings of the canonical labels in corpora and user files.
ALIASES = {
    "neu": "neutral", "hap": "happy", "happiness": "happy", "joy": "happy", "sad": "sad",
    "sadness": "sad", "ang": "angry", "anger": "angry", "fea": "fear", "fearful": "fear",
    "dis": "disgust", "disgusted": "disgust", "sur": "surprise", "surprised": "surprise",
    "bored": "boredom", "exc": "excited", "excitement": "excited", "fru": "frustrated",
    "frustration": "frustrated", "oth": "other",
}


def canonical_label(name: str) -> str:
    """Map a label spelling onto the canonical set; raise KeyError when unknown.

    >>> canonical_label("Anger"), canonical_label("neutral")
    ('angry', 'neutral')
    """
    key = str(name).strip().lower()
    if key in LABELS:
        return key
    if key in ALIASES:
        return ALIASES[key]
    raise KeyError(f"unknown label {name!r} (canonical: {', '.join(LABELS)})")


def load_folder(
    root: str | Path | None,
    speaker_regex: str | None = None,
    on_error: str = "raise",
    hash_audio: bool = False,
):
    """``root/<label>/**/*.wav``; the label is the first sub-folder's name.

    Args:
        speaker_regex: a regular expression with a ``speaker`` group applied to the file
            name (e.g. ``r"^(?P<speaker>\\d\\d)"``); without it the speaker is unknown and
            only speaker-dependent protocols can be used.
    """
    root = check_root(root, "folder")
    pattern = re.compile(speaker_regex) if speaker_regex else None
    skips = Skips(on_error)
    rows = []
    for wav in wav_files(root, skips):
        rel = wav.relative_to(root)
        if len(rel.parts) < 2:
            skips.ignore(wav, "file ignored: not in a label sub-folder (root/<label>/*.wav)")
            continue
        try:
            label = canonical_label(rel.parts[0])
        except KeyError as e:
            skips.handle(LabelError(wav, e.args[0]))
            continue
        speaker = None
        if pattern is not None:
            m = pattern.search(wav.name)
            if not m:
                skips.handle(DataError(wav, f"speaker_regex {speaker_regex!r} does not match"))
                continue
            speaker = m["speaker"]
        rows.append({
            UTT_ID: str(rel.with_suffix("")).replace("/", "__"), PATH: str(wav), SPEAKER: speaker,
            GENDER: None, SESSION: None, LABEL: label, TEXT: None,
        })
    if not rows:
        raise DataError(root, "no wav files in label sub-folders (root/<label>/*.wav)")
    return finish(rows, "folder", root, skips, hash_audio)


def load_csv(root: str | Path | None, on_error: str = "raise", hash_audio: bool = False):
    """A user manifest: a CSV with at least ``path`` and ``label`` columns.

    Optional columns: ``utt_id`` (default: file stem), ``speaker``, ``gender``,
    ``session``, ``text``, the dimensional labels ``arousal``, ``valence``, ``dominance``
    (numbers in any one scale; empty cells are NaN) and any extras. Relative paths are
    resolved against the CSV's folder.
    """
    if root is None:
        raise DataError(None, "corpus 'csv' needs root=<path of the manifest CSV>")
    csv_path = Path(root).expanduser().resolve()
    if not csv_path.is_file():
        raise DataError(csv_path, "manifest CSV does not exist")
    table = pd.read_csv(csv_path)
    missing = {PATH, LABEL} - set(table.columns)
    if missing:
        raise DataError(csv_path, f"missing required column(s) {sorted(missing)}")
    for dim in (d for d in DIMENSIONS if d in table.columns):
        values = pd.to_numeric(table[dim], errors="coerce")
        bad = values.isna() & table[dim].notna()
        if bad.any():
            line = int(bad.to_numpy().nonzero()[0][0]) + 2
            raise DataError(f"{csv_path}:{line}", f"column {dim!r} holds {table[dim][bad].iloc[0]!r}, not a number")
        table[dim] = values
    skips = Skips(on_error)
    rows = []
    for i, rec in enumerate(table.to_dict("records"), start=2):  # line 1 is the header
        path = Path(str(rec[PATH])).expanduser()
        path = path if path.is_absolute() else (csv_path.parent / path).resolve()
        try:
            label = canonical_label(rec[LABEL])
        except KeyError as e:
            skips.handle(LabelError(f"{csv_path}:{i}", e.args[0]))
            continue
        row = {k: (None if pd.isna(v) else v) for k, v in rec.items()}
        row.update({PATH: str(path), LABEL: label})
        for column in MANIFEST_COLUMNS:
            row.setdefault(column, None)
        if row[UTT_ID] is None:
            row[UTT_ID] = path.stem
        if row[SPEAKER] is not None:
            row[SPEAKER] = str(row[SPEAKER])
        rows.append(row)
    if not rows:
        raise DataError(csv_path, "manifest has no usable rows")
    by_path: dict[str, list] = {}
    for row in rows:
        by_path.setdefault(row[PATH], []).append(row[UTT_ID])
    repeated = {p: ids for p, ids in by_path.items() if len(ids) > 1}
    if repeated:  # one recording under two ids would sit on both sides of a split
        path, ids = next(iter(repeated.items()))
        raise DataError(csv_path, f"{len(repeated)} audio file(s) listed more than once, e.g. {path} "
                                  f"as {ids}; list each file once")
    return finish(rows, "csv", csv_path.parent, skips, hash_audio)
