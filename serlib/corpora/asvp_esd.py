"""ASVP-ESD adapter (ASVP-ESD-Update/Audio/.../*.wav).

Positional fields: modality - vocal channel - emotion - intensity - statement/source
rank - actor (even male, odd female) - age - source - language. Field counts vary
between releases: parse by position and tolerate missing trailing fields.
"""

from __future__ import annotations

from pathlib import Path

from ..constants import GENDER, LABEL, PATH, SESSION, SPEAKER, TEXT, UTT_ID
from ._common import load_named_files

# ASVP-ESD's emotion codes, mapped to the canonical labels (the corpus' own names kept).
EMOTIONS = {
    "01": ("boredom", "boredom/sigh"), "02": ("neutral", "neutral/calm"),
    "03": ("happy", "happy/laugh"), "04": ("sad", "sad/cry"),
    "05": ("angry", "angry/grunt/frustration"), "06": ("fear", "fearful/scream/panic"),
    "07": ("disgust", "disgust/contempt"), "08": ("surprise", "surprised/gasp"),
    "09": ("excited", "excited"), "10": ("other", "pleasure"), "11": ("other", "pain/groan"),
    "12": ("other", "disappointment"), "13": ("other", "breath"),
}
CHANNELS = {"01": "speech", "02": "non-speech"}
AGES = {"01": ">65", "02": "20-64", "03": "<20", "04": "baby"}
FIELDS = ("modality", "vocal_channel", "emotion", "intensity", "statement", "actor",
          "age", "source", "language")


def parse_name(name: str) -> dict:
    """Decode an ASVP-ESD file name by position; trailing fields may be missing.

    >>> d = parse_name("03-01-06-01-02-12-02-01-01-16.wav"); d["label"], d["gender"], d["age"]
    ('fear', 'M', '20-64')
    >>> parse_name("03-01-04-02-01-07.wav")["age"] is None
    True
    """
    parts = Path(name).stem.split("-")
    if len(parts) < 6 or not all(p.isdigit() for p in parts):
        raise ValueError("not an ASVP-ESD name (needs at least 6 numeric fields)")
    fields = dict(zip(FIELDS, parts))
    if fields["emotion"] not in EMOTIONS:
        raise KeyError(f"unknown emotion code {fields['emotion']!r}")
    label, original = EMOTIONS[fields["emotion"]]
    actor = int(fields["actor"])
    return {
        LABEL: label, "emotion_name": original,
        "vocal_channel": CHANNELS.get(fields["vocal_channel"], fields["vocal_channel"]),
        "intensity": {"01": "normal", "02": "high"}.get(fields["intensity"], fields["intensity"]),
        "actor": actor, GENDER: "M" if actor % 2 == 0 else "F",
        "age": AGES.get(fields.get("age", ""), None),
        "source": fields.get("source"), "language": fields.get("language"),
    }


def load(
    root: str | Path | None,
    vocal_channel: str = "all",
    on_error: str = "raise",
    hash_audio: bool = False,
):
    """Manifest of ASVP-ESD (root = ASVP-ESD-Update or any folder above its wavs)."""
    def row(wav, fields):  # file names repeat across sub-folders: the id keeps the relative folder
        utt_id = str(wav.relative_to(Path(root).expanduser().resolve()).with_suffix("")).replace("/", "__")
        return {UTT_ID: utt_id, PATH: str(wav), SPEAKER: f"actor_{fields['actor']:02d}", SESSION: None, TEXT: None,
                **fields}

    return load_named_files(root, "asvp_esd", "ASVP-ESD (NN-NN-NN-NN-NN-NN[-...].wav)", parse_name, row,
                            vocal_channel, ("speech", "non-speech"), on_error, hash_audio)
