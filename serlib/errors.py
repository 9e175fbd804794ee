"""Exceptions that name the offending file and the reason."""

from __future__ import annotations

from pathlib import Path


class SerlibError(Exception):
    """Base class for serlib's own errors."""


class DataError(SerlibError):
    """Bad input data: names the path and the reason.

    >>> str(DataError("/data/a.wav", "empty file (0 samples)"))
    '/data/a.wav: empty file (0 samples)'
    """

    def __init__(self, path: str | Path | None, reason: str):
        self.path = None if path is None else str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)


class AudioError(DataError):
    """A wav that cannot be used: unreadable, empty, silent, non-finite, too short."""


class LabelError(DataError):
    """A label code that the corpus adapter does not know."""


class SplitError(SerlibError):
    """A split that breaks its own promise (speaker overlap, empty split)."""


class ConfigError(SerlibError, ValueError):
    """An unknown or invalid configuration key."""
