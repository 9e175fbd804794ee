"""The results record: the one place that builds, writes and reads it.

One JSON record (+ a predictions CSV) per run, written atomically, at
``outputs/results/<experiment>/<name>/<corpus>/<protocol>/<fingerprint>/fold<k>-seed<s>.json``.
The fingerprint (:func:`fingerprint`) hashes everything that determines a result — the
resolved settings, the classes and the manifest's content — so runs with other settings
or other data never share a key: re-running the same settings replaces the record, other
settings get their own, and the tables never average records with different
fingerprints. docs/records.md describes every field.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import platform
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import __version__, atomic
from .config import LATER_FIELDS
from .constants import AUDIO_HASH, LABEL, PATH, SPEAKER, UTT_ID
from .device import precision_name
from .errors import DataError
from .fields import runtime_fields
from .paths import outputs_dir
from .protocols import folds_source_sha256, is_cross, test_corpus
from .targets import record_metrics
from .weights import weights_path

log = logging.getLogger(__name__)
FINGERPRINT_CHARS = 10  # of the hex digest, in paths and tables
COMMIT_CHARS = 10  # of a git commit, in code versions


def _safe(part: str) -> str:
    """A folder name for ``part``; one over 120 characters is cut and told apart by a hash
    (a file system takes at most 255 bytes per name)."""
    safe = str(part).replace(":", "-").replace("/", "_").replace(" ", "_")
    if len(safe.encode()) > 120:
        safe = safe.encode()[:100].decode(errors="ignore") + "-" + hashlib.sha1(safe.encode()).hexdigest()[:8]
    return safe


def record_stem(root: Path, experiment: str, name: str, corpus: str, protocol: str, fingerprint: str,
                fold: int, seed: int) -> Path:
    if protocol.startswith("folds_file:"):  # its content is in the fingerprint; its spelling is not
        protocol = f"folds_file-{Path(protocol.partition(':')[2]).name}"
    return (root / _safe(experiment) / _safe(name) / _safe(corpus) / _safe(protocol)
            / fingerprint[:FINGERPRINT_CHARS] / f"fold{fold:02d}-seed{seed}")


def corpus_name(corpus: str, root=None) -> str:
    """A corpus as records and tables name it: its registry name, or for a CSV manifest
    ``csv-<the manifest's file name without suffix>`` (two CSV corpora are two corpora).

    >>> corpus_name("csv", "/data/savee.csv"), corpus_name("emodb", "/data/emodb")
    ('csv-savee', 'emodb')
    """
    return f"csv-{Path(str(root)).stem}" if corpus == "csv" and root else corpus


def corpus_label(config) -> str:
    """The corpus and its subset as records and tables name it (``iemocap-improvised``,
    ``csv-savee``: :func:`corpus_name`)."""
    name = corpus_name(config.corpus, config.data_root)
    return name if config.subset in (None, "all") else f"{name}-{config.subset}"


def test_corpus_label(config) -> str:
    """The corpus a run is tested on: the test corpus of ``cross:…`` (:func:`corpus_name`),
    else the training corpus's :func:`corpus_label`."""
    if not is_cross(config.protocol):
        return corpus_label(config)
    return corpus_name(test_corpus(config.protocol), getattr(config, "test_data_root", None))


def result_name(name: str, selection: str = "val", speaker_norm: bool = False) -> str:
    """The name a result set is shown under: what a table must never hide is in it —
    test-split selection (``+test-selection``) and test-speaker statistics (``+speaker-norm``).

    >>> result_name("modern", speaker_norm=True)
    'modern+speaker-norm'
    """
    return name + ("+test-selection" if selection == "test" else "") + ("+speaker-norm" if speaker_norm else "")


def uses_test_speaker_audio(record: dict) -> bool:
    """Whether a run standardised with statistics of its test speakers' (unlabelled) audio."""
    recipe = record.get("config", {}).get("recipe") or {}
    return bool(record.get("uses_test_speaker_audio", recipe.get("speaker_norm", False)))


def record_name(record: dict) -> str:
    """:func:`result_name` of a record (the name of its folder)."""
    c = record["config"]
    return result_name(c["name"], c.get("selection", "val"), uses_test_speaker_audio(record))


