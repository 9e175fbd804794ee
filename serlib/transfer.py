"""Cross-corpus matrices: train on each of N corpora, test on each.

The diagonal is the within-corpus LOSO result, the rest cross-corpus runs
(``protocol="cross:TEST_CORPUS"``: :func:`serlib.protocols.cross_fold` on a manifest of
:func:`serlib.corpora.cross.cross_manifest`) — all ordinary, resumable sweeps.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from .errors import DataError
from .sweep import sweep


def matrix(experiment: str, corpora: Mapping[str, Mapping], values: Mapping | None = None,
           diagonal_folds: str = "all", jobs: int = 1, threads: int | None = None,
           echo=print) -> dict[str, pd.DataFrame]:
    """Train on each corpus, test on each: ``{"ua": table, "wa": table, "runs": rows}``
    with training corpora as rows and test corpora as columns. ``corpora`` maps a label
    to ``{"corpus": …, "data_root": …, "subset": …}``. The diagonal is the mean over
    the LOSO folds ``diagonal_folds`` of that corpus; off the diagonal, the one
    cross-corpus fold. Every run is a record (resumable, skipped when present)."""
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
