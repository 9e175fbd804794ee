"""The training loop: ``run_fold(config)`` = plan → fold set-up → fit → test → record.

One fold's training reads top to bottom here: :class:`Trainer` (the epochs, the batches,
evaluation, selection, and its checkpoint: which parts it saves, when a resume is
allowed). The checkpoint's content is :class:`serlib.checkpoint.TrainState`; the fold's
data and model come from :mod:`serlib.fold_setup`, its fingerprint and folds from
:mod:`serlib.planning`, the recipe's switches from :class:`serlib.recipe.Hooks`, the
device and precision from :class:`serlib.device.Precision`.

Model selection and early stopping use the validation split only (UA; mean CCC for
``task=dimensional``, :func:`serlib.targets.selection_score`); the test split
is scored once, by the selected weights, after training. (``selection="test"`` exists to
reproduce leaky published protocols and marks every record as leaky.)
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from torch import nn

from . import atomic, experiments, progress, recipe, targets
from .checkpoint import GeneratorPart, GlobalRNG, ScalerPart, TrainState, seed_everything
from .config import ExperimentConfig
from .constants import UTT_ID
from .data import Batch
from .device import Precision, resolve_device, set_deterministic, should_compile
from .errors import SerlibError
from .features import Normalized, prepare_input
from .fold_setup import FoldSetup, make_loaders, setup_fold
from .optim import layer_grad_norms
from .planning import Plan, plan_run
from .records import code_version, provenance, run_stem, write_record
from .weights import save_weights, weights_path

log = logging.getLogger(__name__)


class TrainingError(SerlibError):
    """Training cannot go on (e.g. a NaN loss); names the epoch and batch."""


class RunBusy(SerlibError):
    """Another process holds the run's lock file (it is training this fold and seed now)."""


# steps between the loop's log points, where the host reads the loss from the device
LOG_EVERY = 50


