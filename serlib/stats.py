"""Which differences are real: paired comparisons of result sets on identical folds.

A *result set* is the records of one experiment/name/corpus/protocol/fingerprint (all
its folds × seeds, :func:`load_set`). Two sets are compared only when every fold tests
exactly the same utterances (:func:`compare` refuses otherwise).

* Across folds: per fold, the mean over seeds of each model's UA (and WA); the paired
  differences d_k; an exact sign-flip permutation test of mean d = 0 (all 2^K sign
  patterns for K ≤ 16 folds, else 20,000 random ones; two-sided, counting ties), the
  Wilcoxon signed-rank test (scipy) as a second opinion, and the folds won.
* Pooled (all folds' predictions together): a t-interval over speakers — the
  leave-one-speaker-out jackknife's standard error with S − 1 degrees of freedom, because
  one speaker's utterances are not independent (:func:`speaker_t_interval`) — gives 95 %
  intervals of each model's pooled UA/WA and of the paired difference; McNemar's exact
  test on the per-utterance correctness as a second opinion.
* Many sets: :func:`pairwise` gives the matrix of permutation p-values with Holm's
  correction; :func:`versus`, :func:`baseline_columns` and :func:`ablation_table` Holm-correct
  the p-values of the rows of one table (columns named ``…holm…``).
* Like with like: two sets are compared only when their comparability keys agree
  (:func:`serlib.records.comparability_key`: corpus and data, classes and label map,
  protocol and folds, leakiness, selection, test-speaker audio, code version, task;
  :func:`check_comparable` names what differs); a leaky, test-selected or mixed set is
  flagged (``flags``) in every comparison that involves it; a comparator is chosen on validation UA
  (:func:`choose_baseline`), never on test; records of two code versions are not pooled
  unless asked (:func:`load_set`). :func:`unseen_folds` / :func:`gain_on_unseen` report a
  chosen setting's gain on the folds whose test speakers took no part in the choice, and
  :func:`nested_choice` chooses inside each outer fold on its own validation speaker.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import metrics
from .errors import SplitError
from .experiments import is_baseline
from .records import (
    FINGERPRINT_CHARS,
    key_diff,
    key_flags,
    key_id,
    load_records,
    read_predictions,
    record_code_version,
    record_name,
    set_key,
    uses_test_speaker_audio,
)

EXACT_MAX_FOLDS = 16


@dataclass
class ResultSet:
    """The records of one result set and their per-utterance predictions."""

    label: str
    records: list[dict]
    predictions: pd.DataFrame  # fold, seed, utt_id, speaker, truth, prediction (, p_<class>…)
    classes: list[str]

    @property
    def folds(self) -> list[int]:
        return sorted({r["config"]["fold"] for r in self.records})

    @property
    def uses_test_speaker_audio(self) -> bool:
        """Whether any run standardised with its test speakers' audio (``+speaker-norm``)."""
        return any(uses_test_speaker_audio(r) for r in self.records)

    @property
    def key(self) -> dict:
        """The set's comparability key (:func:`serlib.records.set_key`): two sets are
        compared only when their keys agree."""
        return set_key(self.records)

    @property
    def flags(self) -> list[str]:
        """What every comparison involving this set must say about it (leaky, epoch
        selected on test, test speakers' audio, mixed): :func:`serlib.records.key_flags`."""
        return key_flags(self.key)

    @property
    def code_versions(self) -> list[str]:
        return sorted({record_code_version(r) for r in self.records})

    def per_fold(self) -> pd.DataFrame:
        """UA, WA and validation UA per fold, averaged over seeds first."""
        rows = [{"fold": r["config"]["fold"], "seed": r["config"]["seed"], "ua": r["metrics"]["ua"],
                 "wa": r["metrics"]["wa"], "val_ua": r.get("best_selection_ua", np.nan)} for r in self.records]
        return pd.DataFrame(rows).astype({"val_ua": float}).groupby("fold")[["ua", "wa", "val_ua"]].mean()

    def fold_stats(self, metric: str) -> tuple[float, float, float]:
        """``(mean, fold std, seed std)`` of ``metric`` (``"ua"``, ``"wa"``) over the
        set's runs: :func:`serlib.metrics.fold_stats`, the tables' definition."""
        return metrics.fold_stats([r["config"]["fold"] for r in self.records],
                                  [r["metrics"][metric] for r in self.records])

    def seed_std(self) -> dict[str, float]:
        """The std over seeds within a fold, averaged over the folds that have several
        seeds (NaN with one seed): training noise, apart from the spread over folds."""
        return {m: self.fold_stats(m)[2] for m in ("ua", "wa")}

    def test_ids(self) -> dict[int, frozenset]:
        return {f: frozenset(g.utt_id) for f, g in self.predictions.groupby("fold")}

    def test_speakers(self) -> dict[int, set[str]]:
        return {f: set(g.speaker.astype(str)) for f, g in self.predictions.groupby("fold")}

    def restrict(self, folds) -> ResultSet:
        """The same set on ``folds`` only."""
        folds = set(folds)
        return ResultSet(self.label, [r for r in self.records if r["config"]["fold"] in folds],
                         self.predictions[self.predictions.fold.isin(folds)], self.classes)


