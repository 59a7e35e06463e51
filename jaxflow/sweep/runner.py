"""Sweeps: named axes -> Cartesian grid -> fixed-size chunks -> vmap -> devices -> xarray.

A sweep runs one per-point function over every point of a Cartesian grid of named axes
(depth, ratio, scale, seed, learning rate, any model argument) and assembles the named outputs
into an ``xarray.Dataset`` whose dims are the axes.

How it runs:

* The grid is flattened and **shuffled** with a fixed seed, so that every chunk, and every
  device inside a chunk, gets a mix of cheap and expensive points (a vmapped solver loop runs
  until its slowest lane ends).
* It is cut into chunks of one **fixed size**, exactly as asked (the last chunk padded): the
  unit of work and of the store, the same on any machine, so a store started on 2 devices
  resumes on 1 or 4. Chunks are packed into calls of one fixed number of lanes, so the whole
  sweep, and any later call with new values of the same shapes, uses **one compiled program**.
* Each call is split across all local devices, each running one compiled program
  (``lax.map`` over fixed-width ``vmap`` batches): one solver loop per device, no per-step
  cross-device reduction, and results bitwise identical whatever the device count
  (:class:`Runner`).
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

import abc
import concurrent.futures
import contextlib
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from jaxflow import _x64
from jaxflow._integers import check_integer
from jaxflow.provenance import git_commit, package_versions, run_metadata
from jaxflow.sweep import concurrency as _concurrency
from jaxflow.sweep import estimate as _estimate
from jaxflow.sweep import lock as _store_lock
from jaxflow.sweep import progress as _progress
from jaxflow.sweep import resources as _resources
from jaxflow.sweep import store as _store

__all__ = [
    "AbstractRunner", "CHUNK_LOG_ENV", "DEFAULT_BATCH", "DEFAULT_CHUNK_SIZE",
    "DEFAULT_WAIT_TIMEOUT", "Runner", "StoreDamagedError", "SweepError", "estimate_size",
    "git_commit", "package_versions", "run", "run_metadata",
]

DEFAULT_CHUNK_SIZE = 1024
DEFAULT_BATCH = 1024
DEFAULT_WAIT_TIMEOUT = 600.0
CHUNK_LOG_ENV = "JAXFLOW_CHUNK_LOG"


class SweepError(ValueError):
    """A sweep cannot run as asked (bad axes, or a store that does not match).

    >>> from jaxflow import sweep
    >>> try:
    ...     sweep.run(lambda p: {"y": p["x"]}, {"x": [1.0, 1.0]})
    ... except sweep.SweepError as err:
    ...     print(err)
    axis 'x' has repeated values
    """


class StoreDamagedError(SweepError):
    """The sweep's store is damaged (its metadata, layout or arrays), not misused: the
    ``jaxflow`` commands exit with status 1 on it."""


def _validate_axes(axes: Mapping[str, Sequence[float]]) -> dict[str, np.ndarray]:
    if not isinstance(axes, Mapping):
        raise SweepError(f"axes must be a mapping {{name: values}}, got {type(axes).__name__}")
    if not axes:
        raise SweepError("axes must name at least one axis")
    out = {}
    for name, values in axes.items():
        if not isinstance(name, str) or not name:
            raise SweepError(f"axis names must be non-empty strings, got {name!r}")
        try:
            arr = np.asarray(values)
        except (TypeError, ValueError):
            arr = np.asarray(None)
        if arr.dtype.kind not in "iuf" or arr.ndim != 1 or arr.size == 0:
            raise SweepError(f"axis {name!r} must be a non-empty 1-D list of numbers")
        arr = arr.astype(float)
        if np.isnan(arr).any():
            raise SweepError(f"axis {name!r} contains NaN")
        if len(np.unique(arr)) != arr.size:
            raise SweepError(f"axis {name!r} has repeated values")
        out[name] = arr
    return out


def _check_count(name: str, value, low: int = 1) -> int:
    """An integer option >= ``low`` (no bool, no float with a fraction), else a SweepError."""
    return check_integer(name, value, low=low, error=SweepError)


class AbstractRunner(abc.ABC):
    """What :func:`run` needs of a runner: ``fn``, ``chunk_size``, ``call_size`` and
    ``chunk(points)``.

    A subclass says how one call of up to ``call_size`` points is computed (:class:`Runner`:
    one compiled program per device; the phase diagram's ``Float32Runner``: float32 first,
    float64 where float32 cannot resolve a lane); calling a runner on any number of points
    is written once, here.

    Attributes:
        fn: the per-point function whose outputs :meth:`chunk` returns (the sweep lays out its
            store from ``jax.eval_shape(fn, point)``).
        chunk_size: points per chunk of a sweep (the unit of work and of the store).
        call_size: the most points one :meth:`chunk` call takes (:func:`run` packs whole
            chunks into one call).
    """

    fn: Callable
    chunk_size: int
    call_size: int

    @abc.abstractmethod
    def chunk(self, points: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one call on 1 to ``call_size`` points."""

    def __call__(self, points: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run any number of points (``call_size`` at a time)."""
        n = len(next(iter(points.values())))
        outputs = []
        for start in range(0, n, self.call_size):
            outputs.append(self.chunk({k: np.asarray(v)[start:start + self.call_size]
                                       for k, v in points.items()}))
        return {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}


class Runner(AbstractRunner):
    """Runs a per-point function on any number of points, in fixed-size calls over devices.

    One ``Runner`` compiles its function once per device (for its call size and the points'
    structure) and reuses the programs for every call; :func:`run` and the phase diagram's
    threshold refinement share one.

    Each call is split evenly across the devices; every device runs the same single-device
    program on its share, ``lax.map`` over **fixed-width vmapped batches** of ``batch`` lanes.
    Dispatch is asynchronous, so the devices run concurrently, each with its own solver loop
    (no per-step cross-device reduction). Why not ``shard_map``: XLA compiles a multi-device
    program differently, and its results differ from the one-device run in the last bits
    (measured: 8 ulp on 3 of 48 margins with 4 CPU devices); and a vmapped batch's width
    changes the vectorized code, hence the last bits too. With one program and one batch width
    whatever the device count, a lane's result is **bitwise identical** on 1, 2, 4 ... devices.
    Small batches also keep a vmapped while loop's lanes in lockstep with similar lanes.

    Two sizes: ``chunk_size`` is the sweep's unit of work and of storage, exactly as asked, so a
    store's chunk boundaries do not depend on the machine (a run started on 2 devices resumes on
    1 or 4); ``call_size`` is the number of lanes one compiled call runs: ``chunk_size`` rounded
    up to a multiple of ``batch * len(devices)``. :func:`run` packs as many whole chunks into one
    call as fit.

    Args:
        fn: ``fn(point) -> outputs``: ``point`` maps names to scalar arrays, ``outputs`` maps
            names to arrays of fixed shapes (per point).
        chunk_size: points per chunk of a sweep (the batch width is ``min(batch, chunk_size)``).
        devices: devices to run on (default: all local devices).
        batch: lanes per vmapped batch (default 1024).
        float32: trace and run in float32 (``jax.enable_x64(False)`` around every call, in
            every device's thread), whatever ``jax_enable_x64`` says: the fast path on GPU
            and TPU. Points are cast to float32.

    Example:
        >>> runner = Runner(lambda p: {"y": 2.0 * p["x"]}, chunk_size=4, batch=2)
        >>> runner({"x": np.arange(6.0)})["y"].tolist()
        [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    """

    def __init__(self, fn: Callable, chunk_size: int = DEFAULT_CHUNK_SIZE, devices=None,
                 batch: int = DEFAULT_BATCH, float32: bool = False):
        chunk_size = _check_count("chunk_size", chunk_size)
        batch = _check_count("batch", batch)
        self.devices = list(devices) if devices is not None else jax.local_devices()
        ndev = len(self.devices)
        self.chunk_size = int(chunk_size)
        self.batch = int(min(batch, chunk_size))
        unit = self.batch * ndev
        self.call_size = int(math.ceil(self.chunk_size / unit) * unit)
        self.fn = fn
        self.float32 = bool(float32)
        self.traces = 0

        def lanes(points):
            self.traces += 1  # Python side effect: runs once per trace, never per call
            return jax.lax.map(fn, points, batch_size=self.batch)

        self._call = jax.jit(lanes)
        self._serial = None  # decided on the first call (see jaxflow.sweep.concurrency)

    def chunk(self, points: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one compiled call on up to ``call_size`` points (padded with a real point).

        >>> import numpy as np
        >>> from jaxflow import sweep
        >>> runner = sweep.Runner(lambda p: {"y": p["x"] ** 2}, chunk_size=4, batch=2)
        >>> out = runner.chunk({"x": np.arange(3.0)})
        >>> out["y"].tolist()
        [0.0, 1.0, 4.0]
        """
        n = len(next(iter(points.values())))
        if not 1 <= n <= self.call_size:
            raise SweepError(f"Runner.chunk takes 1 to {self.call_size} points, got {n}")
        index = np.minimum(np.arange(self.call_size), n - 1)  # pad: always valid input
        share = self.call_size // len(self.devices)

        dtype = np.float32 if self.float32 else float
        # The precision is a thread-local setting: a device's thread does not inherit the
        # caller's (a ``jax.enable_x64(True)`` block around the sweep would otherwise compute
        # in float32 there), so it is entered again in each one.
        x64 = False if self.float32 else _x64.x64_enabled()

        def inputs(k):
            rows = index[k * share:(k + 1) * share]
            return {name: jax.device_put(np.asarray(np.asarray(v)[rows], dtype=dtype),
                                         self.devices[k]) for name, v in points.items()}

        def launch(k):
            with jax.enable_x64(x64):
                return self._call(inputs(k))  # returns once dispatched: devices run concurrently

        if self._serial is None:
            self._serial = self._one_device_at_a_time(inputs(0))
        if len(self.devices) == 1:
            futures = [launch(0)]
        elif self._serial:
            # Batched LAPACK on CPU devices: one device at a time, or the pool deadlocks.
            futures = []
            for k in range(len(self.devices)):
                futures.append(jax.block_until_ready(launch(k)))
        else:
            # Threads only matter on the first call, where each device compiles its program:
            # the compilations overlap instead of running one after another.
            with concurrent.futures.ThreadPoolExecutor(len(self.devices)) as pool:
                futures = list(pool.map(launch, range(len(self.devices))))
        return {name: np.concatenate([np.asarray(f[name]) for f in futures])[:n]
                for name in futures[0]}

    def _one_device_at_a_time(self, part) -> bool:
        """Whether this runner's program must run on one CPU device at a time
        (:mod:`jaxflow.sweep.concurrency`). Lowering shares the call's trace: no retrace."""
        if len(self.devices) == 1 or any(d.platform != "cpu" for d in self.devices):
            return False
        with jax.enable_x64(False) if self.float32 else contextlib.nullcontext():
            text = self._call.lower(part).as_text()
        return _concurrency.serial_devices(text, [d.platform for d in self.devices])


def _fingerprint(axes: dict[str, np.ndarray], chunk_size: int, seed: int, config: str,
                 shapes) -> str:
    # Everything that decides where a stored value belongs: the axes *in order* (the flat
    # layout follows the grid shape), chunking, shuffle, config, the outputs' shapes and the
    # jaxflow version that computes them.
    blob = json.dumps(
        {
            "axes": [[k, v.tolist()] for k, v in axes.items()],
            "chunk_size": chunk_size,
            "seed": seed,
            "config": config,
            "outputs": [[k, list(s), str(d)] for k, (s, d) in sorted(shapes.items())],
            "jaxflow": _store._version(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _process_share(process_index, process_count) -> tuple[int, int]:
    """``(index, count)`` of this process, by default from ``jax.distributed``."""
    count = jax.process_count() if process_count is None else process_count
    index = jax.process_index() if process_index is None else process_index
    count, index = _check_count("process_count", count), _check_count("process_index", index, 0)
    if index >= count:
        raise SweepError(f"process_index must lie in [0, {count - 1}], got {index}")
    return index, count


def _log_chunk(process_index: int, chunk: int) -> None:
    path = os.environ.get(CHUNK_LOG_ENV)
    if path:
        with open(path, "a") as fh:
            fh.write(f"{process_index} {chunk}\n")


def estimate_size(n_points: int, n_axes: int, chunk_size: int, call_size: int, shapes,
                  store: bool) -> tuple[int, int]:
    """Upper bounds of a sweep's peak memory and store size in bytes: ``(memory, disk)``.

    Counts the big arrays (:func:`jaxflow.sweep.estimate.sweep_memory`): the shuffled order
    and the points of the padded grid, the outputs (read back from the store, placed on the
    grid, and in the dataset), one call's lanes on the device; and the store's uncompressed
    chunks plus a file system block per small file.

    >>> import numpy as np
    >>> from jaxflow import sweep
    >>> memory, disk = sweep.estimate_size(10**12, 3, 1024, 1024, {"y": ((), np.dtype("f8"))},
    ...                                    store=True)
    >>> memory > 10**13, disk > 8 * 10**12
    (True, True)
    """
    padded = -(-int(n_points) // int(chunk_size)) * int(chunk_size)
    n_chunks = padded // int(chunk_size)
    per_point = sum(int(np.prod(s, dtype=np.int64)) * np.dtype(d).itemsize
                    for s, d in dict(shapes).values())
    memory = _estimate.sweep_memory(n_points, n_axes, chunk_size, call_size, per_point)
    disk = padded * per_point + n_chunks * (2 + len(shapes)) * 4096 if store else 0
    return int(memory), int(disk)


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
    axes = _validate_axes(axes)
    seed = _check_count("seed", seed, 0)
    if seed >= 2**63:  # stored as an int64 attribute; numpy seeds are unbounded, netCDF's not
        raise SweepError(f"seed must be an integer in [0, 2**63), got {seed}")
    if not (isinstance(wait_timeout, (int, float)) and wait_timeout > 0):
        raise SweepError(f"wait_timeout must be a number of seconds > 0, got {wait_timeout!r}")
    process_index, process_count = _process_share(process_index, process_count)
    if process_count > 1 and store is None:
        raise SweepError(
            f"store is required when process_count > 1 (got {process_count} processes)"
        )
    if runner is None:
        if fn is None:
            raise SweepError("pass the per-point function fn, or a runner")
        runner = Runner(fn, chunk_size=chunk_size, devices=devices)
    elif fn is not None and fn is not runner.fn:
        raise SweepError(
            "fn is not the runner's function: pass fn=None (or runner.fn) with a runner")
    # The points are float64 and the dataset says which dtype ran: without x64 both would be
    # float32 unasked. Only a float32 runner asked for float32.
    if not getattr(runner, "float32", False):
        _x64.require_x64("jaxflow.sweep.run",
                         hint=", or sweep in float32 with runner=sweep.Runner(fn, float32=True)")
    chunk = runner.chunk_size
    call_size = getattr(runner, "call_size", chunk)
    shape = tuple(v.size for v in axes.values())
    n = math.prod(shape)
    n_chunks = -(-n // chunk)

    scalar = jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32
    example = {k: jax.ShapeDtypeStruct((), scalar) for k in axes}
    out_shapes = jax.eval_shape(runner.fn, example)
    shapes = {k: (tuple(v.shape), np.dtype(v.dtype)) for k, v in out_shapes.items()}
    if size_check:
        # Only a new store needs its disk space; a resumed one already holds most of it.
        new_store = store is not None and not os.path.exists(store)
        memory, disk = estimate_size(n, len(axes), chunk, call_size, shapes, new_store)
        try:
            _resources.check(memory=memory, disk=disk, where=store)
        except _resources.SizeError as err:
            raise SweepError(f"{n} points in chunks of {chunk}: {err}") from None

    order = np.random.default_rng(seed).permutation(n)
    order = np.concatenate([order, np.full(n_chunks * chunk - n, order[0])])  # pad: real point
    grid_index = np.unravel_index(order, shape)
    points = {name: axes[name][idx] for name, idx in zip(axes, grid_index)}

    def compute(indices):
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

    layout = _store.Layout(chunk_size=chunk, n_chunks=n_chunks, outputs=shapes)
    with _open_store(store, layout, _fingerprint(axes, chunk, seed, config, shapes), resume,
                     process_index, process_count, wait_timeout) as backing:
        if backing is not None:
            done = _verified_on_start(backing)
            results = None
        else:
            done = np.zeros(n_chunks, dtype=bool)
            results = {k: np.empty((n_chunks * chunk, *s), dtype=d) for k, (s, d) in shapes.items()}

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
                _wait_all_done(backing, wait_timeout)
            results = _read_verified(backing, compute)

    output_dims = dict(output_dims or {})
    data_vars = {}
    for name, (extra, _) in shapes.items():
        flat = results[name]
        grid = np.empty((n, *extra), dtype=flat.dtype)
        grid[order[:n]] = flat[:n]
        dims = tuple(output_dims.get(name, [f"{name}_dim{j}" for j in range(len(extra))]))
        if len(dims) != len(extra):
            raise SweepError(f"output_dims[{name!r}] must name {len(extra)} dims, got {dims}")
        data_vars[name] = (tuple(axes) + dims, grid.reshape(shape + extra))
    ds = xr.Dataset(data_vars, coords={k: v for k, v in axes.items()})
    ds.attrs.update(run_metadata())
    ds.attrs.update(seed=seed, chunk_size=chunk, config=config)
    ds.attrs.update(dict(attrs or {}))
    return ds


# --------------------------------------------------------------------------------------------
# The store's side of a sweep: open under the writer lock, verify, write, read back verified.


def _store_error(path, what: str, err: OSError) -> SweepError:
    return SweepError(
        f"cannot {what} the store at {path}: {err.strerror or err}; finished chunks are "
        "kept: free space or fix permissions, then rerun with resume=True (--resume)"
    )


@contextlib.contextmanager
def _open_store(path, layout, fingerprint, resume, process_index, process_count, wait_timeout):
    """The store, opened under this process's writer lock (None without a store path)."""
    if path is None:
        yield None
        return
    path = os.fspath(path)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        lock = _store_lock.WriterLock(path, process_index).acquire()
    except _store_lock.StoreBusyError as err:
        raise SweepError(str(err)) from None
    except OSError as err:
        raise _store_error(path, "lock", err) from None
    try:
        try:
            if process_index == 0:
                backing = _store.Store.open(path, layout=layout, fingerprint=fingerprint,
                                            resume=resume)
            else:
                backing = _store.Store.attach(path, layout=layout, fingerprint=fingerprint,
                                              wait_timeout=wait_timeout)
        except _store.StoreDamagedError as err:
            raise StoreDamagedError(str(err)) from None
        except _store.StoreError as err:
            raise SweepError(str(err)) from None
        except OSError as err:
            raise _store_error(path, "lay out", err) from None
        if process_count == 1:  # no cooperating writer: zarr's leftovers of a killed run
            _store.remove_partial_files(path)
        yield backing
    finally:
        lock.release()


def _verified_on_start(backing) -> np.ndarray:
    """Chunks finished and intact; corrupt ones (flag set, checksum wrong) are cleared."""
    try:
        flags = backing.flags()
        if not flags.any():
            return flags  # a fresh store: nothing to verify
        done = backing.verified()
        corrupt = np.flatnonzero(flags & ~done)
        for i in corrupt:
            backing.clear(int(i))
    except OSError as err:
        raise _store_error(backing.path, "read", err) from None
    if corrupt.size:  # not a progress message: said even when quiet
        print(f"store {backing.path}: recomputing {corrupt.size} corrupt chunk(s) "
              f"{corrupt[:10].tolist()} (missing or damaged data)", file=sys.stderr)
    return done


def _write(backing, index: int, outputs) -> None:
    try:
        backing.write(index, outputs)
    except OSError as err:
        raise _store_error(backing.path, f"write chunk {index} to", err) from None


def _wait_all_done(backing, wait_timeout: float) -> None:
    """Wait for the other processes' chunks; fail if none finishes for ``wait_timeout`` s."""
    count, last = -1, time.monotonic()
    while True:
        done = backing.flags()
        if done.all():
            return
        if done.sum() > count:
            count, last = int(done.sum()), time.monotonic()
        elif time.monotonic() - last > wait_timeout:
            missing = np.flatnonzero(~done)
            raise SweepError(
                f"store {backing.path}: no chunk finished for wait_timeout={wait_timeout:g} s; "
                f"{missing.size} chunks missing (e.g. {missing[:5].tolist()}); did a process "
                "die? rerun every process with resume=True (--resume)"
            )
        time.sleep(0.1)


def _read_verified(backing, compute) -> dict[str, np.ndarray]:
    """Read the whole store back, every chunk checked against its checksum.

    A chunk damaged since it was written (or by another process) is recomputed here, once;
    if it still does not verify, the store cannot be trusted and the sweep stops naming it.
    """
    try:
        data, ok = backing.read()
        bad = np.flatnonzero(~ok)
        if bad.size:
            for i, out in compute(bad):
                backing.clear(i)
                backing.write(i, out)
            data, ok = backing.read()
    except OSError as err:
        raise _store_error(backing.path, "read", err) from None
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise StoreDamagedError(
            f"store {backing.path}: chunk {i} does not match its checksum even after being "
            "recomputed (is another program writing to the store?); run `jaxflow verify` on it"
        )
    return data
