"""Shared pieces of the corpus adapters: manifest assembly, durations, error policy."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from .. import audio
from ..constants import AUDIO_HASH, DIMENSIONS, DURATION, LABELS, MANIFEST_COLUMNS, PATH, UTT_ID
from ..errors import AudioError, ConfigError, DataError, LabelError

log = logging.getLogger("serlib.corpora")


class Skips:
    """Counts the files an adapter skipped, by reason, under ``on_error="skip"``.

    With ``on_error="raise"`` (the default) the first problem is raised instead;
    ``"skip_audio"`` (what a run with ``bad_audio="skip"`` uses) counts files whose audio
    cannot be used and still raises on everything else (an unknown label code).
    """

    def __init__(self, on_error: str):
        if on_error not in ("raise", "skip", "skip_audio"):
            raise ConfigError(f"on_error must be 'raise', 'skip' or 'skip_audio', got {on_error!r}")
        self.on_error = on_error
        self.items: list[tuple[str, str]] = []

    def handle(self, error: DataError) -> None:
        if self.on_error == "raise" or (self.on_error == "skip_audio" and not isinstance(error, AudioError)):
            raise error
        self.items.append((error.path or "", error.reason))

    def ignore(self, path: str | Path, reason: str) -> None:
        """A file that is not part of the corpus (a stray name, a broken link): never an
        error, always counted, so nothing disappears without a trace."""
        self.items.append((str(path), reason))

    def by_reason(self) -> dict[str, int]:
        return dict(Counter(reason.split(" (")[0] for _, reason in self.items))


def check_root(root: str | Path | None, corpus: str) -> Path:
    if root is None:
        raise DataError(None, f"corpus {corpus!r} needs root=<folder of the corpus>")
    root = Path(root).expanduser().resolve()
    if not root.exists():
        raise DataError(root, f"{corpus} root does not exist")
    if not root.is_dir():
        raise DataError(root, f"{corpus} root is not a folder")
    return root


def wav_files(root: Path, skips: Skips | None = None) -> list[Path]:
    """All .wav files under root, sorted, without macOS ``._*`` resource forks; broken
    symbolic links are counted in ``skips``."""
    out = []
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() != ".wav" or p.name.startswith("._"):
            continue
        if p.is_file():
            out.append(p)
        elif p.is_symlink() and skips is not None:
            skips.ignore(p, "broken symbolic link")
    return out


def parsed_files(root: Path, parse, skips: Skips, whole_path: bool = False):
    """``(wav, fields)`` for every wav under root whose name (or, with ``whole_path``,
    whose path: a layout that puts the speaker in a folder) ``parse`` decodes.

    ``parse`` raises ValueError for a name that is not of this corpus (ignored, and
    counted) and KeyError for an unknown code (an error, or a counted skip).
    """
    for wav in wav_files(root, skips):
        try:
            fields = parse(wav if whole_path else wav.name)
        except ValueError as e:
            skips.ignore(wav, f"file name ignored: {e}")
            continue
        except KeyError as e:
            skips.handle(LabelError(wav, e.args[0]))
            continue
        yield wav, fields


def load_named_files(root, corpus: str, title: str, parse, make_row, vocal_channel: str, channels: tuple[str, ...],
                     on_error: str, hash_audio: bool) -> pd.DataFrame:
    """The manifest of a corpus whose file names encode their fields (RAVDESS, ASVP-ESD):
    ``make_row(wav, fields)`` for every file ``parse`` decodes whose vocal channel is
    ``vocal_channel`` (one of ``channels``, or ``"all"``)."""
    if vocal_channel not in (*channels, "all"):
        raise ConfigError(f"vocal_channel must be one of {(*channels, 'all')}, got {vocal_channel!r}")
    root = check_root(root, corpus)
    skips = Skips(on_error)
    rows = [make_row(wav, fields) for wav, fields in parsed_files(root, parse, skips)
            if vocal_channel == "all" or fields["vocal_channel"] == vocal_channel]
    if not rows:
        raise DataError(root, f"no {title} files found")
    return finish(rows, corpus, root, skips, hash_audio)


def drop_repeats(rows: list[dict], skips: Skips) -> list[dict]:
    """The first row of each utterance id: a second file with the same id (a copy of the
    corpus unpacked twice, both layouts side by side) is a counted skip, not a new utterance."""
    first: dict[str, str] = {}
    out = []
    for row in rows:
        if row[UTT_ID] in first:
            skips.ignore(row[PATH], f"repeated utterance (the same id as {first[row[UTT_ID]]})")
            continue
        first[row[UTT_ID]] = row[PATH]
        out.append(row)
    return out


def duration_of(path: Path) -> float:
    """Duration in seconds from the header alone (no decoding)."""
    header = audio.info(path)
    if header.frames <= 0:
        raise AudioError(path, "empty audio (0 frames in header)")
    return header.frames / header.samplerate


def finish(
    rows: Iterable[dict],
    corpus: str,
    root: Path,
    skips: Skips,
    hash_audio: bool = False,
) -> pd.DataFrame:
    """Build the manifest: durations from headers, columns in MANIFEST_COLUMNS order, checks."""
    records = []
    for row in rows:
        try:
            row[DURATION] = duration_of(Path(row[PATH]))
        except DataError as e:
            skips.handle(e)
            continue
        records.append(row)
    if not records:
        raise DataError(root, f"no usable {corpus} utterances found (see the layout in README.md)")
    df = pd.DataFrame.from_records(records)
    df["corpus"] = corpus
    for dim in DIMENSIONS:  # arousal, valence, dominance: NaN where the corpus has none
        df[dim] = df[dim].astype(float) if dim in df.columns else np.nan
    extras = [c for c in df.columns if c not in MANIFEST_COLUMNS]
    df = df[list(MANIFEST_COLUMNS) + extras].sort_values(UTT_ID, ignore_index=True)
    dupes = df[UTT_ID][df[UTT_ID].duplicated()]
    if len(dupes):
        raise DataError(root, f"duplicate utterance ids: {sorted(set(dupes))[:5]}")
    unknown = set(df["label"]) - set(LABELS)
    if unknown:  # an adapter bug, not a data problem
        raise AssertionError(f"{corpus} adapter produced non-canonical labels {unknown}")
    if hash_audio:
        df[AUDIO_HASH] = [audio.file_hash(p) for p in df[PATH]]
    df.attrs["skipped"] = list(skips.items)
    df.attrs["skipped_by_reason"] = skips.by_reason()
    if skips.items:
        log.warning("%s: skipped %d files: %s", corpus, len(skips.items), skips.by_reason())
    return df
