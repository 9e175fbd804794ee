"""Atomic writes: a reader (or a sweep killed half-way) never sees half a file.

Every file serlib writes (records, predictions, tables, checkpoints, feature caches)
goes through :func:`atomic_write`: the content is written to a temporary file in the
same folder and renamed over the target, and the temporary file is removed if writing
fails.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import DataError

_UMASK = os.umask(0)
os.umask(_UMASK)


def check_target(path: str | Path) -> Path:
    """``path`` if serlib may write it: nothing there yet, or a regular file (which a
    write replaces). A symlink, a named pipe, a device or a folder is refused: serlib
    writes only regular files of its own and never writes through a link.

    Raises:
        DataError: what is at ``path`` is not a regular file.
    """
    path = Path(path)
    if path.is_symlink():
        raise DataError(path, "is a symbolic link; serlib writes only regular files: remove the link or "
                              "give its target's path")
    if path.exists() and not path.is_file():
        kind = "a folder" if path.is_dir() else "a named pipe" if stat.S_ISFIFO(path.stat().st_mode) \
            else "a device" if stat.S_ISCHR(path.stat().st_mode) or stat.S_ISBLK(path.stat().st_mode) \
            else "not a regular file"
        raise DataError(path, f"is {kind}; serlib writes only regular files: give a file name")
    return path


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` and rename the result over ``path``.

    Only a regular file (or nothing) at ``path`` is replaced (:func:`check_target`). A
    write that fails on the file system (a full disk, a read-only folder) leaves nothing
    behind and raises :class:`DataError` naming ``path`` and the reason.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a" / "b.txt"
    >>> _ = atomic_write(p, lambda tmp: pathlib.Path(tmp).write_text("hi"))
    >>> p.read_text(), [f.name for f in p.parent.iterdir()]
    ('hi', ['b.txt'])
    """
    path = check_target(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; the result gets ordinary permissions
        write(tmp)
        check_target(path)  # nothing else put there meanwhile
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise DataError(path, f"cannot write ({e.strerror or e})") from None
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_json(path: str | Path, obj: Any, default: Callable | None = None) -> Path:
    """Strict JSON (``NaN``/``Inf`` become ``null``), so any JSON reader can read it."""
    text = json.dumps(strict_json(obj, default), indent=1, allow_nan=False)
    return write_text(path, text)


def torch_save(obj: Any, path: str | Path) -> Path:
    import io

    import torch

    buffer = io.BytesIO()  # torch reports a full disk as a RuntimeError; a plain write says ENOSPC
    torch.save(obj, buffer)
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(buffer.getbuffer()))


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


def _lock_error(path: Path, e: OSError):
    return DataError(path, f"cannot create the run's lock file ({e.strerror or e}); free disk space or make "
                           "the outputs folder writable (SERLIB_OUTPUTS)")


class RunLock:
    """An exclusive lock file (``O_CREAT | O_EXCL``) holding ``host:pid``, so that two
    sweeps on the same outputs never train the same fold twice at once. A lock left by a
    process that no longer runs on this host (killed, machine restarted) is stale and
    taken over; one of another host is respected (delete the file when that run is gone),
    unless it names the same ``owner`` (a sweep's token: a retry of its own task that
    runs on another node of a cluster). A lock that names no ``host:pid`` (empty, or
    bytes that are not ours) is stale too: serlib's locks appear whole (:meth:`_create`).
    A lock that cannot be created (full disk, read-only folder, name too long) is a
    :class:`serlib.errors.DataError` that leaves no file behind.

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
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _lock_error(self.path, e) from None
        for _ in range(3):
            try:
                self._create()
            except FileExistsError:
                try:
                    holder = self.path.read_bytes().decode("utf-8", "replace").strip()
                except OSError:
                    continue  # released meanwhile
                host, pid, owner = (holder.split(":") + ["", ""])[:3]
                mine = self.owner is not None and owner == self.owner
                garbled = not (host and pid.isdigit())  # empty (an old full disk) or not ours: nobody holds it
                if garbled or mine or (host == os.uname().nodename and not _alive(int(pid))):
                    self.path.unlink(missing_ok=True)  # stale: its process is gone (or was ours)
                    continue
                raise Locked(self.path, holder) from None
            return self
        raise Locked(self.path, "a process that keeps taking it")

    def _create(self) -> None:
        """Write ``host:pid`` to a temporary file and hard-link it as the lock: the lock
        appears whole or not at all (a full disk fails on the temporary file), and the
        link fails with FileExistsError when the lock exists. On a file system without
        hard links, the lock is created with ``O_EXCL`` and removed if writing fails."""
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".lock.", suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                f.write(self.me)
            os.chmod(tmp, 0o666 & ~_UMASK)
            try:
                os.link(tmp, self.path)
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                    raise
                self._create_exclusive()
        except FileExistsError:
            raise
        except OSError as e:
            raise _lock_error(self.path, e) from None
        finally:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)

    def _create_exclusive(self) -> None:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666 & ~_UMASK)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(self.me)
        except BaseException:
            self.path.unlink(missing_ok=True)
            raise

    def __exit__(self, *exc) -> None:
        try:
            if self.path.read_bytes().decode("utf-8", "replace").strip() == self.me:
                self.path.unlink()
        except OSError:
            pass
