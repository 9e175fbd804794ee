"""What predicting with a trained model means, without the model: the inputs (files,
folders, CSV lists, waveforms), the timeline of windows, the per-file result by the
model's input rule, and the tables (:class:`Prediction`).

:class:`Predictor` holds the whole job; a runtime supplies decoding (``_load_noted``) and
scoring (``_score``): :class:`serlib.bundle.Bundle` with PyTorch, and
:class:`serlib.onnx_predict.OnnxBundle` with onnxruntime, which imports no torch — nor
does this module.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import atomic
from .errors import AudioError, ConfigError, DataError

log = logging.getLogger("serlib.bundle")

MAX_WINDOW_SECONDS = 600.0  # a longer --window / --hop is a typo (10 minutes in one model input)
MAX_WINDOWS = 10_000        # per file: beyond this the --hop is far too small for the file's length
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif")


@dataclass
class Prediction:
    """What :meth:`Bundle.predict` returns: one row per file (``p_<class>``, the
    prediction, the number of windows, or the error that stopped it), one row per
    window of each file (the timeline), and per-file attention when asked for."""

    files: pd.DataFrame
    windows: pd.DataFrame
    attention: dict[str, dict] = field(default_factory=dict)

    @property
    def failures(self) -> pd.DataFrame:
        return self.files[self.files["error"].notna()][["path", "error"]]


def prediction_paths(out: str | Path) -> tuple[Path, Path]:
    """The per-file CSV ``out`` and its timeline ``OUT.windows.csv``."""
    out = Path(out)
    return out, Path(str(out.with_suffix("")) + ".windows.csv")


def write_prediction(out: str | Path, prediction: Prediction) -> tuple[Path, Path]:
    """Write a prediction's per-file table to ``out`` and its windows beside it
    (:func:`prediction_paths`), each atomically and only as a regular file
    (:func:`serlib.atomic.check_target`): a symlink, pipe or device there is refused.

    Raises:
        DataError: a destination that is not a regular file, or a write that fails (a
            full disk): nothing half-written is left.
    """
    files_path, windows_path = prediction_paths(out)
    for target in (files_path, windows_path):  # both refused before either is written
        atomic.check_target(target)
    atomic.write_text(windows_path, prediction.windows.to_csv(index=False))
    atomic.write_text(files_path, prediction.files.to_csv(index=False))
    return files_path, windows_path


def read_bundle_json(path: Path) -> dict:
    """A bundle's JSON object (``card.json``, ``config.json``), or a :class:`DataError`
    naming the file: unreadable, not JSON, or not an object."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(path, f"damaged bundle file ({e})") from e
    if not isinstance(value, dict):
        raise DataError(path, f"damaged bundle file: expected a JSON object, got {type(value).__name__}")
    return value


#: The bundle layout this serlib writes and reads (``card.json``'s ``serlib_bundle``).
BUNDLE_VERSION = 1


def read_bundle(root: Path) -> tuple[Path, dict, Path, dict]:
    """A bundle folder's ``card.json`` and ``config.json`` (paths and objects) for either
    runtime: a :class:`DataError` naming the folder when one is missing, the file when it is
    damaged (:func:`read_bundle_json`) or of another bundle version."""
    root = Path(root)
    card_path, config_path = root / "card.json", root / "config.json"
    for p in (card_path, config_path):
        if not p.is_file():
            raise DataError(root, f"not a serlib bundle: {p.name} is missing")
    card, config = read_bundle_json(card_path), read_bundle_json(config_path)
    if card.get("serlib_bundle") != BUNDLE_VERSION:
        raise DataError(card_path, f"bundle version {card.get('serlib_bundle')}, this serlib reads {BUNDLE_VERSION}")
    return card_path, card, config_path, config


