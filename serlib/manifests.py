"""The manifest a run trains on: the corpus (or the two corpora of ``cross:…``) with the
config's subset, classes and merge, every file's content hash, and at least two classes.

:func:`resolve_values` turns a sweep's values into the config of its first run and this
manifest, reading the corpus once (``classes="all"`` becomes the corpus's labels).
"""

from __future__ import annotations

import pandas as pd

from . import experiments
from .cache import with_audio_hashes
from .config import ExperimentConfig
from .constants import LABEL
from .corpora import corpus_errors, prepare_manifest, select_classes
from .corpora.cross import check_corpora, cross_manifest, shared_classes
from .errors import DataError
from .protocols import is_cross


def run_manifest(config: ExperimentConfig) -> pd.DataFrame:
    """The manifest a run trains on: the corpus with the config's subset and classes, and
    every file's content hash (cached), which the fingerprint and ``dedup`` use."""
    check_corpora(config)
    if is_cross(config.protocol):
        return with_audio_hashes(check_labels(cross_manifest(config), config))
    manifest = prepare_manifest(config.corpus, config.data_root, config.subset, config.classes, config.merge,
                                on_error=corpus_errors(config.bad_audio))
    return with_audio_hashes(check_labels(manifest, config))


def check_labels(manifest: pd.DataFrame, config: ExperimentConfig) -> pd.DataFrame:
    """A run needs utterances of at least two of its classes after ``merge`` and the label
    map: one label left is an error, not a run whose scores mean nothing."""
    present = sorted(set(manifest[LABEL]))
    if len(present) < 2:
        merge = f" after merging {dict(config.merge)}" if config.merge else ""
        raise DataError(config.data_root, f"the data hold {len(present)} of the classes {list(config.classes)}"
                                          f"{merge} ({present or 'none'}); a run needs at least 2")
    return rated(manifest, config)


def rated(manifest: pd.DataFrame, config: ExperimentConfig) -> pd.DataFrame:
    """``task=dimensional``/``multitask``: the rows with every dimension of ``config.dims``
    (the others dropped and counted in ``attrs["dropped"]``); a corpus without them is an
    error naming it. The categorical task keeps every row."""
    if config.task == "categorical":
        return manifest
    dims = list(config.dims)
    missing = [d for d in dims if d not in manifest.columns]
    has = manifest[dims].notna().all(axis=1) if not missing else pd.Series(False, index=manifest.index)
    if not has.any():
        raise DataError(config.data_root, f"corpus {config.corpus!r} has no {'/'.join(dims)} ratings: task={config.task} "
                                          "needs a corpus with dimensional labels (iemocap, msp_podcast, synthetic, or "
                                          "csv with those columns)")
    out = manifest[has].reset_index(drop=True)
    out.attrs = {**manifest.attrs, "dropped": {**manifest.attrs.get("dropped", {}),
                                               **({"no dimensional ratings": int((~has).sum())} if (~has).any() else {})}}
    return out


def resolve_values(experiment: str, values: dict | None) -> tuple[ExperimentConfig, pd.DataFrame]:
    """``(config of fold 1 seed 1, run manifest)`` for ``values``; ``classes="all"``
    becomes the corpus's sorted labels (after ``merge``; for ``cross:…``, the labels both
    corpora have). The corpus is read once."""
    values = dict(values or {})
    full = None
    if values.get("classes") == "all":
        probe = experiments.make_config(experiment, {**values, "classes": ("neutral", "happy")})
        check_corpora(probe)
        if is_cross(probe.protocol):
            values["classes"] = shared_classes(probe)
        else:
            full = prepare_manifest(probe.corpus, probe.data_root, probe.subset, "all",
                                    on_error=corpus_errors(probe.bad_audio))
            values["classes"] = tuple(sorted(full[LABEL].replace(probe.merge).unique()))
    config = experiments.make_config(experiment, {**values, "fold": 1, "seed": 1})
    if full is not None:  # the same rows run_manifest would read again
        return config, with_audio_hashes(check_labels(select_classes(full, config.classes, config.merge), config))
    return config, run_manifest(config)