def code_version(provenance: dict | None) -> str:
    """The code a record (or checkpoint) was made with: the git commit (10 hex digits),
    ``+`` the first 8 hex digits of the uncommitted diff's hash when the tree was dirty,
    or ``"unknown"`` (no git). Tables never average records of different versions by
    default (:func:`serlib.results.summarise`).

    >>> code_version({"git_commit": "0123456789abcdef", "git_dirty": False})
    '0123456789'
    >>> code_version({"git_commit": "0123456789abcdef", "git_dirty": True, "git_diff_sha256": "feedbeef00"})
    '0123456789+feedbeef'
    """
    p = provenance or {}
    if not p.get("git_commit"):
        return "unknown"
    dirty = f"+{(p.get('git_diff_sha256') or 'dirty')[:8]}" if p.get("git_dirty") else ""
    return p["git_commit"][:COMMIT_CHARS] + dirty


def record_code_version(record: dict) -> str:
    """:func:`code_version` of a record; a fold resumed from another version's checkpoint
    (``resume_other_code=true``) names both."""
    version = code_version(record.get("provenance"))
    resumed = record.get("resumed_from_code")
    return f"{version} (resumed from {resumed})" if resumed and resumed != version else version


# What makes two results comparable: they must agree on all of these, and may differ only
# in the model's settings (docs/statistics.md, "Like with like").
KEY_FIELDS = ("task", "corpus", "data", "test_corpus", "classes", "label_map", "protocol", "folds", "leaky",
              "selection", "test_speaker_audio", "code_version")


def comparability_key(record: dict) -> dict:
    """The one rule of what a record may be compared with: a dict of :data:`KEY_FIELDS` —

    * ``task``: ``"categorical"`` (class labels; records before the field have it);
    * ``corpus``: the corpus label; ``data``: the manifest's content hash (utterance ids,
      labels, speakers, each file's content hash: the audio, not the folder it lies in;
      ``None`` for a record without its identity); ``test_corpus``: what it was tested on;
    * ``classes`` and ``label_map`` (the merges); ``protocol`` and ``folds`` (the folds
      file's content hash, if any);
    * ``leaky`` (speakers or identical audio across sides, or epoch picked on test),
      ``selection`` (``val``/``test``), ``test_speaker_audio`` (``+speaker-norm``);
    * ``code_version`` (:func:`record_code_version`).

    Rows are compared only when their keys agree (:func:`key_diff` names what differs).
    """
    c = record.get("config", {})
    identity = record.get("identity") or {}
    corpus = record.get("corpus_label") or c.get("corpus")
    return {
        "task": record.get("task", "categorical"),
        "corpus": corpus,
        "data": (identity.get("manifest") or {}).get("sha256"),
        "test_corpus": record.get("test_corpus") or corpus,
        "classes": tuple(record.get("classes") or record.get("metrics", {}).get("labels") or ()),
        "label_map": tuple(sorted((c.get("merge") or {}).items())),
        # a folds file is its content (``folds``), not the path it was given by
        "protocol": "folds_file" if str(c.get("protocol")).startswith("folds_file:") else c.get("protocol"),
        "folds": (identity.get("settings") or {}).get("folds_file_sha256"),
        "leaky": bool(record.get("leaky", False)),
        "selection": c.get("selection", "val"),
        "test_speaker_audio": uses_test_speaker_audio(record),
        "code_version": record_code_version(record),
    }


def set_key(runs: Iterable[dict]) -> dict:
    """The :func:`comparability_key` of several records (a result set): a field on which
    they disagree holds ``("mixed", value, …)`` — a mixed set, flagged wherever it is used."""
    keys = [comparability_key(r) for r in runs]
    out = {}
    for field in KEY_FIELDS:
        values = sorted({repr(k[field]): k[field] for k in keys}.items())
        out[field] = values[0][1] if len(values) == 1 else ("mixed", *(v for _, v in values))
    return out


