"""Readable text summaries of a manifest and its folds (for the CLI and notebooks)."""

from __future__ import annotations

import pandas as pd

from .constants import DIMENSIONS, DURATION, GENDER, LABEL, SPEAKER
from .protocols import Fold, folds_table


def corpus_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """Speakers × labels counts, with totals."""
    table = pd.crosstab(manifest[SPEAKER], manifest[LABEL], margins=True, margins_name="total")
    return table


def describe(manifest: pd.DataFrame, folds: list[Fold] | None = None) -> str:
    """A multi-line text summary: sizes, labels, durations, skips, folds."""
    name = manifest.attrs.get("corpus", manifest["corpus"].iloc[0])
    lines = [
        f"corpus {name}: {len(manifest)} utterances, {manifest[SPEAKER].nunique()} speakers "
        f"({manifest.groupby(SPEAKER)[GENDER].first().value_counts().to_dict()}), "
        f"{manifest[DURATION].sum() / 3600:.2f} h, durations {manifest[DURATION].min():.2f}–"
        f"{manifest[DURATION].max():.2f} s (median {manifest[DURATION].median():.2f} s)",
        "labels: " + ", ".join(f"{k} {v}" for k, v in manifest[LABEL].value_counts().items()),
    ]
    rated = [d for d in DIMENSIONS if d in manifest.columns and manifest[d].notna().any()]
    if rated:
        lines.append("dimensions (the corpus's scale): " + ", ".join(
            f"{d} {manifest[d].min():.2f}–{manifest[d].max():.2f} (mean {manifest[d].mean():.2f}, "
            f"{manifest[d].notna().sum()} rated)" for d in rated))
    if manifest.attrs.get("dropped"):
        lines.append(f"dropped by policy: {manifest.attrs['dropped']}")
    if manifest.attrs.get("skipped"):
        lines.append(f"skipped files: {len(manifest.attrs['skipped'])} {manifest.attrs.get('skipped_by_reason', {})}")
    lines += ["", corpus_table(manifest).to_string()]
    if folds:
        lines += ["", f"{len(folds)} folds ({folds[0].protocol}):", folds_table(folds).to_string()]
    return "\n".join(lines)
