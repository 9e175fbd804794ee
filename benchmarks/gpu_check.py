"""The GPU path in one command (about five minutes on one GPU): correctness, speed, syncs.

    python benchmarks/gpu_check.py [--device cuda] [--corpus synthetic --root DIR] [--quick]

Reports the device (its name and compute capability) and the precision the Trainer picks,
then three tables:

* correctness (each row passes or fails; any failure exits with 1): a tiny fold on the
  CPU and on the device (first-epoch train loss within ``--tolerance``, relative); device
  batches equal to DataLoader batches; a forced fp16 + GradScaler epoch without a
  non-finite loss; a fold interrupted after one epoch and resumed (same history as a
  straight run); a checkpoint written on the CPU resumed on the device; two identical
  runs on the device (bit-identical history and metrics);
* speed per model (steps per second of a fixed batch: eager, AMP, channels-last,
  compile; timed after warm-up with the device synchronised) and the engine's epoch
  over the bare optimiser steps of the same batches (goal <= 1.2x);
* host syncs per training step (CUDA: ``torch.cuda.set_sync_debug_mode``; the CPU: reads
  of tensor values, ``aten._local_scalar_dense``; goal 0-1), the GPU's busy fraction over
  an epoch (profiler: kernel time / wall time; goal >= 90 % with features on the device),
  and predict's milliseconds per second of audio on the CPU and the device, with the
  same labels, and its peak device memory as the audio grows (flat: one batch at a time).

``--device cpu`` runs every part that does not need a GPU, as a smoke test (a slow test
of the suite runs it with ``--quick``). No thresholds fail the speed rows: they are
reported against the goals.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from serlib import experiments
from serlib.bundle import export, load_model
from serlib.data import DeviceBatches
from serlib.device import Precision, resolve_device
from serlib.experiments import make_config
from serlib.fields import parse_overrides
from serlib.fold_setup import make_loaders, setup_fold
from serlib.train import Trainer, run_fold

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import bare_seconds  # noqa: E402  (the sibling benchmark's bare optimiser steps)

TINY = {"epochs": 2, "batch_size": 8, "progress": False, "feature_workers": 2, "grad_norm_every": 0}
ROWS: list[tuple[str, bool | None, str]] = []
CHECKED = "light_sernet"  # the experiment of the correctness and predict rows (--experiment)


def check(name: str, ok: bool | None, detail: str) -> None:
    """A correctness row: ok True/False, or None when it does not apply here."""
    ROWS.append((name, ok, detail))
    print(f"  {'PASS' if ok else 'FAIL' if ok is not None else 'n/a '}  {name}: {detail}", flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def trainer_for(config) -> Trainer:
    setup = setup_fold(config)
    generator = torch.Generator().manual_seed(config.seed)
    loaders = make_loaders(setup, config, generator, resolve_device(config.device))
    return Trainer(setup, loaders, generator, Path(config.output_dir) / f"{config.name}.run")


def correctness(values: dict, device: torch.device, tolerance: float) -> None:
    dev = str(device)
    cpu = run_fold(make_config(CHECKED, {**values, "name": "cpu", "device": "cpu"}))
    on = run_fold(make_config(CHECKED, {**values, "name": "dev", "device": dev}))
    a, b = cpu["history"][0]["train_loss"], on["history"][0]["train_loss"]
    check("tiny fold, CPU vs device", abs(a - b) <= tolerance * abs(a),
          f"epoch-1 train loss {a:.5f} vs {b:.5f} ({on['precision']}), UA {cpu['metrics']['ua']:.3f} vs "
          f"{on['metrics']['ua']:.3f}")

    config = make_config(CHECKED, {**values, "device": dev})
    setup = setup_fold(config)
    generator = torch.Generator().manual_seed(1)
    loader = make_loaders(setup, replace(config, features_on_device=False), generator, device)["val"]
    gathered = DeviceBatches(setup.datasets["val"], loader.batch_sampler, device)
    same = all(torch.equal(p.x.to(device), q.x) and torch.equal(p.lengths.to(device), q.lengths)
               and torch.equal(p.y.to(device), q.y) and p.ids == q.ids for p, q in zip(loader, gathered))
    check("device batches = DataLoader batches", same and len(loader) == len(gathered), f"{len(loader)} batches")

    if device.type == "cuda":
        trainer = trainer_for(make_config(CHECKED, {**values, "name": "fp16", "device": dev}))
        trainer.precision = Precision(dev, True, "fp16")
        try:
            loss = trainer.train_epoch(1, None)
            check("forced fp16 + GradScaler", math.isfinite(loss),
                  f"train loss {loss:.4f}, scale {trainer.precision.scaler.get_scale():g}")
        except Exception as e:  # a non-finite loss is a TrainingError
            check("forced fp16 + GradScaler", False, f"{type(e).__name__}: {e}")
    else:
        check("forced fp16 + GradScaler", None, "autocast runs on CUDA only")

    straight = run_fold(make_config(CHECKED, {**values, "name": "straight", "device": dev}))
    _interrupted(values, "resumed", dev)
    resumed = run_fold(make_config(CHECKED, {**values, "name": "resumed", "device": dev, "resume": True}))
    check("resume after one epoch", _same_history(straight, resumed, 0.0),
          _losses(straight) + " vs " + _losses(resumed))
    _interrupted(values, "moved", "cpu")
    try:
        moved = run_fold(make_config(CHECKED, {**values, "name": "moved", "device": dev, "resume": True}))
        check("CPU checkpoint resumed on the device", [h["epoch"] for h in moved["history"]] == [1, 2],
              _losses(moved))
    except Exception as e:
        check("CPU checkpoint resumed on the device", False, f"{type(e).__name__}: {e}")
    twice = run_fold(make_config(CHECKED, {**values, "name": "dev2", "device": dev}))
    check("two identical runs on the device", _same_history(on, twice, 0.0) and on["metrics"] == twice["metrics"],
          _losses(on) + " vs " + _losses(twice))


def _interrupted(values: dict, name: str, dev: str) -> None:
    """A run stopped (as if killed) right after its first epoch's checkpoint."""
    original = Trainer.save_checkpoint

    def save_then_stop(self):
        original(self)
        raise KeyboardInterrupt

    Trainer.save_checkpoint = save_then_stop
    try:
        run_fold(make_config(CHECKED, {**values, "name": name, "device": dev, "resume": True}))
    except KeyboardInterrupt:
        pass
    finally:
        Trainer.save_checkpoint = original