def load_set(path: str | Path | None = None, experiment: str | None = None, name: str | None = None,
             corpus: str | None = None, protocol: str | None = None, fingerprint: str | None = None,
             records: list[dict] | None = None, code_version: str | None = None,
             mixed_versions: bool = False, leaky: bool | None = None) -> ResultSet:
    """The records matching the filters: exactly one result set (one experiment, name,
    corpus, protocol and fingerprint) must remain.

    ``name`` matches the config's name or the name the set is shown under (with
    ``+speaker-norm``); the name is not in the fingerprint, so a fingerprint shared by two
    names is two sets, refused until ``name`` picks one. ``leaky`` keeps only the folds
    flagged so (or not): a ``folds_file`` set with some leaky folds is two rows of a table.
    Records of different code versions (:func:`serlib.records.code_version`) are refused
    unless ``code_version`` picks one or ``mixed_versions=True`` (then the label says so)."""
    records = records if records is not None else load_records(path)
    chosen = [r for r in records
              if (experiment is None or r["config"]["experiment"] == experiment)
              and (name is None or name in (r["config"]["name"], record_name(r)))
              and (corpus is None or r["corpus_label"] == corpus)
              and (protocol is None or r["config"]["protocol"] == protocol)
              and (fingerprint is None or r["fingerprint"].startswith(fingerprint))
              and (code_version is None or record_code_version(r) == code_version)
              and (leaky is None or bool(r.get("leaky")) == bool(leaky))]
    wanted = (f"experiment={experiment} name={name} corpus={corpus} protocol={protocol} fingerprint={fingerprint}"
              + (f" code_version={code_version}" if code_version else "") + (f" leaky={leaky}" if leaky is not None else ""))
    if not chosen:
        raise SplitError(f"no records match {wanted}")
    sets = sorted({(r["config"]["experiment"], record_name(r), r["corpus_label"], r["config"]["protocol"],
                    r["fingerprint"][:FINGERPRINT_CHARS]) for r in chosen})
    if len(sets) > 1:
        shown = [f"{e}/{n} on {c} ({p}) [{f}]" for e, n, c, p, f in sets]
        raise SplitError(f"{wanted} matches {len(sets)} result sets ({shown}); give experiment, name, corpus, protocol "
                         "or fingerprint to pick one")
    fps = [sets[0][-1]]
    versions = sorted({record_code_version(r) for r in chosen})
    if len(versions) > 1 and not mixed_versions:
        raise SplitError(f"{wanted} holds records of {len(versions)} code versions ({versions}): give code_version=… "
                         "to pick one, re-run the others, or pass mixed_versions=True to pool them (and say so)")
    frames = []
    for r in chosen:
        p = read_predictions(r)
        keep = ["utt_id", "speaker", "truth", "prediction"] + [c for c in p.columns if c.startswith("p_")]
        frames.append(p[keep].assign(fold=r["config"]["fold"], seed=r["config"]["seed"]))
    label = f"{chosen[0]['config']['experiment']}/{record_name(chosen[0])} [{fps[0]}]"
    if len(versions) > 1:
        label += f" (MIXES code {' + '.join(versions)})"
    return ResultSet(label, chosen, pd.concat(frames, ignore_index=True), list(chosen[0]["classes"]))


