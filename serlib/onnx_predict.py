"""Predicting with a bundle's ONNX graphs through onnxruntime, without torch.

``python -m serlib predict BUNDLE FILES --runtime onnx`` (or ``onnx-int8``): the graphs
``export --onnx`` wrote (:mod:`serlib.onnx_export`) score the same inputs, windows and
per-file results as the PyTorch bundle (:class:`serlib.predictor.Predictor` is the job
both run), with the same tables and errors. Audio is decoded with soundfile and numpy and
resampled with soxr (:mod:`serlib.decode`). Nothing here imports torch: this module, the
predictor, the decoder and the CLI's path to them import numpy, pandas, soundfile, soxr
and onnxruntime only. Attention overlays and ``--speaker-norm`` need the torch runtime.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .decode import SILENCE_PEAK, crop_or_pad, load_checked, resample
from .errors import ConfigError, DataError
from .predictor import Predictor, read_bundle

RUNTIMES = {"onnx": "onnx", "onnx-int8": "onnx_int8"}  # --runtime -> the card member's entry


@dataclass
class Crop:
    """The card's input rule (:class:`serlib.audio.WaveCrop` on numpy arrays)."""

    seconds: float | None
    offset: float = 0.0
    mode: str = "center"

    def apply(self, wave: np.ndarray, sample_rate: int) -> np.ndarray:
        if self.offset:
            wave = wave[int(self.offset * sample_rate):]
        if self.seconds is None:
            return wave
        return crop_or_pad(wave, int(round(self.seconds * sample_rate)), self.mode)


class OnnxBundle(Predictor):
    """The graphs of a bundle (:func:`load_onnx`): their probabilities are averaged, as
    the PyTorch bundle's members' are."""

    def __init__(self, root: Path, card: dict, config: dict, sessions: list, runtime: str):
        self.root, self.card, self.config, self.sessions, self.runtime = root, card, config, sessions, runtime
        self.classes: list[str] = card["classes"]
        rule = card["input"]
        self.sample_rate = int(rule["sample_rate"])
        self.crop = Crop(rule.get("crop_seconds"), rule.get("crop_offset") or 0.0, rule.get("crop_mode", "center"))
        self.max_seconds = config.get("max_seconds")
        self.min_seconds = float(config.get("min_seconds") or 0.0)
        self.has_attention = False
        self.warnings: list[tuple[str, str]] = []

    def __repr__(self) -> str:
        return (f"OnnxBundle({self.card['experiment']}/{self.card['name']} on {self.card['corpus']}, "
                f"{len(self.sessions)} {self.runtime} graph(s), classes {self.classes})")

    def _check_call(self, speaker_norm: bool) -> None:
        if speaker_norm:
            raise ConfigError("--speaker-norm: the ONNX graphs score one input at a time (export refuses models "
                              "trained with per-speaker normalisation); predict without it")

    def _load_noted(self, source) -> tuple[np.ndarray, list[str]]:
        if not isinstance(source, tuple):
            return load_checked(source, self.sample_rate, self.min_seconds, SILENCE_PEAK)
        wave, rate = source
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim == 2:  # (channels, time) or (time, channels)
            wave = wave.mean(0) if wave.shape[0] < wave.shape[1] else wave.mean(1)
        return resample(np.ascontiguousarray(wave, dtype=np.float32), rate, self.sample_rate), []

    def probabilities(self, waves: list[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """Mean probabilities of the graphs ``(N, C)`` for model-input waveforms."""
        return run_sessions(self.sessions, waves, batch_size)

    def _score(self, segments, batch_size, attention, speaker_norm) -> list[dict]:
        waves = [self.crop.apply(w, self.sample_rate) for *_, w in segments]
        probs = self.probabilities(waves, batch_size)
        return [{"name": name, "kind": kind, "start": s, "end": e, "p": p, "pred": int(p.argmax()), "attention": None}
                for (name, kind, s, e, _), p in zip(segments, probs)]


def run_sessions(sessions: list, waves: list[np.ndarray], batch_size: int = 32) -> np.ndarray:
    """Mean probabilities ``(N, C)`` of onnxruntime sessions of serlib graphs for
    model-input waveforms of any lengths (equal lengths are batched together)."""
    out: list = [None] * len(waves)
    by_length: dict[int, list[int]] = {}
    for i, w in enumerate(waves):
        by_length.setdefault(len(w), []).append(i)
    for idx in by_length.values():
        for k in range(0, len(idx), batch_size):
            part = idx[k:k + batch_size]
            batch = np.stack([waves[i] for i in part]).astype(np.float32, copy=False)
            probs = np.mean([s.run(None, {"wave": batch})[0] for s in sessions], axis=0)
            for i, p in zip(part, probs):
                out[i] = p
    return np.stack(out) if out else np.zeros((0, 0), dtype=np.float32)


def load_onnx(path: str | Path, fold: int | None = None, runtime: str = "onnx", threads: int | None = None) -> OnnxBundle:
    """The ONNX graphs of a bundle (``runtime="onnx"``, or ``"onnx-int8"`` for the
    quantised ones): all members, or ``fold``'s. Each graph's SHA-256 must match the
    card's."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime must be one of {sorted(RUNTIMES)}, got {runtime!r}")
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ConfigError(f"--runtime {runtime} needs onnxruntime ({e}): pip install -e '.[onnx]'") from None
    root = Path(path)
    card_path, card, _, config = read_bundle(root)
    for key, kind in (("classes", list), ("members", list), ("input", dict), ("onnx", dict)):
        if not isinstance(card.get(key), kind):
            hint = " (export it with --onnx)" if key == "onnx" else ""
            raise DataError(card_path, f"card field {key!r} is missing or not a {kind.__name__}{hint}")
    entry = RUNTIMES[runtime]
    chosen = [m for m in card["members"] if fold is None or m.get("fold") == fold]
    if not chosen:
        raise ConfigError(f"{root}: no fold {fold} in this bundle (folds {[m.get('fold') for m in card['members']]})")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    sessions = []
    for m in chosen:
        graph = m.get(entry)
        if not isinstance(graph, dict) or not isinstance(graph.get("file"), str):
            how = "--onnx --int8" if runtime == "onnx-int8" else "--onnx"
            raise DataError(card_path, f"fold {m.get('fold')} has no {runtime} graph (export with {how})")
        file = _member_graph(root, graph["file"])
        data = file.read_bytes()
        if hashlib.sha256(data).hexdigest() != graph.get("sha256"):
            raise DataError(file, f"its SHA-256 differs from the one in {card_path}: the graph was changed or "
                                  "belongs to another bundle")
        try:
            sessions.append(ort.InferenceSession(data, options, providers=["CPUExecutionProvider"]))
        except Exception as e:  # onnxruntime raises its own exception types
            raise DataError(file, f"not a loadable ONNX graph ({type(e).__name__}: {e})") from None
    return OnnxBundle(root, card, config, sessions, runtime)


def _member_graph(root: Path, name: str) -> Path:
    """A graph file, which must lie in the bundle folder itself (no absolute paths, no ``..``)."""
    target = (root / name).resolve()
    if Path(name).is_absolute() or Path(name).name != name or target.parent != root.resolve() \
            or not target.is_file():
        raise DataError(root / "card.json", f"graph file {name!r} is not a file of the bundle folder")
    return target
