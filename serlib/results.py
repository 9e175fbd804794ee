"""Tables of results: one row per record (:func:`collect`), the mean over folds of each
result set (:func:`summarise`), and the papers' numbers beside them.

Records are read once (:func:`serlib.records.load_records`) and handed on: ``collect``
takes a folder or the records themselves, and ``summarise`` and
:func:`serlib.stats.baseline_columns` take the same records::

    runs = load_records("outputs/results")
    tables = summarise(collect(runs), runs)
    mean = stats.baseline_columns(tables["mean"], runs)

``summarise`` never averages records with different fingerprints (:mod:`serlib.records`),
nor, unless asked, records of different code versions; every table shows whether a row
uses the test speakers' audio (``uses_test_speaker_audio``, ``+speaker-norm`` in its name).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from . import atomic, experiments, metrics
from .errors import ConfigError
from .paths import outputs_dir
from .records import (
    FINGERPRINT_CHARS,
    comparability_key,
    key_id,
    load_records,
    read_predictions,
    read_record,
    record_code_version,
    record_name,
    record_task,
    set_key,
    uses_test_speaker_audio,
)

log = logging.getLogger(__name__)


def collect(source: str | Path | list[dict] | None = None) -> pd.DataFrame:
    """One row per record: key, fingerprint, code version, WA/UA/macro-F1, validation UA,
    epochs, timing, flags, path. ``name`` is the name the result set is shown under, with
    ``+speaker-norm`` / ``+test-selection`` when they apply (:func:`serlib.records.record_name`),
    and ``uses_test_speaker_audio`` is a column of its own. ``source``: a results folder
    (default ``outputs/results``) or records already read. Damaged records are skipped
    with a warning and listed in ``df.attrs["damaged"]``. Records of the dimensional tasks
    are left out (they have no WA/UA): their tables are :mod:`serlib.dimensional`'s, never
    mixed with these."""
    damaged = []
    runs = source if isinstance(source, list) else load_records(source, damaged)
    runs = [r for r in runs if record_task(r) == "categorical"]
    rows = []
    for r in runs:
        c = r["config"]
        rows.append({
            "experiment": c["experiment"], "name": record_name(r), "corpus": r["corpus_label"],
            "protocol": c["protocol"], "test_corpus": r.get("test_corpus") or r["corpus_label"],
            "uses_test_speaker_audio": uses_test_speaker_audio(r),
            "fingerprint": r["fingerprint"][:FINGERPRINT_CHARS], "code_version": record_code_version(r),
            "fold": c["fold"], "seed": c["seed"], "test_speakers": ",".join(r["test_speakers"]),
            "leaky": r["leaky"], "speaker_independent": bool(r.get("speaker_independent", not r["leaky"])),
            "selection": c.get("selection", "val"), "comparable": key_id(comparability_key(r)),
            "n_classes": len(r.get("classes") or r["metrics"].get("labels") or []),
            "wa": r["metrics"]["wa"], "ua": r["metrics"]["ua"], "macro_f1": r["metrics"]["macro_f1"],
            "val_ua": r.get("best_selection_ua"),
            "n_test": r["metrics"]["n"], "best_epoch": r["best_epoch"], "epochs_run": len(r["history"]),
            "seconds_per_epoch": r["timing"]["seconds_per_epoch"], "total_seconds": r["timing"]["total_seconds"],
            "device": r["device"], "path": r["path"],
        })
    cols = ["experiment", "name", "corpus", "protocol", "test_corpus", "uses_test_speaker_audio", "fingerprint",
            "code_version", "fold", "seed", "test_speakers", "leaky", "speaker_independent", "selection", "comparable",
            "n_classes", "wa", "ua", "macro_f1", "val_ua", "n_test",
            "best_epoch", "epochs_run", "seconds_per_epoch", "total_seconds", "device", "path"]
    df = pd.DataFrame(rows, columns=cols)
    for column in ("wa", "ua", "macro_f1", "val_ua"):  # null in strict JSON
        df[column] = df[column].astype(float)
    df.attrs["damaged"] = damaged
    if damaged:
        log.warning("collect: %d damaged record(s) skipped: %s", len(damaged), [d[0] for d in damaged[:3]])
    return df


# a result set: records of one setting (never averaged with another); the code version is
# a key too unless summarise(..., versions="merge") is asked for
GROUP = ["experiment", "name", "corpus", "protocol", "test_corpus", "uses_test_speaker_audio", "fingerprint", "leaky"]
VERSIONS = ("split", "merge")


def fold_stats(g: pd.DataFrame, metric: str) -> tuple[float, float, float]:
    """``(mean, fold std, seed std)`` of ``metric`` over the records ``g`` of one result set
    (:func:`serlib.metrics.fold_stats`, the one definition the tables, the statistics, the
    command line and the bundle card share).

    >>> g = pd.DataFrame({"fold": [1, 1, 2, 2], "seed": [1, 2, 1, 2], "ua": [0.5, 0.7, 0.8, 0.8]})
    >>> [round(x, 3) for x in fold_stats(g, "ua")]
    [0.7, 0.1, 0.05]
    """
    return metrics.fold_stats(g["fold"].tolist(), g[metric].tolist())


def summarise(df: pd.DataFrame, records: list[dict] | None = None, versions: str = "split") -> dict[str, pd.DataFrame]:
    """Per-fold table, mean ± std over folds, and pooled scores, one row per result set.

    Returns ``{"per_fold": …, "mean": …}``; "mean" has one row per result set
    (experiment, name — with its ``+speaker-norm`` suffix —, corpus, protocol,
    ``uses_test_speaker_audio``, fingerprint: records of different settings are never
    averaged) and code version, with ``n_folds, n_seeds``, ``wa_mean, wa_std, ua_mean,
    ua_std`` (the mean and std over folds of the per-fold means over seeds), ``wa_seed_std,
    ua_seed_std`` (the std over seeds within a fold, averaged over folds; NaN with one
    seed), ``val_ua_mean`` (the selection score: mean validation UA of the selected
    epochs) and the pooled ``wa_pooled, ua_pooled`` (all folds' predictions scored together
    — labelled as pooled, never mixed with the means).

    Code versions (:func:`serlib.records.code_version`: the records' git commit, and a hash
    of the uncommitted diff): a result set whose records come from more than one version is
    split into one row per version by default (``versions="split"``), each saying in
    ``versions_note`` that the set spans versions and which folds this row holds;
    ``versions="merge"`` averages them and says so in the row. ``records``: the records of
    ``df`` already read (else each is read once, by its path). The speaker t-interval
    of the pooled UA and the comparison with a baseline are
    :func:`serlib.stats.baseline_columns`.
    """
    if versions not in VERSIONS:
        raise ConfigError(f"versions must be one of {VERSIONS}, got {versions!r}")
    if df.empty:
        return {"per_fold": df, "mean": pd.DataFrame()}
    by_path = {r["path"]: r for r in records or []}
    by_path.update({p: read_record(p) for p in df["path"] if p not in by_path})
    per_fold = df.sort_values(GROUP + ["code_version", "fold", "seed"])[
        GROUP + ["code_version", "n_classes", "fold", "seed", "test_speakers", "wa", "ua", "macro_f1", "val_ua"]]
    rows = []
    for key, whole in df.groupby(GROUP, sort=True):
        all_versions = sorted(whole.code_version.unique())
        parts = ([(v, whole[whole.code_version == v]) for v in all_versions] if versions == "split"
                 else [(" + ".join(all_versions), whole)])
        for version, g in parts:
            note = ""
            if len(all_versions) > 1 and versions == "split":
                note = (f"the result set spans {len(all_versions)} code versions ({', '.join(all_versions)}); this row is "
                        f"{version} only: folds {sorted(g.fold.unique())} of {sorted(whole.fold.unique())}")
            elif len(all_versions) > 1:
                note = f"MIXES {len(all_versions)} code versions ({', '.join(all_versions)}), averaged on request"
            runs = [by_path[p] for p in g["path"]]
            pooled = pooled_scores(runs)
            wa, ua, f1 = fold_stats(g, "wa"), fold_stats(g, "ua"), fold_stats(g, "macro_f1")
            rows.append({**dict(zip(GROUP, key)), "code_version": version, "comparable": key_id(set_key(runs)),
                         "n_classes": int(g.n_classes.max()), "speaker_independent": bool(g.speaker_independent.all()),
                         "selection": "+".join(sorted(g.selection.unique())),
                         "n_folds": g.fold.nunique(), "n_seeds": g.seed.nunique(),
                         "wa_mean": wa[0], "wa_std": wa[1], "wa_seed_std": wa[2],
                         "ua_mean": ua[0], "ua_std": ua[1], "ua_seed_std": ua[2], "macro_f1_mean": f1[0],
                         "val_ua_mean": fold_stats(g, "val_ua")[0],
                         "wa_pooled": pooled["wa"], "ua_pooled": pooled["ua"],
                         "seconds_per_fold": g.total_seconds.mean() if "total_seconds" in g else np.nan,
                         "versions_note": note})
            if note:
                log.warning("%s/%s on %s: %s", key[0], key[1], key[2], note)
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


def protocol_label(protocol: str, speaker_independent: bool, n_classes, metric: str,
                   uses_test_audio: bool = False, selection: str = "val", leaky: bool = False) -> str:
    """One string that travels with a number in every table: how it was measured.

    >>> protocol_label("loso", True, 7, "WA and UA (mean over folds)")
    'speaker-independent · loso · 7 classes · WA and UA (mean over folds)'
    >>> protocol_label("loso", True, 7, "UA", selection="test", leaky=True)
    'speaker-independent · loso · 7 classes · UA · EPOCH SELECTED ON TEST'
    """
    parts = ["speaker-independent" if speaker_independent else "SPEAKER-DEPENDENT", protocol,
             f"{n_classes} classes" if n_classes else "classes not stated", metric]
    if selection == "test":
        parts.append("EPOCH SELECTED ON TEST")
    elif leaky and speaker_independent:
        parts.append("LEAKY SPLIT (identical audio across sides)")
    return " · ".join(parts) + (" · uses the test speakers' audio" if uses_test_audio else "")


def compare_with_papers(mean: pd.DataFrame, peers: bool = True) -> pd.DataFrame:
    """Our mean table (in percent) beside the papers' numbers for the same experiments and,
    with ``peers``, the peer systems' numbers on the same corpus — every row labelled with
    its protocol, class count, metric, speaker independence, epoch selection and use of
    test-speaker audio (``label``), so that no reference number sits in a column beside a
    speaker-independent serlib number without saying how it was measured. Speaker
    independence is the records' own (a LOSO run whose epoch was picked on test is
    speaker-independent *and* labelled as selected on test). A cross-corpus row
    (``cross:…``) is labelled with both corpora and brings no reference rows: the papers'
    within-corpus numbers of its training corpus are not its peers."""
    reference = experiments.reference_table()
    reference = reference.assign(uses_test_speaker_audio=False, label=[
        protocol_label(r.protocol, r.speaker_independent, r.n_classes, r.metric) for r in reference.itertuples()])
    columns = ["experiment", "paper", "variant", "corpus", "protocol", "n_classes", "metric", "speaker_independent",
               "uses_test_speaker_audio", "wa", "ua", "label", "note"]
    if mean.empty:
        return reference[columns].assign(source="paper")
    leaky = mean["leaky"].astype(bool)
    speaker_independent = (mean["speaker_independent"].astype(bool) if "speaker_independent" in mean else ~leaky)
    selection = mean["selection"] if "selection" in mean else pd.Series("val", index=mean.index)
    test_corpus = mean["test_corpus"] if "test_corpus" in mean else mean["corpus"]
    cross = mean.protocol.astype(str).str.startswith("cross:")
    metric = "WA and UA (mean over folds)"
    shown_protocol = [f"cross-corpus: trained on {c}, tested on {t}" if x else p
                      for p, c, t, x in zip(mean.protocol, mean.corpus, test_corpus, cross)]
    ours = mean.assign(
        paper="serlib (this workbench)", variant=mean["name"] + " [" + mean["fingerprint"] + "]",
        wa=(100 * mean.wa_mean).round(1), ua=(100 * mean.ua_mean).round(1), speaker_independent=speaker_independent,
        metric=metric,
        label=[protocol_label(p, si, n, metric, bool(t), sel, lk) for p, si, n, t, sel, lk in
               zip(shown_protocol, speaker_independent, mean.n_classes, mean.uses_test_speaker_audio, selection, leaky)],
        note=[(f"± {100 * w:.1f} / ± {100 * u:.1f} over {n} folds" if n > 1 else "1 fold: no spread")
              + f"; pooled {100 * pw:.1f} / {100 * pu:.1f}" + (f"; code {v}" if v else "") + (f"; {vn}" if vn else "")
              for w, u, n, pw, pu, v, vn in zip(mean.wa_std, mean.ua_std, mean.n_folds, mean.wa_pooled, mean.ua_pooled,
                                               mean.get("code_version", [""] * len(mean)),
                                               mean.get("versions_note", [""] * len(mean)))],
    )[columns]
    within = ours[~cross.to_numpy()]
    base = {c.split("-")[0] for c in within.corpus}
    wanted = reference.experiment.isin(set(within.experiment))
    if peers:
        wanted |= (reference.experiment == "peers") & reference.corpus.str.split("-").str[0].isin(base)
    return pd.concat([ours.assign(source="measured"), reference[wanted].assign(source="paper")], ignore_index=True)