def key_id(key: dict) -> str:
    """A short name of a comparability key (8 hex digits), for tables and groups."""
    return hashlib.sha256(repr([key[f] for f in KEY_FIELDS]).encode()).hexdigest()[:8]


def key_diff(a: dict, b: dict, ignore: Iterable[str] = ()) -> list[str]:
    """The fields of two comparability keys that differ (``ignore`` left out), as
    ``field (a vs b)`` strings; empty when the two are comparable.

    >>> a = {"classes": ("a", "b"), "leaky": False}
    >>> key_diff(a, {"classes": ("a", "b", "c"), "leaky": False})
    ["classes (('a', 'b') vs ('a', 'b', 'c'))"]
    """
    ignore = set(ignore)
    return [f"{f} ({_short(a.get(f))} vs {_short(b.get(f))})" for f in a
            if f not in ignore and a.get(f) != b.get(f)]


def _short(value) -> str:
    """A key's value as shown in a message (hashes cut to 10 digits)."""
    if isinstance(value, str) and len(value) == 64:
        return value[:10]
    return repr(value) if isinstance(value, tuple) else str(value)


def key_flags(key: dict) -> list[str]:
    """What a comparison involving a set of this key must say about it: leaky, selected on
    test, using the test speakers' audio, or mixed (records that disagree on a field)."""
    flags = [f"mixed {f}" for f, v in key.items() if isinstance(v, tuple) and v[:1] == ("mixed",)]
    if key.get("leaky") is True:
        flags.append("leaky")
    if key.get("selection") == "test":
        flags.append("epoch selected on test")
    if key.get("test_speaker_audio") is True:
        flags.append("uses the test speakers' audio")
    return flags


def describe_key(key: dict) -> str:
    """A comparability key in words, as ``collect`` heads each group of rows."""
    def shown(field):
        v = key.get(field)
        return f"mixed ({', '.join(map(_short, v[1:]))})" if isinstance(v, tuple) and v[:1] == ("mixed",) else v
    classes = key.get("classes") or ()
    n = "mixed" if classes[:1] == ("mixed",) else len(classes)
    data = shown("data")
    parts = [f"{shown('task')} task", f"corpus {shown('corpus')}"
             + (f" (data {data[:10]})" if isinstance(data, str) else " (data hash unknown)"),
             f"tested on {shown('test_corpus')}", f"{n} classes {list(classes) if n != 'mixed' else shown('classes')}",
             f"merged {dict(key['label_map'])}" if key.get("label_map") and key["label_map"][:1] != ("mixed",) else
             ("label map " + str(shown("label_map")) if key.get("label_map") else "no label map"),
             f"protocol {shown('protocol')}" + (f" (folds file {str(key['folds'])[:10]})" if key.get("folds") else ""),
             "LEAKY" if key.get("leaky") is True else "leaky: mixed" if key.get("leaky") is not False else "not leaky",
             f"selected on {shown('selection')}",
             "USES TEST-SPEAKER AUDIO" if key.get("test_speaker_audio") is True else
             ("test-speaker audio: mixed" if key.get("test_speaker_audio") is not False else "no test-speaker audio"),
             f"code {shown('code_version')}"]
    return " · ".join(str(p) for p in parts)


def run_stem(config, fingerprint: str) -> Path:
    """The record's path without suffix, for a run of ``config`` with ``fingerprint``."""
    root = Path(config.output_dir) if config.output_dir else outputs_dir()
    name = result_name(config.name, config.selection, config.recipe.speaker_norm)
    return record_stem(root / "results", config.experiment, name, corpus_label(config),
                       config.protocol, fingerprint, config.fold, config.seed)


