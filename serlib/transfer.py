"""Cross-corpus matrices: train on each of N corpora, test on each.

The diagonal is the within-corpus LOSO result, the rest cross-corpus runs
(``protocol="cross:TEST_CORPUS"``: :func:`serlib.protocols.cross_fold` on a manifest of
:func:`serlib.corpora.cross.cross_manifest`), and optionally a row trained on all the
other corpora together — all ordinary, resumable sweeps.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from .corpora import multi, name_has_subsets
from .errors import ConfigError, DataError
from .sweep import sweep

ALL_OTHERS = "all others"  # the row trained on every other corpus together (leave one corpus out)


def matrix(experiment: str, corpora: Mapping[str, Mapping], values: Mapping | None = None,
           diagonal_folds: str = "all", jobs: int = 1, threads: int | None = None,
           echo=print, all_others: bool = False) -> dict[str, pd.DataFrame]:
    """Train on each corpus, test on each: ``{"ua": table, "wa": table, "runs": rows}``
    with training corpora as rows and test corpora as columns. ``corpora`` maps a label
    to ``{"corpus": …, "data_root": …, "subset": …}``. The diagonal is the mean over
    the LOSO folds ``diagonal_folds`` of that corpus; off the diagonal, the one
    cross-corpus fold. ``all_others=True`` adds the row :data:`ALL_OTHERS`: for each
    test corpus, one model trained on all the other corpora together
    (leave-one-corpus-out, :mod:`serlib.corpora.multi`). Every run is a record
    (resumable, skipped when present)."""
    names = list(corpora)
    rows = []
    plan = [(a, b, dict(corpora[a])) for a in names for b in names]
    if all_others:
        plan += [(ALL_OTHERS, b, others(corpora, b)) for b in names]
    for a, b, source in plan:
        target = corpora[b]
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
    index = names + ([ALL_OTHERS] if all_others else [])
    out = {m: runs.pivot(index="train", columns="test", values=m).loc[index, names] for m in ("ua", "wa")}
    out["runs"] = runs
    return out


def others(corpora: Mapping[str, Mapping], held_out: str) -> dict:
    """The training source of "every corpus but ``held_out``": names and roots joined by
    ``+`` (:mod:`serlib.corpora.multi`); the subset must be the same for all of them."""
    rest = [corpora[n] for n in corpora if n != held_out]
    if not rest:
        raise ConfigError("all_others needs at least 2 corpora")
    subsets = {c.get("subset") for c in rest if name_has_subsets(c["corpus"])}
    if len(subsets) > 1:
        raise ConfigError(f"all_others trains {[c['corpus'] for c in rest]} together with one subset, got {subsets}")
    roots = [c.get("data_root") for c in rest]
    return {"corpus": multi.SEPARATOR.join(c["corpus"] for c in rest),
            "data_root": multi.SEPARATOR.join(str(r or "") for r in roots) if any(roots) else None,
            "subset": next(iter(subsets), None)}
