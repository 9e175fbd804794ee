"""Where serlib writes: ``outputs/`` of the checkout, or ``$SERLIB_OUTPUTS``."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import DataError


def outputs_dir() -> Path:
    """The outputs folder.

    ``$SERLIB_OUTPUTS`` when set; else ``outputs/`` beside the package when serlib runs
    from a checkout (the usual editable install); else ``~/.cache/serlib``. Never the
    current directory, so notebooks and the CLI write to the same place wherever they run.

    Raises:
        DataError: ``$SERLIB_OUTPUTS`` names something that is not a folder.
    """
    env = os.environ.get("SERLIB_OUTPUTS")
    if env:
        path = Path(env).expanduser().resolve()
        if path.exists() and not path.is_dir():
            raise DataError(path, "SERLIB_OUTPUTS names a file, not a folder: point it at a folder (made if missing)")
        return path
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file():
        return checkout / "outputs"
    return Path.home() / ".cache" / "serlib"
