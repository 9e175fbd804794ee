"""The results store: one JSON record (+ predictions CSV) per run, written atomically.

Layout: ``outputs/results/<experiment>/<name>/<corpus>/<protocol>/<fingerprint>/fold<k>-seed<s>.json``
with ``….predictions.csv`` beside it. The fingerprint (:func:`fingerprint`) hashes
everything that determines a result — the resolved settings, the classes and the
manifest's content — so runs with other settings or other data never share a key:
re-running the same settings replaces the record, other settings get their own, and
:func:`summarise` never averages records with different fingerprints.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import subprocess
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from . import atomic, metrics
from .constants import AUDIO_HASH, LABEL, PATH, SPEAKER, UTT_ID
from .paths import outputs_dir

log = logging.getLogger(__name__)
FINGERPRINT_CHARS = 10  # of the hex digest, in paths and tables


def _safe(part: str) -> str:
    return str(part).replace(":", "-").replace("/", "_").replace(" ", "_")


def record_stem(root: Path, experiment: str, name: str, corpus: str, protocol: str, fingerprint: str,
                fold: int, seed: int) -> Path:
    return (root / _safe(experiment) / _safe(name) / _safe(corpus) / _safe(protocol)
            / fingerprint[:FINGERPRINT_CHARS] / f"fold{fold:02d}-seed{seed}")


def run_identity(config, classes: Iterable[str], manifest: pd.DataFrame) -> dict:
    """What determines a run's result, fold and seed aside: the settings (the config
    without its run-time switches, :data:`serlib.config.RUNTIME_FIELDS`), the classes,
    and the manifest's content (utterance ids, labels, speakers and each file's content
    hash, or size and modification time when no hash is there)."""
    from .config import LATER_FIELDS, RUNTIME_FIELDS

    settings = {k: v for k, v in config.to_dict().items() if k not in RUNTIME_FIELDS}
    for name, default in LATER_FIELDS.items():
        if settings.get(name, default) == default:
            settings.pop(name, None)
    if getattr(config, "recipe", None) is not None and config.recipe.is_paper:
        del settings["recipe"]  # runs from before the recipe switches keep their fingerprints
    h = hashlib.sha256()
    columns = [UTT_ID, LABEL, SPEAKER] + ([AUDIO_HASH] if AUDIO_HASH in manifest.columns else [PATH])
    for row in manifest.sort_values(UTT_ID)[columns].itertuples(index=False):
        *fields, audio_id = row
        if AUDIO_HASH not in manifest.columns:
            st = os.stat(audio_id)
            audio_id = f"{st.st_size}:{st.st_mtime_ns}"
        h.update("\0".join(map(str, (*fields, audio_id))).encode() + b"\n")
    return {"settings": json.loads(json.dumps(atomic.strict_json(settings, _json_default))),
            "classes": list(classes),
            "manifest": {"n": len(manifest), "sha256": h.hexdigest(), "audio": columns[-1]}}


def fingerprint(identity: dict) -> str:
    """SHA-256 of a :func:`run_identity`, as hex."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def identity_diff(a: dict, b: dict) -> list[str]:
    """Names of what differs between two identities (settings by field).

    >>> identity_diff({"settings": {"epochs": 2, "lr": 1}, "classes": ["a"], "manifest": {"n": 3}},
    ...               {"settings": {"epochs": 3, "lr": 1}, "classes": ["a"], "manifest": {"n": 4}})
    ['epochs', 'manifest']
    """
    sa, sb = a.get("settings", {}), b.get("settings", {})
    out = sorted(k for k in set(sa) | set(sb) if sa.get(k) != sb.get(k))
    return out + [k for k in ("classes", "manifest") if a.get(k) != b.get(k)]