def _same_history(a: dict, b: dict, tol: float) -> bool:
    la, lb = [h["train_loss"] for h in a["history"]], [h["train_loss"] for h in b["history"]]
    return len(la) == len(lb) and all(abs(x - y) <= tol * abs(x) for x, y in zip(la, lb))


def _losses(rec: dict) -> str:
    return "[" + ", ".join(f"{h['train_loss']:.5f}" for h in rec["history"]) + "]"


class HostReads(TorchDispatchMode):
    """Reads of a tensor's value by the host (``aten._local_scalar_dense``)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


def syncs_per_step(trainer: Trainer) -> float:
    steps = len(trainer.loaders["train"])
    if trainer.device.type != "cuda":
        with HostReads() as reads:
            trainer.train_epoch(1, None)
        return reads.count / steps
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.train_epoch(1, None)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught) / steps


def busy_fraction(trainer: Trainer) -> float | None:
    if trainer.device.type != "cuda":
        return None
    from torch.profiler import ProfilerActivity, profile

    sync(trainer.device)
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        trainer.train_epoch(1, None)
        sync(trainer.device)
    wall = time.perf_counter() - start
    kernels = sum(e.device_time for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)
    return kernels / 1e6 / wall


def speed(values: dict, checked: dict, device: torch.device, models: list[str], steps: int,
          compile_: bool = True) -> None:
    """``checked``: the settings of ``--experiment`` (its ``--set``), used when it is among ``models``."""
    print(f"\nspeed ({device}; steps/s of one batch after warm-up; engine epoch / bare steps, goal <= 1.2x; "
          "syncs per step, goal 0-1 (on the CPU: host reads of tensor values, the optimiser's included); "
          "busy fraction, goal >= 90 %)")
    print(f"  {'model':<18}{'eager':>8}{'AMP':>8}{'ch-last':>9}{'compile':>9}{'engine/bare':>13}{'syncs':>7}{'busy':>7}")
    for name in models:
        config = make_config(name, {**(checked if name == CHECKED else values), "name": f"speed-{name}",
                                    "device": str(device),
                                    "features_on_device": device.type == "cuda" or None})
        trainer = trainer_for(config)
        batch = next(iter(trainer.loaders["train"])).to(device)
        x, lengths, y = trainer.prepare(batch.x, batch.lengths), batch.lengths, batch.y
        rates = {}
        for mode in ("eager", "amp", "channels_last", "compile"):
            if (mode == "amp" and device.type != "cuda") or (mode == "compile" and not compile_):
                continue
            torch.manual_seed(0)
            model = fresh_model(trainer, device)
            xm = x
            if mode == "channels_last":
                if not any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
                    continue
                model = model.to(memory_format=torch.channels_last)
                xm = x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
            if mode == "compile":
                model = torch.compile(model)
            precision = Precision(str(device), mode == "amp")
            rates[mode] = steps_per_second(model, xm, lengths, y, precision, steps)
        epoch, _ = _epoch_seconds(trainer)
        bare = bare_seconds(trainer)
        syncs = syncs_per_step(trainer)
        busy = busy_fraction(trainer)
        cells = "".join(f"{rates[m]:>{w}.1f}" if m in rates else f"{'-':>{w}}"
                        for m, w in (("eager", 8), ("amp", 8), ("channels_last", 9), ("compile", 9)))
        print(f"  {name:<18}{cells}{epoch / bare:>12.2f}x{syncs:>7.2f}"
              f"{(f'{100 * busy:.0f} %' if busy is not None else '-'):>7}", flush=True)


def fresh_model(trainer: Trainer, device: torch.device) -> torch.nn.Module:
    """A fresh copy of the trainer's model (same architecture and weights) on ``device``."""
    import copy

    return copy.deepcopy(trainer.model).to(device).train()


