"""Sweeps: named axes -> Cartesian grid -> fixed-size chunks -> vmap -> devices -> xarray.

A sweep runs one per-point function over every point of a Cartesian grid of named axes
(depth, ratio, scale, seed, learning rate, any model argument) and assembles the named outputs
into an ``xarray.Dataset`` whose dims are the axes.

How it runs:

* The grid is flattened and **shuffled** with a fixed seed, so that every chunk, and every
  device inside a chunk, gets a mix of cheap and expensive points (an even load). With
  ``group_by``, the shuffled points are then sorted by the axes that decide a point's cost, so
  that a vmapped batch, a solver loop that runs until its slowest lane ends, holds points that
  cost alike.
* It is cut into chunks of one **fixed size**, exactly as asked (the last chunk padded): the
  unit of work and of the store, the same on any machine, so a store started on 2 devices
  resumes on 1 or 4. Chunks are packed into calls of one fixed number of lanes, so the whole
  sweep, and any later call with new values of the same shapes, uses **one compiled program**.
* Each call is split across all local devices, each share running the one compiled program
  (``lax.map`` over fixed-width ``vmap`` batches): one solver loop per share, no per-step
  cross-device reduction, results bitwise identical whatever the device count, and on CPU one
  compilation whatever the device count (:class:`Runner`).
* With a ``store`` path, each finished chunk is written to a **zarr** store at once
  (:mod:`jaxflow.sweep.store`): its data, then its checksum, then its completion flag. An
  interrupted sweep (Ctrl-C, kill -9) rerun with ``resume=True`` verifies every finished chunk,
  computes only the missing or corrupt ones and yields exactly the dataset an uninterrupted run
  yields; the final read-back is verified too. A full or unwritable disk stops the sweep with a
  :class:`SweepError` naming the store; the chunks already finished stay valid for ``resume``.
  One run writes a store at a time: a second one is refused, naming the holder
  (:mod:`jaxflow.sweep.lock`).
* **Several processes** (one per host, after ``jax.distributed.initialize``) share one store on a
  shared file system: process ``p`` of ``P`` computes the chunks ``i`` with ``i % P == p``.
  Process 0 lays the store out (atomically: built beside its path, then renamed); the others
  wait for it, then everyone writes its own chunks and waits for every done flag, so each
  process returns the same full dataset. The coordination goes through the store's files only:
  no collective, hence no gloo/MPI needed. Each process holds its own writer lock (one per
  process index), so cooperating processes never refuse each other. Results are bitwise
  identical whatever the number of processes or devices.
* Before anything is created, the sweep's memory and store size are estimated and checked
  against the machine (:func:`estimate_size`; ``size_check=False`` skips it).

Where each part lives: the grid and its fingerprint (:mod:`jaxflow.sweep.grid`), one call over
the devices (:mod:`jaxflow.sweep.device_runner`), the sweep's side of its store
(:mod:`jaxflow.sweep.store_access`), provenance (:mod:`jaxflow.provenance`), the errors
(:mod:`jaxflow.sweep.errors`) and the size estimate (:mod:`jaxflow.sweep.estimate`); this module
runs them in order and re-exports their public names.

Audit hook: with ``JAXFLOW_CHUNK_LOG=FILE`` in the environment, every chunk about to be computed
is appended to FILE as one line ``<process index> <chunk index>`` (tests use it to check that a
resumed sweep never recomputes a finished chunk).

Example:
    >>> import jax.numpy as jnp
    >>> from jaxflow import sweep
    >>> ds = sweep.run(lambda p: {"product": p["a"] * p["b"]},
    ...                {"a": [1.0, 2.0], "b": [10.0, 20.0, 30.0]}, quiet=True)
    >>> ds["product"].sel(a=2.0, b=30.0).item()
    60.0
"""

import functools
import math
import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from jaxflow import _x64
from jaxflow.sweep import executor as _executor
from jaxflow.sweep import progress as _progress
from jaxflow.sweep import resources as _resources
from jaxflow.sweep import store as _store
from jaxflow.sweep.device_runner import DEFAULT_BATCH as DEFAULT_BATCH
from jaxflow.sweep.device_runner import DEFAULT_CHUNK_SIZE as DEFAULT_CHUNK_SIZE
from jaxflow.sweep.device_runner import AbstractRunner as AbstractRunner
from jaxflow.sweep.device_runner import Runner as Runner
from jaxflow.sweep.errors import StoreDamagedError as StoreDamagedError
from jaxflow.sweep.errors import SweepError as SweepError
from jaxflow.sweep.errors import check_count
from jaxflow.sweep.estimate import estimate_size as estimate_size
from jaxflow.sweep.estimate import point_cost
from jaxflow.sweep.executor import Task
from jaxflow.sweep.grid import (
    fingerprint,
    process_share,
    shuffled_points,
    to_dataset,
    validate_axes,
)
from jaxflow.sweep.kept_runners import kept_runner
from jaxflow.provenance import git_commit as git_commit
from jaxflow.provenance import package_versions as package_versions
from jaxflow.provenance import run_metadata as run_metadata
from jaxflow.sweep.store_access import open_store, read_verified, verified_on_start, wait_all_done

