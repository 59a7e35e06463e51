"""The grid of a sweep: named axes -> shuffled flat points, and flat outputs -> a labelled dataset.

A sweep's points are the Cartesian product of its axes, flattened and shuffled with a fixed seed
(so that every chunk gets a mix of cheap and expensive points), optionally grouped along the axes
that decide a point's cost (so that a vmapped batch holds points that cost alike), and padded to
whole chunks with a real point. The :func:`fingerprint` names everything that decides where a
stored value belongs; :func:`process_share` says which chunks a process computes;
:func:`to_dataset` puts the flat outputs back on the grid, as an ``xarray.Dataset`` whose dims
are the axes.
"""

import hashlib
import json
import math
from collections.abc import Mapping, Sequence

import jax
import numpy as np
import xarray as xr

from jaxflow.sweep import store as _store
from jaxflow.sweep.errors import SweepError, check_count

__all__ = ["fingerprint", "process_share", "shuffled_points", "to_dataset", "validate_axes"]


def validate_axes(axes: Mapping[str, Sequence[float]]) -> dict[str, np.ndarray]:
    """The axes as float arrays, in their order; a :class:`SweepError` for anything else.

    >>> from jaxflow.sweep import grid
    >>> grid.validate_axes({"depth": [2, 3]})["depth"].tolist()
    [2.0, 3.0]
    """
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


def shuffled_points(axes: dict[str, np.ndarray], seed: int, padded: int,
                    group_by: Sequence[str] = ()):
    """``(order, points)``: the flat grid indices in shuffled order, padded to ``padded`` with
    the first (a real point, so padding lanes compute valid input), and each axis's values at
    them.

    ``group_by`` names axes along which the cost of a point changes most: the shuffled indices
    are then sorted by those axes' values (stably, so they stay shuffled within a group), and a
    chunk, and each vmapped batch of it, holds points of one group where it can. A vmapped
    batch runs in lockstep, as long as its slowest lane (the phase diagram groups by depth).

    >>> import numpy as np
    >>> axes = {"depth": np.array([2.0, 3.0]), "x": np.arange(4.0)}
    >>> order, points = shuffled_points(axes, 0, 8, group_by=("depth",))
    >>> points["depth"].tolist()
    [2.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 3.0]
    """
    shape = tuple(v.size for v in axes.values())
    n = math.prod(shape)
    order = np.random.default_rng(seed).permutation(n)
    if group_by:
        names = list(axes)
        at = np.unravel_index(order, shape)
        keys = [axes[name][at[names.index(name)]] for name in reversed(tuple(group_by))]
        order = order[np.lexsort(keys)]  # lexsort is stable; its last key sorts first
    order = np.concatenate([order, np.full(padded - n, order[0])])  # pad: real point
    grid_index = np.unravel_index(order, shape)
    points = {name: axes[name][idx] for name, idx in zip(axes, grid_index)}
    return order, points


def fingerprint(axes: dict[str, np.ndarray], chunk_size: int, seed: int, config: str,
                shapes, group_by: Sequence[str] = ()) -> str:
    """The SHA-256 by which a store knows its sweep: resuming another sweep's store is refused."""
    # Everything that decides where a stored value belongs: the axes *in order* (the flat
    # layout follows the grid shape), chunking, shuffle and grouping, config, the outputs'
    # shapes and the jaxflow version that computes them.
    decided = {
        "axes": [[k, v.tolist()] for k, v in axes.items()],
        "chunk_size": chunk_size,
        "seed": seed,
        "config": config,
        "outputs": [[k, list(s), str(d)] for k, (s, d) in sorted(shapes.items())],
        "jaxflow": _store._version(),
    }
    if group_by:  # (absent otherwise: an ungrouped sweep keeps the fingerprint it had)
        decided["group_by"] = list(group_by)
    blob = json.dumps(decided, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def process_share(process_index, process_count) -> tuple[int, int]:
    """``(index, count)`` of this process, by default from ``jax.distributed``."""
    count = jax.process_count() if process_count is None else process_count
    index = jax.process_index() if process_index is None else process_index
    count, index = check_count("process_count", count), check_count("process_index", index, 0)
    if index >= count:
        raise SweepError(f"process_index must lie in [0, {count - 1}], got {index}")
    return index, count


def to_dataset(results: Mapping[str, np.ndarray], order: np.ndarray, axes: dict[str, np.ndarray],
               shapes, output_dims: Mapping[str, Sequence[str]] | None) -> xr.Dataset:
    """The flat, shuffled ``results`` put back on the grid of ``axes``, one variable each."""
    shape = tuple(v.size for v in axes.values())
    n = math.prod(shape)
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
    return xr.Dataset(data_vars, coords={k: v for k, v in axes.items()})
