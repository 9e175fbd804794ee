"""CREMA-D adapter (``AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav``, e.g.
``1001_DFA_ANG_XX.wav``; Cao et al. 2014, the release's README).

91 actors (ids 1001–1091) read 12 sentences in 6 emotions; the level is LO, MD, HI or XX
(unspecified; every sentence but IEO is XX). Gender and age come from the release's
``VideoDemographics.csv`` (``ActorID, Age, Sex, Race, Ethnicity``) when it is found under
the root; without it gender and age are left empty.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ..constants import GENDER, LABEL, PATH, SESSION, SPEAKER, TEXT, UTT_ID
from ..errors import DataError
from ._common import Skips, check_root, drop_repeats, finish, parsed_files

EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
SENTENCES = {
    "IEO": "It's eleven o'clock.", "TIE": "That is exactly what happened.",
    "IOM": "I'm on my way to the meeting.", "IWW": "I wonder what this is about.",
    "TAI": "The airplane is almost full.", "MTI": "Maybe tomorrow it will be cold.",
    "IWL": "I would like a new alarm clock.", "ITH": "I think I have a doctor's appointment.",
    "DFA": "Don't forget a jacket.", "ITS": "I think I've seen this before.",
    "TSI": "The surface is slick.", "WSI": "We'll stop in a couple of minutes.",
}
_NAME = re.compile(r"^(?P<actor>\d{4})_(?P<sentence>[A-Za-z]{3})_(?P<emotion>[A-Za-z]{3})_(?P<level>[A-Za-z]{2})$")
DEMOGRAPHICS = "VideoDemographics.csv"


def parse_name(name: str) -> dict:
    """Decode a CREMA-D file name.

    >>> d = parse_name("1001_DFA_ANG_XX.wav"); d["actor"], d["label"], d["sentence"], d["level"]
    ('1001', 'angry', 'DFA', 'unspecified')
    """
    m = _NAME.match(Path(name).stem)
    if not m:
        raise ValueError("not a CREMA-D name (<actor>_<sentence>_<emotion>_<level>.wav, e.g. 1001_DFA_ANG_XX.wav)")
    emotion, sentence, level = m["emotion"].upper(), m["sentence"].upper(), m["level"].upper()
    for value, table, what in ((emotion, EMOTIONS, "emotion"), (sentence, SENTENCES, "sentence"),
                               (level, LEVELS, "level")):
        if value not in table:
            raise KeyError(f"unknown {what} code {value!r}")
    return {"actor": m["actor"], LABEL: EMOTIONS[emotion], "sentence": sentence, "level": LEVELS[level]}


def read_demographics(root: Path) -> dict[str, tuple[str | None, float | None]]:
    """``{actor: (gender, age)}`` from ``VideoDemographics.csv`` anywhere under root ({} without it)."""
    found = sorted(p for p in root.rglob("*") if p.name.lower() == DEMOGRAPHICS.lower() and p.is_file())
    if not found:
        return {}
    try:
        table = pd.read_csv(found[0], dtype=str)
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(found[0], f"unreadable demographics table ({e})") from e
    columns = {c.strip().lower(): c for c in table.columns}
    if not {"actorid", "sex"} <= set(columns):
        raise DataError(found[0], f"expected columns ActorID and Sex, got {list(table.columns)}")
    sexes = {"male": "M", "female": "F"}
    out = {}
    for rec in table.to_dict("records"):
        actor = str(rec[columns["actorid"]]).strip()
        age = pd.to_numeric(rec.get(columns.get("age", ""), None), errors="coerce")
        out[actor] = (sexes.get(str(rec[columns["sex"]]).strip().lower()), None if pd.isna(age) else float(age))
    return out


def load(root: str | Path | None, on_error: str = "raise", hash_audio: bool = False):
    """Manifest of CREMA-D (root = the release folder, or ``AudioWAV/`` itself).

    The fixed sentences are prompts, not transcripts of emotional speech: ``text`` stays
    empty and ``prompt_text`` holds the sentence (as for EMO-DB)."""
    root = check_root(root, "crema_d")
    demographics = read_demographics(root)
    skips = Skips(on_error)
    rows = []
    for wav, f in parsed_files(root, parse_name, skips):
        gender, age = demographics.get(f["actor"], (None, None))
        rows.append({UTT_ID: wav.stem, PATH: str(wav), SPEAKER: f["actor"], GENDER: gender, SESSION: None,
                     TEXT: None, **f, "age": age, "prompt_text": SENTENCES[f["sentence"]]})
    if not rows:
        raise DataError(root, "no CREMA-D files (AudioWAV/1001_DFA_ANG_XX.wav) found")
    return finish(drop_repeats(rows, skips), "crema_d", root, skips, hash_audio)
