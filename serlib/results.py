"""Tables of results: one row per record (:func:`collect`), the mean over folds of each
result set (:func:`summarise`), and the papers' numbers beside them.

Records are read once (:func:`serlib.records.load_records`) and handed on: ``collect``
takes a folder or the records themselves, and ``summarise`` and
:func:`serlib.stats.baseline_columns` take the same records::

    runs = load_records("outputs/results")
    tables = summarise(collect(runs), runs)
    mean = stats.baseline_columns(tables["mean"], runs)

``summarise`` never averages records with different fingerprints (:mod:`serlib.records`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from . import atomic, experiments, metrics
from .paths import outputs_dir
from .records import FINGERPRINT_CHARS, load_records, read_predictions, read_record

log = logging.getLogger(__name__)


def collect(source: str | Path | list[dict] | None = None) -> pd.DataFrame:
    """One row per record: key, fingerprint, WA/UA/macro-F1, epochs, timing, leaky flag,
    path. ``source``: a results folder (default ``outputs/results``) or records already
    read. Damaged records are skipped with a warning and listed in ``df.attrs["damaged"]``."""
    damaged = []
    runs = source if isinstance(source, list) else load_records(source, damaged)
    rows = []
    for r in runs:
        c = r["config"]
        rows.append({
            "experiment": c["experiment"], "name": c["name"], "corpus": r["corpus_label"],
            "protocol": c["protocol"], "fingerprint": r["fingerprint"][:FINGERPRINT_CHARS],
            "fold": c["fold"], "seed": c["seed"],
            "test_speakers": ",".join(r["test_speakers"]), "leaky": r["leaky"],
            "wa": r["metrics"]["wa"], "ua": r["metrics"]["ua"], "macro_f1": r["metrics"]["macro_f1"],
            "n_test": r["metrics"]["n"], "best_epoch": r["best_epoch"], "epochs_run": len(r["history"]),
            "seconds_per_epoch": r["timing"]["seconds_per_epoch"], "total_seconds": r["timing"]["total_seconds"],
            "device": r["device"], "path": r["_path"],
        })
    cols = ["experiment", "name", "corpus", "protocol", "fingerprint", "fold", "seed", "test_speakers", "leaky",
            "wa", "ua", "macro_f1", "n_test", "best_epoch", "epochs_run", "seconds_per_epoch", "total_seconds",
            "device", "path"]
    df = pd.DataFrame(rows, columns=cols)
    for column in ("wa", "ua", "macro_f1"):  # null in strict JSON
        df[column] = df[column].astype(float)
    df.attrs["damaged"] = damaged
    if damaged:
        log.warning("collect: %d damaged record(s) skipped: %s", len(damaged), [d[0] for d in damaged[:3]])
    return df


GROUP = ["experiment", "name", "corpus", "protocol", "fingerprint", "leaky"]


def summarise(df: pd.DataFrame, records: list[dict] | None = None) -> dict[str, pd.DataFrame]:
    """Per-fold table, mean ± std over folds (× seeds), and pooled scores.

    Returns ``{"per_fold": …, "mean": …}``; "mean" has one row per result set
    (experiment, name, corpus, protocol, fingerprint: records of different settings are
    never averaged) with ``wa_mean, wa_std, ua_mean, ua_std, n_folds, n_seeds`` and the
    pooled ``wa_pooled, ua_pooled`` (all folds' predictions scored together — labelled as
    pooled, never mixed with the means). ``records``: the records of ``df`` already read
    (else each is read once, by its path). The speaker-bootstrap interval of the pooled UA
    and the comparison with a baseline are :func:`serlib.stats.baseline_columns`.
    """
    if df.empty:
        return {"per_fold": df, "mean": pd.DataFrame()}
    by_path = {r["path"]: r for r in records or []}
    by_path.update({p: read_record(p) for p in df["path"] if p not in by_path})
    per_fold = df.sort_values(GROUP + ["fold", "seed"])[GROUP + ["fold", "seed", "test_speakers", "wa", "ua", "macro_f1"]]
    rows = []
    for key, g in df.groupby(GROUP, sort=True):
        pooled = pooled_scores([by_path[p] for p in g["path"]])
        rows.append({**dict(zip(GROUP, key)), "n_folds": g.fold.nunique(), "n_seeds": g.seed.nunique(),
                     "wa_mean": g.wa.mean(), "wa_std": g.wa.std(ddof=0), "ua_mean": g.ua.mean(),
                     "ua_std": g.ua.std(ddof=0), "macro_f1_mean": g.macro_f1.mean(),
                     "wa_pooled": pooled["wa"], "ua_pooled": pooled["ua"],
                     "seconds_per_fold": g.total_seconds.mean() if "total_seconds" in g else np.nan})
    mean = pd.DataFrame(rows)
    return {"per_fold": per_fold.reset_index(drop=True), "mean": mean}


def selection_effect(path: str | Path | None = None, records: list[dict] | None = None) -> pd.DataFrame:
    """How much of a leaky score is the epoch selection alone, on the same split.

    Records with ``selection="test"`` hold every epoch's test scores beside the
    validation ones, so each fold gives three test scores of one run: at the epoch that
    validation UA would have picked (``*_val_selected``, honest on that split), at the last
    epoch, and at the epoch picked on the test fold (``*_test_selected``, the published
    number). Their difference is the selection's share of the inflation; the rest comes
    from the split (e.g. speaker-dependent vs LOSO).
    """
    rows = []
    for r in records if records is not None else load_records(path):
        c, h = r["config"], r["history"]
        if c["selection"] != "test" or not h or "test_ua" not in h[0]:
            continue
        by_val = max(h, key=lambda e: e["val_ua"])  # first maximum, as the Trainer keeps
        by_test = next(e for e in h if e["epoch"] == r["best_epoch"])
        rows.append({**{k: c[k] for k in ("experiment", "name", "protocol", "fold", "seed")},
                     "corpus": r["corpus_label"],
                     "ua_val_selected": by_val["test_ua"], "ua_last": h[-1]["test_ua"],
                     "ua_test_selected": by_test["test_ua"], "wa_val_selected": by_val["test_wa"],
                     "wa_last": h[-1]["test_wa"], "wa_test_selected": by_test["test_wa"],
                     "epoch_val_selected": by_val["epoch"], "epoch_test_selected": by_test["epoch"]})
    cols = ["experiment", "name", "corpus", "protocol", "fold", "seed", "ua_val_selected", "ua_last",
            "ua_test_selected", "wa_val_selected", "wa_last", "wa_test_selected", "epoch_val_selected",
            "epoch_test_selected"]
    return pd.DataFrame(rows, columns=cols)


def pooled_scores(records: list[dict]) -> dict:
    """WA/UA over the concatenated predictions of several records (one seed's folds)."""
    truth, pred, labels = [], [], None
    for rec in records:
        labels = rec["metrics"]["labels"]
        preds = read_predictions(rec)
        truth += preds["truth"].tolist()
        pred += preds["prediction"].tolist()
    if not truth:
        return {"wa": float("nan"), "ua": float("nan")}
    return {"wa": metrics.weighted_accuracy(truth, pred, labels),
            "ua": metrics.unweighted_accuracy(truth, pred, labels)}


def to_markdown(df: pd.DataFrame, floatfmt: str = "{:.4g}") -> str:
    """A GitHub-style Markdown table (no extra dependency)."""
    def cell(v):
        if isinstance(v, float):
            return "" if np.isnan(v) else floatfmt.format(v)
        return "" if v is None else str(v)

    header = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *rows]) + "\n"