def run_identity(config, classes: Iterable[str], manifest: pd.DataFrame) -> dict:
    """What determines a run's result, fold and seed aside: the settings (the config
    without the fields it declares ``runtime``, :func:`serlib.fields.runtime_fields`), the classes,
    and the manifest's content (utterance ids, labels, speakers and each file's content
    hash, or size and modification time when no hash is there), and the precision when it
    is not fp32 (``bf16``/``fp16`` autocast on CUDA, :func:`serlib.device.precision_name`:
    such a run computes other numbers than on the CPU)."""
    runtime = runtime_fields(config)
    settings = {k: v for k, v in config.to_dict().items() if k not in runtime}
    for dotted in (f for f in runtime if "." in f):  # run-time fields of a nested config
        head, _, rest = dotted.partition(".")
        if isinstance(settings.get(head), dict):
            settings[head] = {k: v for k, v in settings[head].items() if k != rest}
    for name, default in LATER_FIELDS.items():
        if settings.get(name, default) == default:
            settings.pop(name, None)
    if getattr(config, "recipe", None) is not None and config.recipe.is_paper:
        del settings["recipe"]  # runs from before the recipe switches keep their fingerprints
    if config.protocol.startswith("folds_file:"):  # the folds are the file's content, not its name
        settings["folds_file_sha256"] = folds_source_sha256(config.protocol)
        settings["protocol"] = "folds_file"  # the same file by another path is the same run
    h = hashlib.sha256()
    # the dimensional tasks' targets are part of the data (the categorical task's columns stay as they were)
    rated = list(config.dims) if getattr(config, "task", "categorical") != "categorical" else []
    columns = [UTT_ID, LABEL, SPEAKER, *rated] + ([AUDIO_HASH] if AUDIO_HASH in manifest.columns else [PATH])
    for row in manifest.sort_values(UTT_ID)[columns].itertuples(index=False):
        *fields, audio_id = row
        if AUDIO_HASH not in manifest.columns:
            st = os.stat(audio_id)
            audio_id = f"{st.st_size}:{st.st_mtime_ns}"
        h.update("\0".join(map(str, (*fields, audio_id))).encode() + b"\n")
    identity = {"settings": json.loads(json.dumps(atomic.strict_json(settings, _json_default))),
                "classes": list(classes),
                "manifest": {"n": len(manifest), "sha256": h.hexdigest(), "audio": columns[-1]}}
    return with_precision(identity, precision_name(config.device, config.amp))


def with_precision(identity: dict, precision: str) -> dict:
    """``identity`` naming ``precision`` (fp32, the CPU's, is left unsaid: the fingerprints
    of fp32 runs stay those of the runs made before precision was part of it)."""
    identity = {k: v for k, v in identity.items() if k != "precision"}
    return identity if precision == "fp32" else {**identity, "precision": precision}


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
    return out + [k for k in ("classes", "manifest", "precision") if a.get(k) != b.get(k)]


def run_fingerprint(config, manifest: pd.DataFrame) -> tuple[str, dict]:
    """``(fingerprint, identity)`` of a run on ``manifest`` (:func:`run_identity`)."""
    classes = list(config.classes) if config.classes else sorted(manifest[LABEL].unique())
    identity = run_identity(config, classes, manifest)
    return fingerprint(identity), identity


def write(record: dict, predictions: pd.DataFrame, stem: Path, val_predictions: pd.DataFrame | None = None) -> Path:
    """Write ``stem.predictions.csv`` (and ``stem.val-predictions.csv``: the validation
    split's outputs with the selected model, for calibration) then ``stem.json`` (the JSON
    last: a record never points at predictions that are not there). The JSON is strict:
    NaN (e.g. the recall of a class absent from a test fold) is written as ``null``."""
    pred_path = stem.with_name(stem.name + ".predictions.csv")
    atomic.write_text(pred_path, predictions.to_csv(index=False))
    record = {**record, "predictions": pred_path.name}
    if val_predictions is not None:
        val_path = stem.with_name(stem.name + VAL_SUFFIX)
        atomic.write_text(val_path, val_predictions.to_csv(index=False))
        record["val_predictions"] = val_path.name
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


# What "the code" of a record is: the package and its declared dependencies. Notebooks,
# tests and docs are left out: they compute nothing a record holds, and checking them would
# run the notebooks' git filter on every record.
CODE_PATHS = ("serlib", "pyproject.toml")


