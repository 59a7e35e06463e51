"""Sweeps: named axes -> Cartesian grid -> fixed-size chunks -> vmap -> devices -> xarray.

A sweep runs one per-point function over every point of a Cartesian grid of named axes
(depth, ratio, scale, seed, learning rate, any model argument) and assembles the named outputs
into an ``xarray.Dataset`` whose dims are the axes.

How it runs:

* The grid is flattened and **shuffled** with a fixed seed, so that every chunk, and every
  device inside a chunk, gets a mix of cheap and expensive points (a vmapped solver loop runs
  until its slowest lane ends).
* It is cut into chunks of one **fixed size** (the last chunk padded), so the whole sweep, and
  any later call with new values of the same shapes, uses **one compiled program**.
* Each chunk is split across all local devices, each running one compiled program
  (``lax.map`` over fixed-width ``vmap`` batches): one solver loop per device, no per-step
  cross-device reduction, and results bitwise identical whatever the device count
  (:class:`Runner`).
* With a ``store`` path, each finished chunk is written to a **zarr** store at once; its
  completion flag is written only after its data, so an interrupted sweep (Ctrl-C, kill -9)
  rerun with ``resume=True`` computes only the missing chunks and yields exactly the dataset an
  uninterrupted run yields. A full or unwritable disk stops the sweep with a
  :class:`SweepError` naming the store; the chunks already finished stay valid for ``resume``.
* **Several processes** (one per host, after ``jax.distributed.initialize``) share one store on a
  shared file system: process ``p`` of ``P`` computes the chunks ``i`` with ``i % P == p``.
  Process 0 lays the store out; the others wait for its fingerprint, then everyone writes its own
  chunks and waits for every done flag, so each process returns the same full dataset. The
  coordination goes through the store's files only: no collective, hence no gloo/MPI needed.
  Results are bitwise identical whatever the number of processes or devices.

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
import datetime
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

from jaxflow._integers import check_integer


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


def package_versions() -> dict[str, str]:
    """Versions of jaxflow and its numerical stack (stored with every dataset).

    >>> from jaxflow import sweep
    >>> sorted(sweep.package_versions())[:4]
    ['diffrax', 'equinox', 'jax', 'jaxflow']
    """
    import importlib.metadata as md

    versions = {}
    for pkg in ("jaxflow", "jax", "jaxlib", "diffrax", "equinox", "optax", "numpy", "xarray", "zarr"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = "unknown"
    return versions


def run_metadata() -> dict[str, Any]:
    """Provenance attributes: versions, dtype, devices, creation time.

    >>> from jaxflow import sweep
    >>> attrs = sweep.run_metadata()
    >>> attrs["dtype"], "jax_version" in attrs, "created" in attrs
    ('float64', True, True)
    """
    devices = jax.local_devices()
    attrs = {f"{k}_version": v for k, v in package_versions().items()}
    attrs.update(
        dtype="float64" if jax.config.read("jax_enable_x64") else "float32",
        device_kind=devices[0].device_kind,
        device_count=len(devices),
        platform=devices[0].platform,
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )
    return attrs


class AbstractRunner(abc.ABC):
    """What :func:`run` needs of a runner: ``fn``, ``chunk_size`` and ``chunk(points)``.

    A subclass says how one chunk of exactly ``chunk_size`` points is computed (:class:`Runner`:
    one compiled program per device; the phase diagram's ``Float32Runner``: float32 first,
    float64 where float32 cannot resolve a lane); calling a runner on any number of points
    (padding to whole chunks, dropping the padding) is written once, here.

    Attributes:
        fn: the per-point function whose outputs :meth:`chunk` returns (the sweep lays out its
            store from ``jax.eval_shape(fn, point)``).
        chunk_size: points per :meth:`chunk` call.
    """

    fn: Callable
    chunk_size: int

    @abc.abstractmethod
    def chunk(self, points: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run exactly one chunk (every array of length ``chunk_size``)."""

    def __call__(self, points: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run any number of points (padded to whole chunks; padding is dropped)."""
        n = len(next(iter(points.values())))
        outputs = []
        for start in range(0, n, self.chunk_size):
            idx = np.arange(start, start + self.chunk_size)
            idx = np.minimum(idx, n - 1)  # pad with a real point: always valid input
            outputs.append(self.chunk({k: np.asarray(v)[idx] for k, v in points.items()}))
        return {k: np.concatenate([o[k] for o in outputs])[:n] for k in outputs[0]}


class Runner(AbstractRunner):
    """Runs a per-point function on any number of points, in fixed-size chunks over devices.

    One ``Runner`` compiles its function once per device (for its chunk size and the points'
    structure) and reuses the programs for every call; :func:`run` and the phase diagram's
    threshold refinement share one.

    Each chunk is split evenly across the devices; every device runs the same single-device
    program on its share, ``lax.map`` over **fixed-width vmapped batches** of ``batch`` lanes.
    Dispatch is asynchronous, so the devices run concurrently, each with its own solver loop
    (no per-step cross-device reduction). Why not ``shard_map``: XLA compiles a multi-device
    program differently, and its results differ from the one-device run in the last bits
    (measured: 8 ulp on 3 of 48 margins with 4 CPU devices); and a vmapped batch's width
    changes the vectorized code, hence the last bits too. With one program and one batch width
    whatever the device count, a lane's result is **bitwise identical** on 1, 2, 4 ... devices.
    Small batches also keep a vmapped while loop's lanes in lockstep with similar lanes.

    Args:
        fn: ``fn(point) -> outputs``: ``point`` maps names to scalar arrays, ``outputs`` maps
            names to arrays of fixed shapes (per point).
        chunk_size: points per call; rounded up to a multiple of ``batch * len(devices)``.
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
        self.batch = int(min(batch, chunk_size))
        unit = self.batch * ndev
        self.chunk_size = int(math.ceil(int(chunk_size) / unit) * unit)
        self.fn = fn
        self.float32 = bool(float32)
        self.traces = 0

        def lanes(points):
            self.traces += 1  # Python side effect: runs once per trace, never per call
            return jax.lax.map(fn, points, batch_size=self.batch)

        self._call = jax.jit(lanes)

    def chunk(self, points: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run exactly one chunk (every array of length ``chunk_size``).

        >>> import numpy as np
        >>> from jaxflow import sweep
        >>> runner = sweep.Runner(lambda p: {"y": p["x"] ** 2}, chunk_size=4, batch=2)
        >>> out = runner.chunk({"x": np.arange(float(runner.chunk_size))})
        >>> out["y"][:4].tolist()
        [0.0, 1.0, 4.0, 9.0]
        """
        share = self.chunk_size // len(self.devices)

        dtype = np.float32 if self.float32 else float

        def launch(k):
            # The precision is a thread-local setting: entered here, in each device's thread.
            with jax.enable_x64(False) if self.float32 else contextlib.nullcontext():
                part = {n: jax.device_put(np.asarray(v[k * share:(k + 1) * share], dtype=dtype),
                                          self.devices[k]) for n, v in points.items()}
                return self._call(part)  # returns once dispatched: the devices run concurrently

        if len(self.devices) == 1:
            futures = [launch(0)]
        else:
            # Threads only matter on the first call, where each device compiles its program:
            # the compilations overlap instead of running one after another.
            with concurrent.futures.ThreadPoolExecutor(len(self.devices)) as pool:
                futures = list(pool.map(launch, range(len(self.devices))))
        return {n: np.concatenate([np.asarray(f[n]) for f in futures]) for n in futures[0]}


def _fingerprint(axes: dict[str, np.ndarray], chunk_size: int, seed: int, config: str, shapes) -> str:
    # Everything that decides where a stored value belongs: the axes *in order* (the flat
    # layout follows the grid shape), chunking, shuffle, config and the outputs' shapes.
    blob = json.dumps(
        {
            "axes": [[k, v.tolist()] for k, v in axes.items()],
            "chunk_size": chunk_size,
            "seed": seed,
            "config": config,
            "outputs": [[k, list(s), str(d)] for k, (s, d) in sorted(shapes.items())],
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


class _Store:
    """The zarr store of a running sweep: flat outputs in shuffled order plus chunk flags.

    Process 0 (``primary``) creates or validates the store; the others wait until its
    fingerprint (written last) is there and matches, for at most ``wait_timeout`` seconds.
    """

    def __init__(self, path, *, resume, fingerprint, n_chunks, chunk_size, shapes,
                 primary=True, wait_timeout=DEFAULT_WAIT_TIMEOUT):
        self.path = os.fspath(path)
        self.chunk_size = chunk_size
        self.names = list(shapes)
        try:
            if primary:
                self._open_or_create(resume, fingerprint, n_chunks, chunk_size, shapes)
            else:
                self._wait_for_layout(fingerprint, wait_timeout)
        except OSError as err:
            raise self._os_error("lay out", err) from None

    def _os_error(self, what: str, err: OSError) -> SweepError:
        return SweepError(
            f"cannot {what} the store at {self.path}: {err.strerror or err}; finished chunks are "
            "kept: free space or fix permissions, then rerun with resume=True (--resume)"
        )

    def _fingerprint_on_disk(self):
        import zarr

        if not os.path.exists(os.path.join(self.path, "zarr.json")):
            return None
        return zarr.open_group(self.path, mode="r").attrs.get("fingerprint")

    def _open_or_create(self, resume, fingerprint, n_chunks, chunk_size, shapes):
        import zarr

        # A store without a fingerprint was killed while being laid out (the fingerprint goes
        # last): it holds no finished chunk, so it is rebuilt from scratch.
        exists = self._fingerprint_on_disk() is not None
        if exists and not resume:
            raise SweepError(
                f"store {self.path} already exists: pass resume=True (--resume) to continue it, "
                "or choose another output directory"
            )
        if exists:
            self.group = zarr.open_group(self.path, mode="r+")
            if self.group.attrs.get("fingerprint") != fingerprint:
                raise SweepError(
                    f"store {self.path} was written by a different sweep (axes, chunk size, "
                    "seed or config differ); cannot resume it"
                )
            return
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self.group = zarr.open_group(self.path, mode="w")
        for name, (shape, dtype) in shapes.items():
            self.group.create_array(
                f"out_{name}",
                shape=(n_chunks * chunk_size, *shape),
                chunks=(chunk_size, *shape) if shape else (chunk_size,),
                dtype=dtype,
            )
        self.group.create_array("done", shape=(n_chunks,), chunks=(1,), dtype=bool,
                                fill_value=False)
        self.group.attrs["fingerprint"] = fingerprint

    def _wait_for_layout(self, fingerprint, wait_timeout):
        import zarr

        deadline = time.monotonic() + wait_timeout
        found = None
        while time.monotonic() < deadline:
            try:
                found = self._fingerprint_on_disk()
            except (OSError, ValueError):
                found = None  # caught mid-rewrite by process 0: look again
            if found == fingerprint:
                self.group = zarr.open_group(self.path, mode="r+")
                return
            time.sleep(0.05)
        detail = "it does not exist" if found is None else "it holds a different sweep"
        raise SweepError(
            f"store {self.path} was not laid out by process 0 within "
            f"wait_timeout={wait_timeout:g} s ({detail}); is process 0 running on the same config "
            "and a shared file system?"
        )

    def done(self) -> np.ndarray:
        return np.asarray(self.group["done"][:])

    def write(self, index: int, outputs: dict[str, np.ndarray]) -> None:
        lo, hi = index * self.chunk_size, (index + 1) * self.chunk_size
        try:
            for name in self.names:
                self.group[f"out_{name}"][lo:hi] = outputs[name]
            # Written after the data: a chunk counts as done only once all of it is on disk.
            self.group["done"][index] = True
        except OSError as err:
            raise self._os_error(f"write chunk {index} to", err) from None

    def wait_all_done(self, wait_timeout: float) -> None:
        """Wait for the other processes' chunks; fail if none finishes for ``wait_timeout`` s."""
        count, last = -1, time.monotonic()
        while True:
            done = self.done()
            if done.all():
                return
            if done.sum() > count:
                count, last = int(done.sum()), time.monotonic()
            elif time.monotonic() - last > wait_timeout:
                missing = np.flatnonzero(~done)
                raise SweepError(
                    f"store {self.path}: no chunk finished for wait_timeout={wait_timeout:g} s; "
                    f"{missing.size} chunks missing (e.g. {missing[:5].tolist()}); did a process "
                    "die? rerun every process with resume=True (--resume)"
                )
            time.sleep(0.1)

    def read(self, name: str) -> np.ndarray:
        return np.asarray(self.group[f"out_{name}"][:])


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


def _progress(total: int, quiet: bool, desc: str):
    from tqdm.auto import tqdm

    disable = quiet or not sys.stderr.isatty()
    return tqdm(total=total, unit="traj", desc=desc, disable=disable, smoothing=0.1)


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
) -> xr.Dataset:
    """Run ``fn`` over the Cartesian grid of ``axes``; return an ``xarray.Dataset``.

    Args:
        fn: per-point function ``fn(point) -> {name: array}``; ``point[axis]`` is a float64
            scalar. Pure and jit-compatible; the sweep vmaps it and spreads it over devices.
            With a ``runner``, pass ``None`` (or ``runner.fn`` itself): the runner's function
            is the one that runs.
        axes: ``{name: values}``, each a non-empty 1-D sequence of distinct numbers. The dataset's
            dims follow this order.
        chunk_size: points per compiled call (rounded up to a multiple of the device count).
        store: path of a zarr store written chunk by chunk while the sweep runs (optional).
        resume: continue an existing store, computing only its missing chunks.
        seed: seed of the shuffle that spreads costly points across chunks and devices.
        output_dims: names of the trailing dims of non-scalar outputs.
        attrs: extra dataset attributes (added to the provenance of :func:`run_metadata`).
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

    Returns:
        ``xarray.Dataset`` with one variable per output, dims ``(*axes, *output_dims)``; every
        process returns the same one.

    Raises:
        SweepError: empty or malformed axes, an existing store without ``resume``, a store
            written by a different sweep, a store that cannot be written (disk full,
            permissions: finished chunks stay resumable), or another process that never came.

    Example (the exact half-learning time over depth x scale, and a non-scalar output):
        >>> import jax.numpy as jnp
        >>> from jaxflow import sweep, theory
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
    chunk = runner.chunk_size
    shape = tuple(v.size for v in axes.values())
    n = int(np.prod(shape))
    n_chunks = -(-n // chunk)
    order = np.random.default_rng(seed).permutation(n)
    order = np.concatenate([order, np.full(n_chunks * chunk - n, order[0])])  # pad: real point
    grid_index = np.unravel_index(order, shape)
    points = {name: axes[name][idx] for name, idx in zip(axes, grid_index)}

    example = {k: jax.ShapeDtypeStruct((), jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32) for k in axes}
    out_shapes = jax.eval_shape(runner.fn, example)
    shapes = {k: (tuple(v.shape), np.dtype(v.dtype)) for k, v in out_shapes.items()}

    backing = None
    if store is not None:
        backing = _Store(
            store,
            resume=resume,
            fingerprint=_fingerprint(axes, chunk, seed, config, shapes),
            n_chunks=n_chunks,
            chunk_size=chunk,
            shapes=shapes,
            primary=process_index == 0,
            wait_timeout=wait_timeout,
        )
        done = backing.done()
        results = None
    else:
        done = np.zeros(n_chunks, dtype=bool)
        results = {k: np.empty((n_chunks * chunk, *s), dtype=d) for k, (s, d) in shapes.items()}

    mine = np.flatnonzero(~done)
    mine = mine[mine % process_count == process_index]
    with _progress(n, quiet, desc) as bar:
        bar.update(int(min(done.sum() * chunk, n)))
        for i in mine:
            _log_chunk(process_index, int(i))
            sl = slice(i * chunk, (i + 1) * chunk)
            out = runner.chunk({k: v[sl] for k, v in points.items()})
            if backing is not None:
                backing.write(int(i), out)
            else:
                for k in results:
                    results[k][sl] = out[k]
            bar.update(int(min(chunk, n - i * chunk)))
    if backing is not None and process_count > 1:
        backing.wait_all_done(wait_timeout)

    output_dims = dict(output_dims or {})
    data_vars = {}
    for name, (extra, _) in shapes.items():
        flat = backing.read(name) if backing is not None else results[name]
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
