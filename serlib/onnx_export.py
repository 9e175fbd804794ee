"""ONNX graphs of an exported bundle's fold models, front end included, checked against
PyTorch on the run's own test audio before they are written (``export --onnx``).

Each member ``foldNN-seedS.safetensors`` gets ``foldNN-seedS.onnx``: waveforms
``wave (batch, samples)`` float32 at the model's rate, after its crop rule, all of one
length (no padding) → ``probabilities (batch, classes)``; both axes are dynamic. The
graph holds the whole input path of training and predict: the front end (amplitude
scaling, STFT, mel, log, DCT, Δ/ΔΔ, clipping; ONNX's STFT operator), the training
split's normaliser and the network, then the softmax.

The check: every test utterance of the member's fold (the record's predictions list
them; the audio is read from the run's corpus) is decoded and cropped as predict does
and scored by the PyTorch member and by the graph (onnxruntime); the largest absolute
difference of probabilities must stay within :data:`TOLERANCE` and the argmax must
agree on at least :data:`MIN_AGREEMENT` of them, else nothing is written (a
:class:`DataError` gives both numbers). ``int8=True`` adds ``foldNN-seedS.int8.onnx``:
onnxruntime's static quantisation of the network's convolutions and matrix products
(int8 weights per channel, uint8 activations whose ranges are calibrated on the
member's training split; the front end and normaliser stay float32), with its accuracy
on the same test utterances against the float32 graph's, paired over folds
(:func:`serlib.stats.sign_flip_test`).

Exported with the TorchScript-based exporter (``torch.onnx.export(dynamo=False)``,
opset :data:`OPSET`): it needs no onnxscript and traces the front end's STFT.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from . import atomic, experiments, metrics
from .bundle import Bundle, load_model, result_set_records
from .errors import ConfigError, DataError
from .experiments.base import Experiment
from .features import FrontEnd, Normalized, Normalizer, compress
from .manifests import run_manifest
from .onnx_predict import run_sessions
from .stats import sign_flip_test

OPSET = 17
TOLERANCE = 1e-4       # largest |p_onnx - p_torch| allowed on the check inputs (float32 graph)
MIN_AGREEMENT = 0.99   # share of check inputs whose argmax must agree
CALIBRATION_ITEMS = 128  # training utterances per member that calibrate the int8 activations


def _percentile_scale(wave: torch.Tensor, q: float = 0.999) -> torch.Tensor:
    """:func:`serlib.features.percentile_normalize` for a batch of equal-length items, in
    exportable operators: ``torch.quantile``'s linear interpolation between the two
    order statistics around ``q·(n − 1)``, read off a TopK of the few largest values
    (its size follows the input's length in the graph)."""
    ratio = Fraction(q).limit_denominator(100_000)
    a = wave.abs()
    n = a.shape[-1]
    lo = (n - 1) * ratio.numerator // ratio.denominator  # integer arithmetic on the traced length
    top, _ = torch.topk(a, n - lo, dim=-1)  # descending: the last is order statistic lo, the one before lo + 1
    n_f = torch.ones_like(a).sum(-1, keepdim=True)
    lo_f = n_f - torch.ones_like(top).sum(-1, keepdim=True)
    v_lo, v_hi = top[:, -1:], top[:, -2:-1]
    scale = (v_lo + (q * (n_f - 1) - lo_f) * (v_hi - v_lo)).clamp_min(1e-8)
    return (wave / scale).clamp(-1, 1)


def _deltas(x: torch.Tensor, width: int) -> torch.Tensor:
    """:func:`serlib.features.deltas` (torchaudio's ``compute_deltas``, replicated edges)
    with a kernel of fixed shape, which the exporter needs."""
    n = (width - 1) // 2
    kernel = torch.arange(-n, n + 1, dtype=x.dtype).reshape(1, 1, -1) / (n * (n + 1) * (2 * n + 1) / 3)
    flat = F.pad(x.reshape(-1, 1, x.shape[-1]), (n, n), mode="replicate")
    return F.conv1d(flat, kernel).reshape(x.shape)


class GraphFrontEnd(nn.Module):
    """:class:`serlib.features.FrontEnd` for a batch of equal-length waveforms (no
    padding, so no per-item loops) in operators the exporter knows."""

    def __init__(self, front: FrontEnd):
        super().__init__()
        self.front = front

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        f, c = self.front, self.front.config
        if c.amplitude_norm == "percentile":
            wave = _percentile_scale(wave)
        if c.center:
            wave = F.pad(wave.unsqueeze(1), (f.n_fft // 2, f.n_fft // 2), mode="reflect").squeeze(1)
        with warnings.catch_warnings():  # the exporter has no complex tensors: real and imaginary parts
            warnings.simplefilter("ignore", UserWarning)
            ri = torch.stft(wave, f.n_fft, f.hop, f.win_length, f.window, center=False, return_complex=False)
        power = ri.pow(2).sum(-1)  # (B, n_freqs, T)
        spec = power.sqrt() if c.power == 1.0 else power if c.power == 2.0 else power.pow(c.power / 2)
        if c.kind == "spectrogram":
            feats = compress(spec[:, : f.n_bins], c.log, c.eps, c.top_db, c.power)
        else:
            mel = torch.matmul(spec.transpose(-1, -2), f.mel_fb).transpose(-1, -2)
            feats = compress(mel, c.log, c.eps, c.top_db, c.power)
            if c.kind == "mfcc":
                feats = torch.matmul(feats.transpose(-1, -2), f.dct).transpose(-1, -2)
            elif c.kind == "mel_mean":
                feats = feats.mean(dim=-2, keepdim=True)
        if c.deltas != "none":
            d1 = _deltas(feats, c.delta_width)
            d2 = _deltas(d1, c.delta_width)
            feats = torch.stack([feats, d1, d2], dim=1) if c.deltas == "channels" else torch.cat(
                [feats, d1, d2], dim=-2)
        if c.clip is not None:
            feats = feats.clamp(-c.clip, c.clip)
        return feats


class Graph(nn.Module):
    """What one ONNX graph computes: waveforms → front end → normaliser → network →
    softmax (the generic :meth:`serlib.experiments.base.Experiment.predict`)."""

    def __init__(self, front: FrontEnd, normalizer: Normalizer, model: nn.Module):
        super().__init__()
        self.front, self.normalizer, self.model = GraphFrontEnd(front), normalizer, model

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = self.normalizer(self.front(wave))
        frames = torch.ones_like(x.flatten(1, -2)[:, 0]).sum(-1).long()  # every frame is valid
        return torch.softmax(self.model(x, frames).float(), -1)


def exportable(bundle: Bundle) -> None:
    """Refuse (a :class:`ConfigError`) what one graph per member cannot reproduce."""
    exp = bundle.experiment
    if bundle.task != "categorical":
        raise ConfigError(f"task={bundle.task}: --onnx exports categorical models (the graph ends in a softmax); "
                          "predict this bundle with the torch runtime")
    if type(exp).predict is not Experiment.predict:
        raise ConfigError(f"{bundle.config.experiment} scores with its own rule (Experiment.predict is "
                          "overridden); --onnx exports models scored by the softmax of their logits")
    if exp.needs_transcripts:
        raise ConfigError(f"{bundle.config.experiment} with these settings reads transcripts; --onnx exports "
                          "audio-only models")
    if bundle.config.recipe.speaker_norm:
        raise ConfigError("a model trained with per-speaker normalisation standardises the features of a whole "
                          "call together; --onnx graphs score one input at a time")
    if not isinstance(bundle.frontend, FrontEnd):
        raise ConfigError(f"{bundle.config.experiment} has its own front end; --onnx exports serlib.features.FrontEnd")


def check_inputs(bundle: Bundle, records: list[dict]) -> dict[tuple[int, int], dict]:
    """Per member ``(fold, seed)``: its test utterances as the model's input waveforms
    (decoded and cropped as predict does) with their labels (``waves``, ``truth``,
    ``utt_id``), and up to :data:`CALIBRATION_ITEMS` utterances of its training split,
    evenly spaced (``calibration``, for int8). The audio is read from the run's corpus."""
    manifest = run_manifest(experiments.make_config(records[0]["config"]["experiment"], records[0]["config"]))
    paths = dict(zip(manifest["utt_id"], manifest["path"]))
    out = {}
    for rec in records:
        truth = pd.read_csv(rec["predictions_path"])
        missing = [u for u in truth["utt_id"] if u not in paths]
        if missing:
            raise DataError(rec["path"], f"{len(missing)} test utterance(s) not in the corpus at "
                                         f"{rec['config'].get('data_root')} (e.g. {missing[0]}): the ONNX check "
                                         "needs the run's own test audio")
        load = lambda u: bundle.crop.apply(bundle._load(paths[u]), bundle.sample_rate).numpy()  # noqa: E731
        train = [u for u in rec.get("train_ids") or [] if u in paths]
        pick = np.linspace(0, len(train) - 1, min(CALIBRATION_ITEMS, len(train))).round().astype(int) if train else []
        out[(rec["config"]["fold"], rec["config"]["seed"])] = {
            "waves": [load(u) for u in truth["utt_id"]], "truth": truth["truth"].tolist(),
            "utt_id": truth["utt_id"].tolist(), "calibration": [load(train[i]) for i in sorted(set(pick))]}
    return out


@torch.no_grad()
def torch_probabilities(bundle: Bundle, member, waves: list[np.ndarray]) -> np.ndarray:
    """The PyTorch member's probabilities, one input at a time (as predict scores them)."""
    out = []
    for w in waves:
        x = torch.from_numpy(w)[None]
        n = torch.tensor([len(w)])
        feats, frames = bundle.frontend(x, n)
        p, _ = bundle.experiment.predict(Normalized(member.model, member.normalizer), feats, frames, True)
        out.append(p[0].numpy())
    return np.stack(out)


def file_hash(path: Path) -> str:
    """SHA-256 of a graph file (the card's, checked at load)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def agreement(a: np.ndarray, b: np.ndarray) -> dict:
    """``max_abs_diff`` of probabilities and ``argmax_agreement`` (share of inputs)."""
    return {"n_inputs": len(a), "max_abs_diff": float(np.abs(a - b).max()),
            "argmax_agreement": float(np.mean(a.argmax(1) == b.argmax(1)))}


def export_onnx(bundle_dir: str | Path, source: str | Path, int8: bool = False) -> dict:
    """Add one checked ONNX graph per member to the bundle at ``bundle_dir`` (written
    by :func:`serlib.bundle.export` from ``source``), and with ``int8`` a quantised one;
    records them in ``card.json`` and returns the card's ``onnx`` entry."""
    ort = require_onnxruntime()
    root = Path(bundle_dir)
    bundle = load_model(root)
    exportable(bundle)
    records = {(r["config"]["fold"], r["config"]["seed"]): r for r in result_set_records(source)}
    inputs = check_inputs(bundle, list(records.values()))
    card = json.loads(json.dumps(bundle.card))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    fp32, q8 = {}, {}
    for member, entry in zip(bundle.members, card["members"]):
        key = (member.fold, member.seed)
        data = inputs[key]
        graph = Graph(bundle.frontend, member.normalizer, member.model).eval()
        target = root / Path(entry["file"]).with_suffix(".onnx").name
        reference = torch_probabilities(bundle, member, data["waves"])

        def write(tmp, graph=graph, data=data, reference=reference, fold=member.fold, target=target, key=key):
            example = torch.from_numpy(np.stack([data["waves"][0]] * 2))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(graph, (example,), tmp, dynamo=False, opset_version=OPSET, input_names=["wave"],
                                  output_names=["probabilities"],
                                  dynamic_axes={"wave": {0: "batch", 1: "samples"}, "probabilities": {0: "batch"}})
            got = run_sessions([ort.InferenceSession(tmp, options, providers=["CPUExecutionProvider"])], data["waves"])
            check = agreement(got, reference)
            if check["max_abs_diff"] > TOLERANCE or check["argmax_agreement"] < MIN_AGREEMENT:
                raise DataError(target, f"the graph disagrees with the PyTorch model of fold {fold} on its "
                                        f"{check['n_inputs']} test inputs: max |Δp| {check['max_abs_diff']:.2e} "
                                        f"(tolerance {TOLERANCE:g}), argmax agreement "
                                        f"{check['argmax_agreement']:.3f} (at least {MIN_AGREEMENT}); not written")
            fp32[key] = (check, got)

        atomic.atomic_write(target, write)
        entry["onnx"] = {"file": target.name, "sha256": file_hash(target), "check": fp32[key][0]}
        if int8:
            q_target = root / Path(entry["file"]).with_suffix(".int8.onnx").name
            if not data["calibration"]:
                raise DataError(records[key]["path"], "lists no training utterances (train_ids) to calibrate int8 on")
            atomic.atomic_write(q_target, lambda tmp, src=target, d=data: quantize(src, tmp, d["calibration"]))
            got = run_sessions([ort.InferenceSession(str(q_target), options, providers=["CPUExecutionProvider"])],
                               data["waves"])
            q8[key] = got
            entry["onnx_int8"] = {"file": q_target.name, "sha256": file_hash(q_target),
                                  "check": agreement(got, fp32[key][1])}
    summary = {
        "opset": OPSET, "exporter": f"torch.onnx.export (TorchScript-based, torch {torch.__version__})",
        "onnxruntime": ort.__version__,
        "input": {"name": "wave", "shape": ["batch", "samples"], "dtype": "float32",
                  "sample_rate": bundle.sample_rate,
                  "rule": "mono, after the card's input rule (crop); one length per batch, no padding"},
        "output": {"name": "probabilities", "shape": ["batch", len(bundle.classes)], "classes": bundle.classes},
        "front_end": "in the graph (amplitude scaling, STFT, mel/log/DCT, deltas, clipping), then the normaliser",
        "check": {"inputs": "each member's test split (the record's predictions), decoded and cropped as predict "
                            "does, scored by PyTorch and onnxruntime",
                  "tolerance_max_abs_diff": TOLERANCE, "min_argmax_agreement": MIN_AGREEMENT},
    }
    if int8:
        summary["int8"] = {
            "method": "onnxruntime.quantization.quantize_static (QDQ): int8 weights (per output channel) and "
                      "uint8 activations of the network's Conv (with its Relu), MatMul and Gemm nodes, activation ranges "
                      f"calibrated (min/max) on up to {CALIBRATION_ITEMS} utterances of each member's training "
                      "split; the front end, normaliser and softmax stay float32",
            "cost": int8_cost([inputs[k] for k in fp32], [fp32[k][1] for k in fp32], [q8[k] for k in fp32],
                              bundle.classes)}
    card["onnx"] = summary
    atomic.write_json(root / "card.json", card)
    return summary


def require_onnxruntime():
    """onnxruntime, or a :class:`ConfigError` saying how to install it."""
    try:
        import onnx  # noqa: F401  (the quantiser and the exporter's checks need it)
        import onnxruntime
    except ImportError as e:
        raise ConfigError(f"--onnx needs onnx and onnxruntime ({e}): pip install -e '.[onnx]'") from None
    return onnxruntime


# Relu with its Conv (fused into QLinearConv); pooling stays float32: onnxruntime's
# QLinearAveragePool was slower than the float pool in our profile (docs/predict.md)
INT8_OPS = ["Conv", "Relu", "MatMul", "Gemm"]
FRONT_PREFIXES = ("/front/", "/normalizer/")


def quantize(source: Path, target: str, calibration: list[np.ndarray]) -> None:
    """Static int8 quantisation (QDQ) of the network's :data:`INT8_OPS` nodes: int8
    weights per output channel, uint8 activations with ranges calibrated (min/max) on
    ``calibration`` (training-split inputs, one at a time); the front end's and the
    normaliser's nodes stay float32."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"wave": w[None].astype(np.float32)} for w in calibration])

        def get_next(self):
            return next(self.items, None)

    model = onnx.load(str(source))
    excluded = [n.name for n in model.graph.node if n.name.startswith(FRONT_PREFIXES)]
    logging.disable(logging.WARNING)  # the quantiser logs every tensor it leaves alone on the root logger
    try:
        quantize_static(str(source), target, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=INT8_OPS, nodes_to_exclude=excluded)
    finally:
        logging.disable(logging.NOTSET)


def int8_cost(inputs: list[dict], fp32: list[np.ndarray], int8: list[np.ndarray], classes: list[str]) -> dict:
    """UA and WA of the int8 graphs against the float32 graphs on each member's test
    utterances: per-member differences (int8 − fp32), their means and the sign-flip
    permutation p-values over members (paired)."""
    rows = []
    for data, a, b in zip(inputs, fp32, int8):
        sa = metrics.scores(data["truth"], [classes[i] for i in a.argmax(1)], classes)
        sb = metrics.scores(data["truth"], [classes[i] for i in b.argmax(1)], classes)
        rows.append({"ua_fp32": sa["ua"], "ua_int8": sb["ua"], "wa_fp32": sa["wa"], "wa_int8": sb["wa"],
                     "label_agreement": float(np.mean(a.argmax(1) == b.argmax(1))),
                     "max_abs_diff": float(np.abs(a - b).max())})
    t = pd.DataFrame(rows)
    d_ua, d_wa = (t.ua_int8 - t.ua_fp32).to_numpy(), (t.wa_int8 - t.wa_fp32).to_numpy()
    return {"members": len(t), "ua_fp32": float(t.ua_fp32.mean()), "ua_int8": float(t.ua_int8.mean()),
            "wa_fp32": float(t.wa_fp32.mean()), "wa_int8": float(t.wa_int8.mean()),
            "ua_diff_mean": float(d_ua.mean()), "wa_diff_mean": float(d_wa.mean()),
            "p_perm_ua": sign_flip_test(d_ua), "p_perm_wa": sign_flip_test(d_wa),
            "label_agreement": float(t.label_agreement.mean()), "max_abs_diff": float(t.max_abs_diff.max()),
            "note": "each member on its own fold's test utterances; differences are int8 − fp32, "
                    "p-values of the exact sign-flip test over members (serlib.stats.sign_flip_test)"}


def report_lines(summary: dict, root: Path) -> list[str]:
    """What ``export --onnx`` prints: the check per member and the int8 cost."""
    card = json.loads((Path(root) / "card.json").read_text())
    lines = []
    for m in card["members"]:
        c = m["onnx"]["check"]
        line = (f"onnx fold {m['fold']} seed {m['seed']}: {c['n_inputs']} test inputs, max |Δp| "
                f"{c['max_abs_diff']:.1e}, argmax agreement {c['argmax_agreement']:.3f} -> {m['onnx']['file']}")
        if "onnx_int8" in m:
            q = m["onnx_int8"]["check"]
            line += f"; int8 vs fp32: max |Δp| {q['max_abs_diff']:.1e}, labels agree {q['argmax_agreement']:.3f}"
        lines.append(line)
    if "int8" in summary:
        c = summary["int8"]["cost"]
        lines.append(f"int8 cost over {c['members']} member(s): UA {c['ua_int8']:.4f} vs {c['ua_fp32']:.4f} "
                     f"(Δ {c['ua_diff_mean']:+.4f}, p {c['p_perm_ua']:.3f}), WA {c['wa_int8']:.4f} vs "
                     f"{c['wa_fp32']:.4f} (Δ {c['wa_diff_mean']:+.4f}, p {c['p_perm_wa']:.3f})")
    return lines
