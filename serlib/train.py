"""The training engine: ``run_fold(config)`` = manifest → folds → features → fit →
test → results record.

Model selection and early stopping use the validation split (UA) only; the test split
is scored once, by the selected weights, after training. (``selection="test"`` exists to
reproduce leaky published protocols and marks every record as leaky.)
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from . import atomic, experiments, metrics, progress, recipe
from .augment import VTLP, oversample_indices, vtlp_warp
from .cache import FeatureStore, with_audio_hashes
from .config import ExperimentConfig
from .constants import LABEL, SPEAKER, UTT_ID
from .corpora import corpus_errors, prepare_manifest, select_classes
from .corpora.cross import check_corpora, cross_manifest, shared_classes
from .data import Batch, BucketBatchSampler, DeviceBatches, FeatureDataset, collate, item_lengths
from .device import resolve_device
from .errors import ConfigError, DataError, SerlibError
from .features import Normalizer, prepare_input
from .protocols import Fold, is_cross, make_folds
from .records import code_version, provenance, run_fingerprint, run_stem, write_record
from .weights import save_weights, weights_path

log = logging.getLogger(__name__)


class TrainingError(SerlibError):
    """Training cannot go on (e.g. a NaN loss); names the epoch and batch."""


class RunBusy(SerlibError):
    """Another process holds the run's lock file (it is training this fold and seed now)."""


# Compiling Light-SERNet took 44 s and saved 0.15 s per step of 32 2-s utterances on this
# project's CPU: even after about 300 steps. Auto-compile (compile=None) waits for 1000.
COMPILE_MIN_STEPS = 1000


