"""What a sweep will cost, from the sizes of its axes alone: memory, disk and time.

Made before anything exists: the command line counts its axis specifications (``MIN:MAX:NUM``
is ``NUM`` values, never built), so a request too big for the machine is refused in well under
a second, before an axis array, a thread, a folder or a file is made
(:mod:`jaxflow.sweep.resources` compares the estimate with the machine).

The memory estimate counts the large arrays of :func:`jaxflow.sweep.run`: the shuffled order (8
bytes a point, twice while it is padded), the flat grid indices and points (16 bytes per point
and axis), the outputs three times (read back from the store, placed on the grid, copied into
the dataset), ``extra_per_point`` bytes of derived variables, one call's lanes, and each axis
value as Python objects (the config, the store's fingerprint). Checked against the measured peak
(within a factor 2, tests/test_limits.py).

Example:
    >>> e = request((1000, 1000, 1000), bytes_per_point=24, chunk_size=2048, store=True)
    >>> e.points, e.memory > 10**11, e.disk > 2 * 10**10
    (1000000000, True, True)
"""

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

__all__ = ["AXIS_VALUE_BYTES", "Estimate", "estimate_size", "point_cost", "request",
           "sweep_memory"]

# One axis value as Python objects: a float in a list, a tuple, a set, its JSON text (measured
# ~130 bytes for 1e6 values of a geomspace axis).
AXIS_VALUE_BYTES = 160


@dataclasses.dataclass(frozen=True)
class Estimate:
    """Upper bounds of one request: ``points``, ``memory`` and ``disk`` bytes, ``seconds``."""

    points: int
    memory: int
    disk: int
    seconds: float


def sweep_memory(n_points: int, n_axes: int, chunk_size: int, call_size: int,
                 bytes_per_point: int) -> int:
    """Peak bytes of the large arrays of :func:`jaxflow.sweep.run` (see the module docstring).

    >>> sweep_memory(10**6, 3, 1024, 1024, 8) // 10**6   # megabytes
    88
    """
    padded = -(-int(n_points) // int(chunk_size)) * int(chunk_size)
    return int(padded * (16 + 16 * n_axes + 3 * bytes_per_point)
               + 2 * call_size * (8 * n_axes + bytes_per_point))


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
    memory = sweep_memory(n_points, n_axes, chunk_size, call_size, per_point)
    disk = padded * per_point + n_chunks * (2 + len(shapes)) * 4096 if store else 0
    return int(memory), int(disk)


def request(counts: Sequence[int], *, bytes_per_point: int, chunk_size: int,
            call_size: int | None = None, store: bool, extra_per_point: int = 0,
            seconds_per_point: float = 0.0) -> Estimate:
    """The estimate of a sweep over axes of ``counts`` values (nothing is built).

    Args:
        counts: the number of values of each axis.
        bytes_per_point: the outputs' bytes per grid point.
        chunk_size, call_size: as in :class:`jaxflow.sweep.Runner` (``call_size`` defaults to
            ``chunk_size``).
        store: whether a new store is written (its disk space is counted).
        extra_per_point: bytes per point of variables derived after the sweep.
        seconds_per_point: the measured cost of one point on one device (0: unknown).
    """
    counts = [int(c) for c in counts]
    n = math.prod(counts)
    call_size = int(call_size or chunk_size)
    memory = (sweep_memory(n, len(counts), chunk_size, call_size, bytes_per_point)
              + n * int(extra_per_point) + sum(counts) * AXIS_VALUE_BYTES)
    n_chunks = -(-n // int(chunk_size))
    disk = (n_chunks * int(chunk_size) * bytes_per_point + n_chunks * 4 * 4096) if store else 0
    return Estimate(points=n, memory=int(memory), disk=int(disk),
                    seconds=float(n * seconds_per_point))


def point_cost(points) -> np.ndarray:
    """A relative cost per point, from its axes' names: ``depth x -ln(scale)`` where a sweep has
    them (a deep model started small plateaus longest: its learning time grows like
    ``scale^-(1 - 2/depth)``, the time the solver has to cross), 1 per point otherwise.
    An executor hands the costly chunks out first by it; only the order depends on it.

    Axes read: ``depth`` (an infinite depth counts as 100), ``log_scale`` (``ln scale``) or
    ``scale``; each factor at least 1.

    >>> point_cost({"depth": np.array([2.0, 4.0]), "log_scale": np.array([-1.0, -20.0])})
    array([ 2., 80.])
    >>> point_cost({"x": np.zeros(2)})
    array([1., 1.])
    """
    n = len(next(iter(points.values())))
    cost = np.ones(n)
    if "depth" in points:
        depth = np.nan_to_num(np.asarray(points["depth"], dtype=float), posinf=100.0)
        cost *= np.maximum(depth, 1.0)
    if "log_scale" in points:
        cost *= np.maximum(-np.asarray(points["log_scale"], dtype=float), 1.0)
    elif "scale" in points:
        with np.errstate(divide="ignore"):
            log_scale = np.log(np.abs(np.asarray(points["scale"], dtype=float)))
        cost *= np.clip(-log_scale, 1.0, 1e3)
    return cost