@functools.lru_cache(maxsize=1)
def git_state() -> tuple[str | None, bool | None, str | None]:
    """``(commit, dirty, sha256 of the uncommitted changes)`` of the code this process runs
    (:data:`CODE_PATHS`), read once per process; ``(None, None, None)`` without git.

    Uncommitted changes are edits of tracked files *and* untracked files (not ignored) under
    the package: a new module that is not committed is code the commit lacks, so the tree
    is dirty and the hash covers the diff and each untracked file's name and content."""
    return read_git_state(Path(__file__).resolve().parents[1])


def read_git_state(root: Path) -> tuple[str | None, bool | None, str | None]:
    """:func:`git_state` of the checkout at ``root``."""
    def git(*args: str) -> bytes:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, timeout=60, check=True).stdout

    try:
        commit = git("rev-parse", "HEAD").decode().strip() or None
        changed = git("status", "--porcelain", "--untracked-files=all", "-z", "--", *CODE_PATHS)
        dirty = bool(changed.strip())
        diff = None
        if dirty and commit:  # two dirty trees at one commit are different code: the hash tells them apart
            h = hashlib.sha256(git("diff", "HEAD", "--", *CODE_PATHS))
            untracked = sorted(e[3:] for e in changed.split(b"\0") if e.startswith(b"?? "))
            for name in untracked:
                h.update(b"\0untracked\0" + name + b"\0" + (root / name.decode()).read_bytes())
            diff = h.hexdigest()
    except (OSError, subprocess.SubprocessError) as e:
        log.debug("no git state: %s", e)
        return None, None, None
    return commit, dirty, diff


def provenance() -> dict:
    """Package versions, git commit and machine, stored with every record."""
    import sklearn
    import torch
    import torchaudio

    commit, dirty, diff = git_state()
    return {
        "serlib": __version__, "torch": torch.__version__, "torchaudio": torchaudio.__version__,
        "numpy": np.__version__, "pandas": pd.__version__, "sklearn": sklearn.__version__,
        "python": platform.python_version(), "platform": platform.platform(),
        "git_commit": commit, "git_dirty": dirty, "git_diff_sha256": diff,
    }


RECORD_KEYS = ("config", "metrics", "fingerprint", "corpus_label", "test_speakers", "history", "timing")
_NUMBER, _INT = (int, float), int
# What the tables, statistics and sweeps read from a record: (dotted field, type). A record
# lacking one (an older layout, a hand edit) is refused when read, naming the field.
RECORD_SCHEMA = (
    ("config", dict), ("config.experiment", str), ("config.name", str), ("config.protocol", str),
    ("config.fold", _INT), ("config.seed", _INT),
    ("metrics", dict), ("metrics.n", _INT),
    ("fingerprint", str), ("corpus_label", str), ("test_speakers", list), ("history", list),
    ("timing", dict), ("timing.seconds_per_epoch", _NUMBER), ("timing.total_seconds", _NUMBER),
    ("leaky", bool), ("best_epoch", _INT), ("device", str), ("predictions", str),
)
# the metrics of each task (a record's ``config.task``; categorical when absent)
TASK_SCHEMA = {
    "categorical": (("metrics.wa", _NUMBER), ("metrics.ua", _NUMBER), ("metrics.macro_f1", _NUMBER),
                    ("metrics.labels", list), ("metrics.recall", dict), ("metrics.confusion", list)),
    "dimensional": (("metrics.ccc_mean", _NUMBER), ("metrics.dims", list)),
}
TASK_SCHEMA["multitask"] = TASK_SCHEMA["categorical"] + TASK_SCHEMA["dimensional"]
PREDICTION_COLUMNS = ("utt_id", "speaker", "truth", "prediction")
VAL_SUFFIX = ".val-predictions.csv"  # the validation split's outputs (records from before have none)


def record_task(rec: dict) -> str:
    """A record's task (``config.task``; records from before it are categorical)."""
    return (rec.get("config") or {}).get("task", "categorical")


def prediction_columns(rec: dict) -> list[str]:
    """The columns a record's predictions file must have."""
    task = record_task(rec)
    dims = rec["metrics"].get("dims", []) if task != "categorical" else []
    base = list(PREDICTION_COLUMNS) if task != "dimensional" else list(PREDICTION_COLUMNS[:3])
    return base + [f"{side}_{d}" for d in dims for side in ("true", "pred")]


