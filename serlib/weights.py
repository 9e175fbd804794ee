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

from . import atomic
from .errors import DataError
from .features import Normalizer

WEIGHTS_SUFFIX = ".weights.safetensors"


def weights_path(record_path: str | Path) -> Path:
    """``…/fold01-seed1.json`` → ``…/fold01-seed1.weights.safetensors``."""
    return Path(str(record_path).removesuffix(".json") + WEIGHTS_SUFFIX)


def save_weights(path: str | Path, model_state: dict, normalizer_state: dict, meta: dict) -> Path:
    """A model's state dict (``model.*``) and its normaliser's (``normalizer.*``) as
    safetensors, with ``meta`` (JSON) in the header; written atomically."""
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
