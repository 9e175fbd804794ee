"""Cross-corpus evaluation: train on one corpus, test on every utterance of another.

``protocol="cross:TEST_CORPUS"`` (with ``test_data_root`` and ``test_subset``) makes one
fold: the training corpus's speakers minus a held-out validation group (for model
selection) against all of the test corpus. Both label sets meet on the run's
``classes`` (default: neutral/happy/sad/angry, which every adapter's canonical labels
share) after ``merge`` (or ``--label-map FILE``, a JSON ``{label: class}``); labels that
map to none of them are dropped and counted per corpus in the record.

:func:`matrix` trains on each of N corpora and tests on each: the diagonal is the
within-corpus LOSO result, the rest cross-corpus runs — all ordinary, resumable sweeps.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from .constants import LABEL, PATH, SESSION, SPEAKER, UTT_ID
from .errors import ConfigError, DataError

ROLE = "role"        # manifest column of a cross-corpus run: "train" or "test"
VAL_FRACTION = 0.1   # of the training corpus's speakers held out for validation (at least 1)


def is_cross(protocol: str) -> bool:
    return protocol.startswith("cross:")


def test_corpus(protocol: str) -> str:
    return protocol.partition(":")[2]


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


def corpus_labels(corpus: str, root, subset, merge: Mapping[str, str]) -> set[str]:
    from .corpora import prepare_manifest

    return set(prepare_manifest(corpus, root, subset, "all")[LABEL].replace(dict(merge)))


def shared_classes(config) -> tuple[str, ...]:
    """The labels both corpora of a cross-corpus config have (after ``merge``), sorted."""
    train = corpus_labels(config.corpus, config.data_root, config.subset, config.merge)
    test = corpus_labels(test_corpus(config.protocol), config.test_data_root, config.test_subset, config.merge)
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
    from .corpora import prepare_manifest

    parts, dropped, skipped = [], {}, []
    sources = {"train": (config.corpus, config.data_root, config.subset),
               "test": (test_corpus(config.protocol), config.test_data_root, config.test_subset)}
    for role, (corpus, root, subset) in sources.items():
        full = prepare_manifest(corpus, root, subset, "all")
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


def cross_fold(manifest: pd.DataFrame, protocol: str):
    """The one fold of ``cross:…``: test = every utterance of the test corpus; validation
    = the last ``VAL_FRACTION`` of the training corpus's speakers in fold order (at
    least one); train = the other training speakers."""
    from .protocols import Fold, _speaker_order

    if ROLE not in manifest.columns:
        raise ConfigError(f"protocol {protocol!r} needs a cross-corpus manifest (train.run_manifest builds it)")
    train_part = manifest[manifest[ROLE] == "train"]
    speakers = _speaker_order(train_part)
    if len(speakers) < 2:
        raise DataError(None, f"cross-corpus training needs at least 2 speakers (one for validation), got {speakers}")
    n_val = max(1, round(VAL_FRACTION * len(speakers)))
    val_speakers = speakers[-n_val:]
    val = train_part.loc[train_part[SPEAKER].isin(val_speakers), UTT_ID].tolist()
    train = train_part.loc[~train_part[SPEAKER].isin(val_speakers), UTT_ID].tolist()
    test_part = manifest[manifest[ROLE] == "test"]
    test = test_part[UTT_ID].tolist()
    test_speakers = sorted(test_part[SPEAKER].unique())
    return Fold(1, train, val, test, test_speakers, val_speakers, True, protocol,
                [f"cross-corpus: trained on {len(speakers) - n_val} speakers of the training corpus, "
                 f"tested on all {len(test_speakers)} speakers of {test_corpus(protocol)}"])


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


def matrix(experiment: str, corpora: Mapping[str, Mapping], values: Mapping | None = None,
           diagonal_folds: str = "all", jobs: int = 1, threads: int | None = None,
           echo=print) -> dict[str, pd.DataFrame]:
    """Train on each corpus, test on each: ``{"ua": table, "wa": table, "runs": rows}``
    with training corpora as rows and test corpora as columns. ``corpora`` maps a label
    to ``{"corpus": …, "data_root": …, "subset": …}``. The diagonal is the mean over
    the LOSO folds ``diagonal_folds`` of that corpus; off the diagonal, the one
    cross-corpus fold. Every run is a record (resumable, skipped when present)."""
    from .sweep import sweep

    names = list(corpora)
    rows = []
    for a in names:
        for b in names:
            source, target = corpora[a], corpora[b]
            run = {**(values or {}), "corpus": source["corpus"], "data_root": source.get("data_root"),
                   "subset": source.get("subset")}
            if a == b:
                run["protocol"] = "loso"
                folds = diagonal_folds
            else:
                run.update({"protocol": f"cross:{target['corpus']}", "test_data_root": target.get("data_root"),
                            "test_subset": target.get("subset")})
                folds = "all"
            table = sweep(experiment, run, folds=folds, jobs=jobs, threads=threads, echo=echo)
            done = table[table.status != "failed"]
            if done.empty:
                raise DataError(None, f"{a} → {b}: every run failed ({table.reason.tolist()})")
            rows.append({"train": a, "test": b, "ua": float(done.ua.mean()), "wa": float(done.wa.mean()),
                         "n_folds": len(done), "within_corpus": a == b, "records": done.path.tolist()})
    runs = pd.DataFrame(rows)
    out = {m: runs.pivot(index="train", columns="test", values=m).loc[names, names] for m in ("ua", "wa")}
    out["runs"] = runs
    return out
