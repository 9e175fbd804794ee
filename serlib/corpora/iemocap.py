"""IEMOCAP adapter (the IEMOCAP_full_release layout as distributed).

Per session ``SessionN/``:

* ``dialog/EmoEvaluation/<dialog>.txt`` — label blocks such as
  ``[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]``;
  its sub-folders (Categorical/, Attribute/, Self-evaluation/) are not label files.
* ``dialog/transcriptions/<dialog>.txt`` — ``Ses01F_impro01_F000 [006.2901-008.2357]: text``.
* ``sentences/wav/<dialog>/<utt_id>.wav`` — 16 kHz mono segments.

The ``[V, A, D]`` triple of a label block (the evaluators' mean ratings, 1–5; note the
order: valence, activation, dominance) becomes the manifest's ``valence``, ``arousal``
and ``dominance`` columns, in that 1–5 scale.

The speaker is the session plus the gender letter at the start of the utterance id's
*last* field: ``Ses01F_impro01_M000`` is the male speaker of session 1 (the ``F`` in
``Ses01F`` names the dialog's marker wearer, not the speaker).
"""

from __future__ import annotations

import re
from pathlib import Path

from ..constants import (
    AROUSAL,
    DOMINANCE,
    GENDER,
    IMPROVISED,
    LABEL,
    PATH,
    SESSION,
    SPEAKER,
    TEXT,
    UTT_ID,
    VALENCE,
)
from ..errors import ConfigError, DataError, LabelError
from ._common import Skips, check_root, finish

CODES = {
    "neu": "neutral", "hap": "happy", "sad": "sad", "ang": "angry", "exc": "excited",
    "fru": "frustrated", "sur": "surprise", "fea": "fear", "dis": "disgust", "oth": "other",
}
NO_MAJORITY = "xxx"
SUBSETS = ("all", "improvised", "scripted")

_LABEL_LINE = re.compile(
    r"^\[(?P<start>[\d.]+)\s*-\s*(?P<end>[\d.]+)\]\t(?P<utt>\S+)\t(?P<code>\S+)\t"
    r"\[(?P<val>[\d.]+),\s*(?P<act>[\d.]+),\s*(?P<dom>[\d.]+)\]"
)
_TRANSCRIPT_LINE = re.compile(r"^(?P<utt>Ses\d\d[FM]_\S+)\s+\[[\d.]+-[\d.]+\]:\s*(?P<text>.*)$")
_UTT_ID = re.compile(r"^Ses(?P<session>\d\d)[FM]_(?P<dialog_rest>.+)_(?P<gender>[FM])\w*\d+$")


def speaker_of(utt_id: str) -> tuple[str, str, str]:
    """``(speaker, gender, session)`` of an utterance id.

    >>> speaker_of("Ses01F_impro01_M000")
    ('Ses01_M', 'M', 'Session1')
    >>> speaker_of("Ses03M_script01_1_F012")
    ('Ses03_F', 'F', 'Session3')
    """
    m = _UTT_ID.match(utt_id)
    if not m:
        raise ValueError(f"not an IEMOCAP utterance id: {utt_id!r}")
    number = int(m["session"])
    return f"Ses{number:02d}_{m['gender']}", m["gender"], f"Session{number}"


def find_release_root(root: Path) -> Path:
    """Accept either IEMOCAP_full_release itself or the folder that contains it."""
    if any(root.glob("Session[1-9]")):
        return root
    inner = root / "IEMOCAP_full_release"
    if inner.is_dir() and any(inner.glob("Session[1-9]")):
        return inner
    raise DataError(root, "no Session1..Session5 folders found (expected IEMOCAP_full_release)")


def parse_emo_evaluation(path: Path) -> list[dict]:
    """Label blocks of one EmoEvaluation file: utt id, code, times and dimensions."""
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _LABEL_LINE.match(line)
        if m:
            rows.append({
                "utt": m["utt"], "code": m["code"], "start": float(m["start"]),
                "end": float(m["end"]), "valence": float(m["val"]),
                "activation": float(m["act"]), "dominance": float(m["dom"]),
            })
    return rows


def parse_transcription(path: Path) -> dict[str, str]:
    """utt id -> text; lines of unlabelled turns are parsed too and simply unused."""
    if not path.is_file():
        return {}
    texts = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _TRANSCRIPT_LINE.match(line.strip())
        if m:
            texts[m["utt"]] = m["text"].strip()
    return texts


def load(
    root: str | Path | None,
    subset: str = "all",
    keep_no_majority: bool = False,
    on_error: str = "raise",
    hash_audio: bool = False,
):
    """Manifest of IEMOCAP utterances.

    Args:
        root: IEMOCAP_full_release (or its parent folder).
        subset: ``"all"``, ``"improvised"`` (dialog name contains "impro") or ``"scripted"``.
        keep_no_majority: keep ``xxx`` (no majority) utterances, labelled ``other``;
            by default they are dropped and counted in ``attrs["dropped"]``.
        on_error: ``"raise"`` or ``"skip"`` (count and report unknown codes, missing or
            unreadable wavs in ``attrs["skipped"]``).
        hash_audio: add an ``audio_hash`` column (content SHA-1).
    """
    if subset not in SUBSETS:
        raise ConfigError(f"subset must be one of {SUBSETS}, got {subset!r}")
    root = find_release_root(check_root(root, "iemocap"))
    skips = Skips(on_error)
    rows, dropped = [], 0
    for session_dir in sorted(root.glob("Session[1-9]")):
        eval_dir = session_dir / "dialog" / "EmoEvaluation"
        # Only the files directly in EmoEvaluation/ are label files.
        for eval_file in sorted(eval_dir.glob("*.txt")):
            if eval_file.name.startswith("._") or not eval_file.is_file():
                continue
            dialog = eval_file.stem
            improvised = "impro" in dialog
            if (subset == "improvised" and not improvised) or (subset == "scripted" and improvised):
                continue
            texts = parse_transcription(session_dir / "dialog" / "transcriptions" / f"{dialog}.txt")
            for block in parse_emo_evaluation(eval_file):
                code = block["code"]
                if code == NO_MAJORITY and not keep_no_majority:
                    dropped += 1
                    continue
                label = "other" if code == NO_MAJORITY else CODES.get(code)
                if label is None:
                    skips.handle(LabelError(eval_file, f"unknown label code {code!r} for {block['utt']}"))
                    continue
                speaker, gender, session = speaker_of(block["utt"])
                wav = session_dir / "sentences" / "wav" / dialog / f"{block['utt']}.wav"
                rows.append({
                    UTT_ID: block["utt"], PATH: str(wav), SPEAKER: speaker, GENDER: gender,
                    SESSION: session, LABEL: label, TEXT: texts.get(block["utt"]),
                    IMPROVISED: improvised, "dialog": dialog,
                    VALENCE: block["valence"], AROUSAL: block["activation"], DOMINANCE: block["dominance"],
                })
    if not rows:
        raise DataError(root, f"no labelled utterances found in EmoEvaluation files (subset={subset!r})")
    df = finish(rows, "iemocap", root, skips, hash_audio)
    df.attrs["dropped"] = {"xxx (no majority)": dropped} if dropped else {}
    return df
