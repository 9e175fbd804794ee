"""URDU adapter (Latif et al. 2018, "Cross Lingual Speech Emotion Recognition: Urdu vs.
Western Languages").

400 utterances of spontaneous speech from Urdu talk shows, 38 speakers (27 male, 11
female), 4 emotions, in folders per emotion: ``Angry/SM1_F1_A01.wav`` =
``S<gender><speaker>_F<file>_<emotion><n>.wav``. The speaker (``SM1``), gender and emotion
are read from the file name, not the folder (A angry, H happy, N neutral, S sad).
"""

from __future__ import annotations

import re
from pathlib import Path

from ..constants import GENDER, LABEL, PATH, SESSION, SPEAKER, TEXT, UTT_ID
from ..errors import DataError
from ._common import Skips, check_root, drop_repeats, finish, parsed_files

EMOTIONS = {"A": "angry", "H": "happy", "N": "neutral", "S": "sad"}
_NAME = re.compile(r"^(?P<speaker>S(?P<gender>[MF])\d+)_(?P<file>F\d+)_(?P<emotion>[A-Z])(?P<number>\d+)$",
                   re.IGNORECASE)


def parse_name(name: str) -> dict:
    """Decode an URDU file name.

    >>> d = parse_name("SF3_F12_H07.wav"); d["speaker"], d["gender"], d["label"]
    ('SF3', 'F', 'happy')
    """
    m = _NAME.match(Path(name).stem)
    if not m:
        raise ValueError("not an URDU name (S<M|F><speaker>_F<file>_<emotion><n>.wav, e.g. SM1_F1_A01.wav)")
    emotion = m["emotion"].upper()
    if emotion not in EMOTIONS:
        raise KeyError(f"unknown emotion code {m['emotion']!r}")
    return {SPEAKER: m["speaker"].upper(), GENDER: m["gender"].upper(), LABEL: EMOTIONS[emotion],
            "file": m["file"].upper()}


def load(root: str | Path | None, on_error: str = "raise", hash_audio: bool = False):
    """Manifest of URDU (root = the folder holding Angry/, Happy/, Neutral/, Sad/, or above)."""
    root = check_root(root, "urdu")
    skips = Skips(on_error)
    rows = [{UTT_ID: wav.stem.upper(), PATH: str(wav), SESSION: None, TEXT: None, **f}
            for wav, f in parsed_files(root, parse_name, skips)]
    if not rows:
        raise DataError(root, "no URDU files (Angry/SM1_F1_A01.wav) found")
    return finish(drop_repeats(rows, skips), "urdu", root, skips, hash_audio)