def check_comparable(a: ResultSet, b: ResultSet, allow=()) -> list[str]:
    """Raise :class:`SplitError` naming the differing fields unless the comparability keys
    of ``a`` and ``b`` (:attr:`ResultSet.key`) agree on every field not in ``allow``;
    returns the allowed fields that differ (the caller's result says so)."""
    refused = key_diff(a.key, b.key, ignore=allow)
    if refused:
        raise SplitError(f"{a.label} and {b.label} are not comparable: they differ in {'; '.join(refused)}. "
                         "Compare like with like (docs/statistics.md), or pass allow=(FIELD, …) and say so")
    return key_diff(a.key, b.key)


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
    >>> sign_flip_test(np.ones(24), n_random=999)  # beyond 16 folds: (count + 1) / (B + 1), never 0
    0.001
    """
    d = np.asarray(d, dtype=float)
    observed = abs(d.sum())
    if len(d) <= EXACT_MAX_FOLDS:  # every sign pattern, the observed one among them
        signs = np.array(list(itertools.product((1, -1), repeat=len(d))))
        return float(np.mean(np.abs(signs @ d) >= observed - 1e-12))
    # Monte Carlo: the observed pattern counts as one of the draws, so p is never 0
    # (Phipson & Smyth 2010, "Permutation p-values should never be zero")
    signs = np.random.default_rng(seed).choice((1, -1), size=(n_random, len(d)))
    count = int(np.sum(np.abs(signs @ d) >= observed - 1e-12))
    return (count + 1) / (n_random + 1)


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


def speaker_t_interval(score, parts: list[np.ndarray], level: float = 0.95) -> tuple[float, float, float]:
    """``(estimate, low, high)`` of a pooled score with a t-interval over speakers.

    ``parts``: per-speaker count arrays ``(S, C)`` (correct and total test predictions
    per class, for one set or two); ``score(*sums)`` maps their sums over speakers (any
    leading axes) to the score (pooled UA, WA, or a difference of two). The standard
    error is the leave-one-speaker-out jackknife's — a speaker's utterances are not
    independent, so the speaker is the unit — and the interval is ``estimate ± t(S − 1)
    · se``, clipped to the score's range. In a simulation with known truth (a random
    speaker effect on each class's recall, tests/test_stats.py) the nominal 95 % interval
    covers within 2.5 points of 95 % at 10 and 24 speakers, where the percentile speaker
    bootstrap it replaced covered 89.7 % and 92.7 %. With one speaker there is no
    interval (NaN)."""
    from scipy.stats import t as t_dist

    sums = [p.sum(0) for p in parts]
    estimate = float(score(*sums))
    n = len(parts[0])
    if n < 2:
        return estimate, float("nan"), float("nan")
    loo = np.asarray(score(*[s[None] - p for s, p in zip(sums, parts)]), dtype=float)
    loo = loo[~np.isnan(loo)]
    se = float(np.sqrt((n - 1) / n * np.sum((loo - loo.mean()) ** 2))) if len(loo) else float("nan")
    half = float(t_dist.ppf((1 + level) / 2, n - 1)) * se
    return estimate, estimate - half, estimate + half


def _clipped(estimate: float, low: float, high: float, bounds: tuple[float, float]) -> tuple[float, float, float]:
    return estimate, max(low, bounds[0]), min(high, bounds[1])


def ci(result_set: ResultSet, level: float = 0.95) -> dict:
    """Pooled UA/WA of a result set with their speaker t-intervals
    (:func:`speaker_t_interval`), the mean ± std over folds (seeds averaged first: the
    spread :func:`compare` tests, :func:`serlib.metrics.fold_stats`), and the std over
    seeds within a fold when there are several (``ua_seed_std``, else NaN)."""
    p = result_set.predictions
    speakers = sorted(p.speaker.astype(str).unique())
    correct, total = _speaker_counts(p.assign(speaker=p.speaker.astype(str)), result_set.classes, speakers)
    ua, ua_low, ua_high = _clipped(*speaker_t_interval(lambda c, t: _pooled(c, t)[0], [correct, total], level), (0, 1))
    wa, wa_low, wa_high = _clipped(*speaker_t_interval(lambda c, t: _pooled(c, t)[1], [correct, total], level), (0, 1))
    folds = result_set.per_fold()
    (ua_mean, ua_std, ua_seed_std), (wa_mean, wa_std, wa_seed_std) = result_set.fold_stats("ua"), result_set.fold_stats("wa")
    return {"set": result_set.label, "uses_test_speaker_audio": result_set.uses_test_speaker_audio,
            "flags": ", ".join(result_set.flags),
            "ua_pooled": ua, "ua_low": ua_low, "ua_high": ua_high, "wa_pooled": wa, "wa_low": wa_low, "wa_high": wa_high,
            "ua_mean": ua_mean, "ua_std": ua_std, "ua_seed_std": ua_seed_std,
            "wa_mean": wa_mean, "wa_std": wa_std, "wa_seed_std": wa_seed_std,
            "val_ua_mean": float(folds.val_ua.mean()), "n_folds": len(folds),
            "n_seeds": len({r["config"]["seed"] for r in result_set.records}), "n_speakers": len(speakers),
            "code_versions": ", ".join(result_set.code_versions)}


def one_prediction_per_utterance(result_set: ResultSet) -> tuple[pd.DataFrame, str]:
    """``(fold, utt_id, speaker, truth, prediction)`` with one row per test utterance of a
    fold, and how it was made: the run's own prediction with one seed, else the seed
    ensemble (the argmax of the seeds' mean class probabilities, :func:`seed_ensemble`), or
    a majority vote over seeds (ties: the lowest seed's) when the probabilities are missing.
    McNemar's test counts each utterance once: 3 seeds are not 3 independent utterances."""
    p = result_set.predictions
    n_seeds = p.groupby(["fold", "utt_id"]).size().max()
    columns = [f"p_{c}" for c in result_set.classes]
    if n_seeds == 1:
        return p[["fold", "utt_id", "speaker", "truth", "prediction"]], "one prediction per utterance (one seed)"
    if all(c in p.columns for c in columns):
        table = p.groupby(["fold", "utt_id"], sort=True).agg(
            {"speaker": "first", "truth": "first", **{c: "mean" for c in columns}}).reset_index()
        table["prediction"] = [result_set.classes[i] for i in table[columns].to_numpy().argmax(1)]
        how = f"seed ensemble: argmax of the mean class probabilities of {n_seeds} seeds, one prediction per utterance"
    else:
        ordered = p.sort_values(["fold", "utt_id", "seed"])
        table = ordered.groupby(["fold", "utt_id"], sort=True).agg(
            speaker=("speaker", "first"), truth=("truth", "first"),
            prediction=("prediction", lambda x: x.value_counts(sort=False).idxmax())).reset_index()
        how = f"majority vote of {n_seeds} seeds (no probabilities), one prediction per utterance"
    return table[["fold", "utt_id", "speaker", "truth", "prediction"]], how


def compare(a: ResultSet, b: ResultSet, seed: int = 0, level: float = 0.95,
            folds: list[int] | None = None, mixed_test_audio: bool = False, allow=()) -> dict:
    """Paired comparison of ``a`` against ``b`` on identical folds (differences are a − b).

    Returns fold-level results (``ua_diff_mean``, ``wa_diff_mean``, ``p_perm_ua``,
    ``p_perm_wa``, ``p_wilcoxon_ua``, ``folds_won``/``folds_lost``/``folds_tied``), pooled
    ones (``ua_diff_pooled`` with its speaker t-interval ``ua_diff_low/high``, the
    same for WA), McNemar's exact p-value on one prediction per utterance (the seed
    ensemble when there are seeds; ``mcnemar_on`` says which, ``mcnemar_n`` how many
    utterances) and the discordant counts, and each set's :func:`ci`. ``folds`` restricts
    both sets to those folds first. Raises :class:`SplitError` when the splits differ, and
    when one set uses the test speakers' audio (per-speaker normalisation) and the other
    does not, unless ``mixed_test_audio=True`` (the result then says so in
    ``like_with_like``). Any other difference of the comparability keys (corpus, data,
    classes, label map, protocol, folds, leakiness, selection, code version, task:
    :func:`serlib.records.comparability_key`) is refused too, naming the fields, unless
    listed in ``allow``; ``differs_in`` lists the allowed differences and ``flags_a`` /
    ``flags_b`` what the result must say about each set (leaky, selected on test, mixed).
    The p-values are per comparison, uncorrected: a table of several
    comparisons corrects them (:func:`holm`, :func:`versus`, :func:`baseline_columns`).
    """
    from scipy.stats import binomtest, wilcoxon

    if a.uses_test_speaker_audio != b.uses_test_speaker_audio and not mixed_test_audio:
        uses, other = (a, b) if a.uses_test_speaker_audio else (b, a)
        raise SplitError(f"{uses.label} uses the test speakers' audio (per-speaker normalisation) and {other.label} "
                         "does not: compare like with like, or pass mixed_test_audio=True and say so")
    allow = set(allow) | ({"test_speaker_audio"} if mixed_test_audio else set())
    differs = check_comparable(a, b, allow)
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
    parts = [*counts["a"], *counts["b"]]
    diff = {m: _clipped(*speaker_t_interval(lambda ca, ta, cb, tb, i=i: _pooled(ca, ta)[i] - _pooled(cb, tb)[i],
                                            parts, level), (-1, 1)) for i, m in enumerate(("ua", "wa"))}
    # McNemar: each test utterance once (the seed ensemble of each set), never once per seed
    (one_a, how_a), (one_b, how_b) = one_prediction_per_utterance(a), one_prediction_per_utterance(b)
    paired = one_a.merge(one_b, on=["fold", "utt_id"], suffixes=("_a", "_b"))
    right_a = paired.prediction_a == paired.truth_a
    right_b = paired.prediction_b == paired.truth_b
    only_a, only_b = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
    p_mcnemar = 1.0 if only_a + only_b == 0 else float(binomtest(only_a, only_a + only_b, 0.5).pvalue)
    return {
        "a": a.label, "b": b.label, "n_folds": len(d_ua),
        "uses_test_speaker_audio_a": a.uses_test_speaker_audio, "uses_test_speaker_audio_b": b.uses_test_speaker_audio,
        "like_with_like": not differs, "differs_in": "; ".join(differs),
        "flags_a": ", ".join(a.flags), "flags_b": ", ".join(b.flags),
        "ua_diff_mean": float(d_ua.mean()), "wa_diff_mean": float(d_wa.mean()),
        "p_perm_ua": sign_flip_test(d_ua, seed=seed), "p_perm_wa": sign_flip_test(d_wa, seed=seed),
        "p_wilcoxon_ua": p_wilcoxon,
        "folds_won": int((d_ua > 1e-12).sum()), "folds_lost": int((d_ua < -1e-12).sum()),
        "folds_tied": int((np.abs(d_ua) <= 1e-12).sum()),
        **{f"{m}_diff_{part}": value for m in ("ua", "wa") for part, value in zip(("pooled", "low", "high"), diff[m])},
        "mcnemar_p": p_mcnemar, "only_a_right": only_a, "only_b_right": only_b, "mcnemar_n": len(paired),
        "mcnemar_on": how_a if how_a == how_b else f"a: {how_a}; b: {how_b}",
        "ci_a": ci(a, level), "ci_b": ci(b, level),
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


def pairwise(sets: list[ResultSet], metric: str = "ua", mixed_test_audio: bool = False, allow=()) -> pd.DataFrame:
    """Holm-corrected sign-flip p-values of every pair of sets (a symmetric matrix with
    ones on the diagonal); the sets must share their splits, and their comparability keys
    (:func:`check_comparable`: all or none using the test speakers' audio unless
    ``mixed_test_audio=True``; other fields unless in ``allow``). ``matrix.attrs["flags"]``
    says, per set, what must be said about it (leaky, selected on test, mixed)."""
    kinds = {s.uses_test_speaker_audio for s in sets}
    if len(kinds) > 1 and not mixed_test_audio:
        raise SplitError("some sets use the test speakers' audio (+speaker-norm) and some do not: compare like "
                         "with like, or pass mixed_test_audio=True and say so")
    allow = set(allow) | ({"test_speaker_audio"} if mixed_test_audio else set())
    labels = [s.label for s in sets]
    pairs = list(itertools.combinations(range(len(sets)), 2))
    raw = []
    for i, j in pairs:
        check_comparable(sets[i], sets[j], allow)
        check_same_splits(sets[i], sets[j])
        fi, fj = sets[i].per_fold(), sets[j].per_fold().loc[sets[i].per_fold().index]
        raw.append(sign_flip_test((fi[metric] - fj[metric]).to_numpy()))
    matrix = pd.DataFrame(np.ones((len(sets), len(sets))), index=labels, columns=labels)
    for (i, j), p in zip(pairs, holm(raw) if raw else []):
        matrix.iloc[i, j] = matrix.iloc[j, i] = p
    matrix.attrs["flags"] = {s.label: ", ".join(s.flags) for s in sets if s.flags}
    return matrix


def validation_score(result_set: ResultSet, folds=None) -> float:
    """The score a choice between result sets may use: the mean over ``folds`` (default:
    all) of the per-fold mean over seeds of the selected epoch's validation UA
    (``best_selection_ua``). Never the test split."""
    per_fold = result_set.per_fold()
    if folds is not None:
        per_fold = per_fold.loc[sorted(set(folds))]
    return float(per_fold.val_ua.mean())


def choose_baseline(sets, folds=None, like: ResultSet | None = None) -> ResultSet:
    """The baseline to compare with, chosen before looking at the test split: the set
    with the highest :func:`validation_score` on ``folds`` (a list or ``{label: set}``;
    ties: the first). With ``like``, only the candidates comparable with it (the same
    comparability key, :func:`check_comparable`) are considered; without, the candidates
    must be comparable with one another. Raises :class:`SplitError` naming the differing
    fields, or when no set has validation scores."""
    candidates = list(sets.values()) if isinstance(sets, dict) else list(sets)
    if like is not None:
        kept = [s for s in candidates if not key_diff(s.key, like.key)]
        if not kept:
            why = "; ".join(f"{s.label}: {', '.join(key_diff(s.key, like.key))}" for s in candidates)
            raise SplitError(f"no candidate baseline is comparable with {like.label} ({why})")
        candidates = kept
    for s in candidates[1:]:
        check_comparable(candidates[0], s)
    scored = [(validation_score(s, folds), i) for i, s in enumerate(candidates)]
    scored = [(v, i) for v, i in scored if not np.isnan(v)]
    if not scored:
        raise SplitError("no candidate baseline has validation scores (best_selection_ua): name the baseline instead")
    return candidates[max(scored, key=lambda vi: (vi[0], -vi[1]))[1]]


def versus(sets, baseline: ResultSet, mixed_test_audio: bool = False, allow=()) -> pd.DataFrame:
    """Every set of ``sets`` (a list or ``{label: set}``) against ``baseline`` (named by the
    user or :func:`choose_baseline`), one row per comparison (:func:`compare`: a set not
    comparable with the baseline is refused, naming the fields), with the sign-flip
    p-values Holm-corrected over the rows of this table (``p_perm_ua_holm``,
    ``p_perm_wa_holm``) beside the uncorrected ones, and each row's ``flags_a``/``flags_b``.
    The baseline itself is left out."""
    others = [s for s in (sets.values() if isinstance(sets, dict) else sets) if s is not baseline]
    rows = [compare(s, baseline, mixed_test_audio=mixed_test_audio, allow=allow) for s in others]
    table = pd.DataFrame(rows)
    if len(table):
        table["p_perm_ua_holm"] = holm(table.p_perm_ua.tolist())
        table["p_perm_wa_holm"] = holm(table.p_perm_wa.tolist())
    return table


def baseline_columns(mean: pd.DataFrame, records: list[dict], baseline: str | None = None) -> pd.DataFrame:
    """``mean`` (the "mean" table of :func:`serlib.results.summarise`) with the 95 % interval
    of the pooled UA (``ua_pooled_low/high``, :func:`ci`, of the row's own records: a set
    split into leaky and clean rows gives each row its own interval), the row's
    comparability group (``comparable``: :func:`serlib.records.key_id` of its key) and,
    for every row that has result sets of a baseline experiment (one that declares
    ``is_baseline``) with the same comparability key
    (corpus and data, test corpus, classes and label map, protocol and folds, leakiness,
    selection, use of test-speaker audio, code version, task) on the same test utterances,
    a comparison with one of them:

    * ``baseline``: the set compared with, ``baseline_chosen_on``: how it was chosen — by
      validation UA on the row's folds (:func:`validation_score`; never by test UA), or the
      one the caller named (``baseline=``: a name, as shown in the table, or a fingerprint
      prefix);
    * ``baseline_note``: the baseline sets of the same key left out and why (a failed
      fold, other test utterances), or, when none is comparable, what the others differ in;
    * ``ua_vs_baseline``: mean paired UA difference over folds (positive = better);
    * ``p_raw_vs_baseline``: its sign-flip p-value, and ``p_holm_vs_baseline``: the same
      Holm-corrected over every row of this table that has one (the p-value to read).
    """
    out = mean.copy()
    sets = {}
    for i, row in out.iterrows():
        mixed = str(row.get("versions_note", "")).startswith("MIXES")
        sets[i] = load_set(records=records, experiment=row.experiment, name=row["name"], corpus=row.corpus,
                           protocol=row.protocol, fingerprint=row.fingerprint,
                           code_version=None if mixed or "code_version" not in row else row.code_version,
                           mixed_versions=mixed, leaky=bool(row.leaky) if "leaky" in row else None)
        interval = ci(sets[i])
        out.loc[i, "ua_pooled_low"], out.loc[i, "ua_pooled_high"] = interval["ua_low"], interval["ua_high"]
    out["comparable"] = [key_id(sets[i].key) for i in out.index]
    for column in ("baseline", "baseline_chosen_on", "baseline_note"):
        out[column] = pd.Series([""] * len(out), index=out.index, dtype=object)
    out["ua_vs_baseline"], out["p_raw_vs_baseline"] = np.nan, np.nan
    baselines = [j for j in out.index if is_baseline(out.loc[j, "experiment"])]
    for i, row in out.iterrows():
        ids = sets[i].test_ids()
        same = [j for j in baselines if not key_diff(sets[j].key, sets[i].key)]
        if baseline is not None:
            same = [j for j in same if baseline in (out.loc[j, "name"], sets[j].label)
                    or out.loc[j, "fingerprint"].startswith(baseline)]
        candidates, notes = [], []
        for j in same:
            theirs = sets[j].test_ids()
            missing = sorted(f for f in ids if f not in theirs)
            other = sorted(f for f in ids if f in theirs and theirs[f] != ids[f])
            if missing or other:
                shared = [f for f in ids if f in theirs]
                val = validation_score(sets[j], shared) if shared else float("nan")
                why = (f"lacks fold(s) {missing} (failed or not run)" if missing
                       else f"tests other utterances in fold(s) {other}")
                notes.append(f"{sets[j].label} skipped: {why}" + (f"; val UA {val:.3f} on its folds" if val == val else ""))
            else:
                candidates.append(j)
        if not same and baselines and i not in baselines:
            near = [j for j in baselines if out.loc[j, "corpus"] == row.corpus] or baselines
            notes += [f"{sets[j].label} not comparable: differs in {', '.join(key_diff(sets[j].key, sets[i].key))}"
                      for j in near[:3]]
        out.loc[i, "baseline_note"] = "; ".join(notes)
        if not candidates:
            continue
        if baseline is not None:
            best, how = candidates[0], "named by the user"
        else:  # chosen on validation UA over this row's folds, never on test
            scores = {j: validation_score(sets[j], ids) for j in candidates}
            scores = {j: v for j, v in scores.items() if not np.isnan(v)}
            if not scores:
                continue
            best, how = max(scores, key=lambda j: (scores[j], -list(scores).index(j))), "validation UA"
        if best == i:
            out.loc[i, "baseline"], out.loc[i, "baseline_chosen_on"] = "(this is the baseline)", how
            continue
        fi, fb = sets[i].per_fold(), sets[best].per_fold().loc[sets[i].per_fold().index]
        d = (fi.ua - fb.ua).to_numpy()
        out.loc[i, "baseline"] = sets[best].label + ("" if len(ids) == len(sets[best].test_ids())
                                                     else f" on folds {sorted(ids)}")
        out.loc[i, "baseline_chosen_on"] = how
        out.loc[i, "ua_vs_baseline"], out.loc[i, "p_raw_vs_baseline"] = float(d.mean()), sign_flip_test(d)
    tested = out.p_raw_vs_baseline.notna()
    out["p_holm_vs_baseline"] = np.nan
    if tested.any():
        out.loc[tested, "p_holm_vs_baseline"] = holm(out.loc[tested, "p_raw_vs_baseline"].tolist())
    return out


def ablation_table(sets: dict[str, ResultSet], reference: str) -> pd.DataFrame:
    """One row per variant of an ablation (``{label: result set}``, all on the same
    folds): the selection score (mean validation UA of the selected epochs — the only
    number a choice of settings may use), test WA and UA (mean ± std over folds, and the
    std over seeds when there are seeds), pooled UA with its speaker t-interval (95 %)
    interval, and the paired difference in UA from ``reference`` with its sign-flip
    p-value, the same Holm-corrected over the variants of this table (``p_ua_holm``,
    ``p_wa_holm``), and the folds won. ``uses_test_speaker_audio`` flags variants that use
    the test speakers' unlabelled audio (compared with the reference all the same: that is
    what the ablation measures)."""
    rows = []
    for label, s in sets.items():
        c = ci(s)
        row = {"variant": label, "val_ua": validation_score(s),
               "wa_mean": c["wa_mean"], "wa_std": c["wa_std"], "ua_mean": c["ua_mean"], "ua_std": c["ua_std"],
               "ua_seed_std": c["ua_seed_std"],
               "ua_pooled": c["ua_pooled"], "ua_low": c["ua_low"], "ua_high": c["ua_high"], "n_folds": c["n_folds"],
               "uses_test_speaker_audio": s.uses_test_speaker_audio,
               "seconds_per_fold": float(np.mean([r["timing"]["total_seconds"] for r in s.records]))}
        if label != reference:
            d = compare(s, sets[reference], mixed_test_audio=True)
            row.update({"ua_diff": d["ua_diff_mean"], "p_ua": d["p_perm_ua"], "wa_diff": d["wa_diff_mean"],
                        "p_wa": d["p_perm_wa"], "folds_won": f"{d['folds_won']}/{d['n_folds']}"})
        rows.append(row)
    table = pd.DataFrame(rows).set_index("variant")
    if "p_ua" in table:
        tested = table.p_ua.notna()
        table.loc[tested, "p_ua_holm"] = holm(table.loc[tested, "p_ua"].tolist())
        table.loc[tested, "p_wa_holm"] = holm(table.loc[tested, "p_wa"].tolist())
    return table


def unseen_folds(choice, target: ResultSet) -> list[int]:
    """The folds of ``target`` whose test speakers took no part in a choice of settings:
    none of them was a validation speaker of a run the choice was scored on. ``choice``:
    the result sets (or their records) whose validation UA made the choice. On EMO-DB
    LOSO (validation = the next speaker) a choice scored on folds 1–5 used speakers 2–6,
    the test speakers of folds 2–6, so 1 and 7–10 remain."""
    sets = choice.values() if isinstance(choice, dict) else choice if isinstance(choice, list) else [choice]
    runs = [r for s in sets for r in (s.records if isinstance(s, ResultSet) else [s])]
    if any("val_speakers" not in r for r in runs):
        raise SplitError("the choice's records do not name their validation speakers (val_speakers)")
    used = {str(v) for r in runs for v in r["val_speakers"]}
    return [f for f, speakers in sorted(target.test_speakers().items()) if not speakers & used]


def gain_on_unseen(a: ResultSet, b: ResultSet, choice) -> dict:
    """:func:`compare` of ``a`` with ``b`` on the folds whose test speakers took no part in
    the choice that picked ``a`` (:func:`unseen_folds`): the gain of a chosen setting that
    its choice cannot have inflated. Adds ``folds_used`` and ``folds_left_out``."""
    folds = unseen_folds(choice, a)
    if not folds:
        raise SplitError(f"every test speaker of {a.label} was a validation speaker of the choice: no unseen folds")
    result = compare(a, b, folds=folds)
    result.update({"folds_used": folds, "folds_left_out": [f for f in a.folds if f not in folds]})
    return result


def nested_choice(sets: dict[str, ResultSet], label: str | None = None) -> tuple[ResultSet, pd.DataFrame]:
    """Choose among variants inside each outer fold, on that fold's own validation
    speaker(s), and keep the chosen variant's test result for that fold.

    ``sets``: ``{variant: result set}``, all on the same folds. Per fold, the variant with
    the highest validation UA (the mean over seeds of ``best_selection_ua``; ties: the
    first) is chosen; its records and predictions make the fold's part of the returned
    :class:`ResultSet` — an estimate of "choose on validation, then test" in which no test
    speaker helped choose, comparable with any set on the same folds (:func:`compare`).
    The table lists per fold each variant's validation UA, the chosen one and its test UA.
    """
    variants = list(sets)
    first = sets[variants[0]]
    for v in variants[1:]:
        check_same_splits(first, sets[v])
    per_fold = {v: s.per_fold() for v, s in sets.items()}
    rows, records, frames = [], [], []
    for fold in first.folds:
        scores = {v: per_fold[v].loc[fold, "val_ua"] for v in variants}
        if any(np.isnan(x) for x in scores.values()):
            raise SplitError(f"fold {fold}: some variant has no validation score (best_selection_ua)")
        chosen = max(variants, key=lambda v: (scores[v], -variants.index(v)))
        records += [r for r in sets[chosen].records if r["config"]["fold"] == fold]
        frames.append(sets[chosen].predictions[sets[chosen].predictions.fold == fold])
        rows.append({"fold": fold, **{f"val_ua[{v}]": scores[v] for v in variants}, "chosen": chosen,
                     "test_ua": per_fold[chosen].loc[fold, "ua"], "test_wa": per_fold[chosen].loc[fold, "wa"]})
    name = label or f"nested choice of {', '.join(variants)}"
    return ResultSet(name, records, pd.concat(frames, ignore_index=True), first.classes), pd.DataFrame(rows)


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
        runs = [r for r in result_set.records if r["config"]["fold"] == fold]
        shared = {k: v for k, v in runs[0].items() if k not in ("path", "predictions", "predictions_path")}
        records.append({**shared,  # the runs' comparability key (corpus, classes, leakiness, …) is the ensemble's
                        "config": {**runs[0]["config"], "fold": int(fold), "seed": seeds[0], "seeds": seeds},
                        "metrics": {"ua": m["ua"], "wa": m["wa"]},
                        "best_selection_ua": float("nan"),  # the ensemble's own validation UA is not measured
                        "uses_test_speaker_audio": any(uses_test_speaker_audio(r) for r in runs),
                        "val_speakers": runs[0].get("val_speakers", []), "timing": {"total_seconds": float("nan")}})
    first_seed = {r["config"]["fold"]: r["config"]["seed"] for r in records}
    predictions = table[["utt_id", "speaker", "truth", "prediction", *columns]].assign(
        fold=table.fold, seed=table.fold.map(first_seed))
    return ResultSet(f"{result_set.label} (seed ensemble)", records, predictions, classes)
