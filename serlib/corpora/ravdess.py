"""RAVDESS adapter (Audio_Speech_Actors_01-24/Actor_XX/MM-VV-EE-II-SS-RR-AA.wav).

Fields: modality (03 audio-only) - vocal channel (01 speech, 02 song) - emotion -
intensity (01 normal, 02 strong) - statement (01 "Kids are talking by the door",
02 "Dogs are sitting by the door") - repetition - actor (odd male, even female).
"""

from __future__ import annotations

from pathlib import Path

from ..constants import GENDER, LABEL, PATH, SESSION, SPEAKER, TEXT, UTT_ID
from ._common import load_named_files

EMOTIONS = {
    "01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry",
    "06": "fear", "07": "disgust", "08": "surprise",
}
CHANNELS = {"01": "speech", "02": "song"}
INTENSITIES = {"01": "normal", "02": "strong"}
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}


def parse_name(name: str) -> dict:
    """Decode the seven fields of a RAVDESS file name.

    >>> parse_name("03-01-05-01-02-01-12.wav")["label"], parse_name("03-01-05-01-02-01-12.wav")["gender"]
    ('angry', 'F')
    """
    fields = Path(name).stem.split("-")
    if len(fields) != 7 or not all(f.isdigit() and len(f) == 2 for f in fields):
        raise ValueError("not a RAVDESS name (expected 7 two-digit fields MM-VV-EE-II-SS-RR-AA)")
    modality, channel, emotion, intensity, statement, repetition, actor = fields
    for value, table, what in ((emotion, EMOTIONS, "emotion"), (channel, CHANNELS, "vocal channel"),
                               (intensity, INTENSITIES, "intensity"), (statement, STATEMENTS, "statement")):
        if value not in table:
            raise KeyError(f"unknown {what} code {value!r}")
    actor_number = int(actor)
    return {
        "modality": modality, "vocal_channel": CHANNELS[channel], LABEL: EMOTIONS[emotion],
        "intensity": INTENSITIES[intensity], "statement": STATEMENTS[statement],
        "repetition": int(repetition), "actor": actor_number,
        GENDER: "M" if actor_number % 2 else "F",
    }


def load(
    root: str | Path | None,
    vocal_channel: str = "speech",
    on_error: str = "raise",
    hash_audio: bool = False,
):
    """Manifest of RAVDESS clips.

    Args:
        root: the folder holding ``Actor_XX/`` folders (any depth).
        vocal_channel: ``"speech"`` (default, 1440 files), ``"song"`` or ``"all"``.
    """
    def row(wav, fields):  # two fixed statements, no transcript (see emodb)
        return {UTT_ID: wav.stem, PATH: str(wav), SPEAKER: f"Actor_{fields['actor']:02d}", SESSION: None, TEXT: None,
                **fields}

    return load_named_files(root, "ravdess", "RAVDESS (MM-VV-EE-II-SS-RR-AA.wav)", parse_name, row, vocal_channel,
                            ("speech", "song"), on_error, hash_audio)