# Each finished chunk is written through this module's ``_write`` (a module global: a test can
# interpose on it, e.g. to damage the store between a write and the final read).
from jaxflow.sweep.store_access import write_chunk as _write

__all__ = [
    "AbstractRunner", "CHUNK_LOG_ENV", "DEFAULT_BATCH", "DEFAULT_CHUNK_SIZE",
    "DEFAULT_WAIT_TIMEOUT", "Runner", "StoreDamagedError", "SweepError", "estimate_size",
    "git_commit", "package_versions", "run", "run_metadata",
]

DEFAULT_WAIT_TIMEOUT = 600.0
CHUNK_LOG_ENV = "JAXFLOW_CHUNK_LOG"


def run(
    fn: Callable[[dict[str, jax.Array]], dict[str, jax.Array]] | None,
    axes: Mapping[str, Sequence[float]],
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    store: str | os.PathLike | None = None,
    resume: bool = False,
    seed: int = 0,
    output_dims: Mapping[str, Sequence[str]] | None = None,
    attrs: Mapping[str, Any] | None = None,
    config: str = "",
    quiet: bool = False,
    desc: str = "sweep",
    runner: Runner | None = None,
    devices=None,
    process_index: int | None = None,
    process_count: int | None = None,
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
    size_check: bool = True,
    executor=None,
    program: Hashable | None = None,
    group_by: Sequence[str] = (),
) -> xr.Dataset:
    """Run ``fn`` over the Cartesian grid of ``axes``; return an ``xarray.Dataset``.

    Args:
        fn: per-point function ``fn(point) -> {name: array}``; ``point[axis]`` is a float64
            scalar. Pure and jit-compatible; the sweep vmaps it and spreads it over devices.
            With a ``runner``, pass ``None`` (or ``runner.fn`` itself): the runner's function
            is the one that runs.
        axes: ``{name: values}``, each a non-empty 1-D sequence of distinct numbers. The dataset's
            dims follow this order.
        chunk_size: points per chunk, the unit of work and of the store (independent of the
            devices; with ``runner``, its ``chunk_size`` is used).
        store: path of a zarr store written chunk by chunk while the sweep runs (optional).
            One run writes it at a time (a lock per process index, see
            :mod:`jaxflow.sweep.lock`); every chunk carries a checksum (:mod:`jaxflow.sweep.store`).
        resume: continue an existing store, computing only its missing or corrupt chunks.
        seed: seed of the shuffle that spreads costly points across chunks and devices, an
            integer in [0, 2**63).
        output_dims: names of the trailing dims of non-scalar outputs.
        attrs: extra dataset attributes (added to the provenance of
            :func:`jaxflow.provenance.run_metadata`).
        config: the resolved configuration as TOML text; stored, and part of the store's
            fingerprint (resuming with a different config is refused).
        quiet: no progress bar (it is also off when stderr is not a terminal).
        runner: reuse a compiled :class:`Runner` (or any :class:`AbstractRunner`); another
            ``fn`` than the runner's is an error, never silently replaced.
        devices: devices to run on (default: all local devices).
        process_index, process_count: this process's share of the chunks (default:
            ``jax.process_index()`` and ``jax.process_count()``, i.e. one process unless
            ``jax.distributed.initialize`` ran). Several processes need a shared ``store``.
        wait_timeout: seconds a process waits for process 0's store layout, or for the next
            chunk of another process, before giving up with a SweepError.
        size_check: refuse up front a sweep whose estimated memory or store size exceeds the
            machine's (:func:`estimate_size`); False runs it anyway.
        executor: where the chunks are computed (:mod:`jaxflow.sweep.executor`, e.g. a
            :class:`~jaxflow.sweep.ray_executor.RayExecutor`: one task per chunk, the costly
            ones first; default: the one of an enclosing ``executor.using`` block, else this
            process's devices). This process writes every chunk into the store; the runner
            travels to the workers as its recipe and compiles there once per worker. Its
            :meth:`provenance` joins the dataset's attributes.
        program: a hashable that names what ``fn`` computes from ``config`` (an experiment
            passes its module's name): a later run with an equal ``program``, ``config``,
            ``chunk_size`` and ``devices`` reuses this run's compiled runner instead of
            compiling ``fn`` again (:mod:`jaxflow.sweep.kept_runners`). Leave it None unless
            it and ``config`` determine ``fn``.
        group_by: axes along which a point's cost changes most (e.g. ``("depth",)``): the
            shuffled points are sorted by them, so that a chunk, and each vmapped batch of it,
            holds points that cost alike (a batch runs as long as its slowest lane). The
            results are the same bits; the chunks hold other points, so the store's
            fingerprint records it.

    Returns:
        ``xarray.Dataset`` with one variable per output, dims ``(*axes, *output_dims)``; every
        process returns the same one.

    Raises:
        SweepError: empty or malformed axes, an existing store without ``resume``, a store
            written by a different sweep, a damaged store, a store another run is writing, a
            store that cannot be written (disk full, permissions: finished chunks stay
            resumable), another process that never came, or a sweep too big for the machine.

    Example (the exact half-learning time over depth x scale, and a non-scalar output):
        >>> import jax.numpy as jnp
        >>> from jaxflow import sweep
        >>> from jaxflow.oracles import theory
        >>> def point(p):
        ...     t = theory.learning_time(p["depth"], 1.0, p["scale"], jnp.array([0.1, 0.9]))
        ...     return {"t_half": theory.learning_time(p["depth"], 1.0, p["scale"], 0.5), "t": t}
        >>> ds = sweep.run(point, {"depth": [2.0, 3.0], "scale": [1e-6, 1e-3]}, chunk_size=4,
        ...                output_dims={"t": ("fraction",)}, quiet=True)
        >>> dict(ds.sizes)
        {'depth': 2, 'scale': 2, 'fraction': 2}
        >>> round(ds["t_half"].sel(depth=2.0, scale=1e-6).item(), 4)   # ln(1/sigma0 - 1)
        13.8155
    """
    axes = validate_axes(axes)
    seed = _check_options(seed, wait_timeout)
    process_index, process_count = process_share(process_index, process_count)
    if process_count > 1 and store is None:
        raise SweepError(
            f"store is required when process_count > 1 (got {process_count} processes)"
        )
    runner = _the_runner(fn, runner, chunk_size, devices, program, config)
    chunk = runner.chunk_size
    call_size = getattr(runner, "call_size", chunk)
    n = math.prod(v.size for v in axes.values())
    n_chunks = -(-n // chunk)
    shapes = _output_shapes(runner, axes)
    if size_check:
        _check_size(n, len(axes), chunk, call_size, shapes, store)

    group_by = tuple(group_by)
    if not set(group_by) <= set(axes):
        raise SweepError(f"group_by must name axes of the sweep ({', '.join(axes)}), "
                         f"got {group_by!r}")
    order, points = shuffled_points(axes, seed, n_chunks * chunk, group_by)
    executor = executor if executor is not None else _executor.current()
    if executor is None:
        compute = functools.partial(_compute, runner, points, chunk, call_size, process_index)
    else:
        compute = functools.partial(_compute_remote, executor, runner, points, chunk,
                                    process_index)
    layout = _store.Layout(chunk_size=chunk, n_chunks=n_chunks, outputs=shapes)
    sweep_id = fingerprint(axes, chunk, seed, config, shapes, group_by)
    with open_store(store, layout, sweep_id, resume,
                    process_index, process_count, wait_timeout) as backing:
        results = _run_chunks(backing, compute, layout, n, (process_index, process_count),
                              wait_timeout, quiet=quiet, desc=desc)

    ds = to_dataset(results, order, axes, shapes, output_dims)
    ds.attrs.update(run_metadata())
    ds.attrs.update(seed=seed, chunk_size=chunk, config=config)
    if executor is not None and hasattr(executor, "provenance"):
        ds.attrs.update(executor.provenance())
    ds.attrs.update(dict(attrs or {}))
    return ds


def _check_options(seed, wait_timeout) -> int:
    """The seed, checked; ``wait_timeout`` checked too."""
    seed = check_count("seed", seed, 0)
    if seed >= 2**63:  # stored as an int64 attribute; numpy seeds are unbounded, netCDF's not
        raise SweepError(f"seed must be an integer in [0, 2**63), got {seed}")
    if not (isinstance(wait_timeout, (int, float)) and wait_timeout > 0):
        raise SweepError(f"wait_timeout must be a number of seconds > 0, got {wait_timeout!r}")
    return seed


def _the_runner(fn, runner, chunk_size, devices, program, config) -> AbstractRunner:
    """The runner that runs ``fn``: the one given (with ``fn`` None or its own), the one kept
    for ``program`` and ``config``, or a new one."""
    if runner is None:
        if fn is None:
            raise SweepError("pass the per-point function fn, or a runner")
        build = lambda: Runner(fn, chunk_size=chunk_size, devices=devices)  # noqa: E731
        if program is None:
            runner = build()
        else:
            where = None if devices is None else tuple(devices)
            runner = kept_runner(("sweep.run", program, config, chunk_size, where), build)
    elif fn is not None and fn is not runner.fn:
        raise SweepError(
            "fn is not the runner's function: pass fn=None (or runner.fn) with a runner")
    # The points are float64 and the dataset says which dtype ran: without x64 both would be
    # float32 unasked. Only a float32 runner asked for float32.
    if not getattr(runner, "float32", False):
        _x64.require_x64("jaxflow.sweep.run",
                         hint=", or sweep in float32 with runner=sweep.Runner(fn, float32=True)")
    return runner


def _output_shapes(runner, axes) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``{name: (per-point shape, dtype)}`` of the runner's outputs, traced abstractly (by
    ``runner.output_shapes``: a Runner reads them from the trace its first call reuses)."""
    scalar = jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32
    example = {k: jax.ShapeDtypeStruct((), scalar) for k in axes}
    out_shapes = runner.output_shapes(example)
    return {k: (tuple(v.shape), np.dtype(v.dtype)) for k, v in out_shapes.items()}


def _check_size(n, n_axes, chunk, call_size, shapes, store) -> None:
    """Refuse a sweep whose estimated memory or new store exceeds the machine's."""
    # Only a new store needs its disk space; a resumed one already holds most of it.
    new_store = store is not None and not os.path.exists(store)
    memory, disk = estimate_size(n, n_axes, chunk, call_size, shapes, new_store)
    try:
        _resources.check(memory=memory, disk=disk, where=store)
    except _resources.SizeError as err:
        raise SweepError(f"{n} points in chunks of {chunk}: {err}") from None