def steps_per_second(model, x, lengths, y, precision: Precision, steps: int, warmup: int = 3) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with precision.autocast():
            loss = torch.nn.functional.cross_entropy(model(x, lengths).float(), y)
        precision.scaler.scale(loss).backward()
        precision.scaler.step(optimizer)
        precision.scaler.update()

    for _ in range(warmup):
        step()
    sync(x.device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(x.device)
    return steps / (time.perf_counter() - start)


def _epoch_seconds(trainer: Trainer) -> tuple[float, float]:
    trainer.train_epoch(0, None)  # warm-up
    sync(trainer.device)
    start = time.perf_counter()
    loss = trainer.train_epoch(1, None)
    sync(trainer.device)
    return time.perf_counter() - start, loss


def predict_rows(values: dict, device: torch.device, out: Path, lengths_s: list[float]) -> None:
    rec = run_fold(make_config(CHECKED, {**values, "name": "predict", "device": "cpu", "epochs": 1}))
    bundle_dir = export(rec["path"], out / "bundle")
    rate = 16000
    waves = {f"{s:g}s": (0.1 * torch.randn(int(s * rate), generator=torch.Generator().manual_seed(int(s))), rate)
             for s in lengths_s}
    print(f"\npredict ({CHECKED} bundle, 1-s windows; ms per second of audio; peak device memory)")
    labels = {}
    for dev in dict.fromkeys(["cpu", str(device)]):
        bundle = load_model(bundle_dir, device=dev)
        for name, wave in waves.items():
            if dev.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats(dev)
            start = time.perf_counter()
            pred = bundle.predict({name: wave}, window=1.0, hop=1.0)
            sync(torch.device(dev))
            ms = 1000 * (time.perf_counter() - start) / (wave[0].numel() / rate)
            peak = f"{torch.cuda.max_memory_allocated(dev) / 2**20:.1f} MB" if dev.startswith("cuda") else "-"
            labels.setdefault(name, []).append(list(pred.windows["prediction"]))
            print(f"  {dev:<8}{name:>6}{ms:>10.2f} ms/s{peak:>12}", flush=True)
    if device.type != "cpu":
        check("predict: same labels on the CPU and the device", all(a == b for a, b in labels.values()),
              f"{len(labels)} inputs")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--corpus", default="synthetic")
    parser.add_argument("--root", default=None)
    parser.add_argument("--models", default="light_sernet,cnn_lstm,attention_fcn_1d", help="speed rows")
    parser.add_argument("--experiment", default="light_sernet", help="correctness and predict rows")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting of --experiment's runs (e.g. a smaller model for the smoke test)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per speed mode")
    parser.add_argument("--tolerance", type=float, default=0.05, help="relative, CPU vs device train loss")
    parser.add_argument("--quick", action="store_true",
                        help="one model, few steps, no compile, short audio (the CI smoke test)")
    args = parser.parse_args()
    global CHECKED
    CHECKED = args.experiment
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    capability = ".".join(map(str, torch.cuda.get_device_capability(device))) if device.type == "cuda" else "-"
    print(f"device {device} ({name}, compute capability {capability}), torch {torch.__version__}, "
          f"precision the Trainer picks: {Precision(str(device)).name}", flush=True)
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        values = {**TINY, "corpus": args.corpus, "data_root": args.root, "output_dir": tmp}
        if args.corpus == "iemocap":
            values["subset"] = "all"
        values["classes"] = experiments.make_config(CHECKED, values).classes
        checked = {**values, **parse_overrides(args.set)}
        print("\ncorrectness")
        correctness(checked, device, args.tolerance)
        models = args.models.split(",")[:1] if args.quick else args.models.split(",")
        speed(values, checked, device, models, 3 if args.quick else args.steps, compile_=not args.quick)
        predict_rows(checked, device, Path(tmp), [2.0, 4.0] if args.quick else [10.0, 60.0, 300.0])
    failed = [r for r in ROWS if r[1] is False]
    print(f"\n{sum(r[1] is True for r in ROWS)} checks passed, {len(failed)} failed, "
          f"{sum(r[1] is None for r in ROWS)} not applicable here")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
