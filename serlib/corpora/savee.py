"""SAVEE adapter (Surrey Audio-Visual Expressed Emotion; Haq & Jackson 2009).

Four male speakers (DC, JE, JK, KL), 7 emotions, 15 sentences per emotion and 30 neutral
(480 files). Two layouts are in circulation, both read:

* the original release, per-speaker folders: ``AudioData/DC/a01.wav`` (the speaker is
  the folder),
* the widely copied flat layout: ``ALL/DC_a01.wav`` (the speaker is the name's prefix;
  where a folder says otherwise, the name wins).

Emotion codes: a anger, d disgust, f fear, h happiness, n neutral, sa sadness, su
surprise. ``text_code`` is the code and number (``a01``): the sentence list is per emotion.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..constants import GENDER, LABEL, PATH, SESSION, SPEAKER, TEXT, UTT_ID
from ..errors import DataError
from ._common import Skips, check_root, drop_repeats, finish, parsed_files

EMOTIONS = {"a": "angry", "d": "disgust", "f": "fear", "h": "happy", "n": "neutral", "sa": "sad", "su": "surprise"}
SPEAKERS = ("DC", "JE", "JK", "KL")  # all male
_NAME = re.compile(r"^(?:(?P<speaker>[A-Za-z]{2})_)?(?P<emotion>[A-Za-z]{1,2})(?P<number>\d\d)$")


def parse_path(wav: Path) -> dict:
    """Speaker, emotion and sentence of a SAVEE file (flat or per-speaker layout).

    >>> parse_path(Path("ALL/JK_sa03.wav"))["label"], parse_path(Path("AudioData/DC/su15.wav"))["speaker"]
    ('sad', 'DC')
    """
    m = _NAME.match(wav.stem)
    if not m:
        raise ValueError("not a SAVEE name (<speaker>_<code><nn>.wav or <speaker>/<code><nn>.wav, e.g. DC_a01.wav)")
    speaker = (m["speaker"] or wav.parent.name).upper()
    if speaker not in SPEAKERS:
        if m["speaker"] is None and len(wav.parent.name) != 2:
            raise ValueError(f"no speaker: neither a <speaker>_ prefix nor a speaker folder ({', '.join(SPEAKERS)})")
        raise KeyError(f"unknown speaker {speaker!r} (SAVEE has {', '.join(SPEAKERS)})")
    code = m["emotion"].lower()
    if code not in EMOTIONS:
        raise KeyError(f"unknown emotion code {m['emotion']!r}")
    return {SPEAKER: speaker, LABEL: EMOTIONS[code], "text_code": f"{code}{m['number']}"}


def load(root: str | Path | None, on_error: str = "raise", hash_audio: bool = False):
    """Manifest of SAVEE (root = any folder above the speaker folders or the flat files)."""
    root = check_root(root, "savee")
    skips = Skips(on_error)
    rows = []
    for wav, f in parsed_files(root, parse_path, skips, whole_path=True):
        rows.append({UTT_ID: f"{f[SPEAKER]}_{f['text_code']}", PATH: str(wav), GENDER: "M", SESSION: None,
                     TEXT: None, **f})
    if not rows:
        raise DataError(root, "no SAVEE files (ALL/DC_a01.wav or AudioData/DC/a01.wav) found")
    return finish(drop_repeats(rows, skips), "savee", root, skips, hash_audio)
