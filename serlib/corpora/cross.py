"""Cross-corpus manifests: two corpora in one manifest, their labels met on shared
classes (``protocol="cross:TEST_CORPUS"``; the fold is :func:`serlib.protocols.cross_fold`).

Both label sets meet on the run's ``classes`` (default: neutral/happy/sad/angry, which
every adapter's canonical labels share) after ``merge`` (or ``--label-map FILE``, a JSON
``{label: class}``); labels that map to none of them are dropped and counted per corpus.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from ..constants import LABEL, PATH, ROLE, SESSION, SPEAKER, UTT_ID
from ..errors import ConfigError, DataError
from ..protocols import is_cross, test_corpus
from . import ADAPTERS, check_corpus_name, corpus_errors, multi, prepare_manifest


def check_corpora(config) -> None:
    """A clear error, before any work, for an unknown training or test corpus (each of
    several, ``a+b``), or a test corpus that is also trained on."""
    check_corpus_name(config.corpus)
    if is_cross(config.protocol):
        test = test_corpus(config.protocol)
        if any(name not in ADAPTERS for name in multi.corpus_names(test)):
            raise ConfigError(f"protocol {config.protocol!r}: unknown test corpus; choose from {sorted(ADAPTERS)}")
        both = sorted((set(multi.corpus_names(test)) & set(multi.corpus_names(config.corpus))) - {"csv", "folder"})
        if both and multi.is_multi(config.corpus):
            raise ConfigError(f"protocol {config.protocol!r}: {both} is both trained on and held out for the test; "
                              "leave it out of --corpus")


def read_label_map(path: str | Path) -> dict[str, str]:
    """A JSON object ``{corpus label: shared class}`` (applied to both corpora)."""
    path = Path(path)
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(path, f"cannot read the label map ({e})") from e
    if not isinstance(table, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in table.items()):
        raise DataError(path, 'a label map is a JSON object such as {"excited": "happy", "calm": "neutral"}')
    return table


def corpus_labels(corpus: str, root, subset, merge: Mapping[str, str], on_error: str = "raise") -> set[str]:
    return set(prepare_manifest(corpus, root, subset, "all", on_error=on_error)[LABEL].replace(dict(merge)))


def shared_classes(config) -> tuple[str, ...]:
    """The labels both corpora of a cross-corpus config have (after ``merge``), sorted."""
    on_error = corpus_errors(config.bad_audio)
    train = corpus_labels(config.corpus, config.data_root, config.subset, config.merge, on_error)
    test = corpus_labels(test_corpus(config.protocol), config.test_data_root, config.test_subset, config.merge,
                         on_error)
    shared = tuple(sorted(train & test))
    if len(shared) < 2:
        raise ConfigError(f"{config.corpus} and {test_corpus(config.protocol)} share fewer than 2 labels "
                          f"({sorted(train)} vs {sorted(test)}); map them with merge or --label-map")
    return shared


def cross_manifest(config) -> pd.DataFrame:
    """Both corpora in one manifest, restricted to ``config.classes`` after ``merge``;
    ``role`` says which corpus a row comes from, and ids and speakers are prefixed with
    it (``train:…``, ``test:…``) so the two corpora never share one.
    ``attrs["cross_dropped"]`` counts, per role, the utterances whose label maps to no
    class; ``attrs["skipped"]`` lists both corpora's skipped files."""
    parts, dropped, skipped = [], {}, []
    sources = {"train": (config.corpus, config.data_root, config.subset),
               "test": (test_corpus(config.protocol), config.test_data_root, config.test_subset)}
    for role, (corpus, root, subset) in sources.items():
        full = prepare_manifest(corpus, root, subset, "all", on_error=corpus_errors(config.bad_audio))
        labels = full[LABEL].replace(dict(config.merge))
        keep = labels.isin(config.classes)
        dropped[role] = {str(k): int(v) for k, v in labels[~keep].value_counts().items()}
        part = full[keep].assign(**{LABEL: labels[keep], ROLE: role})
        if part.empty:
            raise DataError(root, f"{corpus} has no utterances of the classes {list(config.classes)}")
        part[UTT_ID] = f"{role}:" + part[UTT_ID].astype(str)
        part[SPEAKER] = f"{role}:" + part[SPEAKER].astype(str)
        part[SESSION] = None  # sessions of two corpora are unrelated
        parts.append(part)
        skipped += list(full.attrs.get("skipped", []))
    manifest = pd.concat(parts, ignore_index=True)
    manifest.attrs.update({"skipped": skipped, "cross_dropped": dropped})
    return manifest


def split_corpus(manifest: pd.DataFrame, column: str, groups: Mapping[str, list], out_dir: str | Path) -> dict[str, Path]:
    """Write one CSV corpus (``corpus="csv"``) per group of ``column`` values, e.g. the
    synthetic corpus's sessions 1–3 and 4–5 as two "corpora"."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, values in groups.items():
        part = manifest[manifest[column].isin(values)]
        if part.empty:
            raise DataError(None, f"no rows with {column} in {values}")
        columns = [c for c in (PATH, LABEL, SPEAKER, "gender", SESSION, "text", UTT_ID) if c in part.columns]
        paths[name] = out / f"{name}.csv"
        part[columns].to_csv(paths[name], index=False)
    return paths
