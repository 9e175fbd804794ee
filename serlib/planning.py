"""Planning runs: the manifest is prepared, the fingerprint computed and the folds made
once, and every run of a sweep (or a single :func:`serlib.train.run_fold`) gets them.

    plan = plan("cnn_lstm", {"corpus": "emodb", "data_root": DIR}, folds="all", seeds=3)
    plan.todo      # [(config, note), …]: the runs to do
    plan.skipped   # the runs already recorded with this fingerprint
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from .config import ExperimentConfig
from .device import resolve_device
from .errors import ConfigError, DataError
from .manifests import resolve_values, run_manifest
from .protocols import Fold, make_folds
from .records import identity_diff, read_record, run_fingerprint, run_stem

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What became of one planned run."""

    fold: int
    seed: int
    status: str                 # done | skipped | failed
    wa: float | None = None
    ua: float | None = None
    path: str | None = None
    reason: str = ""
    seconds: float = 0.0
    ccc: float | None = None    # task=dimensional/multitask: the test split's mean CCC

    def line(self) -> str:
        head = f"fold {self.fold} seed {self.seed}"
        if self.status == "failed":
            return f"{head} FAILED: {self.reason}"
        scores = f" WA {self.wa:.3f} UA {self.ua:.3f}" if self.wa is not None else ""
        scores += f" CCC {self.ccc:.3f}" if self.ccc is not None else ""
        where = f" -> {self.path}" if self.path else ""
        return f"{head}: {self.status}{scores}{where}" + (f" ({self.reason})" if self.reason else "")


def parse_folds(folds: str | Iterable[int], n_folds: int) -> list[int]:
    """``"all"``, ``"1,2,5"`` or an iterable of fold numbers, checked against ``n_folds``.

    >>> parse_folds("2,1", 10), parse_folds("all", 3)
    ([1, 2], [1, 2, 3])
    """
    if isinstance(folds, int):
        folds = [folds]
    if isinstance(folds, str):
        if folds == "all":
            return list(range(1, n_folds + 1))
        try:
            folds = [int(f) for f in folds.split(",") if f.strip()]
        except ValueError:
            raise ConfigError(f"folds must be 'all' or numbers such as 1,2,3, got {folds!r}") from None
    folds = sorted(set(int(f) for f in folds))
    bad = [f for f in folds if not 1 <= f <= n_folds]
    if bad or not folds:
        raise ConfigError(f"folds {bad or '(none)'} do not exist: the protocol has folds 1..{n_folds}")
    return folds


@dataclass
class Plan:
    """Runs computed once: the first config (fold 1, seed 1), the manifest, the fingerprint
    and identity (the same for every fold and seed), the protocol's folds for each seed,
    the runs to do (each with a note) and those already recorded."""

    first: ExperimentConfig
    manifest: pd.DataFrame
    fingerprint: str
    identity: dict
    folds: dict[int, list[Fold]]  # by seed
    todo: list[tuple[ExperimentConfig, str]] = field(default_factory=list)
    skipped: list[Outcome] = field(default_factory=list)


def plan_run(config: ExperimentConfig, manifest: pd.DataFrame | None = None) -> Plan:
    """The plan of one run of ``config`` (for :func:`serlib.train.run_fold` called alone)."""
    manifest = run_manifest(config) if manifest is None else manifest
    fp, identity = run_fingerprint(config, manifest)
    return Plan(config, manifest, fp, identity, {config.seed: _folds(config, manifest)}, [(config, "")])


def _folds(config: ExperimentConfig, manifest: pd.DataFrame) -> list[Fold]:
    """The protocol's folds for ``config``'s seed; the content hash removes duplicates across
    sides (``dedup``), and reports and flags them when it is off (the leak check never
    depends on ``dedup``)."""
    return make_folds(manifest, config.protocol, seed=config.seed, dedup=config.dedup)


def plan(experiment: str, values: dict | None = None, folds: str | Iterable[int] = "all",
         seeds: int | Iterable[int] = 1, force: bool = False) -> Plan:
    """The runs of a sweep (:class:`Plan`): the manifest is prepared, the fingerprint
    computed and the folds made once, and every run gets them.

    A run is skipped when a record with its fingerprint exists; a damaged record or one
    made with other settings is re-run, and the plan says so in the run's note.
    """
    first, manifest = resolve_values(experiment, values)
    resolve_device(first.device)  # one clear error, not one failure per fold
    seed_list = list(range(1, seeds + 1)) if isinstance(seeds, int) else sorted(set(seeds))
    if not seed_list or min(seed_list) < 0:
        raise ConfigError(f"seeds must be >= 1 (a count) or a list of seeds >= 0, got {seeds!r}")
    fp, identity = run_fingerprint(first, manifest)  # fold and seed are not part of it
    out = Plan(first, manifest, fp, identity, {seed: _folds(replace(first, seed=seed), manifest)
                                               for seed in seed_list})  # folds may depend on the seed
    fold_list = parse_folds(folds, len(out.folds[seed_list[0]]))
    for seed in seed_list:
        for fold in fold_list:
            config = replace(first, fold=fold, seed=seed, resume=not force)
            stem = run_stem(config, fp)
            note = _other_settings(stem, identity)
            if stem.with_suffix(".json").is_file() and not force:
                try:
                    rec = read_record(stem.with_suffix(".json"))
                    if rec["fingerprint"] == fp:
                        out.skipped.append(Outcome(fold, seed, "skipped", rec["metrics"].get("wa"), rec["metrics"].get("ua"),
                                                   str(stem.with_suffix(".json")), "already recorded",
                                                   ccc=rec["metrics"].get("ccc_mean")))
                        continue
                except DataError as e:
                    note = f"{e}; running again"
                    log.warning("%s", note)
            out.todo.append((config, note))
    return out


def _other_settings(stem: Path, identity: dict) -> str:
    """A note when records of this fold and seed exist with other settings."""
    others = []
    for path in sorted(stem.parent.parent.glob(f"*/{stem.name}.json")):
        if path.parent == stem.parent:
            continue
        try:
            diff = identity_diff(read_record(path).get("identity", {}), identity)
        except DataError:
            continue
        others.append(f"{path.parent.name} (differs in {', '.join(diff) or 'nothing recorded'})")
    return ("records with other settings exist: " + "; ".join(others) + "; kept, and these settings run too"
            if others else "")