class Predictor:
    """The prediction job shared by the runtimes. A subclass sets ``classes``,
    ``sample_rate``, ``crop`` (``seconds``, ``offset``, ``mode`` of the model's input
    rule), ``max_seconds``, ``has_attention`` and ``warnings`` (a list), and implements
    :meth:`_check_call`, :meth:`_load_noted` and :meth:`_score`."""

    classes: list[str]
    sample_rate: int
    max_seconds: float | None
    has_attention: bool = False
    task: str = "categorical"  # or "dimensional"/"multitask": the values of ``dims`` (the corpus's scale)
    dims: list[str] | tuple[str, ...] = ()

    def _check_call(self, speaker_norm: bool) -> None:
        """Refuse a call this model cannot serve (a :class:`ConfigError`)."""

    def _load_noted(self, source):
        """``(mono waveform at the model's rate, notes)`` of a path or ``(wave, rate)``."""
        raise NotImplementedError

    def _score(self, segments, batch_size: int, attention: bool, speaker_norm: bool) -> list[dict]:
        """Per ``(name, kind, start, end, wave)`` segment: ``{"name", "kind", "start",
        "end", "p" (probabilities or None), "pred" (index or None), "v" (the dimensions, when
        the task has them), "attention"}``."""
        raise NotImplementedError

    def columns(self, probs, pred, values) -> dict:
        """A result row's outputs: the prediction and class probabilities, and/or the
        dimensions (by ``task``)."""
        row = {}
        if probs is not None:
            row.update({"prediction": self.classes[pred], **{f"p_{c}": float(v) for c, v in zip(self.classes, probs)}})
        if values is not None:
            row.update({d: float(v) for d, v in zip(self.dims, values)})
        return row

    def windows(self, n_samples: int, window: float | None, hop: float | None = None) -> list[tuple[int, int]]:
        """``(start, end)`` samples of the timeline's windows: the whole file when it fits
        one window; else windows of ``window`` s (default: the model's crop, or 3 s for
        models that take any length) every ``hop`` s, the last one ending at the end of
        the file (no padding, no audio left out)."""
        sr = self.sample_rate
        window, hop = self.check_timeline(window, hop)
        if n_samples <= round(window * sr):
            return [(0, n_samples)]
        size, step = round(window * sr), max(1, round(hop * sr))
        count = (n_samples - size) // step + 2
        if count > MAX_WINDOWS:
            raise AudioError(None, f"{n_samples / sr:.1f} s in windows of {window:g} s every {hop:g} s makes about "
                                   f"{count} windows, more than {MAX_WINDOWS} per file; use a larger --hop")
        starts = list(range(0, n_samples - size + 1, step))
        if starts[-1] + size < n_samples:
            starts.append(n_samples - size)
        return [(s, s + size) for s in starts]

    def check_timeline(self, window: float | None, hop: float | None) -> tuple[float, float]:
        """``(window, hop)`` in seconds, checked: finite, positive, at most
        :data:`MAX_WINDOW_SECONDS`, and the hop no longer than the window (no audio left
        out between windows). ``window=None``: the model's crop, or 3 s; ``hop=None``:
        1 s, or the window when it is shorter."""
        if window is None:
            window = self.crop.seconds or 3.0
        if hop is None and isinstance(window, (int, float)):
            hop = min(1.0, window)
        for flag, value in (("--window", window), ("--hop", hop)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not 0 < value <= MAX_WINDOW_SECONDS:
                raise ConfigError(f"{flag} must be a number of seconds in (0, {MAX_WINDOW_SECONDS}], got {value!r}")
        if round(window * self.sample_rate) < 1 or round(hop * self.sample_rate) < 1:
            raise ConfigError(f"--window {window:g} / --hop {hop:g} s is shorter than one sample at {self.sample_rate} Hz")
        if hop > window:
            raise ConfigError(f"--hop ({hop:g} s) must not exceed --window ({window:g} s): audio between windows "
                              "would be left out")
        return float(window), float(hop)

    # -- the whole job ---------------------------------------------------------------------
    def predict(self, inputs, window: float | None = None, hop: float | None = None, per_file: str = "model",
                attention: bool = False, speaker_norm: bool = False, batch_size: int = 32) -> Prediction:
        """Score files: paths, a folder, a CSV with a ``path`` column, or waveforms by name
        (``{"name": (wave, sample_rate)}``).

        Each file gets a timeline of windows (:meth:`windows`) and one result:
        ``per_file="model"`` applies the model's own input rule to the whole file, as in
        its training and test (a centre crop for fixed-length models; the whole file, up
        to ``max_seconds``, for the others, beyond which the windows' mean is used);
        ``per_file="windows"`` averages the windows. A file that cannot be used gets its
        error in the ``error`` column; the others go on.
        """
        if per_file not in ("model", "windows"):
            raise ConfigError(f"per_file must be 'model' or 'windows', got {per_file!r}")
        self._check_call(speaker_norm)
        window, hop = self.check_timeline(window, hop)
        items = expand_inputs(inputs)
        rows, window_rows, attn, loaded, spans_of = [], [], {}, [], {}
        for name, source in items:
            try:
                wave, notes = self._load_noted(source)
                spans_of[name] = self.windows(len(wave), window, hop)
            except AudioError as e:
                rows.append({"path": name, "error": e.reason})
                continue
            loaded.append((name, wave))
            for note in notes:  # e.g. a header that promises more audio than the file holds
                log.warning("%s: %s", name, note)
            self.warnings += [(name, note) for note in notes]
        sr, max_samples = self.sample_rate, (self.max_seconds or float("inf")) * self.sample_rate
        segments = []
        for name, wave in loaded:
            spans = spans_of[name]
            segments += [(name, "window", s, e, wave[s:e]) for s, e in spans]
            whole = per_file == "model" and (self.crop.seconds is not None or len(wave) <= max_samples)
            if whole and len(spans) > 1:
                segments.append((name, "file", 0, len(wave), wave))
        outputs = self._score(segments, batch_size, attention, speaker_norm)
        for name, wave in loaded:
            wins = [o for o in outputs if o["name"] == name and o["kind"] == "window"]
            whole = [o for o in outputs if o["name"] == name and o["kind"] == "file"]
            if whole or len(wins) == 1:
                result = (whole or wins)[0]
                probs, pred, values = result["p"], result["pred"], result.get("v")
            else:
                probs = np.stack([o["p"] for o in wins]).mean(0) if wins[0]["p"] is not None else None
                pred = int(probs.argmax()) if probs is not None else None
                values = np.stack([o["v"] for o in wins]).mean(0) if wins[0].get("v") is not None else None
            rows.append({"path": name, "seconds": len(wave) / sr, "windows": len(wins),
                         **self.columns(probs, pred, values), "error": None})
            for o in wins:
                window_rows.append({"path": name, "start": o["start"] / sr, "end": o["end"] / sr,
                                    **self.columns(o["p"], int(o["p"].argmax()) if o["p"] is not None else None,
                                                   o.get("v"))})
            if attention and self.has_attention:
                attn[name] = {"wave": wave, "sample_rate": sr,
                              "windows": [(*self.input_span(o["start"], o["end"]), o["attention"]) for o in wins]}
        outputs_of = (["prediction", *[f"p_{c}" for c in self.classes]] if self.task != "dimensional" else []) + \
            (self.dims if self.task != "categorical" else [])
        columns = ["path", "seconds", "windows", *outputs_of, "error"]
        order = {name: i for i, (name, _) in enumerate(items)}
        files = pd.DataFrame(rows).reindex(columns=columns)
        files["windows"] = files["windows"].astype("Int64")  # a failed file's row has none: stays integer
        files = files.sort_values("path", key=lambda s: s.map(order)).reset_index(drop=True)
        warned = {}
        for name, note in self.warnings:
            warned.setdefault(name, []).append(note)
        files["warning"] = files["path"].map(lambda n: "; ".join(warned.get(n, [])) or None)
        self.warnings = []
        return Prediction(files, pd.DataFrame(window_rows), attn)

    def input_span(self, start: int, end: int) -> tuple[float, float]:
        """The seconds of a window (samples ``start:end``) that the model's crop keeps."""
        sr, c = self.sample_rate, self.crop
        start, end = start / sr + c.offset, end / sr
        if c.seconds is None or end - start <= c.seconds:
            return start, end
        if c.mode == "start":
            return start, start + c.seconds
        middle = (start + end) / 2
        return middle - c.seconds / 2, middle + c.seconds / 2


def expand_inputs(inputs) -> list[tuple[str, object]]:
    """``(name, path or (wave, rate))`` pairs from a path, a folder (audio files in it,
    recursively), a CSV with a ``path`` column (relative to the CSV), a list of any of
    these, or a dict of waveforms."""
    if isinstance(inputs, dict):
        return list(inputs.items())
    if isinstance(inputs, (str, Path)):
        path = Path(inputs)
        if path.is_dir():  # macOS resource forks (._name.wav) are not audio: the corpora skip them too
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES
                           and not p.name.startswith("._") and p.is_file())
            if not files:
                raise DataError(path, f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in this folder")
            return [(str(p), p) for p in files]
        if path.suffix.lower() == ".csv":
            try:
                table = pd.read_csv(path)
            except (OSError, ValueError) as e:
                raise DataError(path, f"cannot read the list ({e})") from e
            if "path" not in table.columns:
                raise DataError(path, f"a list of files needs a 'path' column (has {list(table.columns)})")
            listed = [path.parent / str(v) for v in table["path"].dropna()]
            if not listed:
                raise DataError(path, "the list names no files (a 'path' column with no rows)")
            return [pair for p in listed for pair in (expand_inputs(p) if p.is_dir() else [(str(p), p)])]
        return [(str(path), path)]
    return [pair for item in inputs for pair in expand_inputs(item)]
