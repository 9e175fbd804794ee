"""Several corpora trained together: ``corpus="crema_d+savee"`` with
``data_root="/data/CREMA-D+/data/SAVEE"`` (one root per corpus, in order, joined by ``+``;
an empty one for ``synthetic``).

The corpora share one manifest: each keeps its own label map onto the canonical labels,
and the run's ``classes``/``merge`` then apply to all. The ``corpus`` column says where a
row comes from; utterance ids, speakers and sessions are prefixed with it (``savee:DC``),
so no two corpora share a speaker and every fold keeps each speaker on one side. A
corpus named twice (two CSV corpora) is told apart by its position (``csv1``, ``csv2``).
"""

from __future__ import annotations

import pandas as pd

from ..constants import CORPUS, SESSION, SPEAKER, UTT_ID
from ..errors import ConfigError

SEPARATOR = "+"


def is_multi(corpus: str) -> bool:
    """Whether ``corpus`` names several corpora (``a+b``)."""
    return SEPARATOR in str(corpus)


def corpus_names(corpus: str) -> list[str]:
    """The corpora of ``a+b`` (one name for a single corpus)."""
    names = [n.strip() for n in str(corpus).split(SEPARATOR)]
    if any(not n for n in names):
        raise ConfigError(f"corpus {corpus!r}: an empty name between '{SEPARATOR}'s")
    return names


def pairs(corpus: str, data_root) -> list[tuple[str, str | None]]:
    """``[(name, root)]`` of a multi-corpus name and its ``+``-joined roots.

    >>> pairs("emodb+synthetic", "/data/emodb+")
    [('emodb', '/data/emodb'), ('synthetic', None)]
    """
    names = corpus_names(corpus)
    roots = [None] * len(names) if data_root in (None, "") else str(data_root).split(SEPARATOR)
    if len(roots) != len(names):
        raise ConfigError(f"corpus {corpus!r} names {len(names)} corpora but the root {data_root!r} has {len(roots)} "
                          f"part(s): give one root per corpus, in order, joined by '{SEPARATOR}' (empty for synthetic), "
                          f"e.g. --root /data/emodb{SEPARATOR}")
    return [(n, r.strip() or None if r is not None else None) for n, r in zip(names, roots)]


def tags(names: list[str]) -> list[str]:
    """What the ``corpus`` column calls each part: its name, or name + position when repeated."""
    return [n if names.count(n) == 1 else f"{n}{i + 1}" for i, n in enumerate(names)]


def combine(parts: dict[str, pd.DataFrame], corpus: str) -> pd.DataFrame:
    """One manifest of ``{tag: manifest}``: ids, speakers and sessions prefixed with the
    tag, ``attrs`` merged (skipped files, dropped counts per corpus, rows per corpus)."""
    frames, skipped, dropped, skipped_by = [], [], {}, {}
    for tag, df in parts.items():
        df = df.copy()
        df[CORPUS] = tag
        for column in (UTT_ID, SPEAKER, SESSION):
            known = df[column].notna()
            df[column] = df[column].astype(object)
            df.loc[known, column] = tag + ":" + df.loc[known, column].astype(str)
        frames.append(df)
        skipped += list(df.attrs.get("skipped", []))
        for reason, n in df.attrs.get("skipped_by_reason", {}).items():
            skipped_by[reason] = skipped_by.get(reason, 0) + n
        dropped.update({f"{tag}: {k}": v for k, v in df.attrs.get("dropped", {}).items()})
    manifest = pd.concat(frames, ignore_index=True)
    manifest.attrs = {"corpus": corpus, "skipped": skipped, "skipped_by_reason": skipped_by, "dropped": dropped,
                      "corpora": {tag: len(df) for tag, df in parts.items()}}
    return manifest
