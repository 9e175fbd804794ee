"""Listening to the errors: per-utterance tables of result sets, the queries behind the
error browser (notebooks/13_error_browser.ipynb) and calibration (ECE, MCE, temperature).

A result set (:class:`serlib.stats.ResultSet`) becomes one row per test utterance and fold
(:func:`utterances`): true and predicted label, class probabilities, confidence (the
largest probability), margin (largest minus second), speaker, gender, text and audio path
from the run's manifest. Several seeds of a fold are their seed ensemble (the mean of the
probabilities, :func:`serlib.stats.seed_ensemble`), so an utterance is one row per model.

Calibration is fitted without retraining on the validation split's outputs that records
keep (``val_predictions``, docs/records.md): one temperature per run, applied to its test
split. Dividing log-probabilities by a temperature keeps their order, so the predicted
class, WA and UA do not change; only the confidence does (docs/explore.md).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from . import audio, experiments, metrics
from .bundle import export, load_model
from .calibration import N_BINS, calibration_errors, fit_temperature, nll, reliability, scale
from .constants import GENDER, PATH, TEXT, UTT_ID
from .errors import DataError
from .manifests import run_manifest
from .records import FINGERPRINT_CHARS, Record, record_code_version, record_name
from .stats import ResultSet, load_set, seed_ensemble

log = logging.getLogger(__name__)
__all__ = ["N_BINS", "calibration_errors", "fit_temperature", "nll", "reliability", "scale"]  # calibration's, re-used


class NotCategorical(DataError):
    """A result set without class probabilities (e.g. a regression task): explore skips it."""


def check_categorical(result_set: ResultSet) -> None:
    """Raise :class:`NotCategorical` naming the set unless its records are categorical and
    their predictions hold a probability per class."""
    tasks = sorted({(r.get("config") or {}).get("task") or r.get("task", "categorical") for r in result_set.records})
    if tasks != ["categorical"]:
        raise NotCategorical(None, f"{result_set.label}: task {tasks}; the error browser shows class labels only")
    missing = [f"p_{c}" for c in result_set.classes if f"p_{c}" not in result_set.predictions.columns]
    if missing:
        raise NotCategorical(None, f"{result_set.label}: its predictions files lack the class probabilities {missing}")


def usable(sets: Mapping[str, ResultSet]) -> tuple[dict[str, ResultSet], list[str]]:
    """``(sets the browser can show, a message per set it skips)``."""
    kept, skipped = {}, []
    for name, s in sets.items():
        try:
            check_categorical(s)
            kept[name] = s
        except NotCategorical as e:
            skipped.append(e.reason)
    return kept, skipped


def manifest_of(result_set: ResultSet) -> pd.DataFrame | None:
    """The manifest the set's runs used (for gender, text and audio path), or None with a
    warning when the corpus cannot be read any more."""
    config = experiments.make_config(result_set.records[0]["config"]["experiment"], result_set.records[0]["config"])
    try:
        return run_manifest(config)
    except (DataError, OSError) as e:
        log.warning("%s: no manifest (%s); gender, text and audio path left empty", result_set.label, e)
        return None


def with_confidence(p: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """``p`` with ``correct``, ``confidence`` (largest probability) and ``margin``
    (largest minus second largest)."""
    probs = p[[f"p_{c}" for c in classes]].to_numpy(float)
    top = np.sort(probs, axis=1)[:, ::-1]
    return p.assign(correct=p.truth == p.prediction, confidence=top[:, 0],
                    margin=top[:, 0] - (top[:, 1] if len(classes) > 1 else 0.0))


def utterances(sets: ResultSet | Mapping[str, ResultSet], manifest: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per model, fold and test utterance: ``model, fold, utt_id, speaker, gender,
    text, path, truth, prediction, correct, confidence, margin, p_<class>…``.

    ``sets``: one result set or ``{name: set}`` (the name becomes ``model``); ``manifest``:
    the corpus (default: each set's own, :func:`manifest_of`). Sets without class
    probabilities raise :class:`NotCategorical` (filter with :func:`usable`)."""
    if isinstance(sets, ResultSet):
        sets = {sets.label: sets}
    frames = []
    for name, s in sets.items():
        check_categorical(s)
        if s.predictions.groupby(["fold", "utt_id"]).size().max() > 1:
            s = seed_ensemble(s)
        m = manifest if manifest is not None else manifest_of(s)
        p = with_confidence(s.predictions.drop(columns="seed", errors="ignore"), s.classes)
        if m is not None:
            extra = m.drop_duplicates(UTT_ID).set_index(UTT_ID)
            for column in (GENDER, TEXT, PATH):
                p[column] = p.utt_id.map(extra[column]) if column in extra else None
        else:
            p[GENDER] = p[TEXT] = p[PATH] = None
        frames.append(p.assign(model=name))
    table = pd.concat(frames, ignore_index=True)
    first = ["model", "fold", "utt_id", "speaker", GENDER, "truth", "prediction", "correct", "confidence", "margin"]
    return table[first + [c for c in table.columns if c not in first]]


