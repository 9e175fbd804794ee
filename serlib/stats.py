"""Which differences are real: paired comparisons of result sets on identical folds.

A *result set* is the records of one experiment/name/corpus/protocol/fingerprint (all
its folds × seeds, :func:`load_set`). Two sets are compared only when every fold tests
exactly the same utterances (:func:`compare` refuses otherwise).

* Across folds: per fold, the mean over seeds of each model's UA (and WA); the paired
  differences d_k; an exact sign-flip permutation test of mean d = 0 (all 2^K sign
  patterns for K ≤ 16 folds, else 20,000 random ones; two-sided, counting ties), the
  Wilcoxon signed-rank test (scipy) as a second opinion, and the folds won.
* Pooled (all folds' predictions together): a speaker-cluster bootstrap — whole test
  speakers are resampled with replacement, because one speaker's utterances are not
  independent — gives 95 % percentile intervals of each model's pooled UA/WA and of the
  paired difference; McNemar's exact test on the per-utterance correctness as a second
  opinion.
* Many sets: :func:`pairwise` gives the matrix of permutation p-values with Holm's
  correction.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import metrics
from .errors import SplitError
from .records import FINGERPRINT_CHARS, load_records, read_predictions

N_BOOT = 2000
EXACT_MAX_FOLDS = 16


@dataclass
class ResultSet:
    """The records of one result set and their per-utterance predictions."""

    label: str
    records: list[dict]
    predictions: pd.DataFrame  # fold, seed, utt_id, speaker, truth, prediction
    classes: list[str]

    @property
    def folds(self) -> list[int]:
        return sorted({r["config"]["fold"] for r in self.records})

    def per_fold(self) -> pd.DataFrame:
        """UA and WA per fold, averaged over seeds first."""
        rows = [{"fold": r["config"]["fold"], "seed": r["config"]["seed"], "ua": r["metrics"]["ua"],
                 "wa": r["metrics"]["wa"]} for r in self.records]
        return pd.DataFrame(rows).groupby("fold")[["ua", "wa"]].mean()

    def test_ids(self) -> dict[int, frozenset]:
        return {f: frozenset(g.utt_id) for f, g in self.predictions.groupby("fold")}

    def restrict(self, folds) -> ResultSet:
        """The same set on ``folds`` only."""
        folds = set(folds)
        return ResultSet(self.label, [r for r in self.records if r["config"]["fold"] in folds],
                         self.predictions[self.predictions.fold.isin(folds)], self.classes)


def load_set(path: str | Path | None = None, experiment: str | None = None, name: str | None = None,
             corpus: str | None = None, protocol: str | None = None, fingerprint: str | None = None,
             records: list[dict] | None = None) -> ResultSet:
    """The records matching the filters (exactly one fingerprint must remain)."""
    records = records if records is not None else load_records(path)
    chosen = [r for r in records
              if (experiment is None or r["config"]["experiment"] == experiment)
              and (name is None or r["config"]["name"] == name)
              and (corpus is None or r["corpus_label"] == corpus)
              and (protocol is None or r["config"]["protocol"] == protocol)
              and (fingerprint is None or r["fingerprint"].startswith(fingerprint))]
    fps = sorted({r["fingerprint"][:FINGERPRINT_CHARS] for r in chosen})
    wanted = f"experiment={experiment} name={name} corpus={corpus} protocol={protocol} fingerprint={fingerprint}"
    if not chosen:
        raise SplitError(f"no records match {wanted}")
    if len(fps) > 1:
        raise SplitError(f"{wanted} matches {len(fps)} result sets with different settings ({fps}); "
                         "give fingerprint=… to pick one")
    frames = []
    for r in chosen:
        p = read_predictions(r)
        frames.append(p[["utt_id", "speaker", "truth", "prediction"]].assign(fold=r["config"]["fold"],
                                                                             seed=r["config"]["seed"]))
    c = chosen[0]["config"]
    label = f"{c['experiment']}/{c['name']} [{fps[0]}]"
    return ResultSet(label, chosen, pd.concat(frames, ignore_index=True), list(chosen[0]["classes"]))


def check_same_splits(a: ResultSet, b: ResultSet) -> None:
    """Raise :class:`SplitError` unless both sets test the same utterances in every fold."""
    ta, tb = a.test_ids(), b.test_ids()
    if set(ta) != set(tb):
        raise SplitError(f"{a.label} and {b.label} cover different folds ({sorted(ta)} vs {sorted(tb)}): "
                         "compare results on identical folds only")
    for fold in ta:
        if ta[fold] != tb[fold]:
            raise SplitError(f"fold {fold}: {a.label} and {b.label} test different utterances "
                             f"({len(ta[fold] ^ tb[fold])} differ): never compare different splits")
    if a.classes != b.classes:
        raise SplitError(f"{a.label} and {b.label} use different classes ({a.classes} vs {b.classes})")


def sign_flip_test(d: np.ndarray, n_random: int = 20000, seed: int = 0) -> float:
    """Two-sided p-value of mean(d) = 0 under random sign flips of the paired differences.

    >>> round(sign_flip_test(np.ones(10)), 5)   # wins every fold of 10: 2 / 2**10
    0.00195
    >>> sign_flip_test(np.zeros(5))
    1.0
    """
    d = np.asarray(d, dtype=float)
    observed = abs(d.sum())
    if len(d) <= EXACT_MAX_FOLDS:
        signs = np.array(list(itertools.product((1, -1), repeat=len(d))))
    else:
        signs = np.random.default_rng(seed).choice((1, -1), size=(n_random, len(d)))
    stats = np.abs(signs @ d)
    return float(np.mean(stats >= observed - 1e-12))


def _speaker_counts(p: pd.DataFrame, classes: list[str], speakers: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per speaker and class: correct and total test predictions ``(S, C)``."""
    correct = np.zeros((len(speakers), len(classes)))
    total = np.zeros_like(correct)
    s_index = {s: i for i, s in enumerate(speakers)}
    c_index = {c: j for j, c in enumerate(classes)}
    for spk, truth, pred in zip(p.speaker, p.truth, p.prediction):
        i, j = s_index[spk], c_index[truth]
        total[i, j] += 1
        correct[i, j] += truth == pred
    return correct, total


