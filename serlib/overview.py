"""Readable text summaries of a manifest and its folds (for the CLI and notebooks)."""

from __future__ import annotations

from collections import Counter

import pandas as pd

from . import audio
from .constants import CORPUS, DIMENSIONS, DURATION, GENDER, LABEL, PATH, SPEAKER
from .errors import DataError
from .protocols import Fold, folds_table

SKIPS_SHOWN = 10  # skipped files listed by name (all are counted)


def corpus_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """Speakers × labels counts, with totals."""
    table = pd.crosstab(manifest[SPEAKER], manifest[LABEL], margins=True, margins_name="total")
    return table


def audio_summary(manifest: pd.DataFrame) -> dict[str, Counter]:
    """Sample rates, channel counts and container formats found in the files' headers
    (the header, not the extension: a FLAC file named ``.wav`` counts as FLAC)."""
    found = {"rates": Counter(), "channels": Counter(), "formats": Counter()}
    for path in manifest[PATH]:
        try:
            header = audio.info(path)
        except DataError:
            found["formats"]["unreadable"] += 1
            continue
        found["rates"][header.samplerate] += 1
        found["channels"][{1: "mono", 2: "stereo"}.get(header.channels, f"{header.channels} channels")] += 1
        found["formats"][header.format] += 1
    return found


def _counts(counter: Counter, unit: str = "") -> str:
    return ", ".join(f"{k}{unit} {v}" for k, v in sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0]))))


def describe(manifest: pd.DataFrame, folds: list[Fold] | None = None, headers: bool = True) -> str:
    """A multi-line text summary: sizes, labels, durations, sample rates, channels and
    formats (``headers=True``: read from every file's header), skips, folds; for a
    manifest of several corpora, one line per corpus as well."""
    name = manifest.attrs.get("corpus", manifest[CORPUS].iloc[0])
    lines = [
        f"corpus {name}: {len(manifest)} utterances, {manifest[SPEAKER].nunique()} speakers "
        f"({manifest.groupby(SPEAKER)[GENDER].first().value_counts().to_dict()}), "
        f"{manifest[DURATION].sum() / 3600:.2f} h, durations {manifest[DURATION].min():.2f}–"
        f"{manifest[DURATION].max():.2f} s (median {manifest[DURATION].median():.2f} s)",
        "labels: " + ", ".join(f"{k} {v}" for k, v in manifest[LABEL].value_counts().items()),
    ]
    if manifest[CORPUS].nunique() > 1:
        for corpus, part in manifest.groupby(CORPUS, sort=False):
            lines.append(f"  {corpus}: {len(part)} utterances, {part[SPEAKER].nunique()} speakers, "
                         f"{part[DURATION].sum() / 3600:.2f} h, labels "
                         + ", ".join(f"{k} {v}" for k, v in part[LABEL].value_counts().items()))
    if headers:
        found = audio_summary(manifest)
        lines += [f"sample rates: {_counts(found['rates'], ' Hz')}", f"channels: {_counts(found['channels'])}",
                  f"formats: {_counts(found['formats'])}"]
    rated = [d for d in DIMENSIONS if d in manifest.columns and manifest[d].notna().any()]
    if rated:
        lines.append("dimensions (the corpus's scale): " + ", ".join(
            f"{d} {manifest[d].min():.2f}–{manifest[d].max():.2f} (mean {manifest[d].mean():.2f}, "
            f"{manifest[d].notna().sum()} rated)" for d in rated))
    if manifest.attrs.get("dropped"):
        lines.append(f"dropped by policy: {manifest.attrs['dropped']}")
    skipped = manifest.attrs.get("skipped") or []
    if skipped:
        lines.append(f"skipped files: {len(skipped)} {manifest.attrs.get('skipped_by_reason', {})}")
        lines += [f"  {path}: {reason}" for path, reason in skipped[:SKIPS_SHOWN]]
        if len(skipped) > SKIPS_SHOWN:
            lines.append(f"  … and {len(skipped) - SKIPS_SHOWN} more")
    lines += ["", corpus_table(manifest).to_string()]
    if folds:
        lines += ["", f"{len(folds)} folds ({folds[0].protocol}):", folds_table(folds).to_string()]
    return "\n".join(lines)
