"""Tables and paired statistics of dimensional records (``task=dimensional`` or
``multitask``): everything the categorical tables have, on CCC, and never in the same
table as categorical rows.

* Per result set (the records of one setting: experiment, name, corpus, protocol,
  fingerprint — as :func:`serlib.results.summarise`), per dimension and for their mean:
  the mean over folds of the per-fold means over seeds, and the population std of those
  fold means (:func:`serlib.metrics.fold_stats`); the validation mean CCC of the selected
  epochs (``val_ccc``).
* The pooled CCC (every fold's test predictions together; seeds averaged per utterance)
  with a speaker-cluster bootstrap interval: speakers are resampled with replacement and
  CCC is *recomputed* on the resampled utterances (CCC is not a mean of per-utterance
  scores, so resampling per-utterance scores would be wrong).
* A baseline per comparability group (:func:`serlib.records.comparability_key`, whose
  ``task`` keeps dimensional and categorical rows apart) and dimensions, chosen on validation CCC among the
  experiments that declare ``is_baseline`` (never on the test split); every other set on
  the same test splits gets its per-fold CCC difference, a paired sign-flip permutation
  test across folds (:func:`serlib.stats.sign_flip_test`), and Holm's adjustment over the
  sets compared with that baseline (:func:`serlib.stats.holm`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import experiments
from .errors import ConfigError
from .metrics import ccc, fold_stats
from .records import (
    FINGERPRINT_CHARS,
    comparability_key,
    describe_key,
    key_id,
    read_predictions,
    record_code_version,
    record_name,
    record_task,
)
from .stats import holm, sign_flip_test

N_BOOT = 1000
GROUP = ["experiment", "name", "corpus", "protocol", "task", "dims", "fingerprint", "code_version", "comparable", "key"]
# sets compared with one baseline: one comparability key (serlib.records.comparability_key:
# task, data, classes, protocol, folds, code version…) and the same dimensions
COMPARABLE = ["comparable", "dims"]


def dimensional_records(runs: list[dict]) -> list[dict]:
    """The records of the dimensional and multitask tasks."""
    return [r for r in runs if record_task(r) != "categorical"]


def collect(runs: list[dict]) -> pd.DataFrame:
    """One row per dimensional record: its key, fold, seed, CCC per dimension and their
    mean, Pearson r and RMSE means, the validation mean CCC of the selected epoch."""
    rows = []
    for r in dimensional_records(runs):
        c, m = r["config"], r["metrics"]
        rows.append({
            "experiment": c["experiment"], "name": record_name(r), "corpus": r["corpus_label"], "protocol": c["protocol"],
            "task": record_task(r), "dims": ",".join(m["dims"]), "fingerprint": r["fingerprint"][:FINGERPRINT_CHARS],
            "code_version": record_code_version(r), "fold": c["fold"], "seed": c["seed"], "test_set": r.get("test_set", ""),
            **{f"ccc_{d}": m[f"ccc_{d}"] for d in m["dims"]}, "ccc": m["ccc_mean"], "pearson": m["pearson_mean"],
            "rmse": m["rmse_mean"], "val_ccc": r.get("best_selection_ua"), "n_test": m["n"], "leaky": r["leaky"],
            "path": r["path"], "comparable": key_id(comparability_key(r)), "key": describe_key(comparability_key(r)),
        })
    return pd.DataFrame(rows)


def weighted_ccc(truth: np.ndarray, prediction: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """CCC of ``(N,)`` arrays under each row of ``weights`` ``(B, N)`` (multiplicities of a
    resample): the CCC of the resampled data, for every resample at once.

    >>> x, y = np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0])
    >>> from serlib.metrics import ccc
    >>> bool(np.isclose(weighted_ccc(x, y, np.array([[2.0, 1.0, 1.0]]))[0], ccc([1, 1, 2, 3], [1, 1, 2, 4])))
    True
    """
    w = weights / weights.sum(axis=1, keepdims=True)
    mx, my = w @ truth, w @ prediction
    dx, dy = truth[None, :] - mx[:, None], prediction[None, :] - my[:, None]
    sxy, sxx, syy = (w * dx * dy).sum(1), (w * dx * dx).sum(1), (w * dy * dy).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 2 * sxy / (sxx + syy + (mx - my) ** 2)


def pooled(records: list[dict], n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95) -> dict:
    """Pooled CCC per dimension and its mean over dimensions, with speaker-cluster
    bootstrap intervals of that mean (module docstring)."""
    dims = records[0]["metrics"]["dims"]
    frames = [read_predictions(r) for r in records]
    p = pd.concat(frames).groupby("utt_id").agg({"speaker": "first", **{f"{s}_{d}": "mean" for d in dims
                                                                          for s in ("true", "pred")}})
    speakers = sorted(p.speaker.unique())
    index = p.speaker.map({s: i for i, s in enumerate(speakers)}).to_numpy()
    draws = np.random.default_rng(seed).integers(0, len(speakers), size=(n_boot, len(speakers)))
    multiplicity = np.stack([np.bincount(row, minlength=len(speakers)) for row in draws]).astype(float)
    weights = np.vstack([np.ones(len(p)), multiplicity[:, index]])  # row 0: the data as they are
    per_dim = np.stack([weighted_ccc(p[f"true_{d}"].to_numpy(float), p[f"pred_{d}"].to_numpy(float), weights)
                        for d in dims])
    mean = per_dim.mean(axis=0)
    q = 100 * (1 - level) / 2
    out = {f"ccc_{d}_pooled": float(per_dim[j, 0]) for j, d in enumerate(dims)}
    out.update({"ccc_pooled": float(mean[0]), "ccc_pooled_low": float(np.nanpercentile(mean[1:], q)),
                "ccc_pooled_high": float(np.nanpercentile(mean[1:], 100 - q)), "n_speakers": len(speakers)})
    return out


def _per_fold(g: pd.DataFrame, column: str) -> pd.Series:
    return g.groupby("fold")[column].mean()


def table(runs: list[dict], n_boot: int = N_BOOT, baseline: str | None = None) -> pd.DataFrame:
    """One row per dimensional result set: CCC per dimension (mean and fold std), the
    mean CCC, validation CCC, pooled CCC with its speaker-bootstrap interval, and the
    comparison with the baseline chosen on validation (``baseline``: an experiment name
    to use instead of the ones that declare ``is_baseline``)."""
    df = collect(runs)
    if df.empty:
        return df
    by_path = {r["path"]: r for r in runs}
    rows = []
    for key, g in df.groupby(GROUP, sort=True):
        row = dict(zip(GROUP, key))
        dims = row["dims"].split(",")
        for d in (*dims, None):
            column = f"ccc_{d}" if d else "ccc"
            mean, std, seed_std = fold_stats(g.fold, g[column])
            row.update({f"{column}_mean": mean, f"{column}_std": std})
        row.update({"ccc_seed_std": fold_stats(g.fold, g["ccc"])[2], "val_ccc": float(_per_fold(g, "val_ccc").mean()),
                    "n_folds": g.fold.nunique(), "n_seeds": g.seed.nunique(), "leaky": bool(g.leaky.any()),
                    "test_sets": ",".join(sorted(set(g.test_set) - {""}))})
        row.update(pooled([by_path[p] for p in g.path], n_boot))
        row["_records"] = g
        rows.append(row)
    out = pd.DataFrame(rows)
    return _versus_baseline(out, by_path, baseline)


def _test_ids(g: pd.DataFrame, by_path: dict) -> dict[int, frozenset]:
    return {int(f): frozenset(read_predictions(by_path[p]).utt_id) for f, p in zip(g.fold, g.path)}


def _versus_baseline(out: pd.DataFrame, by_path: dict, baseline: str | None) -> pd.DataFrame:
    names = baseline and [baseline]
    if baseline is not None and baseline not in set(out.experiment):
        raise ConfigError(f"baseline {baseline!r} has no dimensional records here; experiments: {sorted(set(out.experiment))}")
    is_baseline = out.experiment.map(lambda e: e in names if names else
                                     bool(getattr(experiments.EXPERIMENTS.get(e), "is_baseline", False)))
    for column in ("baseline", "baseline_chosen_on", "ccc_vs_baseline", "p_raw_vs_baseline", "p_holm_vs_baseline"):
        out[column] = np.nan if column.startswith(("ccc", "p_")) else ""
    for _, group in out.groupby(COMPARABLE, sort=False):
        candidates = group[is_baseline[group.index] & group.val_ccc.notna()]
        if candidates.empty:
            continue
        chosen = candidates.val_ccc.idxmax()  # on validation, never the test split
        base = out.loc[chosen]
        base_fold = _per_fold(base["_records"], "ccc")
        base_ids = _test_ids(base["_records"], by_path)
        tested = []
        for i in group.index.drop(chosen):
            g = out.at[i, "_records"]
            ids = _test_ids(g, by_path)
            folds = sorted(set(ids) & set(base_ids))
            if not folds or any(ids[f] != base_ids[f] for f in folds):
                continue  # other splits: never compared
            d = (_per_fold(g, "ccc").loc[folds] - base_fold.loc[folds]).to_numpy()
            out.loc[i, ["ccc_vs_baseline", "p_raw_vs_baseline"]] = [float(d.mean()), sign_flip_test(d)]
            tested.append(i)
        out.loc[group.index, "baseline"] = f"{base.experiment}/{base['name']}"
        out.loc[group.index, "baseline_chosen_on"] = "validation CCC"
        if tested:
            out.loc[tested, "p_holm_vs_baseline"] = holm(out.loc[tested, "p_raw_vs_baseline"].tolist())
    return out.drop(columns="_records")


COLUMNS = ["experiment", "name", "corpus", "protocol", "task", "dims", "fingerprint", "code_version", "leaky", "n_folds",
           "n_seeds", "ccc_arousal_mean", "ccc_arousal_std", "ccc_valence_mean", "ccc_valence_std", "ccc_dominance_mean",
           "ccc_dominance_std", "ccc_mean", "ccc_std", "val_ccc", "ccc_pooled", "ccc_pooled_low", "ccc_pooled_high",
           "baseline", "baseline_chosen_on", "ccc_vs_baseline", "p_raw_vs_baseline", "p_holm_vs_baseline"]


def shown(t: pd.DataFrame) -> pd.DataFrame:
    """The printed columns of :func:`table` (those present)."""
    return t[[c for c in COLUMNS if c in t.columns]]


def predictions(records: list[dict]) -> pd.DataFrame:
    """Every test prediction of dimensional records, one row per (record, utterance):
    experiment, fold, seed, utt_id, speaker, the category (``truth``), ``true_<dim>`` and
    ``pred_<dim>`` in the corpus's scale."""
    frames = []
    for r in dimensional_records(records):
        p = read_predictions(r).copy()
        p.insert(0, "experiment", r["config"]["experiment"])
        p.insert(1, "fold", r["config"]["fold"])
        p.insert(2, "seed", r["config"]["seed"])
        frames.append(p)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def per_speaker(records: list[dict]) -> pd.DataFrame:
    """CCC per experiment, speaker and dimension (each speaker's test utterances; seeds
    averaged per utterance first): long format ``experiment, speaker, dimension, ccc, n``."""
    p = predictions(records)
    if p.empty:
        return pd.DataFrame(columns=["experiment", "speaker", "dimension", "ccc", "n"])
    dims = [c[5:] for c in p.columns if c.startswith("true_")]
    values = [f"{s}_{d}" for d in dims for s in ("true", "pred")]
    p = p.groupby(["experiment", "speaker", "utt_id"], as_index=False)[values].mean()
    rows = [{"experiment": e, "speaker": s, "dimension": d, "ccc": ccc(g[f"true_{d}"], g[f"pred_{d}"]), "n": len(g)}
            for (e, s), g in p.groupby(["experiment", "speaker"]) for d in dims]
    return pd.DataFrame(rows)
