"""MSP-Podcast adapter (the release layout as distributed, e.g. v1.11).

``ROOT/Audios/*.wav`` and ``ROOT/Labels/labels_consensus.csv``, one row per segment with
(among others) the columns ``FileName`` (``MSP-PODCAST_0001_0008.wav``), ``EmoClass``,
``EmoAct``, ``EmoVal``, ``EmoDom``, ``SpkrID``, ``Gender`` and ``Split_Set``.

* ``EmoClass``: the consensus category, one letter — A angry, S sad, H happy, U surprise,
  F fear, D disgust, C contempt, N neutral, O other, X no agreement. ``X`` rows are
  dropped and counted by default (``keep_no_majority=True`` keeps them as ``other``,
  e.g. for the dimensional task, where their A/V/D are still ratings).
* ``EmoAct``/``EmoVal``/``EmoDom``: the raters' mean arousal, valence and dominance on the
  release's 1–7 scale; the manifest keeps that scale (``arousal``, ``valence``,
  ``dominance``).
* ``SpkrID``: a speaker number, or ``Unknown`` for segments whose speaker was not
  identified. Those are one group, ``speaker="Unknown"``, which the speaker protocols
  never hold out as a test or validation speaker (:data:`serlib.constants.UNKNOWN_SPEAKER`).
* ``Split_Set``: the official partitions (``Train``, ``Development``, ``Test1``,
  ``Test2``, ``Test3`` where the release has them), in the manifest's ``partition``
  column; ``--protocol partition`` trains on Train, selects on Development and tests on
  each test set in turn (one fold per test set).

A file listed in the labels but missing from ``Audios/`` is a counted skip (the manifest's
``attrs["skipped"]``), as is a wav with no row in the labels.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..constants import (
    AROUSAL,
    DOMINANCE,
    GENDER,
    LABEL,
    PARTITION,
    PATH,
    SESSION,
    SPEAKER,
    TEXT,
    UNKNOWN_SPEAKER,
    UTT_ID,
    VALENCE,
)
from ..errors import DataError, LabelError
from ._common import Skips, check_root, finish

CLASSES = {"A": "angry", "S": "sad", "H": "happy", "U": "surprise", "F": "fear", "D": "disgust",
           "C": "contempt", "N": "neutral", "O": "other"}
NO_AGREEMENT = "X"
COLUMNS = ("FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set")
GENDERS = {"male": "M", "female": "F"}
LABELS_FILE = Path("Labels") / "labels_consensus.csv"


def load(root: str | Path | None, keep_no_majority: bool = False, on_error: str = "raise",
         hash_audio: bool = False):
    """Manifest of MSP-Podcast (``root`` holds ``Audios/`` and ``Labels/``)."""
    root = check_root(root, "msp_podcast")
    labels_path = root / LABELS_FILE
    if not labels_path.is_file():
        raise DataError(root, f"no {LABELS_FILE} (expected the MSP-Podcast layout: Audios/, Labels/)")
    try:
        table = pd.read_csv(labels_path, dtype=str, keep_default_na=False)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise DataError(labels_path, f"unreadable labels file ({e})") from e
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise DataError(labels_path, f"missing column(s) {missing}")
    audios = root / "Audios"
    skips = Skips(on_error)
    rows, dropped = [], 0
    for line, rec in enumerate(table.to_dict("records"), start=2):  # line 1 is the header
        code = rec["EmoClass"].strip()
        if code == NO_AGREEMENT and not keep_no_majority:
            dropped += 1
            continue
        label = "other" if code == NO_AGREEMENT else CLASSES.get(code)
        if label is None:
            skips.handle(LabelError(f"{labels_path}:{line}", f"unknown EmoClass {code!r} for {rec['FileName']}"))
            continue
        try:
            values = {dim: float(rec[column]) for dim, column in
                      ((AROUSAL, "EmoAct"), (VALENCE, "EmoVal"), (DOMINANCE, "EmoDom"))}
        except ValueError:
            raise DataError(f"{labels_path}:{line}", f"EmoAct/EmoVal/EmoDom of {rec['FileName']} are not numbers: "
                                                     f"{rec['EmoAct']!r}, {rec['EmoVal']!r}, {rec['EmoDom']!r}") from None
        wav = audios / rec["FileName"]
        if not wav.is_file():
            skips.ignore(wav, "listed in labels_consensus.csv but missing from Audios/")
            continue
        speaker = rec["SpkrID"].strip()
        rows.append({
            UTT_ID: wav.stem, PATH: str(wav),
            SPEAKER: UNKNOWN_SPEAKER if speaker.lower() in ("", "unknown") else speaker,
            GENDER: GENDERS.get(rec["Gender"].strip().lower()), SESSION: None, LABEL: label, TEXT: None,
            PARTITION: rec["Split_Set"].strip(), **values,
        })
    listed = set(table["FileName"])
    for wav in sorted(audios.glob("*.wav")) if audios.is_dir() else ():
        if wav.name not in listed:
            skips.ignore(wav, "file ignored: no row in labels_consensus.csv")
    if not rows:
        raise DataError(root, "no usable MSP-Podcast segments (Audios/*.wav listed in Labels/labels_consensus.csv)")
    df = finish(rows, "msp_podcast", root, skips, hash_audio)
    df.attrs["dropped"] = {"X (no agreement)": dropped} if dropped else {}
    return df
