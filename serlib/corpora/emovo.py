"""EMOVO adapter (Italian; Costantini et al. 2014).

Six actors (f1, f2, f3, m1, m2, m3) read 14 sentences in 7 emotions (588 files), in
per-speaker folders: ``f1/dis-f1-b1.wav`` = ``<emotion>-<speaker>-<sentence>.wav``. The
speaker and gender are read from the file name (a folder spelled ``F1`` or ``female 1``
does not matter).

Emotion codes: dis disgusto → disgust, gio gioia → happy, neu neutro → neutral,
pau paura → fear, rab rabbia → angry, sor sorpresa → surprise, tri tristezza → sad.
Sentences: b1–b3 (short), l1–l4 (long), n1–n5 (nonsense), d1–d2 (questions), as
``text_code``.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..constants import GENDER, LABEL, PATH, SESSION, SPEAKER, TEXT, UTT_ID
from ..errors import DataError
from ._common import Skips, check_root, drop_repeats, finish, parsed_files

EMOTIONS = {"dis": "disgust", "gio": "happy", "neu": "neutral", "pau": "fear", "rab": "angry",
            "sor": "surprise", "tri": "sad"}
SENTENCES = ("b1", "b2", "b3", "l1", "l2", "l3", "l4", "n1", "n2", "n3", "n4", "n5", "d1", "d2")
_NAME = re.compile(r"^(?P<emotion>[A-Za-z]{3})-(?P<speaker>[FfMm]\d)-(?P<sentence>[A-Za-z]\d)$")


def parse_name(name: str) -> dict:
    """Decode an EMOVO file name.

    >>> d = parse_name("gio-m2-l3.wav"); d["speaker"], d["gender"], d["label"], d["text_code"]
    ('m2', 'M', 'happy', 'l3')
    """
    m = _NAME.match(Path(name).stem)
    if not m:
        raise ValueError("not an EMOVO name (<emotion>-<speaker>-<sentence>.wav, e.g. dis-f1-b1.wav)")
    emotion, speaker, sentence = m["emotion"].lower(), m["speaker"].lower(), m["sentence"].lower()
    if emotion not in EMOTIONS:
        raise KeyError(f"unknown emotion code {m['emotion']!r}")
    if sentence not in SENTENCES:
        raise KeyError(f"unknown sentence code {m['sentence']!r}")
    return {SPEAKER: speaker, GENDER: speaker[0].upper(), LABEL: EMOTIONS[emotion], "text_code": sentence}


def load(root: str | Path | None, on_error: str = "raise", hash_audio: bool = False):
    """Manifest of EMOVO (root = the folder holding the speaker folders, or above)."""
    root = check_root(root, "emovo")
    skips = Skips(on_error)
    rows = [{UTT_ID: wav.stem.lower(), PATH: str(wav), SESSION: None, TEXT: None, **f}
            for wav, f in parsed_files(root, parse_name, skips)]
    if not rows:
        raise DataError(root, "no EMOVO files (f1/dis-f1-b1.wav) found")
    return finish(drop_repeats(rows, skips), "emovo", root, skips, hash_audio)
