"""ShEMO adapter (Sharif Emotional Speech Database, Persian; Mohamad Nezami et al. 2019).

3000 utterances of radio plays, 87 speakers (31 female, 56 male), 6 emotions, in
``female/`` and ``male/`` folders: ``F01A01.wav`` = ``<gender><speaker><emotion><n>.wav``.
Speakers are numbered within each gender, so the speaker is ``F01`` or ``M01`` (two
people). Emotion codes: A anger, F fear, H happiness, N neutral, S sadness, W surprise;
read from the file name, not the folder.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..constants import GENDER, LABEL, PATH, SESSION, SPEAKER, TEXT, UTT_ID
from ..errors import DataError
from ._common import Skips, check_root, drop_repeats, finish, parsed_files

EMOTIONS = {"A": "angry", "F": "fear", "H": "happy", "N": "neutral", "S": "sad", "W": "surprise"}
_NAME = re.compile(r"^(?P<speaker>(?P<gender>[FM])\d\d)(?P<emotion>[A-Z])(?P<number>\d\d)$", re.IGNORECASE)


def parse_name(name: str) -> dict:
    """Decode a ShEMO file name.

    >>> d = parse_name("M12W03.wav"); d["speaker"], d["gender"], d["label"]
    ('M12', 'M', 'surprise')
    """
    m = _NAME.match(Path(name).stem)
    if not m:
        raise ValueError("not a ShEMO name (<F|M><speaker><emotion><nn>.wav, e.g. F01A01.wav)")
    emotion = m["emotion"].upper()
    if emotion not in EMOTIONS:
        raise KeyError(f"unknown emotion code {m['emotion']!r}")
    return {SPEAKER: m["speaker"].upper(), GENDER: m["gender"].upper(), LABEL: EMOTIONS[emotion]}


def load(root: str | Path | None, on_error: str = "raise", hash_audio: bool = False):
    """Manifest of ShEMO (root = the folder holding ``female/`` and ``male/``, or above)."""
    root = check_root(root, "shemo")
    skips = Skips(on_error)
    rows = [{UTT_ID: wav.stem.upper(), PATH: str(wav), SESSION: None, TEXT: None, **f}
            for wav, f in parsed_files(root, parse_name, skips)]
    if not rows:
        raise DataError(root, "no ShEMO files (female/F01A01.wav) found")
    return finish(drop_repeats(rows, skips), "shemo", root, skips, hash_audio)
