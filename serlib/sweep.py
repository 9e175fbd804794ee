"""Sweeps: every (fold, seed) of an experiment, resumable, serial or in parallel.

:func:`sweep` is what ``python -m serlib sweep`` and the notebooks call. It loads the
corpus once, plans the runs, skips those that already have a record with the same
fingerprint (same settings, classes and data), re-runs the rest, and reports a failed
run without stopping the others::

    from serlib.sweep import sweep
    table = sweep("light_sernet", {"corpus": "emodb", "data_root": "/data/emodb",
                                   "classes": "all", "epochs": 20}, folds="all", seeds=3, jobs=2)

Determinism: a run is bit-identical for the same seed, device and number of torch
threads. ``threads`` fixes the thread count of every run (recorded as
``torch_threads``), so a parallel sweep reproduces a serial one with the same
``threads``.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import multiprocessing as mp
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import torch

from .device import GPU_SHARE_ENV, visible_device
from .errors import ConfigError, SerlibError
from .paths import outputs_dir
from .planning import Outcome, Plan, plan
from .progress import bar as progress_bar
from .train import RunBusy, run_fold

log = logging.getLogger(__name__)


def execute(config, plan: Plan | None = None, threads: int | None = None, note: str = "",
            lock_owner: str | None = None) -> Outcome:
    """Run one fold and report it; a :class:`SerlibError` or any other exception becomes a
    failed outcome (with the reason) instead of stopping the sweep. Module-level, so that
    spawned worker processes can import it."""
    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    try:
        owner = {"lock_owner": lock_owner} if lock_owner else {}  # a Ray sweep's token (see run_fold)
        rec = run_fold(config, plan, **owner)
    except RunBusy as e:  # another sweep trains it now: its record will be there
        return Outcome(config.fold, config.seed, "skipped", reason=f"running elsewhere: {e}",
                       seconds=time.perf_counter() - start)
    except Exception as e:  # report and go on: the other folds still run
        reason = str(e) if isinstance(e, SerlibError) else f"{type(e).__name__}: {e}"
        log.debug("fold %d seed %d failed", config.fold, config.seed, exc_info=True)
        return Outcome(config.fold, config.seed, "failed", reason=reason, seconds=time.perf_counter() - start)
    return Outcome(config.fold, config.seed, "done", rec["metrics"].get("wa"), rec["metrics"].get("ua"), rec["path"],
                   note, time.perf_counter() - start, rec["metrics"].get("ccc_mean"))


@dataclass
class RayOptions:
    """Resources and fault tolerance of the Ray backend (``sweep --backend ray``)."""

    address: str | None = None    # None: a local Ray instance; "auto" or HOST:PORT: an existing cluster
    cpus_per_run: float = 1.0     # also the run's torch threads (rounded, at least 1)
    gpus_per_run: float | None = None  # fractions share a GPU (0.25: four runs per GPU); None: see gpus_for
    max_retries: int = 2          # a task whose worker dies (killed, node lost) runs again this often

    def __post_init__(self):
        for name, value, low in (("cpus_per_run", self.cpus_per_run, 0), ("gpus_per_run", self.gpus_per_run, 0),
                                 ("max_retries", self.max_retries, 0)):
            if value is None and name == "gpus_per_run":
                continue
            if not (isinstance(value, (int, float)) and math.isfinite(value)) or value < low \
                    or (name == "cpus_per_run" and value <= 0):
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag} must be a finite number {'> 0' if name == 'cpus_per_run' else '>= 0'}, "
                                  f"got {value!r}")


def check_address(address: str | None, timeout: float = 5.0) -> None:
    """A clear error, at once, for a Ray ``--address`` that cannot be reached (Ray itself
    retries for about 30 s and then raises from deep inside)."""
    if address in (None, "auto") or address.startswith("ray://"):
        return
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"--address must be 'auto' or HOST:PORT, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConfigError(f"--address {address}: no Ray cluster reachable there ({e})") from None


def gpus_for(options: RayOptions, device: str, cluster: dict) -> float:
    """GPUs each Ray task reserves: ``--gpus-per-run``, or by default one whole GPU when
    the run may use one (``device`` auto or cuda) and the cluster has GPUs, else none.
    Ray hands a task only the GPUs it reserved (``CUDA_VISIBLE_DEVICES``), so runs are
    spread over the GPUs and counted, never piled onto cuda:0. A run that asks for CUDA
    with ``--gpus-per-run 0`` is an error (it would use a GPU Ray does not count)."""
    cuda = device == "auto" or device.startswith("cuda")
    if options.gpus_per_run is None:
        return 1.0 if cuda and cluster.get("GPU", 0) > 0 else 0.0
    if options.gpus_per_run == 0 and device.startswith("cuda"):
        raise ConfigError(f"device={device} with --gpus-per-run 0: Ray would not count the GPU the runs use; "
                          "give --gpus-per-run (e.g. 1 or 0.25) or device=cpu")
    return float(options.gpus_per_run)


def check_request(options: RayOptions, nodes: list[dict]) -> None:
    """Fail at once when no node of the cluster can ever meet one run's request (Ray would
    wait for it forever). ``nodes``: each live node's resources (``ray.nodes()``)."""
    for key, flag, wanted in (("CPU", "--cpus-per-run", options.cpus_per_run),
                              ("GPU", "--gpus-per-run", options.gpus_per_run or 0.0)):
        largest = max((float(n.get(key, 0)) for n in nodes), default=0.0)
        if wanted > largest:
            raise ConfigError(f"{flag} {wanted:g} asks for more than any node of the Ray cluster has "
                              f"(largest: {largest:g} {key}); no run could ever start")


