"""A fold ready to train: its features, splits, per-fold context, normaliser, datasets and
model (:func:`setup_fold`), and the batches of each split (:func:`make_loaders`).

Files that give no features are counted skips (or an error with ``bad_audio="raise"``);
every split must keep utterances of at least two classes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from . import experiments, recipe
from .augment import oversample_indices
from .cache import FeatureStore
from .config import ExperimentConfig
from .constants import LABEL, SPEAKER, UTT_ID
from .data import BucketBatchSampler, DeviceBatches, FeatureDataset, collate, item_lengths
from .device import GPU_SHARE_ENV, free_memory_mb, precision_name
from .errors import ConfigError, DataError
from .features import Normalizer
from .features import n_features as feature_count
from .planning import Plan, plan_run
from .records import fingerprint, run_stem, with_precision
from .targets import SCALER_KEY, TargetScaler, n_outputs

log = logging.getLogger(__name__)


@dataclass
class FoldSetup:
    """Everything between a config and a trainable fold: manifest, fold, features,
    splits, per-fold context, normaliser, datasets, model — built once, by
    :func:`setup_fold`, for training (:func:`serlib.train.run_fold`) and for reloading a trained
    fold's data (:func:`serlib.analysis.load_trained`)."""

    config: ExperimentConfig
    experiment: experiments.Experiment
    manifest: pd.DataFrame
    fold: object
    classes: list[str]
    store: FeatureStore
    split_ids: dict[str, list[str]]
    context: dict
    datasets: dict[str, FeatureDataset]
    normalizer: Normalizer
    model: nn.Module
    identity: dict
    fingerprint: str
    input_skips: list[dict]
    n_features: int
    stem: Path  # the record's path without suffix
    # task=dimensional/multitask: each split utterance's standardised dimensions (D,), and
    # the scaler fitted on the training split (also in ``context["target_scaler"]``)
    targets: dict[str, torch.Tensor] | None = None
    scaler: TargetScaler | None = None

    def class_counts(self) -> torch.Tensor:
        labels = [self.datasets["train"].classes[t] for t in self.datasets["train"].targets]
        return torch.tensor([labels.count(c) for c in self.classes], dtype=torch.float32)


def setup_fold(config: ExperimentConfig, plan: Plan | None = None, train_ids: list[str] | None = None) -> FoldSetup:
    """Build a fold from its config (see :class:`FoldSetup`).

    Files that give no features (undecodable, shorter than ``min_seconds``, silent) are
    counted skips with ``bad_audio="skip"`` and an error with ``"raise"``; an utterance
    of the fold that has no features and was not skipped (a stale cache) is an error.

    Args:
        plan: the manifest, fingerprint and folds, when a plan computed them (else
            computed here, :func:`serlib.planning.plan_run`).
        train_ids: rebuild the per-fold context from these training ids (a record's).
    """
    exp = experiments.create(config)
    if config.task != "categorical" and not exp.regression:
        raise ConfigError(f"experiment {config.experiment!r} has no regression head (task={config.task}); "
                          f"experiments with one: {sorted(n for n, c in experiments.EXPERIMENTS.items() if c.regression)}")
    plan = plan or plan_run(config)
    manifest, fp, identity, folds = plan.manifest, plan.fingerprint, plan.identity, plan.folds[config.seed]
    here = precision_name(config.device, config.amp)
    if identity.get("precision", "fp32") != here:  # planned on another machine (a Ray driver without GPUs)
        identity = with_precision(identity, here)
        fp = fingerprint(identity)
    classes = identity["classes"]
    if not 1 <= config.fold <= len(folds):
        raise ConfigError(f"fold {config.fold} does not exist: protocol {config.protocol!r} has {len(folds)} folds")
    fold = folds[config.fold - 1]
    store = exp.extract(manifest)
    if config.recipe.speaker_norm:  # statistics of each speaker's own audio, test speakers' included
        speaker_of = dict(zip(manifest[UTT_ID], manifest[SPEAKER]))
        store = dataclasses.replace(store, features=recipe.speaker_normalize(store.features, speaker_of))
    skipped_ids = {utt for utt, _, _ in store.skipped}
    in_fold = {u for name in ("train", "val", "test") for u in getattr(fold, name)}
    input_skips = [{"utt_id": u, "path": p, "reason": r} for u, p, r in store.skipped if u in in_fold]
    if input_skips and config.bad_audio == "raise":
        first = input_skips[0]
        raise DataError(first["path"], f"{first['reason']} ({len(input_skips)} such files; bad_audio='skip' counts them)")
    split_ids = {}
    for name in ("train", "val", "test"):
        ids = getattr(fold, name)
        lost = [u for u in ids if u not in store and u not in skipped_ids]
        if lost:
            raise DataError(store.path, f"{len(lost)} utterances of the {name} split have no features and were "
                                        f"not skipped (e.g. {lost[:3]}): a stale or edited feature cache; delete it")
        split_ids[name] = [u for u in ids if u in store]
        if not split_ids[name]:
            raise DataError(None, f"fold {config.fold}: the {name} split has no usable utterances "
                                  f"({len(ids)} listed, all skipped)")
    label_of = dict(zip(manifest[UTT_ID], manifest[LABEL]))
    for name, ids in split_ids.items():  # scores of a one-class split mean nothing (UA 1.0 or 0.0)
        present = sorted({label_of[u] for u in ids})
        if len(present) < 2:
            raise DataError(None, f"fold {config.fold}: the {name} split holds only {present} of the classes "
                                  f"{classes} ({len(ids)} utterances); every split needs at least 2 classes "
                                  "(check merge / the label map, or the protocol)")
    train_labels = [label_of[u] for u in split_ids["train"]]
    factors = exp.train_oversampling()
    index = oversample_indices(train_labels, factors) if factors else None
    context = exp.prepare(manifest, {"train": train_ids} if train_ids is not None else split_ids)
    datasets = {name: FeatureDataset(store, ids, [label_of[u] for u in ids], classes,
                                     index if name == "train" else None, context.get("extras"))
                for name, ids in split_ids.items()}
    targets = scaler = None
    if config.task != "categorical":  # standardised on the training split only
        values = manifest.set_index(UTT_ID)[list(config.dims)]
        scaler = TargetScaler.fit(values.loc[split_ids["train"]].to_numpy(), config.dims)
        ids = [u for split in split_ids.values() for u in split]
        scaled = torch.tensor(scaler.transform(values.loc[ids].to_numpy()), dtype=torch.float32)
        targets = dict(zip(ids, scaled))
        context = {**context, SCALER_KEY: scaler.state()}
    normalizer = Normalizer(config.normalization).fit(store[u] for u in split_ids["train"])
    n_features = feature_count(store[split_ids["train"][0]])
    model = exp.model(n_features, n_outputs(config.task, len(classes), config.dims), context)
    return FoldSetup(config, exp, manifest, fold, classes, store, split_ids, context, datasets, normalizer,
                     model, identity, fp, input_skips, n_features, run_stem(config, fp), targets, scaler)


