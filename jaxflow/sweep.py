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
  uninterrupted run yields.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxflow import sweep
    >>> ds = sweep.run(lambda p: {"product": p["a"] * p["b"]},
    ...                {"a": [1.0, 2.0], "b": [10.0, 20.0, 30.0]}, quiet=True)
    >>> ds["product"].sel(a=2.0, b=30.0).item()
    60.0
"""

import concurrent.futures
import datetime
import hashlib
import json
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr


DEFAULT_CHUNK_SIZE = 1024
DEFAULT_BATCH = 1024


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
    if not axes:
        raise SweepError("axes must name at least one axis")
    out = {}
    for name, values in axes.items():
        arr = np.asarray(values, dtype=float)
        if arr.ndim != 1 or arr.size == 0:
            raise SweepError(f"axis {name!r} must be a non-empty 1-D list of numbers")
        if np.isnan(arr).any():
            raise SweepError(f"axis {name!r} contains NaN")
        if len(np.unique(arr)) != arr.size:
            raise SweepError(f"axis {name!r} has repeated values")
        out[name] = arr
    return out


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


class Runner:
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

    Example:
        >>> runner = Runner(lambda p: {"y": 2.0 * p["x"]}, chunk_size=4, batch=2)
        >>> runner({"x": np.arange(6.0)})["y"].tolist()
        [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    """

    def __init__(self, fn: Callable, chunk_size: int = DEFAULT_CHUNK_SIZE, devices=None, batch: int = DEFAULT_BATCH):
        if int(chunk_size) < 1:
            raise SweepError(f"chunk_size must be >= 1, got {chunk_size}")
        if int(batch) < 1:
            raise SweepError(f"batch must be >= 1, got {batch}")
        self.devices = list(devices) if devices is not None else jax.local_devices()
        ndev = len(self.devices)
        self.batch = int(min(batch, chunk_size))
        unit = self.batch * ndev
        self.chunk_size = int(math.ceil(int(chunk_size) / unit) * unit)
        self.fn = fn
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

        def launch(k):
            part = {n: jax.device_put(np.asarray(v[k * share:(k + 1) * share], dtype=float),
                                      self.devices[k]) for n, v in points.items()}
            return self._call(part)  # returns once dispatched; the devices then run concurrently

        if len(self.devices) == 1:
            futures = [launch(0)]
        else:
            # Threads only matter on the first call, where each device compiles its program:
            # the compilations overlap instead of running one after another.
            with concurrent.futures.ThreadPoolExecutor(len(self.devices)) as pool:
                futures = list(pool.map(launch, range(len(self.devices))))
        return {n: np.concatenate([np.asarray(f[n]) for f in futures]) for n in futures[0]}

    def __call__(self, points: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run any number of points (padded to whole chunks; padding is dropped)."""
        n = len(next(iter(points.values())))
        outputs = []
        for start in range(0, n, self.chunk_size):
            idx = np.arange(start, start + self.chunk_size)
            idx = np.minimum(idx, n - 1)  # pad with a real point: always valid input
            outputs.append(self.chunk({k: np.asarray(v)[idx] for k, v in points.items()}))
        return {k: np.concatenate([o[k] for o in outputs])[:n] for k in outputs[0]}


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
    """The zarr store of a running sweep: flat outputs in shuffled order plus chunk flags."""

    def __init__(self, path, *, resume, fingerprint, n_chunks, chunk_size, shapes):
        import zarr

        self.path = os.fspath(path)
        exists = os.path.exists(os.path.join(self.path, "zarr.json"))
        if exists and "fingerprint" not in zarr.open_group(self.path, mode="r").attrs:
            # Killed while the empty store was being laid out (the fingerprint goes last): it
            # holds no finished chunk, so it is rebuilt from scratch.
            exists = False
        if exists and not resume:
            raise SweepError(
                f"store {self.path} already exists: pass resume=True (--resume) to continue it, "
                "or choose another output directory"
            )
        try:
            if exists:
                self.group = zarr.open_group(self.path, mode="r+")
                if self.group.attrs.get("fingerprint") != fingerprint:
                    raise SweepError(
                        f"store {self.path} was written by a different sweep (axes, chunk size, "
                        "seed or config differ); cannot resume it"
                    )
            else:
                os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
                self.group = zarr.open_group(self.path, mode="w")
                for name, (shape, dtype) in shapes.items():
                    self.group.create_array(
                        f"out_{name}",
                        shape=(n_chunks * chunk_size, *shape),
                        chunks=(chunk_size, *shape) if shape else (chunk_size,),
                        dtype=dtype,
                    )
                self.group.create_array("done", shape=(n_chunks,), chunks=(1,), dtype=bool, fill_value=False)
                # The fingerprint goes last: a store without it is incomplete and is rebuilt.
                self.group.attrs["fingerprint"] = fingerprint
        except PermissionError as err:
            raise SweepError(f"cannot write the store at {self.path}: {err.strerror}") from err
        self.chunk_size = chunk_size
        self.names = list(shapes)

    def done(self) -> np.ndarray:
        return np.asarray(self.group["done"][:])

    def write(self, index: int, outputs: dict[str, np.ndarray]) -> None:
        lo, hi = index * self.chunk_size, (index + 1) * self.chunk_size
        for name in self.names:
            self.group[f"out_{name}"][lo:hi] = outputs[name]
        # Written after the data: a chunk counts as done only once all of it is on disk.
        self.group["done"][index] = True

    def read(self, name: str) -> np.ndarray:
        return np.asarray(self.group[f"out_{name}"][:])


def _progress(total: int, quiet: bool, desc: str):
    from tqdm.auto import tqdm

    disable = quiet or not sys.stderr.isatty()
    return tqdm(total=total, unit="traj", desc=desc, disable=disable, smoothing=0.1)


def run(
    fn: Callable[[dict[str, jax.Array]], dict[str, jax.Array]],
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
) -> xr.Dataset:
    """Run ``fn`` over the Cartesian grid of ``axes``; return an ``xarray.Dataset``.

    Args:
        fn: per-point function ``fn(point) -> {name: array}``; ``point[axis]`` is a float64
            scalar. Pure and jit-compatible; the sweep vmaps it and spreads it over devices.
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
        runner: reuse a compiled :class:`Runner` (its ``fn`` replaces ``fn``).
        devices: devices to run on (default: all local devices).

    Returns:
        ``xarray.Dataset`` with one variable per output, dims ``(*axes, *output_dims)``.

    Raises:
        SweepError: empty or malformed axes, an existing store without ``resume``, or a store
            written by a different sweep.

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
    runner = runner or Runner(fn, chunk_size=chunk_size, devices=devices)
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
        )
        done = backing.done()
        results = None
    else:
        done = np.zeros(n_chunks, dtype=bool)
        results = {k: np.empty((n_chunks * chunk, *s), dtype=d) for k, (s, d) in shapes.items()}

    with _progress(n, quiet, desc) as bar:
        bar.update(int(min(done.sum() * chunk, n)))
        for i in np.flatnonzero(~done):
            sl = slice(i * chunk, (i + 1) * chunk)
            out = runner.chunk({k: v[sl] for k, v in points.items()})
            if backing is not None:
                backing.write(int(i), out)
            else:
                for k in results:
                    results[k][sl] = out[k]
            bar.update(int(min(chunk, n - i * chunk)))

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