def sweep(experiment: str, values: dict | None = None, folds: str | Iterable[int] = "all",
          seeds: int | Iterable[int] = 1, jobs: int = 1, threads: int | None = None, force: bool = False,
          echo: Callable[[str], None] | None = print, backend: str = "local",
          ray_options: RayOptions | None = None) -> pd.DataFrame:
    """Run every (fold, seed) of ``experiment`` with the config ``values``.

    Args:
        values: config fields (unknown keys are an error); ``classes="all"`` keeps every
            label of the corpus.
        folds: ``"all"``, ``"1,2,3"`` or a list of fold numbers.
        seeds: a count N (seeds 1..N) or a list of seeds.
        jobs: parallel runs (processes); each run gets ``threads`` torch threads
            (default: the cores divided by ``jobs``; with one job, torch's default).
        force: re-run even when a matching record exists (from scratch, not from a
            checkpoint).
        echo: where progress lines go (None: nowhere).
        backend: ``"local"`` (this machine, ``jobs`` processes) or ``"ray"`` (one Ray
            task per run, with ``ray_options``; see :func:`run_on_ray`).

    Returns:
        One row per run: fold, seed, status (done / skipped / failed), WA, UA, path,
        reason, seconds. ``df.attrs["failed"]`` counts the failures.
    """
    if jobs < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}")
    if backend not in ("local", "ray"):
        raise ConfigError(f"backend must be 'local' or 'ray', got {backend!r}")
    if backend == "ray":
        _import_ray(local=(ray_options or RayOptions()).address is None)  # a clear error before any work
        check_address((ray_options or RayOptions()).address)
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    say = echo or (lambda _: None)
    the_plan = plan(experiment, values, folds, seeds, force)
    todo, outcomes = the_plan.todo, list(the_plan.skipped)
    say(f"sweep {experiment} on {the_plan.first.corpus}: {len(todo)} runs to do, {len(outcomes)} already recorded")
    runs_of: dict[str, list[str]] = {}  # one line per note, not one per run (a note is often every run's)
    for config, note in todo:
        if note:
            runs_of.setdefault(note, []).append(f"fold {config.fold} seed {config.seed}")
    for note, runs in runs_of.items():
        say(f"{', '.join(runs)}: {note}")

    def line(outcome: Outcome) -> str:  # a note said above is not repeated on each run's line
        return (replace(outcome, reason="") if outcome.reason in runs_of else outcome).line()
    if jobs > 1 and threads is None:
        threads = max(1, (os.cpu_count() or 1) // jobs)
    if backend == "ray":
        outcomes += run_on_ray(the_plan, ray_options or RayOptions(), threads, say)
    elif jobs == 1 or len(todo) <= 1:
        for config, note in todo:
            outcome = execute(config, the_plan, threads, note)
            outcomes.append(outcome)
            say(line(outcome))
    else:
        workers, ctx = min(jobs, len(todo)), mp.get_context("spawn")
        slots, gpus = ctx.Queue(), gpu_slots(workers, the_plan.first.device)
        for gpu in gpus:
            slots.put(gpu)
        if any(gpus):
            used = sorted(set(gpus), key=gpus.index)
            say(f"local: {workers} processes on {len(used)} GPU(s) "
                + ", ".join(f"{g}: {gpus.count(g)}" for g in used) + " (CUDA_VISIBLE_DEVICES per process)")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                                 initargs=(os.getpid(), slots)) as pool:
            futures = {pool.submit(execute, replace(c, progress=False), the_plan, threads, note): c
                       for c, note in todo}
            for future in as_completed(futures):
                c = futures[future]
                try:
                    outcome = future.result()
                except BrokenProcessPool as e:  # a worker died (killed, out of memory)
                    outcome = Outcome(c.fold, c.seed, "failed", reason=f"worker process died ({e})")
                outcomes.append(outcome)
                say(line(outcome))
    table = pd.DataFrame([o.__dict__ for o in outcomes],
                         columns=["fold", "seed", "status", "wa", "ua", "path", "reason", "seconds", "ccc"])
    table = table.sort_values(["seed", "fold"], ignore_index=True)
    table.attrs["failed"] = int((table.status == "failed").sum())
    counts = table.status.value_counts().to_dict()
    say(f"sweep done: {counts.get('done', 0)} done, {counts.get('skipped', 0)} skipped, "
        f"{counts.get('failed', 0)} failed")
    for row in table[table.status == "failed"].itertuples():
        say(f"  failed: fold {row.fold} seed {row.seed}: {row.reason}")
    return table