def write(record: dict, predictions: pd.DataFrame, stem: Path) -> Path:
    """Write ``stem.predictions.csv`` then ``stem.json`` (the JSON last: a record never
    points at predictions that are not there). The JSON is strict: NaN (e.g. the recall
    of a class absent from a test fold) is written as ``null``."""
    pred_path = stem.with_name(stem.name + ".predictions.csv")
    atomic.write_text(pred_path, predictions.to_csv(index=False))
    record = {**record, "predictions": pred_path.name}
    return atomic.write_json(stem.with_suffix(".json"), record, _json_default)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (set, tuple)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def provenance() -> dict:
    """Package versions, git commit and machine, stored with every record."""
    import sklearn
    import torch
    import torchaudio

    from . import __version__

    try:
        root = Path(__file__).resolve().parents[1]
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=5).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                    capture_output=True, text=True, timeout=5).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {
        "serlib": __version__, "torch": torch.__version__, "torchaudio": torchaudio.__version__,
        "numpy": np.__version__, "pandas": pd.__version__, "sklearn": sklearn.__version__,
        "python": platform.python_version(), "platform": platform.platform(),
        "git_commit": commit, "git_dirty": dirty,
    }


RECORD_KEYS = ("config", "metrics", "fingerprint", "corpus_label", "test_speakers", "history", "timing")


def read_record(path: str | Path) -> dict:
    """One record; raises :class:`~serlib.errors.DataError` naming the file when it is
    not valid JSON or lacks a record's fields (a truncated or foreign file)."""
    from .errors import DataError

    path = Path(path)
    try:
        rec = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(path, f"damaged results record ({e})") from e
    missing = [k for k in RECORD_KEYS if not isinstance(rec, dict) or k not in rec]
    if missing:
        raise DataError(path, f"not a serlib record of this version (missing {missing})")
    rec["_path"] = rec["path"] = str(path)
    rec["predictions_path"] = str(path.with_name(rec.get("predictions", path.stem + ".predictions.csv")))
    return rec


def load_records(path: str | Path | None = None, damaged: list | None = None) -> list[dict]:
    """Every record under ``path`` (default ``outputs/results``). A damaged record is
    skipped with a warning naming it, and appended to ``damaged`` as ``(path, reason)``."""
    from .errors import DataError

    root = Path(path) if path is not None else outputs_dir() / "results"
    records = []
    for f in sorted(root.rglob("*.json")):
        try:
            records.append(read_record(f))
        except DataError as e:
            log.warning("skipped %s", e)
            if damaged is not None:
                damaged.append((str(f), e.reason))
    return records


def collect(path: str | Path | None = None) -> pd.DataFrame:
    """One row per record: key, fingerprint, WA/UA/macro-F1, epochs, timing, leaky flag,
    path. Damaged records are skipped with a warning and listed in ``df.attrs["damaged"]``."""
    rows, damaged = [], []
    for r in load_records(path, damaged):
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


def summarise(df: pd.DataFrame, stats: bool = True) -> dict[str, pd.DataFrame]:
    """Per-fold table, mean ± std over folds (× seeds), and pooled scores.

    Returns ``{"per_fold": …, "mean": …}``; "mean" has one row per result set
    (experiment, name, corpus, protocol, fingerprint: records of different settings are
    never averaged) with ``wa_mean, wa_std, ua_mean, ua_std, n_folds, n_seeds`` and the
    pooled ``wa_pooled, ua_pooled`` (all folds' predictions scored together — labelled as
    pooled, never mixed with the means). With ``stats`` it also has the speaker-bootstrap
    95 % interval of the pooled UA and the comparison with the best ``functionals``
    baseline on the same folds (:func:`serlib.stats.baseline_columns`).
    """
    if df.empty:
        return {"per_fold": df, "mean": pd.DataFrame()}
    per_fold = df.sort_values(GROUP + ["fold", "seed"])[GROUP + ["fold", "seed", "test_speakers", "wa", "ua", "macro_f1"]]
    rows = []
    for key, g in df.groupby(GROUP, sort=True):
        pooled = pooled_scores(g["path"])
        rows.append({**dict(zip(GROUP, key)), "n_folds": g.fold.nunique(), "n_seeds": g.seed.nunique(),
                     "wa_mean": g.wa.mean(), "wa_std": g.wa.std(ddof=0), "ua_mean": g.ua.mean(),
                     "ua_std": g.ua.std(ddof=0), "macro_f1_mean": g.macro_f1.mean(),
                     "wa_pooled": pooled["wa"], "ua_pooled": pooled["ua"],
                     "seconds_per_fold": g.total_seconds.mean() if "total_seconds" in g else np.nan})
    mean = pd.DataFrame(rows)
    if stats:
        from .stats import baseline_columns

        mean = baseline_columns(mean, [read_record(p) for p in df["path"]])
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


