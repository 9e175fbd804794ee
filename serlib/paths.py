"""Where serlib writes: ``outputs/`` of the checkout, or ``$SERLIB_OUTPUTS``."""

from __future__ import annotations

import os
from pathlib import Path


def outputs_dir() -> Path:
    """The outputs folder.

    ``$SERLIB_OUTPUTS`` when set; else ``outputs/`` beside the package when serlib runs
    from a checkout (the usual editable install); else ``~/.cache/serlib``. Never the
    current directory, so notebooks and the CLI write to the same place wherever they run.
    """
    env = os.environ.get("SERLIB_OUTPUTS")
    if env:
        return Path(env).expanduser().resolve()
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file():
        return checkout / "outputs"
    return Path.home() / ".cache" / "serlib"
