"""How many torch threads a notebook kernel (or any run) should use on a shared machine.

torch's CPU kernels run on OpenMP threads that wait for each other at the end of every
parallel region. When another process holds one of the cores, the thread that lost its
core is descheduled while the others spin at the barrier: each operation then lasts a
scheduler time slice instead of microseconds. Measured on the project's 2-core machine
(a 3x3 conv over 8x16x64x64 plus a 256x256 matmul, per iteration; the bench run under
``nice``, another process in ``while True: pass``):

===========================  ==========  ==========
                             1 thread    2 threads
===========================  ==========  ==========
terminal, no busy process      6.3 ms      3.8 ms
Jupyter kernel (papermill)     6.2 ms      3.7 ms
terminal, one core busy        6.2 ms     49 ms
Jupyter kernel, core busy      6.2 ms     40 ms
===========================  ==========  ==========

The kernel is not the cause: a terminal slows down as much. CPU time rises with the wall
time (47 ms of CPU per 49 ms iteration: spin-waiting); ``OMP_WAIT_POLICY=PASSIVE`` stops
the spinning but not the waiting. One thread per free core avoids both, so
:func:`use_free_cores` picks ``cores - (1-min load average)``, at least 1.
"""

from __future__ import annotations

import os


def free_cores() -> int:
    """Cores not taken by other processes, from the 1-minute load average (at least 1)."""
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:  # not available on this platform
        return cores
    return max(1, min(cores, cores - round(load)))


def use_free_cores(threads: int | None = None, echo: bool = True) -> int:
    """Set torch's intra-op threads to ``threads``, else ``$SERLIB_THREADS``, else the free
    cores (:func:`free_cores`); return the number set. Runs record it (``torch_threads``);
    the results of one seed are bit-identical only for the same number of threads."""
    import torch

    from .errors import ConfigError

    chosen = threads or os.environ.get("SERLIB_THREADS")
    why = "asked for" if threads else "from $SERLIB_THREADS" if chosen else None
    if chosen is None:
        chosen, why = free_cores(), f"the free cores: {os.cpu_count()} cores, 1-min load {os.getloadavg()[0]:.1f}"
    try:
        chosen = int(chosen)
    except ValueError:
        raise ConfigError(f"SERLIB_THREADS must be a whole number, got {chosen!r}") from None
    if chosen < 1:
        raise ConfigError(f"torch threads must be >= 1, got {chosen}")
    torch.set_num_threads(chosen)
    if echo:
        print(f"torch threads: {chosen} ({why}; serlib.threads says why it matters)")
    return chosen