def pooled_scores(record_paths: Iterable[str]) -> dict:
    """WA/UA over the concatenated predictions of several records (one seed's folds)."""
    truth, pred, labels = [], [], None
    for p in record_paths:
        rec = read_record(p)
        labels = rec["metrics"]["labels"]
        preds = pd.read_csv(Path(p).with_name(rec["predictions"]))
        truth += preds["truth"].tolist()
        pred += preds["prediction"].tolist()
    if not truth:
        return {"wa": float("nan"), "ua": float("nan")}
    return {"wa": metrics.weighted_accuracy(truth, pred, labels),
            "ua": metrics.unweighted_accuracy(truth, pred, labels)}


# --- the papers' reported numbers ---------------------------------------------------------

REFERENCE = pd.DataFrame([
    # experiment, paper, variant, corpus, protocol, WA, UA, speaker independent, note
    ("cnn_lstm", "Etienne et al. 2018", "baseline (4 kHz)", "iemocap-improvised", "loso 10-fold", 66.4, 57.7, True, "Table 1"),
    ("cnn_lstm", "Etienne et al. 2018", "+oversampling", "iemocap-improvised", "loso 10-fold", 63.5, 59.8, True, "Table 1"),
    ("cnn_lstm", "Etienne et al. 2018", "+VTLP", "iemocap-improvised", "loso 10-fold", 64.2, 60.9, True, "Table 1"),
    ("cnn_lstm", "Etienne et al. 2018", "best (+8 kHz)", "iemocap-improvised", "loso 10-fold", 64.5, 61.7, True, "Table 1/2"),
    ("cnn_lstm", "Etienne et al. 2018", "best, recurrent BN, batch 64", "iemocap-improvised", "loso 10-fold", 65.4, 60.8, True, "Table 3"),
    ("attention_fcn", "Zhang et al. 2019", "AlexNet FCN + attention (ImageNet init)", "iemocap-improvised", "5-fold (session)", 70.4, 63.9, True, "arXiv 1806.01506"),
    ("attention_fcn", "best public reproduction", "2-D, from scratch", "iemocap-improvised", "loso 10-fold", 74.0, 64.4, True, "Zhang et al. reproduction"),
    ("attention_fcn", "Emotion in Motion", "1-D (names un-swapped)", "ravdess-4class", "random 5-fold", 51.2, 41.9, False, "its 'unweighted' 51.2 is WA"),
    ("mscnn_spu", "Peng et al. 2021", "Audio-CNN", "iemocap-all-exc→hap", "10-fold 8/1/1", 65.4, 66.7, True, "Table 1"),
    ("mscnn_spu", "Peng et al. 2021", "Audio-CNN-xvector", "iemocap-all-exc→hap", "10-fold 8/1/1", 66.6, 68.4, True, "Table 1"),
    ("mscnn_spu", "Peng et al. 2021", "Text-CNN", "iemocap-all-exc→hap", "10-fold 8/1/1", 67.8, 67.7, True, "Table 1"),
    ("mscnn_spu", "Peng et al. 2021", "MSCNN-SPU", "iemocap-all-exc→hap", "10-fold 8/1/1", 79.5, 80.4, True, "Table 1"),
    ("mscnn_spu", "Peng et al. 2021", "MSCNN-SPU-ATT", "iemocap-all-exc→hap", "10-fold 8/1/1", 80.3, 81.4, True, "Table 1"),
    ("mscnn_spu", "Peng et al. 2021", "MSCNN-SPU (ASR text)", "iemocap-all-exc→hap", "10-fold 8/1/1", 77.4, 78.2, True, "Table 1"),
    ("mscnn_spu", "Peng et al. 2021", "MSCNN-SPU-ATT (ASR text)", "iemocap-all-exc→hap", "10-fold 8/1/1", 78.0, 79.1, True, "Table 1"),
    ("mscnn_spu", "Peng et al. 2021", "w/o x-vectors", "iemocap-all-exc→hap", "10-fold 8/1/1", 78.5, 79.3, True, "Table 2"),
    ("mscnn_spu", "Peng et al. 2021", "w/o text SPU", "iemocap-all-exc→hap", "10-fold 8/1/1", 77.7, 78.6, True, "Table 2"),
    ("mscnn_spu", "Peng et al. 2021", "w/o SWEM", "iemocap-all-exc→hap", "10-fold 8/1/1", 77.2, 78.3, True, "Table 2"),
    ("mscnn_spu", "Peng et al. 2021", "w/o audio SPU", "iemocap-all-exc→hap", "10-fold 8/1/1", 73.5, 74.0, True, "Table 2"),
    ("light_sernet", "Aftab et al. 2022 (official code)", "3 s, CE", "emodb", "10-fold, test-selected", 94.21, 94.15, False, "pooled"),
    ("light_sernet", "Aftab et al. 2022 (official code)", "3 s, focal", "emodb", "10-fold, test-selected", 93.08, 92.88, False, "pooled"),
    ("light_sernet", "Aftab et al. 2022 (official code)", "7 s, CE", "iemocap-improvised", "10-fold, test-selected", 78.73, 71.51, False, "pooled"),
    ("light_sernet", "Aftab et al. 2022 (official code)", "7 s, focal", "iemocap-improvised", "10-fold, test-selected", 79.87, 70.78, False, "pooled"),
    ("light_sernet", "Aftab et al. 2022 (official code)", "3 s, CE", "iemocap-improvised", "10-fold, test-selected", 76.60, 68.42, False, "pooled"),
    ("light_sernet", "Aftab et al. 2022 (official code)", "7 s, CE", "iemocap-all", "10-fold, test-selected", 69.15, 70.12, False, "pooled"),
    ("peers", "emotion2vec", "leave-one-session-out", "iemocap", "session 5-fold", 71.8, None, True, "74.5 when selecting on test"),
    ("peers", "EmoBox wav2vec2-base", "UA only", "iemocap", "session 5-fold", None, 58.3, True, ""),
    ("peers", "EmoBox WavLM-large", "UA only", "iemocap", "session 5-fold", None, 69.5, True, ""),
    ("peers", "EmoBox Whisper-large-v3", "UA only", "iemocap", "session 5-fold", None, 73.5, True, ""),
    ("peers", "EmoBox wav2vec2-base", "UA only", "emodb", "loso", None, 82.1, True, ""),
    ("peers", "EmoBox WavLM-large", "UA only", "emodb", "loso", None, 92.6, True, ""),
    ("peers", "EmoBox Whisper-large-v3", "UA only", "emodb", "loso", None, 91.3, True, ""),
    ("peers", "EmoBox wav2vec2-base", "UA only", "ravdess", "6-fold actor-disjoint", None, 54.3, True, ""),
    ("peers", "EmoBox WavLM-large", "UA only", "ravdess", "6-fold actor-disjoint", None, 72.0, True, ""),
    ("peers", "EmoBox Whisper-large-v3", "UA only", "ravdess", "6-fold actor-disjoint", None, 75.3, True, ""),
    ("peers", "SpeechBrain ECAPA", "accuracy only", "iemocap", "random split", 65.7, None, False, ""),
    ("peers", "SpeechBrain wav2vec2", "accuracy only", "iemocap", "random split", 78.7, None, False, ""),
    ("peers", "SpeechBrain HuBERT", "accuracy only", "iemocap", "random split", 79.1, None, False, ""),
], columns=["experiment", "paper", "variant", "corpus", "protocol", "wa", "ua", "speaker_independent", "note"])
"""Every number the four papers (and the peer systems of the README) report, in percent."""


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
    if mean.empty:
        return REFERENCE.assign(source="paper")
    ours = mean.assign(
        paper="serlib (this workbench)", variant=mean["name"] + " [" + mean["fingerprint"] + "]", wa=(100 * mean.wa_mean).round(1),
        ua=(100 * mean.ua_mean).round(1), speaker_independent=~mean["leaky"].astype(bool),
        note=[(f"± {100 * w:.1f} / ± {100 * u:.1f} over {n} folds" if n > 1 else "1 fold: no spread")
              + f"; pooled {100 * pw:.1f} / {100 * pu:.1f}"
              for w, u, n, pw, pu in zip(mean.wa_std, mean.ua_std, mean.n_folds, mean.wa_pooled, mean.ua_pooled)],
    )[list(REFERENCE.columns)]
    papers = REFERENCE[REFERENCE.experiment.isin(set(ours.experiment))]
    return pd.concat([ours.assign(source="measured"), papers.assign(source="paper")], ignore_index=True)
