"""The GPU path, shown on the CPU: checkpoints read onto the CPU, gradient-scaler states
across precisions, CUDA RNG states for the GPUs that exist, device mapping inside a Ray
task, GPU assignment of a local sweep's workers, precision in the record and the
fingerprint, and the host syncs of a training step."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from serlib import device as device_mod
from serlib import records
from serlib.checkpoint import GlobalRNG
from serlib.errors import ConfigError
from serlib.experiments import make_config
from serlib.fold_setup import make_loaders, setup_fold
from serlib.sweep import RayOptions, _worker_init, gpu_slots, gpus_for
from serlib.train import LOG_EVERY, Trainer, run_fold
from tests.test_train import TINY

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny(iemocap_root, tmp_path):
    def make(**kw):
        return make_config("cnn_lstm", {**TINY, "data_root": str(iemocap_root), "output_dir": str(tmp_path), **kw})
    return make


def _trainer(config) -> Trainer:
    setup = setup_fold(config)
    generator = torch.Generator().manual_seed(config.seed)
    return Trainer(setup, make_loaders(setup, config, generator, torch.device("cpu")), generator)


def test_a_checkpoint_is_read_onto_the_cpu_whatever_the_device(tiny):
    config = tiny(epochs=1, resume=True)
    _trainer(config).fit()
    again = _trainer(config)
    # a run on another device: the old code mapped every tensor there, RNG states included
    # ("RNG state must be a torch.ByteTensor" on CUDA; here on the meta device)
    again.device = torch.device("meta")
    assert again.load_checkpoint() and again.state.epoch == 1


def test_cuda_rng_states_are_restored_only_for_the_gpus_that_exist(monkeypatch):
    state = GlobalRNG().state_dict()
    state["cuda"] = [torch.get_rng_state() for _ in range(3)]  # saved by a run that saw 3 GPUs
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # a Ray task sees one
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device="cuda": restored.append(device))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: [restored.append(i) for i in range(len(states))])
    GlobalRNG().load_state_dict(state)
    assert restored == [0]


def test_scaler_states_load_across_precisions(tiny):
    trainer = _trainer(tiny(epochs=1))
    fp32_state = trainer.parts()["scaler"].state_dict()  # the CPU's disabled scaler: an empty state
    assert fp32_state == {}
    trainer.precision.scaler = torch.amp.GradScaler("cpu", enabled=True)  # an fp16 run's scaler
    trainer.parts()["scaler"].load_state_dict(fp32_state)  # the old code: "The source state dict is empty"
    fp16_state = trainer.parts()["scaler"].state_dict()
    assert fp16_state["scale"] == 2.0**16
    trainer.precision.scaler = torch.amp.GradScaler("cpu", enabled=False)
    trainer.parts()["scaler"].load_state_dict(fp16_state)  # an fp16 checkpoint resumed in bf16/fp32
    assert trainer.parts()["scaler"].state_dict() == {}


def test_cuda_n_names_the_tasks_visible_gpu():
    assert device_mod.visible_device("cuda:5", "3,5") == "cuda:1"  # the driver's GPU 5 is the task's second
    assert device_mod.visible_device("cuda:1", "3") == "cuda:0"    # another GPU: the task's own
    assert device_mod.visible_device("cuda", "3") == "cuda"
    assert device_mod.visible_device("cpu", "3") == "cpu"
    assert device_mod.visible_device("cuda:1", "") == "cuda:1"


def test_ray_tasks_reserve_a_gpu_by_default_when_the_cluster_has_one():
    assert gpus_for(RayOptions(), "auto", {"CPU": 8, "GPU": 2}) == 1.0
    assert gpus_for(RayOptions(), "auto", {"CPU": 8}) == 0.0
    assert gpus_for(RayOptions(), "cpu", {"CPU": 8, "GPU": 2}) == 0.0
    assert gpus_for(RayOptions(gpus_per_run=0.25), "auto", {"GPU": 1}) == 0.25
    with pytest.raises(ConfigError, match="--gpus-per-run 0"):
        gpus_for(RayOptions(gpus_per_run=0), "cuda:1", {"GPU": 2})


def test_a_local_sweep_gives_its_workers_gpus_round_robin(monkeypatch):
    assert gpu_slots(4, "auto", ["0", "1"]) == ["0", "1", "0", "1"]
    assert gpu_slots(3, "cuda", ["2", "5"]) == ["2", "5", "2"]
    assert gpu_slots(2, "cpu", ["0", "1"]) == [None, None]
    assert gpu_slots(2, "cuda:1", ["0", "1"]) == [None, None]  # named: every run on it
    assert gpu_slots(2, "auto", []) == [None, None]            # no GPU
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert gpu_slots(3, "auto") == ["4", "6", "4"]
    slots = queue.Queue()
    slots.put("6")
    monkeypatch.setattr("serlib.sweep._die_with", lambda parent: None)
    _worker_init(os.getpid(), slots)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "6"


def test_precision_is_part_of_the_record_and_the_fingerprint(tiny, monkeypatch):
    rec = run_fold(tiny(epochs=1, name="fp32"))
    assert rec["precision"] == "fp32"
    identity = records.run_identity(tiny(), ["ang", "hap", "neu", "sad"], setup_fold(tiny()).manifest)
    assert "precision" not in identity  # fp32 (the CPU): fingerprints as before (tests/test_golden.py)
    monkeypatch.setattr(records, "precision_name", lambda device, amp: "bf16")
    bf16 = records.run_identity(tiny(), ["ang", "hap", "neu", "sad"], setup_fold(tiny()).manifest)
    assert bf16["precision"] == "bf16" and records.fingerprint(bf16) != records.fingerprint(identity)
    assert records.identity_diff(identity, bf16) == ["precision"]


def test_a_run_planned_elsewhere_gets_this_machines_precision(tiny, monkeypatch):
    from serlib.planning import plan_run

    plan = plan_run(tiny())  # planned as fp32 (a driver without GPUs)
    monkeypatch.setattr("serlib.fold_setup.precision_name", lambda device, amp: "fp16")
    setup = setup_fold(tiny(), plan)
    assert setup.identity["precision"] == "fp16" and setup.fingerprint != plan.fingerprint


def test_bf16_is_asked_without_emulation_on_the_runs_device(monkeypatch):
    asked, entered = [], []

    class Ctx:
        def __init__(self, dev):
            entered.append(dev)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    monkeypatch.setattr(torch.cuda, "device", Ctx)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda **kw: asked.append(kw) or False)
    assert device_mod.bf16_supported(torch.device("cuda:1")) is False
    assert asked == [{"including_emulation": False}] and entered == [torch.device("cuda:1")]
    assert device_mod.Precision("cpu").name == "fp32"


class CountSyncs(TorchDispatchMode):
    """Counts the reads of a tensor's value by the host (``.item()``, ``int()``, ``bool()``:
    ``aten._local_scalar_dense``): on a GPU each one waits for the device."""

    def __init__(self):
        super().__init__()
        self.count, self.paused = 0, False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default and not self.paused:
            self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("experiment", ["light_sernet", "cnn_lstm"])
def test_a_training_step_reads_the_device_at_most_once(iemocap_root, tmp_path, experiment, monkeypatch):
    values = {k: v for k, v in TINY.items() if experiment == "cnn_lstm" or not (k.startswith("model.") or k == "freq_khz")}
    config = make_config(experiment, {**values, "data_root": str(iemocap_root), "output_dir": str(tmp_path),
                                      "features_on_device": True, "grad_norm_every": 0, "epochs": 1})
    trainer = _trainer(config)
    steps = len(trainer.loaders["train"])
    alpha = trainer.experiment.epoch_alpha(trainer.generator)
    syncs, step = CountSyncs(), trainer.optimizer.step

    def optimizer_step(*args, **kwargs):  # Adam's step counts live on the host even on CUDA: no sync
        syncs.paused = True
        try:
            return step(*args, **kwargs)
        finally:
            syncs.paused = False

    trainer.optimizer.step = optimizer_step
    per_step = 0
    if experiment == "cnn_lstm":
        # the packed LSTM needs its lengths on the host: lengths.cpu(), one sync per step
        # (a copy, not counted on the CPU); what the LSTM then reads (batch sizes) is on the host
        def pause(module, args):
            syncs.count += 1
            syncs.paused = True

        def resume(module, args, out):
            syncs.paused = False

        trainer.model.lstm.register_forward_pre_hook(pause)
        trainer.model.lstm.register_forward_hook(resume)
        per_step = 1
    with syncs:
        trainer.train_epoch(1, alpha)
    # the old loop read the device 3 times a step and more (int(lengths.max()), ids from
    # j.tolist(), bool(normalizer.fitted), isfinite, loss.item()); now the reads are the
    # model's own and those of the log points (the loss, a non-finite check), plus the
    # normaliser's one check
    assert syncs.count <= per_step * steps + 2 * (steps // LOG_EVERY + 2) + 1, (syncs.count, steps)


@pytest.mark.slow  # trains a tiny model a few times
def test_gpu_check_runs_on_the_cpu_as_a_smoke_test(iemocap_root):
    tiny = ["epochs=2", "batch_size=4", "model.n_conv=1", "model.conv_channels=(4,)", "model.conv_strides=((2, 2),)",
            "model.lstm_hidden=8", "freq_khz=4", "feature_workers=1"]
    done = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--device", "cpu", "--quick", "--corpus", "iemocap",
                           "--root", str(iemocap_root), "--experiment", "cnn_lstm", "--models", "cnn_lstm",
                           *(f"--set={s}" for s in tiny)],
                          cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "precision the Trainer picks: fp32" in out and "PASS  resume after one epoch" in out
    assert "PASS  CPU checkpoint resumed on the device" in out and "PASS  two identical runs on the device" in out
    assert " 0 failed" in out and "ms/s" in out
