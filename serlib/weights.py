"""The weights file of a trained fold: the model's selected state dict and its
normaliser's statistics as safetensors, with JSON metadata in the header.

A run writes it beside its record (``foldNN-seedS.weights.safetensors``; about 4 bytes
per parameter: 1.8 MB for Light-SERNet, 9 MB for CNN+LSTM); an exported bundle holds one
per member. The metadata (classes, fold, seed, fingerprint, n_features, …) is the truth
about the weights that a bundle's card is checked against.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save
from torch import nn

from . import atomic, experiments
from .errors import DataError
from .features import Normalizer
from .features import n_features as feature_count
from .targets import SCALER_KEY, n_outputs

WEIGHTS_SUFFIX = ".weights.safetensors"


def weights_path(record_path: str | Path) -> Path:
    """``…/fold01-seed1.json`` → ``…/fold01-seed1.weights.safetensors``."""
    return Path(str(record_path).removesuffix(".json") + WEIGHTS_SUFFIX)


def save_weights(path: str | Path, model_state: dict, normalizer_state: dict, *, classes: list[str], fold: int,
                 seed: int, fingerprint: str, n_features: int | None, best_epoch: int | None = None,
                 selected_weights: str | None = None, context: dict | None = None) -> Path:
    """A model's state dict (``model.*``) and its normaliser's (``normalizer.*``) as
    safetensors, with the metadata (JSON) in the header; written atomically. The one
    place that metadata is written: the run's classes, fold, seed and fingerprint, the
    model's ``n_features``, the selected epoch and weights, and the per-fold context's
    scalars (e.g. a vocabulary's size) that rebuild the model (:func:`rebuild_model`), and
    the dimensional tasks' target scaler (:data:`serlib.targets.SCALER_KEY`)."""
    meta = {"n_features": n_features, "classes": list(classes), "fold": fold, "seed": seed,
            "fingerprint": fingerprint, "best_epoch": best_epoch, "selected_weights": selected_weights,
            "context": {k: v for k, v in (context or {}).items()
                        if isinstance(v, (int, float, str, bool)) or k == SCALER_KEY}}
    meta = {k: v for k, v in meta.items() if v is not None}
    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in model_state.items()}
    tensors.update({f"normalizer.{k}": v.detach().cpu().contiguous().clone() for k, v in normalizer_state.items()})
    data = save(tensors, metadata={"serlib": json.dumps(meta)})
    return atomic.atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def read_weights(path: str | Path) -> tuple[dict, dict, dict]:
    """``(model state, normaliser state, meta)`` of a weights file."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("serlib", "{}"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iterator)
    except Exception as e:  # truncated or foreign file
        raise DataError(path, f"not a readable weights file ({type(e).__name__}: {e})") from e
    model = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    norm = {k.removeprefix("normalizer."): v for k, v in tensors.items() if k.startswith("normalizer.")}
    return model, norm, meta


def read_meta(path: str | Path) -> dict:
    """The metadata of a weights file, without reading its tensors."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return json.loads((f.metadata() or {}).get("serlib", "{}"))
    except Exception as e:  # truncated or foreign file
        raise DataError(path, f"not a readable weights file ({type(e).__name__}: {e})") from e


def normalizer_from_state(mode: str, state: dict[str, torch.Tensor]) -> Normalizer:
    """A fitted :class:`~serlib.features.Normalizer` from its saved statistics."""
    normalizer = Normalizer(mode)
    for name, value in state.items():  # buffers of the fitted shapes
        setattr(normalizer, name, value)
    return normalizer


def checkpoint_weights(record_path: str | Path) -> Path | tuple[dict, dict]:
    """A record's selected weights: its weights file, or for runs from before those files,
    ``(model state, normaliser state)`` from its checkpoint."""
    path = weights_path(record_path)
    if path.is_file():
        return path
    ckpt_path = Path(str(record_path).removesuffix(".json") + ".run") / "checkpoint.pt"
    if ckpt_path.is_file():  # runs from before the weights files: the checkpoint's selected weights
        ckpt = torch.load(ckpt_path, weights_only=True, map_location="cpu")
        return ckpt["best_state"] or ckpt["model"], ckpt["normalizer"]
    raise DataError(record_path, f"no selected weights: neither {path.name} nor {ckpt_path} exists "
                                 "(a functionals run, or its files were deleted)")


def rebuild_model(config, weights: str | Path | tuple[dict, dict], classes: list[str],
                  known: dict | None = None) -> tuple[nn.Module, Normalizer, dict]:
    """A trained model from its weights and its run's config: the experiment's model for
    the weights' ``n_features`` and per-fold context, holding the weights (CPU, eval
    mode), its fitted normaliser, and the weights' metadata. Bundles, analysis and
    predict all rebuild a model here.

    Args:
        weights: a weights file, or ``(model state, normaliser state)`` of a run from
            before those files (:func:`checkpoint_weights`).
        known: metadata that older weights lack (``n_features``, ``context``), e.g. a
            record's; the weights' own metadata wins. Without an ``n_features`` from
            either, the config's front end gives it (:func:`frontend_features`).
    """
    experiment = experiments.create(config)
    source = weights if isinstance(weights, (str, Path)) else None
    model_state, normalizer_state, own = read_weights(source) if source else (*weights, {})
    meta = {**(known or {}), **own}
    n_features = meta.get("n_features") or frontend_features(experiment)
    outputs = n_outputs(getattr(config, "task", "categorical"), len(classes), getattr(config, "dims", ()))
    model = experiment.model(n_features, outputs, meta.get("context") or {})
    try:
        model.load_state_dict(model_state)
    except RuntimeError as e:
        raise DataError(source, f"weights do not fit the model of the config ({e})") from e
    return model.eval(), normalizer_from_state(config.normalization, normalizer_state), meta


def frontend_features(experiment) -> int:
    """The feature count the experiment's front end gives (one second of silence through it)."""
    rate = experiment.features()[0].sample_rate
    with torch.no_grad():
        x, _ = experiment.frontend(torch.device("cpu"))(torch.zeros(1, rate), torch.tensor([rate]))
    return feature_count(x[0])