def gpu_slots(workers: int, device: str, visible: list[str] | None = None) -> list[str | None]:
    """The GPU each of a local sweep's worker processes is given, round-robin over this
    machine's GPUs (``visible``: their ids, default this process's ``CUDA_VISIBLE_DEVICES``
    or all), when the runs may use one (``device`` auto or cuda); None: no assignment
    (the CPU, or an explicit ``cuda:N``, which all runs then share)."""
    if device not in ("auto", "cuda"):
        return [None] * workers
    if visible is None:
        env = os.environ.get("CUDA_VISIBLE_DEVICES")
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        visible = [v.strip() for v in env.split(",") if v.strip()][:count] if env is not None else \
            [str(k) for k in range(count)]
    return [visible[k % len(visible)] if visible else None for k in range(workers)]


def _worker_init(parent: int, slots) -> None:
    """A local sweep's worker process: watch the driver (:func:`_die_with`) and take its
    GPU (:func:`gpu_slots`) as its only visible one, before CUDA starts in it."""
    _die_with(parent)
    try:
        gpu = slots.get(timeout=5)
    except queue.Empty:
        gpu = None
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu


def _die_with(parent: int, every: float = 0.5) -> None:
    """In a worker process: exit as soon as the sweep's driver ``parent`` is gone (killed
    by SIGKILL or SIGTERM, which no pool shutdown sees), instead of training on and idling.
    Records and checkpoints are written atomically, so the next sweep resumes the fold
    from its last checkpoint, as after a serial sweep's interruption."""
    def watch():
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="serlib-parent-watch", daemon=True).start()


def _import_ray(local: bool = False):
    """Ray, or a clear error saying how to install it. ``local``: a Ray instance started
    here binds to the loopback interface only (Ray's own switch, read when Ray is
    imported), so nothing listens on, or connects to, the machine's network addresses."""
    if importlib.util.find_spec("ray") is None:
        raise ConfigError("--backend ray needs Ray: pip install -e '.[ray]' (or pip install 'ray>=2.9')")
    if local:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    return ray