def _loader(dataset, config, shuffle: bool, generator: torch.Generator | None, device) -> DataLoader:
    """Training batches follow ``config.bucket``; evaluation is always length-bucketed
    (metrics do not depend on the order, and long utterances get small batches)."""
    # A DataLoader draws a base seed for its workers at every epoch; a private generator
    # keeps that draw out of the global stream (VTLP, dropout), which then does not depend
    # on how batches are formed (DataLoader or DeviceBatches).
    common = dict(collate_fn=collate, num_workers=config.num_workers, pin_memory=device.type == "cuda")
    if config.bucket or not shuffle:
        sampler = BucketBatchSampler(item_lengths(dataset), config.batch_size, shuffle, generator)
        return DataLoader(dataset, batch_sampler=sampler, generator=torch.Generator().manual_seed(config.seed),
                          **common)
    return DataLoader(dataset, batch_size=config.batch_size, shuffle=shuffle, generator=generator, **common)


def make_loaders(setup: FoldSetup, config: ExperimentConfig, generator: torch.Generator, device) -> dict:
    """Train/val/test batches: on the device (:class:`~serlib.data.DeviceBatches`) when
    ``features_on_device`` is true, or None and the device is CUDA and the fold's
    features fit ``device_feature_mb`` and half the device's free memory (times the run's
    share of the GPU under Ray, ``--gpus-per-run 0.25``); else DataLoaders. Both give
    identical batches."""
    datasets = setup.datasets
    on_device = config.features_on_device
    usable = config.bucket and not any(d.extras for d in datasets.values())
    if on_device is None:
        size = sum(setup.store[u].numel() * setup.store[u].element_size() for ids in setup.split_ids.values()
                   for u in ids)
        free = free_memory_mb(device, float(os.environ.get(GPU_SHARE_ENV, 1.0)))
        on_device = free is not None and size <= min(config.device_feature_mb, free / 2) * 2**20
        if device.type == "cuda" and not on_device:
            log.info("features_on_device: the fold's %.0f MB exceed the budget (%d MB, half of %.0f MB free); "
                     "using DataLoaders", size / 2**20, config.device_feature_mb, free)
    if on_device and not usable:
        log.info("features_on_device needs bucketed batches and no text extras; using DataLoaders")
        on_device = False
    if not on_device:
        return {"train": _loader(datasets["train"], config, True, generator, device),
                "val": _loader(datasets["val"], config, False, None, device),
                "test": _loader(datasets["test"], config, False, None, device)}
    return {name: DeviceBatches(datasets[name], BucketBatchSampler(item_lengths(datasets[name]), config.batch_size,
                                                                   name == "train", generator if name == "train" else None),
                                device)
            for name in ("train", "val", "test")}