def confusion(table: pd.DataFrame, classes: Sequence[str], normalize: bool = False) -> pd.DataFrame:
    """The confusion matrix (rows: true class, columns: predicted) of ``table`` as counts,
    or row-normalised (each row sums to 1; a class without test items is a row of NaN)."""
    m = metrics.confusion(table.truth.tolist(), table.prediction.tolist(), classes).astype(float)
    if normalize:
        with np.errstate(invalid="ignore", divide="ignore"):
            m = m / m.sum(1, keepdims=True)
    else:
        m = m.astype(int)
    return pd.DataFrame(m, index=pd.Index(classes, name="true"), columns=pd.Index(classes, name="predicted"))


def largest_off_diagonal(table: pd.DataFrame, classes: Sequence[str]) -> tuple[str, str] | None:
    """The most frequent confusion ``(true, predicted)`` (ties: the first in class order), or
    None when every prediction is right — the browser's default cell."""
    m = confusion(table, classes).to_numpy().copy()
    np.fill_diagonal(m, 0)
    if m.max() == 0:
        return None
    i, j = np.unravel_index(int(np.argmax(m)), m.shape)
    return classes[i], classes[j]


def cell(table: pd.DataFrame, truth: str, predicted: str) -> pd.DataFrame:
    """The utterances of one confusion cell, most confident first."""
    rows = table[(table.truth == truth) & (table.prediction == predicted)]
    return rows.sort_values(["confidence", "utt_id"], ascending=[False, True])


def wrong_everywhere(table: pd.DataFrame) -> pd.DataFrame:
    """The utterances every model in ``table`` gets wrong (on the folds all of them were
    tested on): one row per utterance with each model's prediction, most often
    confidently wrong first."""
    models = table.model.unique()
    wide = table.pivot_table(index=["fold", "utt_id", "speaker", "truth"], columns="model",
                             values=["prediction", "confidence"], aggfunc="first").dropna()
    if wide.empty:
        return pd.DataFrame(columns=["fold", "utt_id", "speaker", "truth"])
    wrong = np.all([wide["prediction"][m] != wide.index.get_level_values("truth") for m in models], axis=0)
    out = wide[wrong]
    flat = pd.DataFrame({**{f"prediction {m}": out["prediction"][m] for m in models},
                         **{f"confidence {m}": out["confidence"][m].astype(float) for m in models}}).reset_index()
    flat["mean confidence"] = flat[[f"confidence {m}" for m in models]].mean(axis=1)
    return flat.sort_values("mean confidence", ascending=False, ignore_index=True)