def _ray_task(config, plan: Plan, threads: int, note: str, pid_dir: str, lock_owner: str | None = None) -> Outcome:
    """One run inside a Ray worker. Its pid is written to ``pid_dir`` while it runs (to
    see, or stop, which process trains which fold); the record is written by the worker,
    atomically, into the shared outputs folder."""
    pid_file = Path(pid_dir) / f"{config.experiment}-fold{config.fold:02d}-seed{config.seed}.pid"
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(str(os.getpid()))
    gpus = ray_gpu_share()
    os.environ[GPU_SHARE_ENV] = str(gpus or 1.0)  # the features-on-device budget's share of the GPU
    # the task sees only its own GPUs: cuda:N names the driver's N-th; without a GPU, device=auto is the CPU
    if gpus:
        config = replace(config, device=visible_device(config.device))
    elif config.device == "auto" and torch.cuda.is_available():
        config = replace(config, device="cpu")
    try:
        return execute(config, plan, threads, note, lock_owner)
    finally:
        pid_file.unlink(missing_ok=True)


def ray_gpu_share() -> float:
    """The GPU share this Ray task reserved (0: none)."""
    import ray

    return float(ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0))


def run_on_ray(plan: Plan, options: RayOptions, threads: int | None,
               say: Callable[[str], None]) -> list[Outcome]:
    """Run the plan's ``todo`` as Ray tasks (one per (fold, seed, variant)) and collect outcomes.

    Semantics are the local backend's: each task calls :func:`execute`, which trains (or
    resumes from the checkpoint, when the outputs folder is shared storage), writes the
    record atomically and reports a failure instead of raising. Records are written by
    the workers, not the driver: the checkpoints and predictions already live there, and
    an atomic rename makes a retried task's second write harmless. A task whose worker
    process dies is retried up to ``max_retries`` times by Ray, then reported as failed;
    the other tasks go on.
    """
    ray = _import_ray(local=options.address is None)
    todo = plan.todo
    if not todo:
        return []
    try:
        ray.init(address=options.address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ConfigError(f"cannot start or reach Ray at {options.address or 'a local instance'}: {e}") from None
    try:
        check_request(options, [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive", True)])
    except ConfigError:
        if options.address is None:
            ray.shutdown()
        raise
    threads = threads or max(1, round(options.cpus_per_run))
    try:
        gpus = gpus_for(options, plan.first.device, ray.cluster_resources())
    except ConfigError:
        if options.address is None:
            ray.shutdown()
        raise
    task = ray.remote(num_cpus=options.cpus_per_run, num_gpus=gpus,
                      max_retries=options.max_retries, retry_exceptions=False)(_ray_task)
    plan_ref = ray.put(plan)  # the manifest and folds go to the object store once
    out_root = Path(todo[0][0].output_dir) if todo[0][0].output_dir else outputs_dir()
    pid_dir = str(out_root / "sweeps" / "running")
    token = uuid.uuid4().hex[:12]  # a retried task takes over its own earlier attempt's run lock
    refs = {task.remote(replace(c, progress=False), plan_ref, threads, note, pid_dir, token): c
            for c, note in todo}
    say(f"ray: {len(refs)} tasks, {options.cpus_per_run:g} CPU and {gpus:g} GPU each, "
        f"cluster resources {ray.cluster_resources()}")
    outcomes, pending = [], list(refs)
    with progress_bar(None, len(refs) > 1, total=len(refs), desc="runs") as bar:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            c = refs[done[0]]
            try:
                outcome = ray.get(done[0])
            except ray.exceptions.RayError as e:  # the worker died more often than max_retries
                first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                outcome = Outcome(c.fold, c.seed, "failed",
                                  reason=f"Ray task failed after {options.max_retries} retries: {type(e).__name__}: {first}")
            outcomes.append(outcome)
            bar.update(1)
            say(outcome.line())
    return outcomes