def schema_problem(rec) -> str | None:
    """What makes ``rec`` unreadable as a record of this version (the first problem), or None."""
    if not isinstance(rec, dict):
        return f"not a serlib record (a JSON {type(rec).__name__}, not an object)"
    missing = [k for k in RECORD_KEYS if k not in rec]
    if missing:
        return f"not a serlib record of this version (missing {missing})"
    task = record_task(rec) if isinstance(rec.get("config"), dict) else "categorical"
    if task not in TASK_SCHEMA:
        return f"field 'config.task' is {task!r}, expected one of {sorted(TASK_SCHEMA)}"
    for dotted, kind in RECORD_SCHEMA + TASK_SCHEMA[task]:
        value, parts = rec, dotted.split(".")
        for part in parts:
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
            shown = "missing" if value is None else f"a {type(value).__name__}"
            return f"field {dotted!r} is {shown}, expected {getattr(kind, '__name__', 'a number')} " \
                   "(a record of an older layout, or edited): run the sweep again to replace it"
    return None


@dataclass(frozen=True, eq=False)
class Record(Mapping):
    """One run's record, read-only: the fields its JSON file holds (``fields``) and the
    file it lies in (``path``, None before it is written).

    The class owns the record: its schema (:data:`RECORD_SCHEMA`, :meth:`problem`), how it
    is built (:func:`write_record`), written (:meth:`write`) and read (:meth:`read`); its
    predictions are read on request (:meth:`load_predictions`), never kept in it. It reads
    like the JSON object (``record["metrics"]["ua"]``, ``record.get("leaky")``); besides the
    file's fields it answers only ``path`` and ``predictions_path``, derived from where it
    lies — no hidden keys. Its comparability key, shown name and code version are
    :attr:`key`, :attr:`name` and :attr:`code_version`."""

    fields: dict
    path: str | None = None

    def __getitem__(self, key: str):
        if self.path is not None and key == "path":
            return self.path
        if self.path is not None and key == "predictions_path":
            return str(Path(self.path).with_name(self.fields["predictions"]))
        return self.fields[key]

    def __iter__(self):
        yield from self.fields
        if self.path is not None:
            yield from ("path", "predictions_path")

    def __len__(self) -> int:
        return len(self.fields) + (2 if self.path is not None else 0)

    @staticmethod
    def problem(fields) -> str | None:
        """What makes ``fields`` unreadable as a record of this version, or None."""
        return schema_problem(fields)

    @classmethod
    def read(cls, path: str | Path) -> Record:
        """The record at ``path``, checked against :data:`RECORD_SCHEMA` and with its
        predictions CSV beside it; raises :class:`~serlib.errors.DataError` naming the file
        and the field when it is not valid JSON, lacks a field of the schema (a truncated,
        foreign or older record), or its predictions file is missing, outside its folder
        or lacks columns. Sweeps run such a record's fold again; ``collect`` skips and
        counts it."""
        path = Path(path)
        try:
            fields = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise DataError(path, f"damaged results record ({e})") from e
        problem = cls.problem(fields)
        if problem:
            raise DataError(path, problem)
        name = fields["predictions"]
        if Path(name).name != name or name in ("", ".", ".."):
            raise DataError(path, f"field 'predictions' must name a file beside the record, got {name!r}")
        predictions = path.with_name(name)
        try:
            with open(predictions, encoding="utf-8") as f:
                header = f.readline().strip().split(",")
        except OSError as e:
            raise DataError(path, f"its predictions file {predictions.name} cannot be read ({e.strerror or e})") from None
        lacking = [c for c in prediction_columns(fields) if c not in header]
        if lacking:
            raise DataError(path, f"its predictions file {predictions.name} lacks the column(s) {lacking}")
        fields.pop("path", None)  # a field of this name would hide where the record lies
        fields.pop("predictions_path", None)
        return cls(fields, str(path))

    def write(self, predictions: pd.DataFrame, stem: Path, val_predictions: pd.DataFrame | None = None) -> Record:
        """Write the predictions (and the validation split's) and the record at ``stem``
        (:func:`write`); the record as written, with its path."""
        path = write(self.fields, predictions, stem, val_predictions)
        extra = {"val_predictions": stem.name + VAL_SUFFIX} if val_predictions is not None else {}
        return Record({**self.fields, "predictions": stem.name + ".predictions.csv", **extra}, str(path))

    def to_dict(self) -> dict:
        """The fields as the JSON file holds them (a copy)."""
        return json.loads(json.dumps(self.fields, default=_json_default))

    def load_predictions(self) -> pd.DataFrame:
        """The predictions CSV (:func:`read_predictions`), read on request."""
        return read_predictions(self)

    def load_val_predictions(self) -> pd.DataFrame | None:
        """The validation split's predictions (same columns), or None for a record written
        before they were kept (or one whose file is gone: run the fold again to get them)."""
        name = self.fields.get("val_predictions")
        if not name or self.path is None or Path(name).name != name:
            return None
        path = Path(self.path).with_name(name)
        if not path.is_file():
            return None
        st = path.stat()
        return _read_predictions(str(path), st.st_mtime_ns, st.st_size).copy()

    @property
    def key(self) -> dict:
        """:func:`comparability_key`."""
        return comparability_key(self)

    @property
    def name(self) -> str:
        """:func:`record_name`: the name it is shown under."""
        return record_name(self)

    @property
    def code_version(self) -> str:
        """:func:`record_code_version`."""
        return record_code_version(self)