class Trainer:
    """One fold's training: ``fit()`` then ``test()``."""

    def __init__(self, setup: FoldSetup, loaders: dict, generator: torch.Generator, run_dir: Path | None = None):
        c = self.config = setup.config
        self.experiment, self.classes, self.loaders = setup.experiment, setup.classes, loaders
        self.fingerprint = setup.fingerprint  # of the run; a checkpoint of another run is refused
        self.precision = Precision(c.device, c.amp)
        self.device = self.precision.device
        set_deterministic(self.device)  # bit-identical CUDA runs for the same seed (docs/engine.md)
        self.model = setup.model.to(self.device)
        if c.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        steps = c.epochs * len(loaders["train"])
        self.compiled = c.compile if c.compile is not None else should_compile(setup.experiment, steps, self.device)
        self.forward_model = torch.compile(self.model) if self.compiled else self.model
        self.normalizer = setup.normalizer.to(self.device)
        self.optimizer, scheduler = setup.experiment.optimizer(self.model)
        self.recipe = recipe.Hooks(c.recipe, c.seed, setup.experiment.features()[0].kind)
        # task=dimensional/multitask: standardised targets, the scaler, the corpus-scale truth
        self.task, self.targets, self.scaler = c.task, setup.targets, setup.scaler
        self.true_values = setup.manifest.set_index(UTT_ID)[list(c.dims)] if c.task != "categorical" else None
        loss = targets.task_loss(c.task, c.dim_loss, setup.experiment.loss(setup.class_counts()), len(self.classes),
                                 c.task_weight)
        self.scheduler, self.loss_fn = self.recipe.setup(self.model, self.optimizer, scheduler, loss.to(self.device),
                                                         len(self.classes), steps)
        self.generator = generator  # shuffling and per-epoch draws
        run_dir = run_dir or setup.stem.parent / (setup.stem.name + ".run")
        self.checkpoint_path = run_dir / "checkpoint.pt"
        self.code_version = code_version(provenance())  # a checkpoint of other code is refused too
        self.resumed_from_code: str | None = None
        self.state = TrainState()

    def parts(self) -> dict:
        """Everything with a state that a checkpoint saves and a resume restores."""
        return {"model": self.model, "optimizer": self.optimizer, "scheduler": self.scheduler,
                "scaler": ScalerPart(self.precision.scaler), "normalizer": self.normalizer, "recipe": self.recipe,
                "rng": GlobalRNG(), "generator": GeneratorPart(self.generator)}

    # -- pieces ----------------------------------------------------------------------
    def prepare(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Normalise with training statistics; padding back to zero."""
        return prepare_input(self.normalizer, x, lengths, self.config.channels_last)

    def autocast(self):
        return self.precision.autocast()

    def target(self, batch: Batch):
        """What the loss compares the outputs with: class indices, standardised
        dimensions, or both (``config.task``)."""
        if self.task == "categorical":
            return batch.y
        values = targets.batch_values(self.targets, batch.ids, self.device)
        return values if self.task == "dimensional" else (batch.y, values)

    @torch.no_grad()
    def evaluate(self, split: str, test: bool = False, augment_alpha: float | None = None,
                 model: nn.Module | None = None) -> dict:
        """Metrics (and per-utterance outputs) of ``split`` with the current weights (or
        those of ``model``, e.g. the moving average): WA/UA of the classes through the
        experiment's own scoring rule, and for ``task=dimensional``/``multitask`` CCC,
        Pearson r and RMSE per dimension in the corpus's scale."""
        model = model or self.forward_model
        self.model.eval()
        model.eval()
        scorer = Normalized(model, self.normalizer, self.config.channels_last)
        categorical = self.task == "categorical"
        outs, preds, truth, ids, loss_sum = [], [], [], [], 0.0
        for batch in self.loaders[split]:
            batch: Batch = batch.to(self.device)
            x = batch.x
            if split == "val":  # VTLP strategy 2 warps validation too
                x = self.experiment.augment(x, "val", augment_alpha)
            with self.autocast():
                if categorical:
                    out, pred = self.experiment.predict(scorer, x, batch.lengths, test, batch.extras)
                    out = out.float()
                    loss_sum += float(nn.functional.nll_loss(torch.log(out.clamp_min(1e-12)), batch.y, reduction="sum"))
                    preds += pred.cpu().tolist()
                else:
                    out = self.experiment.outputs(scorer, x, batch.lengths, test, batch.extras).float()
                    loss_sum += float(self.loss_fn(out, self.target(batch))) * len(batch.ids)
            outs.append(out.cpu())
            truth += batch.y.cpu().tolist()
            ids += batch.ids
        return targets.split_scores(self.task, self.classes, torch.cat(outs), truth, preds, ids,
                                    loss_sum / max(len(ids), 1), self.scaler, self.true_values, self.config.dims)

    def train_epoch(self, epoch: int, alpha: float | None) -> float:
        c, s, scaler = self.config, self.state, self.precision.scaler
        self.model.train()
        # the loss is summed, and a non-finite one noted, on the device: the host waits for
        # the GPU only at log points (every LOG_EVERY steps, the epoch's end), not every step
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        bad_at = torch.zeros((), dtype=torch.long, device=self.device)  # first batch with a non-finite loss
        bad_loss = torch.zeros((), device=self.device)
        count, batch_ids = 0, []
        bar = progress.bar(self.loaders["train"], c.progress, lines=False, desc=f"epoch {epoch}", leave=False)
        for i, batch in enumerate(bar, start=1):
            batch: Batch = batch.to(self.device)
            x = self.recipe.warp(self.experiment.augment(batch.x, "train", alpha))
            x, mixing = self.recipe.batch(self.prepare(x, batch.lengths), batch.lengths, bool(batch.extras))
            with self.autocast():
                logits = self.forward_model(x, batch.lengths, **batch.extras)
                loss = self.recipe.loss(self.loss_fn, logits.float(), self.target(batch), mixing)
            first = (bad_at == 0) & ~torch.isfinite(loss.detach())
            bad_at, bad_loss = torch.where(first, i, bad_at), torch.where(first, loss.detach().float(), bad_loss)
            batch_ids.append(batch.ids)
            scaler.scale(loss).backward()
            if c.grad_clip:
                scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
            s.step += 1
            if c.grad_norm_every and s.step % c.grad_norm_every == 0:
                if not c.grad_clip:
                    scaler.unscale_(self.optimizer)
                s.grad_norms.append({"step": s.step, **layer_grad_norms(self.model)})
            scaler.step(self.optimizer)
            scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            self.recipe.after_step(self.model)
            total += loss.detach().double() * len(batch.ids)
            count += len(batch.ids)
            if i % LOG_EVERY == 0 or i == len(self.loaders["train"]):  # a log point: one sync
                self._check_finite(epoch, bad_at, bad_loss, batch_ids)
                bar.set_postfix(loss=f"{total.item() / count:.3f}")
        self._check_finite(epoch, bad_at, bad_loss, batch_ids)
        return total.item() / max(count, 1)

    def _check_finite(self, epoch: int, bad_at: torch.Tensor, bad_loss: torch.Tensor, batch_ids: list) -> None:
        i = int(bad_at)
        if i:
            raise TrainingError(f"{self.config.experiment} fold {self.config.fold}: loss is {bad_loss.item()} at epoch "
                                f"{epoch}, batch {i} (utterances {batch_ids[i - 1][:4]}…); lower the learning rate "
                                "or check the features")

    # -- checkpoints -------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        self.state.save(self.checkpoint_path, self.parts(), {
            "fingerprint": self.fingerprint, "code_version": self.code_version, "config": self.config.to_dict()})

    def load_checkpoint(self) -> bool:
        """Resume from the checkpoint if there is one (a damaged one restarts the fold)."""
        blob = TrainState.read(self.checkpoint_path)
        if blob is None:
            return False
        if blob.get("fingerprint") not in (None, self.fingerprint):
            saved, current = blob["config"], self.config.to_dict()
            diff = sorted(k for k in current if saved.get(k) != current[k])
            raise TrainingError(f"{self.checkpoint_path}: checkpoint was made with other settings or data "
                                f"(config differs in {diff or 'nothing: the data differ'}); delete it or run without resume")
        written_by = blob.get("code_version", "unknown")
        if written_by != self.code_version and not self.config.resume_other_code:
            # the fingerprint leaves the code out: half a fold from other code is not this code's result
            raise TrainingError(f"{self.checkpoint_path}: checkpoint was written by code version {written_by}, this is "
                                f"{self.code_version}; delete it, run without resume, or resume it anyway with "
                                "--set resume_other_code=true (the record then names both versions)")
        self.resumed_from_code = written_by
        self.state = TrainState.load(blob, self.parts())
        log.info("resumed %s at epoch %d", self.checkpoint_path, self.state.epoch)
        return True

    # -- the loop ------------------------------------------------------------------------
    def fit(self) -> TrainState:
        if self.config.resume:
            self.load_checkpoint()
        c, s = self.config, self.state
        epochs = progress.bar(range(s.epoch + 1, c.epochs + 1), c.progress, desc=f"{c.experiment} fold {c.fold}",
                              initial=s.epoch, total=c.epochs)
        for epoch in epochs:
            start = time.perf_counter()
            alpha = self.experiment.epoch_alpha(self.generator)
            train_loss = self.train_epoch(epoch, alpha)
            row = {"epoch": epoch, "train_loss": train_loss, "lr": self.optimizer.param_groups[0]["lr"], "alpha": alpha}
            # candidates: the raw weights, and their moving average when the recipe keeps one
            candidates = [("raw", self.forward_model, self.model)]
            if self.recipe.ema is not None:
                candidates.append(("ema", self.recipe.ema.module, self.recipe.ema.module))
            best_here = shown = None
            for source, forward, module in candidates:
                tag = "" if source == "raw" else "_ema"
                val = self.evaluate("val", augment_alpha=alpha, model=forward)
                row.update({f"val_loss{tag}": val["loss"], **self.history_scores("val", tag, val)})
                score = targets.selection_score(c.task, val)
                if c.selection == "test":  # the leaky protocol: pick the epoch on the test fold
                    test = self.evaluate("test", test=True, model=forward)
                    row.update(self.history_scores("test", tag, test))
                    score = targets.selection_score(c.task, test)
                if best_here is None or score > best_here[0]:
                    best_here = (score, source, module)
                shown = shown or val  # the raw weights' scores, shown in the progress lines
            score, source, module = best_here
            if self.scheduler is not None:
                self.scheduler.step()
            if score > s.best_metric:
                s.best_metric, s.best_epoch, s.bad_epochs, s.best_source = score, epoch, 0, source
                s.best_state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
            else:
                s.bad_epochs += 1
            row["seconds"] = time.perf_counter() - start
            s.history.append(row)
            s.epoch = epoch
            self.save_checkpoint()
            epochs.set_postfix(loss=f"{train_loss:.3f}", val=f"{targets.selection_score(c.task, shown):.3f}",
                               best=s.best_epoch)
            stopping = c.patience is not None and s.bad_epochs >= c.patience
            if epoch % max(1, c.epochs // 10) == 0 or epoch == c.epochs or stopping:  # about ten lines a fold
                progress.line(f"{c.experiment} fold {c.fold} epoch {epoch}/{c.epochs}: train loss {train_loss:.3f}, "
                              f"val {targets.summary(c.task, shown)}, best epoch {s.best_epoch} "
                              f"({row['seconds']:.2f} s)", c.progress)
            if stopping:
                log.info("early stop at epoch %d (best %d)", epoch, s.best_epoch)
                break
        return s

    def history_scores(self, split: str, tag: str, scores: dict) -> dict:
        """An epoch's scores of ``split`` in the history (``val_ua``…, ``val_ccc_mean``…)."""
        keys = [k for k in ("wa", "ua") if self.task != "dimensional"]
        keys += [f"ccc_{d}" for d in (*self.config.dims, "mean") if self.task != "categorical"]
        return {f"{split}_{k}{tag}": scores[k] for k in keys}

    def test(self) -> dict:
        """Score the test split once with the selected weights."""
        if self.state.best_state is not None:
            self.model.load_state_dict(self.state.best_state)
        return self.evaluate("test", test=True)


def run_fold(config: ExperimentConfig | dict, plan: Plan | None = None, lock_owner: str | None = None) -> dict:
    """Train and evaluate one fold; write and return its results record.

    Args:
        config: an experiment config (or a dict with ``experiment`` and its fields).
        plan: the manifest, fingerprint and folds a sweep's plan computed (else planned here).
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
    resolve_device(config.device)  # before any work: a missing device is a config error
    plan = plan or plan_run(config)
    lock = run_stem(config, plan.fingerprint).with_suffix(".lock")
    try:
        with atomic.RunLock(lock, lock_owner):
            return _train_and_record(config, plan, t0)
    except atomic.Locked as e:
        raise RunBusy(f"{e.path}: fold {config.fold} seed {config.seed} is being trained by another process "
                      f"({e.holder}); delete the lock file if that process is gone") from None


def _train_and_record(config: ExperimentConfig, plan: Plan, t0: float) -> dict:
    seed_everything(config.seed)
    setup = setup_fold(config, plan)
    if not setup.experiment.neural:  # e.g. functionals + SVM: fit, select on validation, test once
        fitted = setup.experiment.fit_select_test(setup)
        return write_record(setup, fitted["test"], fitted["history"], fitted["best_epoch"], fitted["best_metric"],
                            time.perf_counter() - t0, {"device": "cpu", "precision": "fp32", "grad_norms": []},
                            fitted.get("val"))
    generator = torch.Generator().manual_seed(config.seed)
    trainer = Trainer(setup, make_loaders(setup, config, generator, resolve_device(config.device)), generator)
    fit_start = time.perf_counter()
    state = trainer.fit()
    fit_here = time.perf_counter() - fit_start
    test = trainer.test()
    val = (trainer.evaluate("val") if len(setup.split_ids["val"]) and config.task == "categorical"
           else None)  # the selected weights' class probabilities on validation: for calibration
    # the selected weights stay on disk beside the record (export and predict use them)
    save_weights(weights_path(setup.stem.with_suffix(".json")), trainer.model.state_dict(),
                 trainer.normalizer.state_dict(), classes=setup.classes, fold=config.fold, seed=config.seed,
                 fingerprint=setup.fingerprint, n_features=setup.n_features, best_epoch=state.best_epoch,
                 selected_weights=state.best_source, context=setup.context)
    # epochs run before an interruption count too (their seconds are in the history)
    seconds = time.perf_counter() - t0 - fit_here + sum(h["seconds"] for h in state.history)
    return write_record(setup, test, state.history, state.best_epoch, state.best_metric, seconds,
                        {"device": str(trainer.device), "precision": trainer.precision.name, "grad_norms": state.grad_norms,
                         "best_weights": state.best_source, "compiled": trainer.compiled,
                         # a fold resumed from another code version's checkpoint (resume_other_code) says so
                         **({"resumed_from_code": trainer.resumed_from_code}
                            if trainer.resumed_from_code not in (None, trainer.code_version) else {})}, val)
