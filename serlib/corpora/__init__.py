"""Corpus adapters: every corpus becomes the same manifest DataFrame (columns: serlib.constants).

>>> from serlib.corpora import load_corpus, select_classes
>>> df = load_corpus("synthetic")                                   # doctest: +SKIP
>>> df = select_classes(df, ("neutral", "happy", "sad", "angry"))   # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable, Mapping

import pandas as pd

from ..constants import FOUR_CLASSES, LABEL, LABELS
from ..errors import ConfigError
from . import (
    asvp_esd,
    crema_d,
    emodb,
    emovo,
    esd,
    generic,
    iemocap,
    msp_podcast,
    multi,
    ravdess,
    savee,
    shemo,
    synthetic,
    tess,
    urdu,
)

log = logging.getLogger("serlib.corpora")

ADAPTERS: dict[str, Callable[..., pd.DataFrame]] = {
    "iemocap": iemocap.load,
    "ravdess": ravdess.load,
    "emodb": emodb.load,
    "asvp_esd": asvp_esd.load,
    "msp_podcast": msp_podcast.load,
    "crema_d": crema_d.load,
    "savee": savee.load,
    "tess": tess.load,
    "emovo": emovo.load,
    "esd": esd.load,
    "urdu": urdu.load,
    "shemo": shemo.load,
    "folder": generic.load_folder,
    "csv": generic.load_csv,
    "synthetic": synthetic.load,
}


def load_corpus(name: str, root=None, **options) -> pd.DataFrame:
    """Load a corpus as a manifest: one row per utterance, the columns of
    :data:`serlib.constants.MANIFEST_COLUMNS` first.

    Args:
        name: one of ``iemocap``, ``ravdess``, ``emodb``, ``asvp_esd``, ``crema_d``,
            ``savee``, ``tess``, ``msp_podcast``, ``emovo``, ``esd``, ``urdu``, ``shemo``, ``folder``,
            ``csv``, ``synthetic`` (the embedded default; ``root`` optional).
        root: the corpus folder as distributed (for ``csv``: the manifest file).
        **options: adapter options, e.g. ``subset="improvised"`` for IEMOCAP,
            ``on_error="skip"`` to count and report bad files instead of raising,
            ``hash_audio=True`` to add a content hash for duplicate detection.

    Returns:
        The manifest. ``df.attrs["skipped"]`` lists ``(path, reason)`` of skipped files
        and ``df.attrs["dropped"]`` counts rows dropped by policy (e.g. IEMOCAP ``xxx``).

    Raises:
        ConfigError: unknown corpus name or option.
        DataError: missing root, no recognisable files, unreadable wav header, unknown
            label code (the last two are skips under ``on_error="skip"``).
    """
    if name not in ADAPTERS:
        raise ConfigError(f"unknown corpus {name!r}; choose from {sorted(ADAPTERS)}")
    adapter = ADAPTERS[name]
    params = inspect.signature(adapter).parameters
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    unknown = set(options) - set(params)
    if unknown and not accepts_any:
        allowed = sorted(set(params) - {"root"})
        raise ConfigError(f"unknown option(s) {sorted(unknown)} for corpus {name!r}; allowed: {allowed}")
    df = adapter(root, **options)
    df.attrs.setdefault("dropped", {})
    df.attrs["corpus"] = name
    return df


def select_classes(
    manifest: pd.DataFrame,
    classes: Iterable[str] = FOUR_CLASSES,
    merge: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Keep ``classes`` after renaming labels with ``merge``; report what was dropped.

    ``merge={"excited": "happy"}`` gives the 5531-utterance IEMOCAP set of MSCNN-SPU-ATT;
    without it, the CNN+LSTM paper's set (excited dropped).

    Returns:
        A copy with a reset index; ``attrs["dropped"]`` gains a count per dropped label
        and ``attrs["classes"]`` records the kept classes in the given order.
    """
    classes = tuple(classes)
    merge = dict(merge or {})
    bad = [c for c in (*classes, *merge, *merge.values()) if c not in LABELS]
    if bad:
        raise ConfigError(f"unknown label(s) {bad}; canonical labels: {', '.join(LABELS)}")
    labels = manifest[LABEL].replace(merge)
    keep = labels.isin(classes)
    dropped = labels[~keep].value_counts().to_dict()
    out = manifest.loc[keep].copy()
    out[LABEL] = labels[keep]
    out = out.reset_index(drop=True)
    out.attrs = {**manifest.attrs, "dropped": {**manifest.attrs.get("dropped", {}), **dropped},
                 "classes": list(classes), "merge": merge}
    missing = [c for c in classes if c not in set(out[LABEL])]
    if missing:
        log.warning("select_classes: no utterances of %s", missing)
    if dropped:
        log.info("select_classes: dropped %s", dropped)
    return out