def _pooled(correct: np.ndarray, total: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """UA and WA from (…, C) count arrays (classes without test items are left out of UA)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = correct / total
    ua = np.nanmean(np.where(total > 0, recall, np.nan), axis=-1)
    wa = correct.sum(-1) / np.maximum(total.sum(-1), 1)
    return ua, wa


def _bootstrap_weights(n_speakers: int, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, S)`` multiplicities of resampled speakers."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_speakers, size=(n_boot, n_speakers))
    return np.stack([np.bincount(row, minlength=n_speakers) for row in draws]).astype(float)


def ci(result_set: ResultSet, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95) -> dict:
    """Pooled UA/WA of a result set with speaker-cluster bootstrap intervals, and the
    mean ± std over folds (seeds averaged first)."""
    p = result_set.predictions
    speakers = sorted(p.speaker.astype(str).unique())
    correct, total = _speaker_counts(p.assign(speaker=p.speaker.astype(str)), result_set.classes, speakers)
    ua, wa = _pooled(correct.sum(0), total.sum(0))
    w = _bootstrap_weights(len(speakers), n_boot, seed)
    ua_b, wa_b = _pooled(w @ correct, w @ total)
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    folds = result_set.per_fold()
    return {"set": result_set.label, "ua_pooled": float(ua), "ua_low": float(np.nanpercentile(ua_b, q[0])),
            "ua_high": float(np.nanpercentile(ua_b, q[1])), "wa_pooled": float(wa),
            "wa_low": float(np.nanpercentile(wa_b, q[0])), "wa_high": float(np.nanpercentile(wa_b, q[1])),
            "ua_mean": float(folds.ua.mean()), "ua_std": float(folds.ua.std(ddof=0)),
            "wa_mean": float(folds.wa.mean()), "wa_std": float(folds.wa.std(ddof=0)), "n_folds": len(folds),
            "n_speakers": len(speakers)}


def compare(a: ResultSet, b: ResultSet, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95,
            folds: list[int] | None = None) -> dict:
    """Paired comparison of ``a`` against ``b`` on identical folds (differences are a − b).

    Returns fold-level results (``ua_diff_mean``, ``wa_diff_mean``, ``p_perm_ua``,
    ``p_perm_wa``, ``p_wilcoxon_ua``, ``folds_won``/``folds_lost``/``folds_tied``), pooled
    ones (``ua_diff_pooled`` with its speaker-bootstrap interval ``ua_diff_low/high``, the
    same for WA), McNemar's exact p-value and the discordant counts, and each set's
    :func:`ci`. ``folds`` restricts both sets to those folds first. Raises
    :class:`SplitError` when the splits differ.
    """
    from scipy.stats import binomtest, wilcoxon

    if folds is not None:
        a, b = a.restrict(folds), b.restrict(folds)
    check_same_splits(a, b)
    fa, fb = a.per_fold(), b.per_fold().loc[a.per_fold().index]
    d_ua, d_wa = (fa.ua - fb.ua).to_numpy(), (fa.wa - fb.wa).to_numpy()
    if np.allclose(d_ua, 0):
        p_wilcoxon = 1.0
    else:
        p_wilcoxon = float(wilcoxon(d_ua, zero_method="zsplit").pvalue)
    # pooled, paired by (fold, seed, utterance) over the seeds both sets have
    key = ["fold", "seed", "utt_id"]
    both = a.predictions.merge(b.predictions, on=key, suffixes=("_a", "_b"))
    if both.empty:
        raise SplitError(f"{a.label} and {b.label} share no (fold, seed) runs to pair")
    speakers = sorted(both.speaker_a.astype(str).unique())
    counts = {}
    for side in ("a", "b"):
        frame = pd.DataFrame({"speaker": both.speaker_a.astype(str), "truth": both[f"truth_{side}"],
                              "prediction": both[f"prediction_{side}"]})
        counts[side] = _speaker_counts(frame, a.classes, speakers)
    w = _bootstrap_weights(len(speakers), n_boot, seed)
    ua_a, wa_a = _pooled(w @ counts["a"][0], w @ counts["a"][1])
    ua_b, wa_b = _pooled(w @ counts["b"][0], w @ counts["b"][1])
    ua_pa, wa_pa = _pooled(counts["a"][0].sum(0), counts["a"][1].sum(0))
    ua_pb, wa_pb = _pooled(counts["b"][0].sum(0), counts["b"][1].sum(0))
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    right_a = both.prediction_a == both.truth_a
    right_b = both.prediction_b == both.truth_b
    only_a, only_b = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
    p_mcnemar = 1.0 if only_a + only_b == 0 else float(binomtest(only_a, only_a + only_b, 0.5).pvalue)
    return {
        "a": a.label, "b": b.label, "n_folds": len(d_ua),
        "ua_diff_mean": float(d_ua.mean()), "wa_diff_mean": float(d_wa.mean()),
        "p_perm_ua": sign_flip_test(d_ua, seed=seed), "p_perm_wa": sign_flip_test(d_wa, seed=seed),
        "p_wilcoxon_ua": p_wilcoxon,
        "folds_won": int((d_ua > 1e-12).sum()), "folds_lost": int((d_ua < -1e-12).sum()),
        "folds_tied": int((np.abs(d_ua) <= 1e-12).sum()),
        "ua_diff_pooled": float(ua_pa - ua_pb), "ua_diff_low": float(np.nanpercentile(ua_a - ua_b, q[0])),
        "ua_diff_high": float(np.nanpercentile(ua_a - ua_b, q[1])),
        "wa_diff_pooled": float(wa_pa - wa_pb), "wa_diff_low": float(np.nanpercentile(wa_a - wa_b, q[0])),
        "wa_diff_high": float(np.nanpercentile(wa_a - wa_b, q[1])),
        "mcnemar_p": p_mcnemar, "only_a_right": only_a, "only_b_right": only_b,
        "ci_a": ci(a, n_boot, seed, level), "ci_b": ci(b, n_boot, seed, level),
    }


def holm(p_values: list[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (same order as given).

    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p)
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    return [round(float(x), 12) for x in adjusted]


def pairwise(sets: list[ResultSet], metric: str = "ua") -> pd.DataFrame:
    """Holm-corrected sign-flip p-values of every pair of sets (a symmetric matrix with
    ones on the diagonal); the sets must share their splits."""
    labels = [s.label for s in sets]
    pairs = list(itertools.combinations(range(len(sets)), 2))
    raw = []
    for i, j in pairs:
        check_same_splits(sets[i], sets[j])
        fi, fj = sets[i].per_fold(), sets[j].per_fold().loc[sets[i].per_fold().index]
        raw.append(sign_flip_test((fi[metric] - fj[metric]).to_numpy()))
    matrix = pd.DataFrame(np.ones((len(sets), len(sets))), index=labels, columns=labels)
    for (i, j), p in zip(pairs, holm(raw) if raw else []):
        matrix.iloc[i, j] = matrix.iloc[j, i] = p
    return matrix


def baseline_columns(mean: pd.DataFrame, records: list[dict], n_boot: int = N_BOOT) -> pd.DataFrame:
    """``mean`` (the "mean" table of :func:`serlib.results.summarise`) with the 95 % interval of the
    pooled UA (``ua_pooled_low/high``) and, for every row that has a ``functionals``
    result set on the same folds and corpus (a deep set run on some folds only is compared
    on those), the best such baseline (highest mean UA on those folds),
    ``ua_vs_baseline`` (mean paired UA difference over folds; positive = better than the
    baseline) and its sign-flip ``p_vs_baseline``."""
    out = mean.copy()
    sets = {}
    for i, row in out.iterrows():
        sets[i] = load_set(records=records, experiment=row.experiment, name=row["name"], corpus=row.corpus,
                           protocol=row.protocol, fingerprint=row.fingerprint)
        interval = ci(sets[i], n_boot)
        out.loc[i, "ua_pooled_low"], out.loc[i, "ua_pooled_high"] = interval["ua_low"], interval["ua_high"]
    out["baseline"] = pd.Series([""] * len(out), index=out.index, dtype=object)
    out["ua_vs_baseline"], out["p_vs_baseline"] = np.nan, np.nan
    for i, row in out.iterrows():
        ids = sets[i].test_ids()
        candidates = [j for j, other in out.iterrows() if other.experiment == "functionals"
                      and other.corpus == row.corpus and other.protocol == row.protocol
                      and all(sets[j].test_ids().get(f) == t for f, t in ids.items())]
        if not candidates:
            continue
        # the best baseline on this row's folds
        best = max(candidates, key=lambda j: sets[j].restrict(ids).per_fold().ua.mean())
        if best == i:
            out.loc[i, "baseline"] = "(this is the best baseline)"
            continue
        fi, fb = sets[i].per_fold(), sets[best].per_fold().loc[sets[i].per_fold().index]
        d = (fi.ua - fb.ua).to_numpy()
        out.loc[i, "baseline"] = sets[best].label + ("" if len(ids) == len(sets[best].test_ids())
                                                     else f" on folds {sorted(ids)}")
        out.loc[i, "ua_vs_baseline"], out.loc[i, "p_vs_baseline"] = float(d.mean()), sign_flip_test(d)
    return out


def ablation_table(sets: dict[str, ResultSet], reference: str, n_boot: int = N_BOOT) -> pd.DataFrame:
    """One row per variant of an ablation (``{label: result set}``, all on the same
    folds): the selection score (mean validation UA of the selected epochs — the only
    number a choice of settings may use), test WA and UA (mean ± std over folds), pooled
    UA with its speaker-bootstrap 95 % interval, and the paired difference in UA from
    ``reference`` with its sign-flip p-value and the folds won. ``speaker_norm`` flags
    variants that use the test speakers' unlabelled audio."""
    rows = []
    for label, s in sets.items():
        c = ci(s, n_boot)
        row = {"variant": label, "val_ua": float(np.mean([r["best_selection_ua"] for r in s.records])),
               "wa_mean": c["wa_mean"], "wa_std": c["wa_std"], "ua_mean": c["ua_mean"], "ua_std": c["ua_std"],
               "ua_pooled": c["ua_pooled"], "ua_low": c["ua_low"], "ua_high": c["ua_high"], "n_folds": c["n_folds"],
               "speaker_norm": any(r.get("uses_test_speaker_audio") for r in s.records),
               "seconds_per_fold": float(np.mean([r["timing"]["total_seconds"] for r in s.records]))}
        if label != reference:
            d = compare(s, sets[reference], n_boot)
            row.update({"ua_diff": d["ua_diff_mean"], "p_ua": d["p_perm_ua"], "wa_diff": d["wa_diff_mean"],
                        "p_wa": d["p_perm_wa"], "folds_won": f"{d['folds_won']}/{d['n_folds']}"})
        rows.append(row)
    return pd.DataFrame(rows).set_index("variant")


def seed_ensemble(result_set: ResultSet) -> ResultSet:
    """Test-time ensembling over seeds: per fold, the mean of the seed models' class
    probabilities (from their predictions files) and its argmax. The result has one run
    per fold, filed under the fold's first seed so that :func:`compare` pairs it with a
    single-seed set on the same folds."""
    classes = result_set.classes
    columns = [f"p_{c}" for c in classes]
    frames = []
    for r in result_set.records:
        p = read_predictions(r)
        frames.append(p.assign(fold=r["config"]["fold"]))
    table = pd.concat(frames).groupby(["fold", "utt_id"], sort=True).agg(
        {"speaker": "first", "truth": "first", **{c: "mean" for c in columns}}).reset_index()
    table["prediction"] = [classes[i] for i in table[columns].to_numpy().argmax(1)]
    records = []
    for fold, g in table.groupby("fold"):
        m = metrics.scores(g.truth.tolist(), g.prediction.tolist(), classes)
        seeds = sorted(r["config"]["seed"] for r in result_set.records if r["config"]["fold"] == fold)
        records.append({"config": {"fold": int(fold), "seed": seeds[0], "seeds": seeds}, "metrics": {"ua": m["ua"], "wa": m["wa"]},
                        "best_selection_ua": float("nan"), "timing": {"total_seconds": float("nan")}})
    first_seed = {r["config"]["fold"]: r["config"]["seed"] for r in records}
    predictions = table[["utt_id", "speaker", "truth", "prediction", *columns]].assign(
        fold=table.fold, seed=table.fold.map(first_seed))
    return ResultSet(f"{result_set.label} (seed ensemble)", records, predictions, classes)
