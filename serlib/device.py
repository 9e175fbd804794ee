"""The device a run uses: ``auto`` (cuda, then mps, then cpu) or a named one, checked
against this machine; and the precision it computes in there (:class:`Precision`)."""

from __future__ import annotations

import torch

from .errors import ConfigError


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


class Precision:
    """Where and how precisely the loop computes: the device, autocast (bf16 where the GPU
    has it, else fp16 with a gradient scaler; off on the CPU) and the scaler."""

    def __init__(self, device: str = "auto", amp: bool = True):
        self.device = resolve_device(device)
        self.amp = amp and self.device.type == "cuda"
        self.dtype = torch.bfloat16 if self.amp and torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.dtype == torch.float16)

    def autocast(self):
        return torch.autocast(device_type="cuda", dtype=self.dtype, enabled=self.amp)