def write_tables(tables: dict[str, pd.DataFrame], folder: str | Path | None = None) -> list[Path]:
    """Write each table as CSV and Markdown (atomically) under ``outputs/tables``."""
    folder = Path(folder) if folder is not None else outputs_dir() / "tables"
    written = []
    for name, df in tables.items():
        for suffix, text in ((".csv", df.to_csv(index=False)), (".md", to_markdown(df))):
            path = folder / f"{name}{suffix}"
            atomic.write_text(path, text)
            written.append(path)
    return written


def compare_with_papers(mean: pd.DataFrame) -> pd.DataFrame:
    """Our mean table (in percent) beside the papers' numbers for the same experiments."""
    reference = experiments.reference_table()
    if mean.empty:
        return reference.assign(source="paper")
    ours = mean.assign(
        paper="serlib (this workbench)", variant=mean["name"] + " [" + mean["fingerprint"] + "]", wa=(100 * mean.wa_mean).round(1),
        ua=(100 * mean.ua_mean).round(1), speaker_independent=~mean["leaky"].astype(bool),
        note=[(f"± {100 * w:.1f} / ± {100 * u:.1f} over {n} folds" if n > 1 else "1 fold: no spread")
              + f"; pooled {100 * pw:.1f} / {100 * pu:.1f}"
              for w, u, n, pw, pu in zip(mean.wa_std, mean.ua_std, mean.n_folds, mean.wa_pooled, mean.ua_pooled)],
    )[list(reference.columns)]
    papers = reference[reference.experiment.isin(set(ours.experiment))]
    return pd.concat([ours.assign(source="measured"), papers.assign(source="paper")], ignore_index=True)
