"""Trained models beyond their fold: the selected weights on disk, an exported bundle,
:func:`load_model` without the corpus, and prediction on any recording.

A fold's run keeps its selected weights beside its record (:mod:`serlib.weights`).
:func:`export` copies those of a result set
into a folder with the resolved config and a card (``card.json``); :func:`load_model`
rebuilds every fold's model from it, and :meth:`Bundle.predict` scores files: decoded as
the corpora are (any rate, channels averaged), cut by the model's crop rule, long ones
in sliding windows.
"""

from __future__ import annotations

import datetime
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import __version__, atomic, calibration, experiments, metrics, records
from .audio import SILENCE_PEAK, InputChecks, WaveCrop, resample
from .data import collate
from .device import resolve_device
from .errors import ConfigError, DataError
from .features import FeatureConfig, Normalized, Normalizer, prepare_input
from .predictor import (  # noqa: F401  (bundle's names since before serlib.predictor)
    BUNDLE_VERSION,
    MAX_WINDOW_SECONDS,
    MAX_WINDOWS,
    Prediction,
    Predictor,
    expand_inputs,
    prediction_paths,
    read_bundle,
    read_bundle_json,
    write_prediction,
)
from .recipe import speaker_normalize
from .targets import SCALER_KEY, TargetScaler
from .weights import (
    checkpoint_weights,
    frontend_features,
    read_meta,
    read_weights,
    rebuild_model,
    save_weights,
)

log = logging.getLogger(__name__)

ENSEMBLE_NOTE = ("The ensemble averages the probabilities of the fold models. Each fold model has been tested "
                 "on speakers it never saw, but together the folds of a leave-one-speaker-out protocol have "
                 "trained on every speaker of the corpus: the ensemble has no held-out score of its own, and "
                 "its scores on this corpus's speakers are not speaker-independent.")


# -- export ------------------------------------------------------------------------------
def result_set_records(source: str | Path) -> list[dict]:
    """The runs of a result set: a record file, or a folder
    (``results/EXPERIMENT/NAME/CORPUS/PROTOCOL[/FINGERPRINT]``) holding runs of one
    fingerprint (else a :class:`DataError` that lists them)."""
    source = Path(source)
    if not source.exists():
        raise DataError(source, "no such record or result-set folder")
    paths = [source] if source.is_file() else sorted(source.rglob("fold*-seed*.json"))
    runs = [records.read_record(p) for p in paths]
    if not runs:
        raise DataError(source, "holds no results records (fold*-seed*.json)")
    prints = sorted({r["fingerprint"] for r in runs})
    if len(prints) > 1:
        folders = sorted({str(Path(r["path"]).parent) for r in runs})
        raise DataError(source, f"holds runs of {len(prints)} different settings; export one of: {folders}")
    return runs


