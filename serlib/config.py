"""Experiment configs: dataclasses whose defaults are the paper's values.

Configs are built with :func:`serlib.fields.from_dict`, which rejects unknown keys (a
misspelled key is an error, never silently ignored) and converts strings from the command
line (``--set epochs=3``) to the field's type. :class:`ExperimentConfig` holds the fields
every experiment has; each experiment file subclasses it with its paper's values.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from .constants import DIMENSIONS, FOUR_CLASSES, LABELS
from .device import check_device_name
from .errors import ConfigError
from .fields import setting, validate_fields
from .protocols import parse_protocol
from .recipe import RecipeConfig
from .targets import TASKS

# an hour in one input: beyond it, a typo that would allocate without end
MAX_INPUT_SECONDS = 3600.0


@dataclass
class ExperimentConfig:
    """Fields every experiment has: data, protocol, run and engine settings. Each field
    declares its checks (:func:`serlib.fields.setting`); ``runtime=True`` marks a field
    that changes how a run executes, never what it computes: it is left out of the run's
    fingerprint (:func:`serlib.records.run_identity`)."""

    experiment: str = ""
    name: str = setting("default", runtime=True)  # variant name (e.g. a Table 1 column); part of the result key
    # data
    corpus: str = "synthetic"
    data_root: str | None = setting(None, runtime=True)  # the manifest's content is fingerprinted
    subset: str | None = setting(None, choices=(None, "improvised", "scripted", "all"))  # IEMOCAP/synthetic: improvised | scripted | all
    classes: tuple[str, ...] = FOUR_CLASSES
    merge: dict[str, str] = field(default_factory=dict)
    # what the model predicts (serlib.targets): the classes, the dimensions, or both
    task: str = setting("categorical", choices=TASKS)  # categorical | dimensional | multitask
    dims: tuple[str, ...] = DIMENSIONS  # dimensional/multitask: the manifest's columns regressed (arousal, valence, dominance)
    dim_loss: str = setting("ccc", choices=("ccc", "mse"))  # dimensional/multitask: 1 - CCC per dimension, averaged | MSE
    task_weight: float = setting(0.5, ge=0.0, le=1.0)  # multitask: the dimensions' share of the loss
    protocol: str = "loso"             # or cross:TEST_CORPUS (serlib.transfer)
    test_data_root: str | None = setting(None, runtime=True)  # cross:…: the test corpus's folder
    test_subset: str | None = setting(None, choices=(None, "improvised", "scripted", "all"))  # cross:…: the test corpus's IEMOCAP/synthetic subset
    fold: int = setting(1, ge=1, runtime=True)  # part of the record's key; 1-based
    seed: int = setting(1, ge=0, runtime=True)
    # input checks (each failure is a counted skip listed in the record, or an error)
    dedup: bool = True                 # byte-identical audio never on two sides of a split
    min_seconds: float = setting(0.25, ge=0)  # shorter files are skipped
    max_seconds: float | None = setting(60.0, gt=0, le=MAX_INPUT_SECONDS)  # longer files are centre-cropped to this, with a warning
    bad_audio: str = setting("skip", choices=("skip", "raise"))  # "skip": undecodable/too short/silent files are counted skips; "raise"
    normalization: str = setting("global", choices=("global", "per_feature", "none"))  # feature normalisation fitted on the training split: global | per_feature | none
    # training-recipe switches, all off by default (the paper's recipe): ``recipe=modern``
    # or ``recipe.mixup=0.2``… (:mod:`serlib.recipe`)
    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    # training
    epochs: int = setting(30, ge=1)
    batch_size: int = setting(16, ge=1)
    patience: int | None = setting(None, ge=1)  # early stopping on validation UA (epochs without improvement)
    selection: str = setting("val", choices=("val", "test"))  # "val"; "test" reproduces a leaky published protocol
    grad_clip: float | None = setting(None, gt=0)
    bucket: bool = True                # batch utterances of similar length (less padding)
    # engine
    device: str = setting("auto", runtime=True)  # auto -> cuda, then mps, then cpu
    amp: bool = True                   # autocast on CUDA only
    channels_last: bool = setting(False, runtime=True)
    compile: bool | None = setting(None, runtime=True)  # None: on for long runs of models it speeds up (device.COMPILE_MIN_STEPS)
    num_workers: int = setting(0, ge=0, runtime=True)
    features_on_device: bool | None = setting(None, runtime=True)  # batches formed on the device; None: on for CUDA within the budget
    device_feature_mb: int = setting(2048, ge=0, runtime=True)  # budget of features_on_device=None
    feature_workers: int = setting(4, ge=1, runtime=True)
    grad_norm_every: int = setting(10, ge=0, runtime=True)  # record per-layer gradient norms every N steps (0: never)
    output_dir: str | None = setting(None, runtime=True)  # default: outputs/
    resume: bool = setting(False, runtime=True)
    resume_other_code: bool = setting(False, runtime=True)  # resume a checkpoint written by another code version (refused by default)
    progress: bool = setting(True, runtime=True)

    def __post_init__(self):
        if isinstance(self.classes, list):
            self.classes = tuple(self.classes)
        validate(self)

    @property
    def leaky(self) -> bool:
        """True when the protocol lets test data steer model selection or shares speakers."""
        return self.selection == "test" or self.protocol.startswith("stratified")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Fields added after the first records: left out of a fingerprint while at these values,
# so that runs made before them keep their fingerprints (see serlib.results.run_identity).
LATER_FIELDS = {"test_subset": None, "task": "categorical", "dims": DIMENSIONS, "dim_loss": "ccc", "task_weight": 0.5,
                "regressor": "svr_linear"}

NAME_MAX = 80
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=,@-]{0,%d}" % (NAME_MAX - 1))  # noqa: UP031


def validate(config) -> None:
    """Type, range and choice checks of every field; raises :class:`ConfigError` naming
    the field, the value and what it should be.

    >>> from serlib.experiments import make_config
    >>> make_config("cnn_lstm", {"batch_size": 0})
    Traceback (most recent call last):
    ...
    serlib.errors.ConfigError: batch_size must be >= 1, got 0
    """
    validate_fields(config)
    if not NAME_PATTERN.fullmatch(config.name):
        raise ConfigError(f"name must be 1-{NAME_MAX} characters of ASCII letters (A-Z, a-z), digits and "
                          ". _ + - = , @, starting with a letter, digit or _ (it names a folder of the results; "
                          f"accents and other scripts are refused so that names travel), got {config.name!r}")
    if getattr(config, "max_seconds", None) is not None and config.max_seconds < config.min_seconds:
        raise ConfigError(f"max_seconds ({config.max_seconds}) is below min_seconds ({config.min_seconds})")
    bad = [c for c in (*config.classes, *config.merge, *config.merge.values()) if c not in LABELS]
    if bad:
        raise ConfigError(f"unknown label(s) {bad} in classes/merge; canonical labels: {', '.join(LABELS)}")
    if len(set(config.classes)) != len(config.classes) or (config.classes and len(config.classes) < 2):
        raise ConfigError(f"classes must be at least 2 distinct labels, got {list(config.classes)}")
    parse_protocol(config.protocol)
    if isinstance(config.dims, list):
        config.dims = tuple(config.dims)
    if not config.dims or len(set(config.dims)) != len(config.dims) or set(config.dims) - set(DIMENSIONS):
        raise ConfigError(f"dims must be distinct names among {list(DIMENSIONS)}, got {list(config.dims)}")
    if config.task != "categorical" and getattr(config, "recipe", None) is not None and not config.recipe.is_paper:
        raise ConfigError(f"task={config.task}: the recipe switches (mixup, label smoothing, …) are for the "
                          f"categorical task; leave recipe at its default ({config.recipe.changed()})")
    check_device_name(config.device)


def config_table(config) -> Any:
    """The resolved config as a two-column table (nested model fields as ``model.x``),
    for notebooks: one row per field instead of one long wrapped line."""
    import pandas as pd

    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            if isinstance(v, dict) and dataclasses.is_dataclass(getattr(config, k, None)) and not prefix:
                out.update(flat(v, f"{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    rows = flat(config.to_dict())
    return pd.DataFrame({"field": list(rows), "value": [str(v) for v in rows.values()]}).set_index("field")
