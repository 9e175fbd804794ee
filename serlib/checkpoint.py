"""A fold's checkpoint: :class:`TrainState` (the progress: epoch, step, the best epoch,
its score and weights, history, gradient norms) with the state dicts of every part that
trains (model, optimiser, schedulers, scaler, normaliser, recipe, generators, the global
RNGs), written atomically and read back whole. Which parts, and when a checkpoint may be
resumed, :class:`serlib.train.Trainer` says.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import atomic

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class GlobalRNG:
    """Python's, NumPy's and torch's global RNG states as one checkpoint part (plain types
    and tensors, loadable with ``weights_only=True``)."""

    def state_dict(self) -> dict:
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        return {"python": random.getstate(),
                "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}

    def load_state_dict(self, state: dict) -> None:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(state["torch"].cpu().to(torch.uint8))  # a ByteTensor on the CPU, whatever the map
        # one state per GPU the saving run saw: restore those of the GPUs that exist here (a Ray
        # task sees one); the others are left as they are
        saved = state.get("cuda") or []
        for index in range(min(len(saved), torch.cuda.device_count() if torch.cuda.is_available() else 0)):
            torch.cuda.set_rng_state(saved[index].cpu().to(torch.uint8), index)


class ScalerPart:
    """A ``GradScaler`` as a checkpoint part that resumes across precisions: a disabled
    scaler (fp32, bf16, the CPU) saves an empty state; an enabled one (fp16) that loads it
    starts afresh, and a disabled one ignores an fp16 run's scale."""

    def __init__(self, scaler: torch.amp.GradScaler):
        self.scaler = scaler

    def state_dict(self) -> dict:
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if self.scaler.is_enabled() and state:
            self.scaler.load_state_dict(state)
        elif self.scaler.is_enabled() or state:
            log.info("gradient scaler: the checkpoint's precision differs from this run's; its scale starts afresh")


class GeneratorPart:
    """A ``torch.Generator`` as a checkpoint part."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator

    def state_dict(self) -> torch.Tensor:
        return self.generator.get_state()

    def load_state_dict(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)


@dataclass
class TrainState:
    """What a checkpoint holds besides the state dicts of the parts that train (model,
    optimiser, schedulers, scaler, normaliser, recipe, generators): the progress. Saved
    and loaded whole, with the parts (:meth:`save`, :meth:`load`)."""

    epoch: int = 0
    step: int = 0
    best_metric: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    best_state: dict | None = None
    best_source: str = "raw"  # which weights were selected: "raw" or "ema" (their moving average)
    history: list[dict] = field(default_factory=list)
    grad_norms: list[dict] = field(default_factory=list)

    def save(self, path: Path, parts: dict, meta: dict) -> None:
        """Write the progress, ``meta`` (what decides whether it may be resumed: fingerprint,
        code version, config) and each part's ``state_dict()`` to ``path``, atomically."""
        progress_ = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        atomic.torch_save({**meta, **progress_, **{k: p.state_dict() if p is not None else None
                                                    for k, p in parts.items()}}, path)

    @staticmethod
    def read(path: Path) -> dict | None:
        """The checkpoint at ``path``, or None: none there, or one that cannot be read
        (moved aside to ``checkpoint.pt.corrupt`` with a warning; the fold restarts).
        Read onto the CPU whichever device wrote it: the RNG states must stay CPU
        ByteTensors, and each part's ``load_state_dict`` moves its tensors to its device."""
        if not path.is_file():
            return None
        try:
            blob = torch.load(path, weights_only=True, map_location="cpu")
            missing = [k for k in ("model", "optimizer", "epoch", "config", "rng", "generator") if k not in blob]
            if missing:
                raise KeyError(f"missing {missing}")
            return blob
        except Exception as e:  # truncated zip, foreign pickle, …: never abort a sweep for it
            aside = path.with_name(path.name + ".corrupt")
            path.replace(aside)
            log.warning("%s: damaged checkpoint (%s: %s); moved to %s, the fold starts again",
                        path, type(e).__name__, e, aside.name)
            return None

    @classmethod
    def load(cls, blob: dict, parts: dict) -> TrainState:
        """Restore ``parts`` from a checkpoint read by :meth:`read`; returns its progress."""
        for name, part in parts.items():
            if part is not None and blob.get(name) is not None:
                part.load_state_dict(blob[name])
        return cls(**{f.name: blob[f.name] for f in dataclasses.fields(cls) if f.name in blob})