def export(source: str | Path, out_dir: str | Path) -> Path:
    """Write a self-contained bundle of a result set into ``out_dir``:
    ``foldNN-seedS.safetensors`` per run (weights + normaliser statistics),
    ``config.json`` (the resolved config) and ``card.json`` (corpus, protocol, classes,
    features, each member's test scores, versions, commit). Returns ``out_dir``."""
    runs = result_set_records(source)
    first = runs[0]
    config = experiments.make_config(first["config"]["experiment"], first["config"])
    if not experiments.get(config.experiment).neural:
        raise DataError(first["path"], f"experiment {config.experiment!r} keeps no network weights to export")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(out, "exists and is not a folder; choose a new folder for the bundle")
    created = [p for p in (out, *out.parents) if not p.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(out, f"cannot create the bundle folder ({e.strerror or e})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise DataError(out, "the bundle folder is not writable")
    written: list[Path] = []
    try:
        return _write_bundle(runs, config, out, written)
    except BaseException:  # a full disk, Ctrl-C: no half bundle, no empty folder left
        for path in written:
            path.unlink(missing_ok=True)
        for folder in created:  # innermost first; only the folders this export made
            try:
                folder.rmdir()
            except OSError:
                break
        raise


def _write_bundle(runs: list[dict], config, out: Path, written: list[Path]) -> Path:
    first = runs[0]
    members = []
    for rec in sorted(runs, key=lambda r: (r["config"]["fold"], r["config"]["seed"])):
        fold, seed = rec["config"]["fold"], rec["config"]["seed"]
        name = f"fold{fold:02d}-seed{seed}.safetensors"
        written += [] if (out / name).exists() else [out / name]  # a re-export's old files are not ours to delete
        found = checkpoint_weights(rec["path"])
        if isinstance(found, Path):
            _, _, meta = read_weights(found)  # a truncated or foreign file fails here, not at predict
            check_weights_meta(found, meta, {"classes": rec["classes"], "fingerprint": rec["fingerprint"],
                                             "fold": fold, "seed": seed}, rec["path"])
            atomic.atomic_write(out / name, lambda tmp, src=found: shutil.copyfile(src, tmp))
        else:
            save_weights(out / name, *found, classes=rec["classes"], fold=fold, seed=seed,
                         fingerprint=rec["fingerprint"], n_features=rec.get("n_features"))
        read_weights(out / name)  # the copy reads back whole
        scores = {k: rec["metrics"][k] for k in ("wa", "ua", "ccc_mean") if k in rec["metrics"]}
        members.append({"file": name, "fold": fold, "seed": seed, "temperature": _temperature(rec),
                        "test_speakers": rec["test_speakers"],
                        **scores, "n_test": rec["metrics"]["n"],
                        "best_epoch": rec["best_epoch"], "selected_on": rec["selected_on"],
                        "selected_weights": rec.get("best_weights", "raw")})
    fold_of = [m["fold"] for m in members]
    test_scores = {}
    for key in ("wa", "ua", "ccc_mean"):  # ccc_mean: dimensional result sets
        if all(key in m for m in members):
            mean, std, seed_std = metrics.fold_stats(fold_of, [m[key] for m in members])
            k = key.removesuffix("_mean")
            test_scores.update({f"{k}_mean": mean, f"{k}_std": std,
                                f"{k}_seed_std": None if np.isnan(seed_std) else seed_std})
    card = {
        "serlib_bundle": BUNDLE_VERSION, "experiment": config.experiment, "name": records.record_name(first),
        "corpus": first["corpus_label"], "protocol": config.protocol, "classes": first["classes"],
        "fingerprint": first["fingerprint"], "features": first["features"], "normalization": config.normalization,
        "input": _input_rule(config), "n_parameters": first.get("n_parameters"),
        "leaky": first["leaky"], "uses_test_speaker_audio": first.get("uses_test_speaker_audio", False),
        "recipe": first.get("recipe", {}),
        "members": members,
        **({"task": config.task, "dims": list(config.dims)} if config.task != "categorical" else {}),
        "test_scores": {**test_scores,
                        "std": "over folds of the per-fold means over seeds (ddof 0); seed std: within a fold, "
                               "averaged over folds (serlib.metrics.fold_stats)",
                        "note": f"each member scored once on the held-out test split of its own fold "
                                f"({config.protocol}, selection on {first['selected_on']})"},
        "ensemble": ENSEMBLE_NOTE,
        "serlib_version": __version__, "commit": first["provenance"].get("git_commit"),
        "exported": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    written += [p for p in (out / "config.json", out / "card.json") if not p.exists()]
    atomic.write_json(out / "config.json", first["config"])
    atomic.write_json(out / "card.json", card)
    return out


def _temperature(record) -> float | None:
    """The temperature fitted on a run's validation outputs (:func:`serlib.calibration.fit_temperature`),
    or None for a record that kept none (``predict --calibrated`` then refuses the bundle)."""
    val = record.load_val_predictions() if isinstance(record, records.Record) else None
    if val is None or val.empty:
        return None
    classes = list(record["classes"])
    probs = val[[f"p_{c}" for c in classes]].to_numpy(float)
    return round(calibration.fit_temperature(probs, val.truth.map({c: i for i, c in enumerate(classes)}).to_numpy()), 5)


def _input_rule(config) -> dict:
    feature_config, crop = experiments.create(config).features()
    crop = crop or WaveCrop()
    return {"sample_rate": feature_config.sample_rate, "crop_seconds": crop.seconds, "crop_offset": crop.offset,
            "crop_mode": crop.mode}


# -- load and predict --------------------------------------------------------------------
@dataclass
class Member:
    """One fold model of a bundle."""

    fold: int
    seed: int
    model: nn.Module
    normalizer: Normalizer
    scaler: TargetScaler | None = None  # task=dimensional/multitask: its training split's target scaler
    temperature: float | None = None  # applied to its probabilities when the bundle is loaded calibrated


class Bundle(Predictor):
    """Fold models rebuilt from an exported bundle (:func:`load_model`)."""

    def __init__(self, root: Path, config, card: dict, members: list[Member], device: torch.device,
                 calibrated: bool = False):
        self.root, self.config, self.card, self.members, self.device = root, config, card, members, device
        self.calibrated = calibrated  # each member's probabilities temperature-scaled
        self.classes: list[str] = card["classes"]
        self.task, self.dims = config.task, list(config.dims)  # the dimensions are given in the corpus's scale
        self.experiment = experiments.create(config)
        self.feature_config: FeatureConfig
        self.feature_config, crop = self.experiment.features()
        self.crop = crop or WaveCrop()
        self.frontend = self.experiment.frontend(device)
        self.checks = InputChecks(config.min_seconds, None, SILENCE_PEAK)
        self.max_seconds = config.max_seconds
        self.warnings: list[tuple[str, str]] = []  # (file, note) of the current predict call

    def __repr__(self) -> str:
        folds = [m.fold for m in self.members]
        return (f"Bundle({self.card['experiment']}/{self.card['name']} on {self.card['corpus']}, "
                f"{len(self.members)} model(s), folds {folds}, classes {self.classes}"
                + (f", calibrated: temperatures {[m.temperature for m in self.members]})" if self.calibrated else ")"))

    @property
    def sample_rate(self) -> int:
        return self.feature_config.sample_rate

    @property
    def has_attention(self) -> bool:
        return self.experiment.has_attention

    def _check_call(self, speaker_norm: bool) -> None:
        if self.experiment.needs_transcripts:
            raise ConfigError(f"{self.config.experiment} with these settings reads transcripts; predict scores "
                              "audio only (train an audio-only variant)")
        if self.config.recipe.speaker_norm and not speaker_norm:
            raise ConfigError("this model was trained with per-speaker normalisation: pass speaker_norm=True "
                              "(--speaker-norm) with recordings of one speaker, which are standardised together")
        if speaker_norm and not self.config.recipe.speaker_norm:  # one rule: refuse, never change the inputs
            raise ConfigError("--speaker-norm: this model was trained without per-speaker normalisation "
                              "(recipe.speaker_norm is off in config.json); predict without it")

    # -- pieces ------------------------------------------------------------------------
    @torch.no_grad()
    def probabilities(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean class probabilities of the members ``(B, C)``, and the prediction: the
        member's own for one member (e.g. CNN+LSTM's α vote), else the argmax of the mean.
        A calibrated bundle scales each member's probabilities by its temperature first
        (softmax(log p / T): the member's order of classes is kept)."""
        probs, pred = [], None
        for m in self.members:
            p, pred = self.experiment.predict(Normalized(m.model, m.normalizer), x, lengths, True)
            p = p.float()
            if self.calibrated:
                p = torch.softmax(torch.log(p.clamp_min(calibration.EPS)) / m.temperature, dim=-1)
            probs.append(p)
        mean = torch.stack(probs).mean(0)
        return mean, pred if len(self.members) == 1 else mean.argmax(-1)

    @torch.no_grad()
    def values(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``task=dimensional``/``multitask``: the members' mean dimensions ``(B, D)`` in
        the corpus's scale (each member's outputs through its own training scaler)."""
        skip = len(self.classes) if self.task == "multitask" else 0
        out = [torch.as_tensor(m.scaler.inverse(self.experiment.outputs(Normalized(m.model, m.normalizer), x, lengths,
                                                                        True)[:, skip:].cpu().numpy()))
               for m in self.members]
        return torch.stack(out).mean(0)

    @torch.no_grad()
    def attention(self, x: torch.Tensor, lengths: torch.Tensor) -> list[np.ndarray]:
        """Per item, the first member's attention weights as a profile over its input's
        frames (averaged over frequency; segments joined)."""
        m = self.members[0]
        return self.experiment.attention(m.model, prepare_input(m.normalizer, x, lengths), lengths)

    def _load(self, source) -> torch.Tensor:
        """A mono waveform at the model's rate from a path (checked as the corpora are)
        or a ``(wave, sample_rate)`` pair."""
        return self._load_noted(source)[0]

    def _load_noted(self, source) -> tuple[torch.Tensor, list[str]]:
        """:meth:`_load` and the loader's notes (e.g. a truncated file's warning)."""
        if not isinstance(source, tuple):
            return self.checks.load(source, self.sample_rate)
        wave, rate = source
        wave = torch.as_tensor(wave, dtype=torch.float32)
        if wave.dim() == 2:  # (channels, time) or (time, channels)
            wave = wave.mean(0) if wave.shape[0] < wave.shape[1] else wave.mean(1)
        if rate != self.sample_rate:
            wave = resample(wave, rate, self.sample_rate)
        return wave, []

    def _score(self, segments, batch_size, attention, speaker_norm) -> list[dict]:
        # Each batch is scored as soon as its features are made and its outputs leave the
        # device: the device holds one batch at a time however long the audio (speaker_norm
        # needs every input's features first, and keeps them).
        out, feats_all = [], []
        for i in range(0, len(segments), batch_size):
            chunk = segments[i:i + batch_size]
            waves = [self.crop.apply(w, self.sample_rate) for *_, w in chunk]
            lengths = torch.tensor([w.numel() for w in waves])
            batch = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True).to(self.device)
            with torch.no_grad():
                feats, frames = self.frontend(batch, lengths.to(self.device))
            feats = [(f[..., :t], t) for f, t in zip(feats, frames.tolist())]
            if speaker_norm:
                feats_all += feats
            else:
                out += self._score_batch(chunk, feats, attention)
        if speaker_norm and feats_all:  # all inputs of this call as one speaker
            normed = speaker_normalize({str(i): f for i, (f, _) in enumerate(feats_all)},
                                       {str(i): "inputs" for i in range(len(feats_all))})
            feats_all = [(normed[str(i)], t) for i, (_, t) in enumerate(feats_all)]
            for i in range(0, len(segments), batch_size):
                out += self._score_batch(segments[i:i + batch_size], feats_all[i:i + batch_size], attention)
        return out

    def _score_batch(self, chunk, feats, attention) -> list[dict]:
        batch = collate([(f, 0, "", {}) for f, _ in feats]).to(self.device)
        x, lengths = batch.x, batch.lengths
        n = len(chunk)
        probs, pred = self.probabilities(x, lengths) if self.task != "dimensional" else ([None] * n, None)
        values = self.values(x, lengths).numpy() if self.task != "categorical" else [None] * n
        probs = probs.cpu().numpy() if isinstance(probs, torch.Tensor) else probs
        pred = pred.cpu().tolist() if pred is not None else [None] * n
        alphas = self.attention(x, lengths) if attention and self.has_attention else [None] * n
        return [{"name": name, "kind": kind, "start": s, "end": e, "p": p, "pred": k, "v": v, "attention": a}
                for (name, kind, s, e, _), p, k, v, a in zip(chunk, probs, pred, values, alphas)]


def load_model(path: str | Path, fold: int | None = None, device: str = "cpu", calibrated: bool = False) -> Bundle:
    """Rebuild an exported bundle (:func:`export`): every fold model (an ensemble), or
    only ``fold``. Needs nothing but the bundle folder. ``calibrated``: each member's
    probabilities are scaled by the temperature fitted on its validation split (stored in
    the card at export); a bundle of records without validation outputs is refused."""
    root = Path(path)
    card_path, card, config_path, values = read_bundle(root)
    _check_card(card_path, card)
    inference_values = experiments.get(card["experiment"]).inference_values
    config = experiments.make_config(card["experiment"], {**values, **inference_values, "device": "cpu",
                                                          "progress": False})
    dev = resolve_device(device)
    chosen = [m for m in card["members"] if fold is None or m["fold"] == fold]
    if not chosen:
        raise ConfigError(f"{root}: no fold {fold} in this bundle (folds {[m['fold'] for m in card['members']]})")
    if calibrated:
        lacking = [m["fold"] for m in chosen if not isinstance(m.get("temperature"), (int, float))
                   or isinstance(m.get("temperature"), bool) or not m["temperature"] > 0]
        if lacking:
            raise ConfigError(f"{card_path}: no temperature for fold(s) {lacking} (exported from records that kept "
                              "no validation outputs, or by an older serlib): run those folds again and export, "
                              "or predict without --calibrated")
    features = frontend_features(experiments.create(config))  # the count every member's weights must state
    members = []
    for m in chosen:
        weights_file = member_file(root, m)
        meta = read_meta(weights_file)
        check_weights_meta(weights_file, meta, {"classes": card["classes"], "fingerprint": card.get("fingerprint"),
                                                "fold": m["fold"], "seed": m.get("seed")}, card_path)
        if meta.get("n_features") not in (None, features):
            raise DataError(weights_file, f"n_features {meta['n_features']} in the weights, but config.json's "
                                          f"features give {features} ({config_path})")
        model, normalizer, meta = rebuild_model(config, weights_file, card["classes"], known={"n_features": features})
        scaler = None
        if config.task != "categorical":
            state = (meta.get("context") or {}).get(SCALER_KEY)
            if state is None:
                raise DataError(weights_file, f"task={config.task} but the weights hold no target scaler")
            scaler = TargetScaler.from_state(state)
        members.append(Member(m["fold"], m["seed"], model.to(dev).eval(), normalizer.to(dev), scaler, m.get("temperature")))
    return Bundle(root, config, card, members, dev, calibrated)


def _check_card(path: Path, card: dict) -> None:
    """The card's fields that loading reads, with their types (a hand-edited card fails
    here, naming the field)."""
    for key, kind in (("experiment", str), ("name", str), ("corpus", str), ("classes", list), ("members", list)):
        if not isinstance(card.get(key), kind):
            raise DataError(path, f"card field {key!r} is missing or not a {kind.__name__}")
    if len(card["classes"]) < 2 or not all(isinstance(c, str) for c in card["classes"]):
        raise DataError(path, f"card field 'classes' must list at least 2 class names, got {card['classes']!r}")
    for i, m in enumerate(card["members"]):
        if not isinstance(m, dict) or not isinstance(m.get("file"), str) or not isinstance(m.get("fold"), int):
            raise DataError(path, f"members[{i}] needs 'file' (a name) and 'fold' (a number), got {m!r}")


def member_file(root: Path, member: dict) -> Path:
    """A member's weights file, which must lie in the bundle folder itself (a card may be
    edited by hand: no absolute paths, no ``..``)."""
    name = member["file"]
    target = (root / name).resolve()
    if Path(name).is_absolute() or Path(name).name != name or target.parent != root.resolve():
        raise DataError(root / "card.json", f"member file {name!r} is not a file of the bundle folder")
    return target


def check_weights_meta(path: Path, meta: dict, expected: dict, source: Path | str) -> None:
    """The weights file's own metadata is the truth: each of ``expected`` (classes,
    fingerprint, fold, seed) that both sides state must agree, else a :class:`DataError`
    naming both files and values (a reordered ``classes`` would permute every label)."""
    for key, want in expected.items():
        have = meta.get(key)
        if have is None or want is None:
            continue
        same = str(have)[:10] == str(want)[:10] if key == "fingerprint" else have == want
        if not same:
            raise DataError(path, f"its {key} is {have!r} but {source} says {want!r}: the weights belong to "
                                  "another run, or the card was edited")


def seconds_per_audio_second(bundle: Bundle, inputs, **kwargs) -> tuple[Prediction, float]:
    """Predict and time it: the wall-clock seconds per second of audio scored."""
    start = time.perf_counter()
    out = bundle.predict(inputs, **kwargs)
    elapsed = time.perf_counter() - start
    audio = float(out.files["seconds"].fillna(0).sum())
    return out, elapsed / max(audio, 1e-9)


__all__ = ["Bundle", "Prediction", "export", "load_model"]
