"""ESD adapter (Emotional Speech Dataset; Zhou et al. 2021, the release's ReadMe).

20 speakers — 0001–0010 Mandarin, 0011–0020 English — each read 350 parallel sentences
in 5 emotions (17 500 files): ``0001/Angry/[train|evaluation|test/]0001_000351.wav``,
with ``0001/0001.txt`` (``<utterance>\\t<text>\\t<emotion>``) beside the folders.

The emotion is fixed by the utterance number (000001–000350 neutral, 000351–000700 angry,
000701–001050 happy, 001051–001400 sad, 001401–001750 surprise); the number is what the
adapter reads, not the folder's spelling. ``text_code`` is the sentence (1–350, the same
sentence in each emotion), ``prompt_text`` its text where the speaker's ``.txt`` is
found (parallel prompts, not transcripts: ``text`` stays empty, as for EMO-DB),
``language`` is ``zh`` or ``en`` (``language="en"`` keeps one) and ``partition`` the
release's train/evaluation/test folder where there is one.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..constants import GENDER, LABEL, PATH, SESSION, SPEAKER, TEXT, UTT_ID
from ..errors import ConfigError, DataError
from ._common import Skips, check_root, drop_repeats, finish, parsed_files

EMOTIONS = ("neutral", "angry", "happy", "sad", "surprise")  # in blocks of 350 utterance numbers
PER_EMOTION = 350
# Speaker: gender, from the release's ReadMe.
GENDERS = {"0001": "F", "0002": "F", "0003": "F", "0004": "M", "0005": "M", "0006": "M", "0007": "F",
           "0008": "M", "0009": "F", "0010": "M", "0011": "M", "0012": "M", "0013": "M", "0014": "M",
           "0015": "F", "0016": "F", "0017": "F", "0018": "F", "0019": "F", "0020": "M"}
LANGUAGES = ("zh", "en")
PARTITIONS = ("train", "evaluation", "test")
_NAME = re.compile(r"^(?P<speaker>\d{4})_(?P<number>\d{6})$")


def parse_name(name: str) -> dict:
    """Decode an ESD file name.

    >>> d = parse_name("0011_000351.wav"); d["label"], d["language"], d["gender"], d["text_code"]
    ('angry', 'en', 'M', 1)
    """
    m = _NAME.match(Path(name).stem)
    if not m:
        raise ValueError("not an ESD name (<speaker>_<number>.wav, e.g. 0011_000351.wav)")
    speaker, number = m["speaker"], int(m["number"])
    if speaker not in GENDERS:
        raise KeyError(f"unknown speaker {speaker!r} (ESD has 0001-0020)")
    if not 1 <= number <= PER_EMOTION * len(EMOTIONS):
        raise KeyError(f"utterance number {number} outside 1-{PER_EMOTION * len(EMOTIONS)}, which fix the emotion")
    return {SPEAKER: speaker, GENDER: GENDERS[speaker], LABEL: EMOTIONS[(number - 1) // PER_EMOTION],
            "text_code": (number - 1) % PER_EMOTION + 1, "language": LANGUAGES[int(speaker) > 10]}


def read_prompts(path: Path, mandarin: bool) -> dict[str, str]:
    """``{utterance: text}`` of a speaker's ``.txt`` (the release mixes UTF-16, UTF-8,
    GB2312 for Mandarin and Latin-1 for English; lines that are not
    ``name<TAB>text<TAB>emotion`` are passed over)."""
    raw = path.read_bytes()
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        encodings = ("utf-16",)
    elif b"\x00" in raw[:200]:  # UTF-16 without a byte-order mark
        encodings = ("utf-16-le", "utf-16-be")
    else:
        encodings = ("utf-8", "gb18030" if mandarin else "cp1252")
    for encoding in encodings:
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        text = raw.decode("latin-1")
    out = {}
    for line in text.splitlines():
        parts = line.strip().split("\t")
        if len(parts) >= 2 and _NAME.match(parts[0].strip()):
            out[parts[0].strip()] = parts[1].strip()
    return out


def load(root: str | Path | None, language: str = "all", on_error: str = "raise", hash_audio: bool = False):
    """Manifest of ESD (root = the folder holding ``0001/`` … ``0020/``, or above).

    Args:
        language: ``"all"`` (default), ``"zh"`` (Mandarin speakers) or ``"en"`` (English).
    """
    if language not in (*LANGUAGES, "all"):
        raise ConfigError(f"language must be one of {(*LANGUAGES, 'all')}, got {language!r}")
    root = check_root(root, "esd")
    skips = Skips(on_error)
    prompts: dict[str, dict[str, str]] = {}
    rows = []
    for wav, f in parsed_files(root, parse_name, skips):
        if language not in ("all", f["language"]):
            continue
        speaker_dir = next((p for p in wav.parents if p.name == f[SPEAKER]), None)
        if f[SPEAKER] not in prompts:
            txt = speaker_dir / f"{f[SPEAKER]}.txt" if speaker_dir else None
            prompts[f[SPEAKER]] = read_prompts(txt, f["language"] == "zh") if txt and txt.is_file() else {}
        partition = wav.parent.name.lower()
        rows.append({UTT_ID: wav.stem, PATH: str(wav), SESSION: None, TEXT: None, **f,
                     "prompt_text": prompts[f[SPEAKER]].get(wav.stem),
                     "partition": partition if partition in PARTITIONS else None})
    if not rows:
        raise DataError(root, f"no ESD files (0011/Angry/0011_000351.wav) found (language={language!r})")
    return finish(drop_repeats(rows, skips), "esd", root, skips, hash_audio)
