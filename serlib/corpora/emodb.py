"""EMO-DB adapter (wav/SSTTTEV.wav, e.g. ``03a01Fa.wav``).

Speaker (2 digits) + text code (3) + emotion letter + version letter.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..constants import GENDER, LABEL, PATH, SESSION, SPEAKER, TEXT, UTT_ID
from ..errors import DataError, LabelError
from ._common import Skips, check_root, finish, wav_files

EMOTIONS = {
    "W": "angry", "L": "boredom", "E": "disgust", "A": "fear",
    "F": "happy", "T": "sad", "N": "neutral",
}
GENDERS = {"03": "M", "10": "M", "11": "M", "12": "M", "15": "M",
           "08": "F", "09": "F", "13": "F", "14": "F", "16": "F"}
# The ten German sentences, by text code.
TEXTS = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
_NAME = re.compile(r"^(?P<speaker>\d\d)(?P<text>[ab]\d\d)(?P<emotion>[A-Z])(?P<version>[a-z])$")


def load(root: str | Path | None, on_error: str = "raise", hash_audio: bool = False):
    """Manifest of EMO-DB (root = the folder holding ``wav/``, or ``wav/`` itself)."""
    root = check_root(root, "emodb")
    skips = Skips(on_error)
    rows = []
    for wav in wav_files(root, skips):
        m = _NAME.match(wav.stem)
        if not m:
            skips.ignore(wav, "file name ignored: not an EMO-DB name (SSTTTEV.wav, e.g. 03a01Fa.wav)")
            continue
        if m["emotion"] not in EMOTIONS:
            skips.handle(LabelError(wav, f"unknown emotion letter {m['emotion']!r}"))
            continue
        if m["speaker"] not in GENDERS:
            skips.handle(LabelError(wav, f"unknown speaker {m['speaker']!r}"))
            continue
        rows.append({
            UTT_ID: wav.stem, PATH: str(wav), SPEAKER: m["speaker"], GENDER: GENDERS[m["speaker"]],
            # Every emotion is acted on the same ten prompt sentences: they are no transcript
            # of emotional speech, so `text` stays empty and text models refuse the corpus
            # unless asked for `text_column="prompt_text"`.
            SESSION: None, LABEL: EMOTIONS[m["emotion"]], TEXT: None,
            "text_code": m["text"], "prompt_text": TEXTS.get(m["text"]), "version": m["version"],
        })
    if not rows:
        raise DataError(root, "no EMO-DB files (SSTTTEV.wav, e.g. 03a01Fa.wav) found")
    return finish(rows, "emodb", root, skips, hash_audio)