def read_record(path: str | Path) -> Record:
    """:meth:`Record.read`: one record, checked against its schema."""
    return Record.read(path)


def load_records(path: str | Path | None = None, damaged: list | None = None) -> list[Record]:
    """Every record under ``path`` (default ``outputs/results``). A damaged record is
    skipped with a warning naming it, and appended to ``damaged`` as ``(path, reason)``."""
    root = Path(path) if path is not None else outputs_dir() / "results"
    if path is not None and not root.is_dir():
        raise DataError(root, "no such folder of results records" if not root.exists() else "not a folder")
    records = []
    for f in sorted(root.rglob("*.json")):
        try:
            records.append(read_record(f))
        except DataError as e:
            log.warning("skipped %s", e)
            if damaged is not None:
                damaged.append((str(f), e.reason))
    return records


def _predictions_table(setup, outputs: dict) -> pd.DataFrame:
    """utt_id, speaker, truth, prediction, p_<class>… of one split's outputs."""
    speaker_of = dict(zip(setup.manifest[UTT_ID], setup.manifest[SPEAKER]))
    table = pd.DataFrame({"utt_id": outputs["ids"], "speaker": [speaker_of[u] for u in outputs["ids"]],
                          "truth": outputs["truth"], "prediction": outputs["prediction"]})
    for i, c in enumerate(setup.classes):
        table[f"p_{c}"] = np.asarray(outputs["probabilities"])[:, i].round(5)
    return table


