"""Atomic writes: a reader (or a sweep killed half-way) never sees half a file.

Every file serlib writes (records, predictions, tables, checkpoints, feature caches)
goes through :func:`atomic_write`: the content is written to a temporary file in the
same folder and renamed over the target, and the temporary file is removed if writing
fails.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` and rename the result over ``path``.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a" / "b.txt"
    >>> _ = atomic_write(p, lambda tmp: pathlib.Path(tmp).write_text("hi"))
    >>> p.read_text(), [f.name for f in p.parent.iterdir()]
    ('hi', ['b.txt'])
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; the result gets ordinary permissions
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_json(path: str | Path, obj: Any, default: Callable | None = None) -> Path:
    """Strict JSON (``NaN``/``Inf`` become ``null``), so any JSON reader can read it."""
    text = json.dumps(strict_json(obj, default), indent=1, allow_nan=False)
    return write_text(path, text)


def torch_save(obj: Any, path: str | Path) -> Path:
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def strict_json(obj: Any, default: Callable | None = None) -> Any:
    """``obj`` with non-finite floats replaced by None and other types through ``default``.

    >>> strict_json({"a": float("nan"), "b": [1.0, float("inf")], "c": (1, 2)})
    {'a': None, 'b': [1.0, None], 'c': [1, 2]}
    """
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {str(k): strict_json(v, default) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v, default) for v in obj]
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    if default is None:
        raise TypeError(f"not JSON serialisable: {type(obj)}")
    return strict_json(default(obj), default)


class Locked(Exception):
    """The lock is held by a live process (``holder``: its ``host:pid``)."""

    def __init__(self, path: Path, holder: str):
        self.path, self.holder = path, holder
        super().__init__(f"{path}: held by {holder}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


class RunLock:
    """An exclusive lock file (``O_CREAT | O_EXCL``) holding ``host:pid``, so that two
    sweeps on the same outputs never train the same fold twice at once. A lock left by a
    process that no longer runs on this host (killed, machine restarted) is stale and
    taken over; one of another host is respected (delete the file when that run is gone),
    unless it names the same ``owner`` (a sweep's token: a retry of its own task that
    runs on another node of a cluster).

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "run.lock"
    >>> with RunLock(p):
    ...     p.is_file()
    True
    >>> p.exists()
    False
    """

    def __init__(self, path: str | Path, owner: str | None = None):
        self.path = Path(path)
        self.me = f"{os.uname().nodename}:{os.getpid()}" + (f":{owner}" if owner else "")
        self.owner = owner

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666 & ~_UMASK)
            except FileExistsError:
                try:
                    holder = self.path.read_text().strip()
                except OSError:
                    continue  # released meanwhile
                host, pid, owner = (holder.split(":") + ["", ""])[:3]
                mine = self.owner is not None and owner == self.owner
                if mine or (host == os.uname().nodename and pid.isdigit() and not _alive(int(pid))):
                    self.path.unlink(missing_ok=True)  # stale: its process is gone (or was ours)
                    continue
                raise Locked(self.path, holder or "an unknown process") from None
            with os.fdopen(fd, "w") as f:
                f.write(self.me)
            return self
        raise Locked(self.path, "a process that keeps taking it")

    def __exit__(self, *exc) -> None:
        try:
            if self.path.read_text().strip() == self.me:
                self.path.unlink()
        except OSError:
            pass
