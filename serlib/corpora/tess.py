"""TESS adapter (Toronto emotional speech set; Dupuis & Pichora-Fuller 2010).

Two female speakers, OAF (aged 64) and YAF (aged 26), say "Say the word ___" with 200
target words in 7 emotions (2800 files), in folders per speaker and emotion
(``OAF_angry/OAF_back_angry.wav``, ``YAF_pleasant_surprised/YAF_witch_ps.wav``). The
folders' spellings vary between copies (``OAF_Fear``, ``OAF_Pleasant_surprise``), so the
speaker, word and emotion are read from the file name, never from the folder.

Emotion codes: angry, disgust, fear, happy, neutral, sad and ps — "pleasant surprise",
kept as its own label ``pleasant_surprise`` (merge it with ``surprise`` on request).
With two speakers, LOSO and speaker-group folds are impossible: use TESS as the test
corpus of a cross-corpus run, or a speaker-dependent protocol (flagged leaky).
"""

from __future__ import annotations

import re
from pathlib import Path

from ..constants import GENDER, LABEL, PATH, SESSION, SPEAKER, TEXT, UTT_ID
from ..errors import DataError
from ._common import Skips, check_root, drop_repeats, finish, parsed_files

EMOTIONS = {"angry": "angry", "disgust": "disgust", "fear": "fear", "happy": "happy", "neutral": "neutral",
            "sad": "sad", "ps": "pleasant_surprise"}
SPEAKERS = {"OAF": 64, "YAF": 26}  # speaker: age; both female
_NAME = re.compile(r"^(?P<speaker>[A-Za-z]{3})_(?P<word>[A-Za-z']+)_(?P<emotion>[A-Za-z_]+)$")


def parse_name(name: str) -> dict:
    """Decode a TESS file name (case-insensitive).

    >>> d = parse_name("YAF_witch_ps.wav"); d["speaker"], d["word"], d["label"]
    ('YAF', 'witch', 'pleasant_surprise')
    """
    m = _NAME.match(Path(name).stem)
    if not m or m["speaker"].upper() not in SPEAKERS:
        raise ValueError("not a TESS name (<OAF|YAF>_<word>_<emotion>.wav, e.g. OAF_back_angry.wav)")
    emotion = m["emotion"].lower()
    if emotion not in EMOTIONS:
        raise KeyError(f"unknown emotion {m['emotion']!r} (TESS: {', '.join(EMOTIONS)})")
    speaker, word = m["speaker"].upper(), m["word"].lower()
    return {UTT_ID: f"{speaker}_{word}_{emotion}", SPEAKER: speaker, "word": word, LABEL: EMOTIONS[emotion]}


def load(root: str | Path | None, on_error: str = "raise", hash_audio: bool = False):
    """Manifest of TESS (root = any folder above the speaker/emotion folders)."""
    root = check_root(root, "tess")
    skips = Skips(on_error)
    rows = []
    for wav, f in parsed_files(root, parse_name, skips):
        rows.append({PATH: str(wav), GENDER: "F", SESSION: None,
                     TEXT: None, **f, "text_code": f["word"], "age": SPEAKERS[f[SPEAKER]]})
    if not rows:
        raise DataError(root, "no TESS files (OAF_angry/OAF_back_angry.wav) found")
    return finish(drop_repeats(rows, skips), "tess", root, skips, hash_audio)