def write_record(setup, test: dict, history: list[dict], best_epoch: int, best_metric: float,
                 seconds: float, extra: dict, val: dict | None = None) -> Record:
    """Build, write (atomically) and return the :class:`Record` (and predictions) of a
    scored fold.

    Args:
        setup: the fold's :class:`serlib.train.FoldSetup`.
        test: the test split's scores and per-utterance outputs (``Trainer.test``).
        history: one dict per epoch; ``best_epoch``/``best_metric``: the selection.
        seconds: the run's time; ``extra``: engine facts (device, gradient norms, …).
        val: the validation split's outputs with the selected model (kept beside the
            record for calibration, :mod:`serlib.explore`), or None.
    """
    config = setup.config
    speaker_of = dict(zip(setup.manifest[UTT_ID], setup.manifest[SPEAKER]))
    task = getattr(config, "task", "categorical")
    predictions = pd.DataFrame({"utt_id": test["ids"], "speaker": [speaker_of[u] for u in test["ids"]],
                                "truth": test["truth"]})
    if task != "dimensional":
        predictions["prediction"] = test["prediction"]
        for i, c in enumerate(setup.classes):
            predictions[f"p_{c}"] = np.asarray(test["probabilities"])[:, i].round(5)
    if task != "categorical":  # each dimension's truth and prediction, in the corpus's scale
        for j, d in enumerate(config.dims):
            predictions[f"true_{d}"] = np.asarray(test["true_values"])[:, j]
            predictions[f"pred_{d}"] = np.asarray(test["values"])[:, j].round(5)
    fold, store, split_ids = setup.fold, setup.store, setup.split_ids
    paths = dict(zip(setup.manifest[UTT_ID], setup.manifest[PATH]))
    in_fold = {u for ids in split_ids.values() for u in ids}
    n_parameters = sum(p.numel() for p in setup.model.parameters()) if isinstance(setup.model, nn.Module) else None
    record = {
        "task": task,  # "categorical": class labels (records without the field are categorical too)
        "config": config.to_dict(), "fingerprint": setup.fingerprint, "identity": setup.identity,
        "corpus_label": corpus_label(config), "classes": setup.classes,
        "leaky": config.leaky or fold.leaky, "speaker_independent": fold.speaker_independent,
        "metrics": record_metrics(task, test),
        "best_epoch": best_epoch, "selected_on": "test" if config.selection == "test" else "val",
        "best_selection_ua": best_metric, "history": history,
        **({"selection_metric": "mean of UA and ccc_mean" if task == "multitask" else "ccc_mean"}
           if task != "categorical" else {}),
        "test_speakers": fold.test_speakers, "val_speakers": fold.val_speakers,
        "split_sizes": {k: len(v) for k, v in split_ids.items()}, "train_ids": split_ids["train"],
        "train_items_after_oversampling": len(setup.datasets["train"]),
        "fold_notes": fold.notes, **({"test_set": fold.test_set} if getattr(fold, "test_set", "") else {}), "dedup": config.dedup, "recipe": config.recipe.changed(),
        "uses_test_speaker_audio": config.recipe.speaker_norm,
        "cross_corpus": is_cross(config.protocol),
        "test_corpus": test_corpus_label(config),
        "cross_dropped": setup.manifest.attrs.get("cross_dropped"),
        "skipped_inputs": setup.input_skips,
        "input_warnings": [{"utt_id": u, "path": paths.get(u, p), "message": m}
                           for u, p, m in store.warnings if u in in_fold],
        "manifest_skipped": [list(x) for x in setup.manifest.attrs.get("skipped", [])],
        "features": store.config.key(),
        "normalizer": setup.normalizer.state() if setup.normalizer.mode == "global" else {"mode": setup.normalizer.mode},
        "n_parameters": n_parameters, "n_features": setup.n_features,
        "weights": weights_path(setup.stem.with_suffix(".json")).name if setup.experiment.neural else None,
        "context": {k: v for k, v in setup.context.items() if k != "extras" and not isinstance(v, torch.Tensor)},
        "timing": {"total_seconds": seconds,
                   "seconds_per_epoch": float(np.mean([h["seconds"] for h in history])) if history else 0.0,
                   "feature_seconds": store.seconds},
        "torch_threads": torch.get_num_threads(), "provenance": provenance(), **extra,
    }
    if setup.input_skips:
        log.warning("fold %d: %d input files skipped: %s", config.fold, len(setup.input_skips),
                    [(s["path"], s["reason"]) for s in setup.input_skips[:3]])
    categorical = task == "categorical"  # calibration needs class probabilities
    val_predictions = _predictions_table(setup, val) if categorical and val is not None and len(val["ids"]) else None
    return Record(record).write(predictions, setup.stem, val_predictions)


def read_predictions(record: dict) -> pd.DataFrame:
    """A record's predictions (utt_id, speaker, truth, prediction, p_<class>…), read from
    its CSV on request (a file is parsed once per process while it is unchanged; the
    record itself holds no copy)."""
    path = Path(record["predictions_path"])
    st = path.stat()
    return _read_predictions(str(path), st.st_mtime_ns, st.st_size).copy()


@functools.lru_cache(maxsize=256)
def _read_predictions(path: str, mtime_ns: int, size: int) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"utt_id": str, "speaker": str})