def prepare_manifest(
    corpus: str = "synthetic",
    data_root=None,
    subset: str | None = None,
    classes: Iterable[str] | str | None = FOUR_CLASSES,
    merge: Mapping[str, str] | None = None,
    **options,
) -> pd.DataFrame:
    """What notebooks and the CLI do first: load a corpus, apply the IEMOCAP-style
    ``subset`` where the corpus has one, and keep ``classes`` (``None`` or ``"all"``
    keeps every label). ``corpus="a+b"`` loads several corpora as one manifest
    (:func:`load_corpora`)."""
    if multi.is_multi(corpus):
        df = load_corpora(corpus, data_root, subset, **options)
    else:
        if subset is not None and subset != "all":
            if name_has_subsets(corpus):
                options["subset"] = subset
            else:
                raise ConfigError(f"corpus {corpus!r} has no subsets (got subset={subset!r})")
        df = load_corpus(corpus, data_root, **options)
    if classes is None or classes == "all":
        return df
    return select_classes(df, classes, merge)


def load_corpora(corpus: str, data_root=None, subset: str | None = None, **options) -> pd.DataFrame:
    """Several corpora as one manifest (:mod:`serlib.corpora.multi`): ``corpus="a+b"``,
    ``data_root="ROOT_A+ROOT_B"``; ``subset`` applies to the corpora that have subsets,
    ``options`` (``on_error``, ``hash_audio``) to all."""
    names = multi.corpus_names(corpus)
    unknown = [n for n in names if n not in ADAPTERS]
    if unknown:
        raise ConfigError(f"unknown corpus {unknown[0]!r} in {corpus!r}; choose from {sorted(ADAPTERS)}")
    parts = {}
    for tag, (name, root) in zip(multi.tags(names), multi.pairs(corpus, data_root)):
        sub = {"subset": subset} if subset not in (None, "all") and name_has_subsets(name) else {}
        parts[tag] = load_corpus(name, root, **sub, **options)
    return multi.combine(parts, corpus)


def check_corpus_name(corpus: str) -> None:
    """A clear error for an unknown corpus, or one of several (``a+b``)."""
    for name in multi.corpus_names(corpus):
        if name not in ADAPTERS:
            where = f" in {corpus!r}" if multi.is_multi(corpus) else ""
            raise ConfigError(f"unknown corpus {name!r}{where}; choose from {sorted(ADAPTERS)}")


def corpus_errors(bad_audio: str) -> str:
    """The adapters' ``on_error`` for a run's ``bad_audio``: with ``"skip"``, a file whose
    audio cannot be used (an undecodable header, a missing file) is a counted skip while
    the corpus is read, as it is during feature extraction; other problems still raise."""
    return "skip_audio" if bad_audio == "skip" else "raise"


def name_has_subsets(corpus: str) -> bool:
    return corpus in ("iemocap", "synthetic")


__all__ = ["ADAPTERS", "check_corpus_name", "corpus_errors", "load_corpora", "load_corpus", "prepare_manifest",
           "select_classes"]