def discordant(table: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """The discordant pairs behind McNemar's test: utterances where model ``a`` is right
    and ``b`` wrong (``a right``) or the reverse (``b right``), on the folds and utterances
    both were tested on; columns ``fold, utt_id, speaker, truth, which, prediction a,
    prediction b, confidence a, confidence b, path``."""
    for m in (a, b):
        if m not in set(table.model):
            raise DataError(None, f"no model {m!r} in the table (models: {sorted(set(table.model))})")
    keys = ["fold", "utt_id"]
    left = table[table.model == a]
    right = table[table.model == b][keys + ["prediction", "confidence", "correct"]]
    both = left.merge(right, on=keys, suffixes=(" a", " b"))
    out = both[both["correct a"] != both["correct b"]].copy()
    out["which"] = np.where(out["correct a"], f"{a} right", f"{b} right")
    columns = keys + ["speaker", "truth", "which", "prediction a", "prediction b", "confidence a", "confidence b", PATH]
    return out[columns].sort_values(["which", "fold", "utt_id"], ignore_index=True)


def speaker_ua(table: pd.DataFrame, classes: Sequence[str], n_boot: int = 1000, level: float = 0.95,
               seed: int = 0) -> pd.DataFrame:
    """Per speaker (and model): UA with a percentile bootstrap interval over the speaker's
    own utterances, resampled within each true class (so every class the speaker has keeps
    its count); ``n``, WA and gender beside it; the worst first. With few utterances per
    class the interval is wide, and that is the point of showing it."""
    rng = np.random.default_rng(seed)
    rows = []
    for (model, speaker), g in table.groupby(["model", "speaker"], sort=True):
        truth, pred = g.truth.to_numpy(), g.prediction.to_numpy()
        ua = metrics.unweighted_accuracy(truth, pred, classes)
        groups = [np.flatnonzero(truth == c) for c in classes if (truth == c).any()]
        boots = []
        for _ in range(n_boot):
            idx = np.concatenate([rng.choice(ix, len(ix)) for ix in groups])
            boots.append(metrics.unweighted_accuracy(truth[idx], pred[idx], classes))
        low, high = np.nanpercentile(boots, [50 * (1 - level), 50 * (1 + level)])
        rows.append({"model": model, "speaker": speaker, "UA": ua, "UA low": low, "UA high": high,
                     "WA": float(np.mean(truth == pred)), "n": len(g),
                     GENDER: g[GENDER].iloc[0] if GENDER in g else None})
    return pd.DataFrame(rows).sort_values(["model", "UA", "speaker"], ignore_index=True)


# -- calibration ---------------------------------------------------------------------
def _probs(p: pd.DataFrame, classes: Sequence[str]) -> np.ndarray:
    return p[[f"p_{c}" for c in classes]].to_numpy(float)


def _labels(p: pd.DataFrame, classes: Sequence[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    return p.truth.map(index).to_numpy()


def calibrate(result_set: ResultSet, n_bins: int = N_BINS) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Temperature scaling of each run of ``result_set``, fitted on its validation split,
    applied to its test split.

    Returns ``(per run, calibrated test predictions, skipped)``: per run its fold, seed,
    temperature, ``n_val``, ECE/MCE/NLL before and after on its test split, and WA/UA of the
    probabilities' argmax before and after (equal: the temperature keeps every row's
    order); the test predictions with ``p_<class>`` scaled (``fold``, ``seed`` added); and
    a message per run without validation outputs (records written before they were kept:
    run the fold again)."""
    check_categorical(result_set)
    classes = result_set.classes
    rows, frames, skipped = [], [], []
    for r in sorted(result_set.records, key=lambda r: (r["config"]["fold"], r["config"]["seed"])):
        fold, seed = r["config"]["fold"], r["config"]["seed"]
        val = r.load_val_predictions() if isinstance(r, Record) else None
        if val is None or val.empty:
            skipped.append(f"fold {fold} seed {seed}: no validation outputs kept with {r.get('path')} "
                           "(a record from before they were kept, or no validation split): run the fold again")
            continue
        test = r.load_predictions()
        t = fit_temperature(_probs(val, classes), _labels(val, classes))
        before, y = _probs(test, classes), _labels(test, classes)
        after = scale(before, t)
        row = {"fold": fold, "seed": seed, "temperature": t, "n_val": len(val), "n_test": len(test)}
        for tag, p in (("before", before), ("after", after)):
            ece, mce = calibration_errors(p, y, n_bins)
            names = [classes[i] for i in p.argmax(1)]
            row.update({f"ECE {tag}": ece, f"MCE {tag}": mce, f"NLL {tag}": nll(p, y),
                        f"WA {tag}": metrics.weighted_accuracy(test.truth.tolist(), names, classes),
                        f"UA {tag}": metrics.unweighted_accuracy(test.truth.tolist(), names, classes)})
        rows.append(row)
        scaled = test.assign(fold=fold, seed=seed)
        scaled[[f"p_{c}" for c in classes]] = after
        frames.append(scaled)
    per_run = pd.DataFrame(rows)
    return per_run, (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), skipped


def calibration_summary(result_set: ResultSet, n_bins: int = N_BINS) -> dict:
    """ECE and MCE of the set's pooled test predictions before and after temperature
    scaling (:func:`calibrate`), the temperatures, and the pooled WA/UA of the argmax
    before and after; ``skipped`` counts runs without validation outputs."""
    per_run, scaled, skipped = calibrate(result_set, n_bins)
    if per_run.empty:
        raise DataError(None, f"{result_set.label}: no run has validation outputs ({skipped[0] if skipped else ''})")
    classes = result_set.classes
    kept = {(f, s) for f, s in zip(per_run.fold, per_run.seed)}
    raw = result_set.predictions[[(f, s) in kept for f, s in zip(result_set.predictions.fold,
                                                                  result_set.predictions.seed)]]
    raw = raw.sort_values(["fold", "seed", "utt_id"])
    scaled = scaled.sort_values(["fold", "seed", "utt_id"])
    out = {"set": result_set.label, "runs": len(per_run), "skipped": len(skipped), "n_test": len(scaled),
           "temperature_min": float(per_run.temperature.min()), "temperature_max": float(per_run.temperature.max())}
    for tag, p in (("before", raw), ("after", scaled)):
        probs, y = _probs(p, classes), _labels(p, classes)
        ece, mce = calibration_errors(probs, y, n_bins)
        names = [classes[i] for i in probs.argmax(1)]
        out.update({f"ECE {tag}": ece, f"MCE {tag}": mce, f"NLL {tag}": nll(probs, y),
                    f"UA {tag}": metrics.unweighted_accuracy(p.truth.tolist(), names, classes),
                    f"WA {tag}": metrics.weighted_accuracy(p.truth.tolist(), names, classes)})
    return out


# -- listening -----------------------------------------------------------------------
def fold_record(result_set: ResultSet, fold: int):
    """The record of ``fold`` in the set (its first seed)."""
    runs = sorted((r for r in result_set.records if r["config"]["fold"] == fold), key=lambda r: r["config"]["seed"])
    if not runs:
        raise DataError(None, f"{result_set.label} has no run of fold {fold}")
    return runs[0]


def listen(record, path: str, bundles: str | Path, hop: float = 0.5) -> dict:
    """One test utterance through the model of the fold that tested it (exported once into
    ``bundles``, :func:`serlib.bundle.export`): ``{"wave", "sample_rate", "windows"}`` (the
    attention entry :func:`serlib.viz.attention_over_audio` draws; ``windows`` empty
    without attention), ``"timeline"`` (per-window posteriors, :meth:`Bundle.predict`)
    and ``"note"`` (what is missing and why). A model without weights (the functionals
    baseline) gives the audio only."""
    out = {"timeline": pd.DataFrame(), "windows": [], "note": ""}
    if record.get("weights"):
        target = Path(bundles) / f"{record['fingerprint'][:10]}-fold{record['config']['fold']:02d}"
        if not (target / "card.json").is_file():
            export(record["path"], target)
        bundle = load_model(target)
        pred = bundle.predict([path], hop=hop, attention=True)
        out["timeline"] = pred.windows
        if str(path) in pred.attention:
            out.update(pred.attention[str(path)])
            return out
        out["note"] = f"{record['config']['experiment']} has no attention weights; per-window posteriors shown"
    else:
        out["note"] = f"{record['config']['experiment']} keeps no model weights; audio and spectrogram only"
    sr = audio.info(path).samplerate
    out.update({"wave": audio.load(path), "sample_rate": sr})
    return out


def set_label(record) -> str:
    """A result set's name in the browser: experiment/name, the corpus and, for a transfer,
    the direction (``emodb → ravdess``), the protocol and the fingerprint."""
    corpus, tested = record["corpus_label"], record.get("test_corpus") or record["corpus_label"]
    where = corpus if tested == corpus else f"{corpus} → {tested}"
    return (f"{record['config']['experiment']}/{record_name(record)} · {where} · {record['config']['protocol']} "
            f"[{record['fingerprint'][:FINGERPRINT_CHARS]}]")


def result_sets(records: Sequence) -> dict[str, ResultSet]:
    """The records as result sets (one experiment, name, corpus, protocol, fingerprint and
    code version each), named by :func:`set_label` (+ the code version when a set has
    records of several)."""
    groups: dict[tuple, list] = {}
    for r in records:
        groups.setdefault((set_label(r), record_code_version(r)), []).append(r)
    several = {label for label, _ in groups if sum(g[0] == label for g in groups) > 1}
    out = {}
    for (label, version), runs in sorted(groups.items()):
        s = load_set(records=runs, fingerprint=runs[0]["fingerprint"], name=record_name(runs[0]), code_version=version)
        out[f"{label} code {version}" if label in several else label] = s
    return out
