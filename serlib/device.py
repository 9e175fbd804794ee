"""The device a run uses: ``auto`` (cuda, then mps, then cpu) or a named one, checked
against this machine; and the precision it computes in there (:class:`Precision`)."""

from __future__ import annotations

import logging
import os

import torch

from .errors import ConfigError

log = logging.getLogger(__name__)

# set by a Ray task to its share of the GPU (``--gpus-per-run``); the features-on-device budget uses it
GPU_SHARE_ENV = "SERLIB_GPU_SHARE"


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def check_device_name(name: str) -> None:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (availability is checked when
    the run starts, on the machine that runs it)."""
    kind, _, index = name.partition(":")
    if kind not in ("auto", "cpu", "cuda", "mps") or (index and not (kind == "cuda" and index.isdigit())):
        raise ConfigError(f"device must be auto, cpu, cuda, cuda:N or mps, got {name!r}")


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` → cuda, then mps, then cpu; ``cpu``, ``cuda[:N]`` or ``mps`` when this
    machine has it (else a :class:`~serlib.errors.ConfigError` saying what it has)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu")
    kind, _, index = name.partition(":")
    if kind == "cuda" and (not torch.cuda.is_available() or (index and int(index) >= torch.cuda.device_count())):
        have = f"{torch.cuda.device_count()} CUDA device(s)" if torch.cuda.is_available() else "no CUDA device"
        raise ConfigError(f"device={name!r} but this machine has {have}; use device=auto or cpu")
    if kind == "mps" and not _mps_available():
        raise ConfigError("device='mps' but MPS is not available here; use device=auto or cpu")
    if kind not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device must be auto, cpu, cuda, cuda:N or mps, got {name!r}")
    return torch.device(name)


def visible_device(name: str, visible: str | None = None) -> str:
    """``device=cuda:N`` inside a task that sees only some GPUs (a Ray task, whose
    ``CUDA_VISIBLE_DEVICES`` lists the GPUs it was given): N names a GPU of the machine,
    which is the task's ``cuda:K`` when N is the K-th visible one; any other N means the
    task's own GPU, ``cuda:0``. Other names, and ``cuda:N`` without the variable, stay."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") if visible is None else visible
    kind, _, index = name.partition(":")
    if kind != "cuda" or not index or visible is None:
        return name
    ids = [v.strip() for v in visible.split(",") if v.strip()]
    if not ids:
        return name
    mapped = f"cuda:{ids.index(index)}" if index in ids else "cuda:0"
    if mapped != name:
        log.info("device=%s: this process sees GPUs %s (CUDA_VISIBLE_DEVICES); using %s", name, ",".join(ids), mapped)
    return mapped


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively (compute capability 8.0 or newer); emulated
    bf16 (V100, T4) is slower than fp16 with a gradient scaler."""
    if device.type != "cuda":
        return False
    with torch.cuda.device(device):
        return torch.cuda.is_bf16_supported(including_emulation=False)


def precision_name(device: str = "auto", amp: bool = True) -> str:
    """The precision a run with ``device`` and ``amp`` computes in on this machine:
    ``fp32`` (the CPU, MPS, ``amp=false``, or a device this machine does not have),
    ``bf16`` or ``fp16``. Part of a run's fingerprint when not fp32."""
    try:
        dev = resolve_device(device)
    except ConfigError:
        return "fp32"
    if not (amp and dev.type == "cuda"):
        return "fp32"
    return "bf16" if bf16_supported(dev) else "fp16"


def set_deterministic(device: torch.device) -> None:
    """On CUDA, the flags that make a run bit-identical for the same seed: deterministic
    cuDNN kernels (no benchmark search), deterministic algorithms where torch has them
    (``warn_only``: an op without one warns instead of failing the run), and cuBLAS's fixed
    workspace (``CUBLAS_WORKSPACE_CONFIG``, read when cuBLAS starts: set before the first
    CUDA matmul). The CPU path needs none of them and is left as it is."""
    if device.type != "cuda":
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)


def free_memory_mb(device: torch.device, share: float = 1.0) -> float | None:
    """Free memory of a CUDA ``device`` in MB, times ``share`` (a Ray task's GPU fraction);
    None elsewhere."""
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return free / 2**20 * share


class Precision:
    """Where and how precisely the loop computes: the device, autocast (bf16 where the GPU
    has it natively, else fp16 with a gradient scaler; off on the CPU) and the scaler.
    ``dtype="fp16"`` forces fp16 with the scaler (a check of that path on a bf16 GPU)."""

    def __init__(self, device: str = "auto", amp: bool = True, dtype: str | None = None):
        self.device = resolve_device(device)
        self.amp = amp and self.device.type == "cuda"
        bf16 = dtype == "bf16" or (dtype is None and self.amp and bf16_supported(self.device))
        self.dtype = torch.bfloat16 if bf16 else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.dtype == torch.float16)

    @property
    def name(self) -> str:
        """``fp32``, ``bf16`` or ``fp16``: what the record and the fingerprint say."""
        return "fp32" if not self.amp else "bf16" if self.dtype == torch.bfloat16 else "fp16"

    def autocast(self):
        return torch.autocast(device_type="cuda", dtype=self.dtype, enabled=self.amp)


# Compiling Light-SERNet took 44 s and saved 0.15 s per step of 32 2-s utterances on this
# project's CPU: even after about 300 steps. Auto-compile (compile=None) waits for 1000.
COMPILE_MIN_STEPS = 1000


def should_compile(experiment, planned_steps: int, device: torch.device | None = None) -> bool:
    """``compile=None``: compile when the model gains from it (its measured
    ``compile_speedup``) and the run is long enough to repay the compile time. The
    speed-ups were measured on the CPU: elsewhere nothing is compiled unless asked
    (``compile=true``; ``benchmarks/gpu_check.py`` measures it on a GPU)."""
    if device is not None and device.type != "cpu":
        return False
    return experiment.compile_speedup > 1.2 and planned_steps >= COMPILE_MIN_STEPS