def _compute(runner, points, chunk, call_size, process_index, indices):
    """Run the chunks ``indices`` packed into calls of ``call_size`` lanes; yield each."""
    per_call = max(1, call_size // chunk)
    for k in range(0, len(indices), per_call):
        group = [int(i) for i in indices[k:k + per_call]]
        for i in group:
            _log_chunk(process_index, i)
        rows = np.concatenate([np.arange(i * chunk, (i + 1) * chunk) for i in group])
        out = runner.chunk({name: v[rows] for name, v in points.items()})
        for j, i in enumerate(group):
            yield i, {name: v[j * chunk:(j + 1) * chunk] for name, v in out.items()}


def _chunk_task(runner, points):
    """One chunk on an executor's worker (a module-level function: picklable)."""
    return runner.chunk(points)


def _compute_remote(executor, runner, points, chunk, process_index, indices):
    """The chunks ``indices`` as tasks of ``executor`` (one call each, costly first: the cost
    of :func:`~jaxflow.sweep.estimate.point_cost`); yield each as it finishes."""
    tasks = []
    for i in indices:
        _log_chunk(process_index, int(i))
        part = {name: v[int(i) * chunk:(int(i) + 1) * chunk] for name, v in points.items()}
        tasks.append(Task(int(i), float(point_cost(part).sum()), _chunk_task, (runner, part)))
    yield from executor.imap(tasks)


def _run_chunks(backing, compute, layout, n, share, wait_timeout, *, quiet, desc):
    """Compute this process's unfinished chunks; return every output, flat.

    Into the store (``backing``) when there is one, then read back verified once every process
    is done; in memory otherwise.
    """
    chunk, n_chunks = layout.chunk_size, layout.n_chunks
    process_index, process_count = share
    if backing is not None:
        done = verified_on_start(backing)
        results = None
    else:
        done = np.zeros(n_chunks, dtype=bool)
        results = {k: np.empty((n_chunks * chunk, *s), dtype=d)
                   for k, (s, d) in layout.outputs.items()}
    mine = np.flatnonzero(~done)
    mine = mine[mine % process_count == process_index]
    with _progress.bar(n, desc=desc, unit="traj", quiet=quiet) as bar:
        bar.update(int(min(done.sum() * chunk, n)))
        for i, out in compute(mine):
            if backing is not None:
                _write(backing, i, out)
            else:
                for k in results:
                    results[k][i * chunk:(i + 1) * chunk] = out[k]
            bar.update(int(min(chunk, n - i * chunk)))
    if backing is not None:
        if process_count > 1:
            wait_all_done(backing, wait_timeout)
        results = read_verified(backing, compute)
    return results


def _log_chunk(process_index: int, chunk: int) -> None:
    path = os.environ.get(CHUNK_LOG_ENV)
    if path:
        with open(path, "a") as fh:
            fh.write(f"{process_index} {chunk}\n")