def should_compile(experiment, planned_steps: int) -> bool:
    """``compile=None``: compile when the model gains from it (its measured
    ``compile_speedup``) and the run is long enough to repay the compile time."""
    return experiment.compile_speedup > 1.2 and planned_steps >= COMPILE_MIN_STEPS


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """RNG states as plain types and tensors (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": random.getstate(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def layer_grad_norms(model: nn.Module) -> dict[str, float]:
    """L2 norm of the gradient per layer (parameters grouped by their module path)."""
    sq = defaultdict(float)
    for name, p in model.named_parameters():
        if p.grad is not None:
            layer = name.rsplit(".", 1)[0] if "." in name else name
            layer = layer.removesuffix(".conv")
            sq[layer] += float(p.grad.detach().float().pow(2).sum())
    return {k: math.sqrt(v) for k, v in sq.items()}


@dataclass
class FitState:
    """Everything a checkpoint holds besides the model and optimiser."""

    epoch: int = 0
    best_metric: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    best_state: dict | None = None
    history: list[dict] = field(default_factory=list)
    grad_norms: list[dict] = field(default_factory=list)
    step: int = 0
    best_source: str = "raw"  # which weights were selected: "raw" or "ema" (their moving average)


class Trainer:
    """One fold's training: ``fit()`` then ``test()``."""

    def __init__(self, config: ExperimentConfig, experiment, model: nn.Module, normalizer: Normalizer,
                 loaders: dict[str, DataLoader], classes: list[str], run_dir: Path, class_counts: torch.Tensor,
                 generator: torch.Generator):
        self.config, self.experiment, self.classes = config, experiment, classes
        self.device = resolve_device(config.device)
        self.model = model.to(self.device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.compiled = config.compile if config.compile is not None else should_compile(
            experiment, config.epochs * len(loaders["train"]))
        self.forward_model = torch.compile(self.model) if self.compiled else self.model
        self.normalizer = normalizer.to(self.device)
        self.loaders = loaders
        self.optimizer, self.scheduler = experiment.optimizer(self.model)
        self.loss_fn = experiment.loss(class_counts).to(self.device)
        self._apply_recipe(config.recipe, len(classes))
        self.use_amp = config.amp and self.device.type == "cuda"
        self.amp_dtype = torch.bfloat16 if self.use_amp and torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)
        self.generator = generator  # shuffling and per-epoch draws; saved in checkpoints
        self.run_dir = run_dir
        self.checkpoint_path = run_dir / "checkpoint.pt"
        self.fingerprint: str | None = None  # of the run; a checkpoint of another run is refused
        self.code_version = code_version(provenance())  # a checkpoint of other code is refused too
        self.resumed_from_code: str | None = None
        self.state = FitState()

    def _apply_recipe(self, r: recipe.RecipeConfig, n_classes: int) -> None:
        """The recipe switches (:mod:`serlib.recipe`) on top of the experiment's own
        optimiser, schedule and loss. Their random draws (masks, mixup pairs, VTLP α) come
        from a generator of their own, saved in checkpoints, so that turning a switch on
        does not change the batches' order."""
        self.recipe = r
        self.aug_generator = torch.Generator().manual_seed(self.config.seed + 1_000_003)
        kind = self.experiment.features()[0].kind
        if r.vtlp and kind not in ("spectrogram", "logmel"):
            raise ConfigError(f"recipe.vtlp warps spectrograms; {self.config.experiment} uses {kind} features")
        recipe.scale_lr(self.optimizer, self.scheduler, r.lr_scale)
        self.step_scheduler = None
        if r.schedule == "cosine":  # replaces the experiment's own per-epoch schedule
            self.scheduler = None
            self.step_scheduler = recipe.step_scheduler(self.optimizer, r, self.config.epochs * len(self.loaders["train"]))
        self.loss_fn = recipe.smooth(self.loss_fn, r.label_smoothing, n_classes)
        self.ema = recipe.ema_model(self.model, r.ema) if r.ema is not None else None

    # -- pieces ----------------------------------------------------------------------
    def prepare(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Normalise with training statistics; padding back to zero."""
        x = prepare_input(self.normalizer, x, lengths)
        if self.config.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def autocast(self):
        return torch.autocast(device_type="cuda", dtype=self.amp_dtype, enabled=self.use_amp)

    @torch.no_grad()
    def evaluate(self, split: str, test: bool = False, augment_alpha: float | None = None,
                 model: nn.Module | None = None) -> dict:
        """Metrics (and per-utterance outputs) of ``split`` with the current weights (or
        those of ``model``, e.g. the moving average)."""
        model = model or self.forward_model
        self.model.eval()
        model.eval()
        probs, preds, truth, ids, loss_sum = [], [], [], [], 0.0
        for batch in self.loaders[split]:
            batch: Batch = batch.to(self.device)
            x = batch.x
            if split == "val":  # VTLP strategy 2 warps validation too
                x = self.experiment.augment(x, "val", augment_alpha)
            with self.autocast():
                p, pred = self.experiment.predict(model, x, batch.lengths,
                                                  lambda s, n=batch.lengths: self.prepare(s, n), test, batch.extras)
            loss_sum += float(nn.functional.nll_loss(torch.log(p.float().clamp_min(1e-12)), batch.y,
                                                     reduction="sum"))
            probs.append(p.float().cpu())
            preds += pred.cpu().tolist()
            truth += batch.y.cpu().tolist()
            ids += batch.ids
        names_t = [self.classes[i] for i in truth]
        names_p = [self.classes[i] for i in preds]
        out = metrics.scores(names_t, names_p, self.classes)
        out.update({"loss": loss_sum / max(len(truth), 1), "ids": ids, "truth": names_t,
                    "prediction": names_p, "probabilities": torch.cat(probs).numpy()})
        return out

    def train_epoch(self, epoch: int, alpha: float | None) -> float:
        self.model.train()
        total, count = 0.0, 0
        bar = progress.bar(self.loaders["train"], self.config.progress, lines=False, desc=f"epoch {epoch}",
                           leave=False)
        for i, batch in enumerate(bar, start=1):
            batch: Batch = batch.to(self.device)
            x = self.experiment.augment(batch.x, "train", alpha)
            r = self.recipe
            if r.vtlp:
                x = vtlp_warp(x, VTLP().draw(x.shape[0], x.device, self.aug_generator))
            x = recipe.spec_augment(self.prepare(x, batch.lengths), batch.lengths, r, self.aug_generator)
            lam, perm = 1.0, None
            if r.mixup:
                if batch.extras:
                    raise ConfigError("recipe.mixup mixes audio features only; this experiment also has text inputs")
                lam, perm = recipe.draw_mixup(r.mixup, x.shape[0], self.aug_generator)
                x = recipe.mix(x, lam, perm)
            with self.autocast():
                logits = self.forward_model(x, batch.lengths, **batch.extras)
                loss = (recipe.mixed_loss(self.loss_fn, logits.float(), batch.y, lam, perm) if perm is not None
                        else self.loss_fn(logits.float(), batch.y))
            if not torch.isfinite(loss):
                raise TrainingError(f"{self.config.experiment} fold {self.config.fold}: loss is {loss.item()} "
                                    f"at epoch {epoch}, batch {i} (utterances {batch.ids[:4]}…); "
                                    "lower the learning rate or check the features")
            self.scaler.scale(loss).backward()
            if self.config.grad_clip:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
            self.state.step += 1
            every = self.config.grad_norm_every
            if every and self.state.step % every == 0:
                if not self.config.grad_clip:
                    self.scaler.unscale_(self.optimizer)
                self.state.grad_norms.append({"step": self.state.step, **layer_grad_norms(self.model)})
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            if self.step_scheduler is not None:
                self.step_scheduler.step()
            total += loss.item() * len(batch.ids)
            count += len(batch.ids)
            bar.set_postfix(loss=f"{total / count:.3f}")
        return total / max(count, 1)

    # -- checkpoints -------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        s = self.state
        atomic.torch_save({
            "fingerprint": self.fingerprint, "code_version": self.code_version,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "scaler": self.scaler.state_dict(), "normalizer": self.normalizer.state_dict(),
            "epoch": s.epoch, "best_metric": s.best_metric, "best_epoch": s.best_epoch,
            "bad_epochs": s.bad_epochs, "best_state": s.best_state, "history": s.history,
            "grad_norms": s.grad_norms, "step": s.step, "config": self.config.to_dict(),
            "rng": rng_state(), "generator": self.generator.get_state(),
            "aug_generator": self.aug_generator.get_state(), "best_source": s.best_source,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "step_scheduler": self.step_scheduler.state_dict() if self.step_scheduler is not None else None,
        }, self.checkpoint_path)

    def load_checkpoint(self) -> bool:
        """Resume from the checkpoint if there is one. A checkpoint that cannot be read
        is moved aside (``checkpoint.pt.corrupt``) with a warning and the fold restarts."""
        if not self.checkpoint_path.is_file():
            return False
        try:
            ckpt = torch.load(self.checkpoint_path, weights_only=True, map_location=self.device)
            missing = [k for k in ("model", "optimizer", "epoch", "config", "rng", "generator") if k not in ckpt]
            if missing:
                raise KeyError(f"missing {missing}")
        except Exception as e:  # truncated zip, foreign pickle, …: never abort a sweep for it
            aside = self.checkpoint_path.with_name(self.checkpoint_path.name + ".corrupt")
            self.checkpoint_path.replace(aside)
            log.warning("%s: damaged checkpoint (%s: %s); moved to %s, the fold starts again",
                        self.checkpoint_path, type(e).__name__, e, aside.name)
            return False
        if self.fingerprint is not None and ckpt.get("fingerprint") not in (None, self.fingerprint):
            saved, current = ckpt["config"], self.config.to_dict()
            diff = sorted(k for k in current if saved.get(k) != current[k])
            raise TrainingError(f"{self.checkpoint_path}: checkpoint was made with other settings or data "
                                f"(config differs in {diff or 'nothing: the data differ'}); delete it or run without resume")
        written_by = ckpt.get("code_version", "unknown")
        if written_by != self.code_version and not self.config.resume_other_code:
            # the fingerprint leaves the code out: half a fold from other code is not this code's result
            raise TrainingError(f"{self.checkpoint_path}: checkpoint was written by code version {written_by}, this is "
                                f"{self.code_version}; delete it, run without resume, or resume it anyway with "
                                "--set resume_other_code=true (the record then names both versions)")
        self.resumed_from_code = written_by
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler and ckpt["scheduler"]:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.normalizer.load_state_dict(ckpt["normalizer"])
        self.state = FitState(ckpt["epoch"], ckpt["best_metric"], ckpt["best_epoch"], ckpt["bad_epochs"],
                              ckpt["best_state"], ckpt["history"], ckpt["grad_norms"], ckpt["step"],
                              ckpt.get("best_source", "raw"))
        set_rng_state(ckpt["rng"])
        self.generator.set_state(ckpt["generator"])
        if "aug_generator" in ckpt:
            self.aug_generator.set_state(ckpt["aug_generator"])
        if self.ema is not None and ckpt.get("ema") is not None:
            self.ema.load_state_dict(ckpt["ema"])
        if self.step_scheduler is not None and ckpt.get("step_scheduler") is not None:
            self.step_scheduler.load_state_dict(ckpt["step_scheduler"])
        log.info("resumed %s at epoch %d", self.checkpoint_path, self.state.epoch)
        return True

    # -- the loop ------------------------------------------------------------------------
    def fit(self) -> FitState:
        if self.config.resume:
            self.load_checkpoint()
        c, s = self.config, self.state
        selection_split = "test" if c.selection == "test" else "val"
        epochs = progress.bar(range(s.epoch + 1, c.epochs + 1), c.progress, desc=f"{c.experiment} fold {c.fold}",
                              initial=s.epoch, total=c.epochs)
        for epoch in epochs:
            start = time.perf_counter()
            alpha = self.experiment.epoch_alpha(self.generator)
            train_loss = self.train_epoch(epoch, alpha)
            lr = self.optimizer.param_groups[0]["lr"]
            # candidates: the raw weights, and their moving average when the recipe keeps one
            candidates = [("raw", self.forward_model, self.model)]
            if self.ema is not None:
                candidates.append(("ema", self.ema.module, self.ema.module))
            row = {"epoch": epoch, "train_loss": train_loss, "lr": lr, "alpha": alpha}
            best_here = None
            for source, forward, module in candidates:
                val = self.evaluate("val", augment_alpha=alpha, model=forward)
                tag = "" if source == "raw" else "_ema"
                row.update({f"val_loss{tag}": val["loss"], f"val_wa{tag}": val["wa"], f"val_ua{tag}": val["ua"]})
                score = val["ua"]
                if selection_split == "test":  # the leaky protocol: pick the epoch on the test fold
                    test = self.evaluate("test", test=True, model=forward)
                    row.update({f"test_wa{tag}": test["wa"], f"test_ua{tag}": test["ua"]})
                    score = test["ua"]
                if best_here is None or score > best_here[0]:
                    best_here = (score, source, module)
                if source == "raw":
                    shown = val
            score, source, module = best_here
            if self.scheduler is not None:
                self.scheduler.step()
            if score > s.best_metric:
                s.best_metric, s.best_epoch, s.bad_epochs, s.best_source = score, epoch, 0, source
                s.best_state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
            else:
                s.bad_epochs += 1
            val = shown
            row["seconds"] = time.perf_counter() - start
            s.history.append(row)
            s.epoch = epoch
            self.save_checkpoint()
            epochs.set_postfix(loss=f"{train_loss:.3f}", val_ua=f"{val['ua']:.3f}", best=s.best_epoch)
            stopping = c.patience is not None and s.bad_epochs >= c.patience
            if epoch % max(1, c.epochs // 10) == 0 or epoch == c.epochs or stopping:  # about ten lines a fold
                progress.line(f"{c.experiment} fold {c.fold} epoch {epoch}/{c.epochs}: train loss {train_loss:.3f}, "
                              f"val WA {val['wa']:.3f} UA {val['ua']:.3f}, best epoch {s.best_epoch} "
                              f"({row['seconds']:.2f} s)", c.progress)
            if stopping:
                log.info("early stop at epoch %d (best %d)", epoch, s.best_epoch)
                break
        return s

    def test(self) -> dict:
        """Score the test split once with the selected weights."""
        if self.state.best_state is not None:
            self.model.load_state_dict(self.state.best_state)
        return self.evaluate("test", test=True)


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
    features fit ``device_feature_mb``; else DataLoaders. Both give identical batches."""
    datasets = setup.datasets
    on_device = config.features_on_device
    usable = config.bucket and not any(d.extras for d in datasets.values())
    if on_device is None:
        size = sum(setup.store[u].numel() * setup.store[u].element_size() for ids in setup.split_ids.values()
                   for u in ids)
        on_device = device.type == "cuda" and size <= config.device_feature_mb * 2**20
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


def run_manifest(config: ExperimentConfig) -> pd.DataFrame:
    """The manifest a run trains on: the corpus with the config's subset and classes, and
    every file's content hash (cached), which the fingerprint and ``dedup`` use."""
    check_corpora(config)
    if is_cross(config.protocol):
        return with_audio_hashes(check_labels(cross_manifest(config), config))
    manifest = prepare_manifest(config.corpus, config.data_root, config.subset, config.classes, config.merge,
                                on_error=corpus_errors(config.bad_audio))
    return with_audio_hashes(check_labels(manifest, config))


def check_labels(manifest: pd.DataFrame, config: ExperimentConfig) -> pd.DataFrame:
    """A run needs utterances of at least two of its classes after ``merge`` and the label
    map: one label left is an error, not a run whose scores mean nothing."""
    present = sorted(set(manifest[LABEL]))
    if len(present) < 2:
        merge = f" after merging {dict(config.merge)}" if config.merge else ""
        raise DataError(config.data_root, f"the data hold {len(present)} of the classes {list(config.classes)}"
                                          f"{merge} ({present or 'none'}); a run needs at least 2")
    return manifest


def resolve_values(experiment: str, values: dict | None) -> tuple[ExperimentConfig, pd.DataFrame]:
    """``(config of fold 1 seed 1, run manifest)`` for ``values``; ``classes="all"``
    becomes the corpus's sorted labels (after ``merge``; for ``cross:…``, the labels both
    corpora have). The corpus is read once."""
    values = dict(values or {})
    full = None
    if values.get("classes") == "all":
        probe = experiments.make_config(experiment, {**values, "classes": ("neutral", "happy")})
        check_corpora(probe)
        if is_cross(probe.protocol):
            values["classes"] = shared_classes(probe)
        else:
            full = prepare_manifest(probe.corpus, probe.data_root, probe.subset, "all",
                                    on_error=corpus_errors(probe.bad_audio))
            values["classes"] = tuple(sorted(full[LABEL].replace(probe.merge).unique()))
    config = experiments.make_config(experiment, {**values, "fold": 1, "seed": 1})
    if full is not None:  # the same rows run_manifest would read again
        return config, with_audio_hashes(check_labels(select_classes(full, config.classes, config.merge), config))
    return config, run_manifest(config)


@dataclass(frozen=True)
class Planned:
    """What a sweep's plan computed for a run, so that the run does not compute it again:
    its fingerprint and identity (the same for every fold and seed of a sweep) and the
    protocol's folds."""

    fingerprint: str
    identity: dict
    folds: list[Fold]


def plan_run(config: ExperimentConfig, manifest: pd.DataFrame, fingerprint: tuple[str, dict] | None = None,
             folds: list[Fold] | None = None) -> Planned:
    """The :class:`Planned` of a run of ``config`` on ``manifest`` (pass what is already
    known: a sweep computes the fingerprint once, and the folds once per seed)."""
    fp, identity = fingerprint or run_fingerprint(config, manifest)
    if folds is None:
        folds = make_folds(manifest, config.protocol, seed=config.seed, dedup=config.dedup)
    return Planned(fp, identity, folds)


@dataclass
class FoldSetup:
    """Everything between a config and a trainable fold: manifest, fold, features,
    splits, per-fold context, normaliser, datasets, model — built once, by
    :func:`setup_fold`, for training (:func:`run_fold`) and for reloading a trained
    fold (:func:`serlib.analysis.load_trained`)."""

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

    def class_counts(self) -> torch.Tensor:
        labels = [self.datasets["train"].classes[t] for t in self.datasets["train"].targets]
        return torch.tensor([labels.count(c) for c in self.classes], dtype=torch.float32)


def setup_fold(config: ExperimentConfig, manifest: pd.DataFrame | None = None,
               train_ids: list[str] | None = None, planned: Planned | None = None) -> FoldSetup:
    """Build a fold from its config (see :class:`FoldSetup`).

    Files that give no features (undecodable, shorter than ``min_seconds``, silent) are
    counted skips with ``bad_audio="skip"`` and an error with ``"raise"``; an utterance
    of the fold that has no features and was not skipped (a stale cache) is an error.

    Args:
        manifest: an already prepared manifest (else built from the config).
        train_ids: rebuild the per-fold context from these training ids (a record's).
        planned: the fingerprint and folds, when a plan computed them (:func:`plan_run`).
    """
    exp = experiments.create(config)
    if manifest is None:
        manifest = run_manifest(config)
    planned = planned or plan_run(config, manifest)
    fp, identity, folds = planned.fingerprint, planned.identity, planned.folds
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
    normalizer = Normalizer(config.normalization).fit(store[u] for u in split_ids["train"])
    first = store[split_ids["train"][0]]
    n_features = first.shape[-2] if first.dim() > 1 else first.shape[-1]
    model = exp.model(n_features, len(classes), context)
    return FoldSetup(config, exp, manifest, fold, classes, store, split_ids, context, datasets, normalizer,
                     model, identity, fp, input_skips, n_features, run_stem(config, fp))


def run_fold(config: ExperimentConfig | dict, manifest: pd.DataFrame | None = None,
             planned: Planned | None = None, lock_owner: str | None = None) -> dict:
    """Train and evaluate one fold; write and return its results record.

    Args:
        config: an experiment config (or a dict with ``experiment`` and its fields).
        manifest: an already prepared manifest (else built from the config).
        planned: the fingerprint and folds a sweep's plan computed (else computed here).
        lock_owner: a sweep's token: the run's lock file (:class:`serlib.atomic.RunLock`)
            left by an earlier attempt of the same sweep (a retried Ray task) is taken over.

    Returns:
        The record: resolved config, fingerprint, test metrics, history, gradient norms,
        speakers, skipped inputs, timing, provenance, and paths of the record and its
        predictions.
    """
    if isinstance(config, dict):
        config = experiments.make_config(config["experiment"], config)
    t0 = time.perf_counter()
    device = resolve_device(config.device)  # before any work: a missing device is a config error
    if manifest is None:
        manifest = run_manifest(config)
    planned = planned or plan_run(config, manifest)
    lock = run_stem(config, planned.fingerprint).with_suffix(".lock")
    try:
        with atomic.RunLock(lock, lock_owner):
            return _train_and_record(config, manifest, planned, device, t0)
    except atomic.Locked as e:
        raise RunBusy(f"{e.path}: fold {config.fold} seed {config.seed} is being trained by another process "
                      f"({e.holder}); delete the lock file if that process is gone") from None


def _train_and_record(config: ExperimentConfig, manifest: pd.DataFrame, planned: Planned, device, t0: float) -> dict:
    seed_everything(config.seed)
    setup = setup_fold(config, manifest, planned=planned)
    generator = torch.Generator().manual_seed(config.seed)
    loaders = make_loaders(setup, config, generator, device)
    stem = setup.stem
    if not setup.experiment.neural:  # e.g. functionals + SVM: fit, select on validation, test once
        fitted = setup.experiment.fit_select_test(setup)
        return write_record(setup, fitted["test"], fitted["history"], fitted["best_epoch"], fitted["best_metric"],
                            time.perf_counter() - t0, {"device": "cpu", "grad_norms": []}, fitted.get("val"))
    trainer = Trainer(config, setup.experiment, setup.model, setup.normalizer, loaders, setup.classes,
                      stem.parent / (stem.name + ".run"), setup.class_counts(), generator)
    trainer.fingerprint = setup.fingerprint
    fit_start = time.perf_counter()
    state = trainer.fit()
    fit_here = time.perf_counter() - fit_start
    test = trainer.test()
    val = trainer.evaluate("val") if len(setup.split_ids["val"]) else None  # selected weights: for calibration
    # the selected weights stay on disk beside the record (export and predict use them)
    save_weights(weights_path(stem.with_suffix(".json")), trainer.model.state_dict(),
                        trainer.normalizer.state_dict(),
                        {"n_features": setup.n_features, "classes": setup.classes, "fold": config.fold,
                         "seed": config.seed, "fingerprint": setup.fingerprint, "best_epoch": state.best_epoch,
                         "selected_weights": state.best_source,
                         "context": {k: v for k, v in setup.context.items()
                                     if k != "extras" and isinstance(v, (int, float, str, bool))}})
    # epochs run before an interruption count too (their seconds are in the history)
    seconds = time.perf_counter() - t0 - fit_here + sum(h["seconds"] for h in state.history)
    return write_record(setup, test, state.history, state.best_epoch, state.best_metric, seconds,
                        {"device": str(trainer.device), "grad_norms": state.grad_norms,
                         "best_weights": state.best_source, "compiled": trainer.compiled,
                         # a fold resumed from another code version's checkpoint (resume_other_code) says so
                         **({"resumed_from_code": trainer.resumed_from_code}
                            if trainer.resumed_from_code not in (None, trainer.code_version) else {})}, val)
