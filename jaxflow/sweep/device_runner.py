"""How one call of points runs: fixed-width vmapped batches, one share per device.

A :class:`Runner` compiles its per-point function and splits every call evenly across the
devices, each share launched from its own thread; results are bitwise identical whatever the
device count. ``float32=True`` traces and runs it in float32, whatever ``jax_enable_x64`` says (the
fast path on GPU and TPU). :class:`AbstractRunner` is what :func:`jaxflow.sweep.run` needs of any
runner (the phase diagram's float32-first runner derives it too).
"""

import abc
import concurrent.futures
import contextlib
import inspect
import math
import uuid
from collections.abc import Callable, Mapping

import jax
import numpy as np

from jaxflow import _x64
from jaxflow.sweep import concurrency as _concurrency
from jaxflow.sweep.errors import SweepError, check_count

__all__ = ["DEFAULT_BATCH", "DEFAULT_CHUNK_SIZE", "AbstractRunner", "Runner"]

DEFAULT_CHUNK_SIZE = 1024
DEFAULT_BATCH = 1024


class AbstractRunner(abc.ABC):
    """What :func:`run` needs of a runner: ``fn``, ``chunk_size``, ``call_size`` and
    ``chunk(points)``.

    A subclass says how one call of up to ``call_size`` points is computed (:class:`Runner`:
    one share of every call per device; the phase diagram's ``Float32Runner``: float32 first,
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

    def __new__(cls, *args, **kwargs):
        # The constructor's arguments but the devices: what a pickled runner carries.
        bound = inspect.signature(cls.__init__).bind(None, *args, **kwargs).arguments
        self = super().__new__(cls)
        self._recipe = {k: v for k, v in list(bound.items())[1:] if k != "devices"}
        self._token = uuid.uuid4().hex
        return self

    def __reduce__(self):
        """A runner travels to another process (an executor's worker) as its recipe: its
        class and constructor arguments, without its devices or compiled programs. It is
        built there on that process's own devices, once per process however many chunks
        bring it (its results do not depend on the device count)."""
        return _rebuilt, (type(self), self._token, self._recipe)

    @abc.abstractmethod
    def chunk(self, points: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one call on 1 to ``call_size`` points."""

    def output_shapes(self, example: Mapping[str, jax.ShapeDtypeStruct]) -> dict:
        """``{name: jax.ShapeDtypeStruct}``: the outputs of one point like ``example`` (the
        point's names, scalars), traced abstractly (what the sweep lays its store out from)."""
        return jax.eval_shape(self.fn, dict(example))

    def _padding(self, points: Mapping[str, np.ndarray]) -> tuple[int, np.ndarray]:
        """``(n, rows)`` of one call: its ``n`` points (1 to ``call_size``, else a SweepError)
        and the rows that fill ``call_size`` lanes with them, the last point repeated (a real
        point: padding lanes compute valid input, and every call has one compiled shape)."""
        n = len(next(iter(points.values())))
        if not 1 <= n <= self.call_size:
            raise SweepError(f"{type(self).__name__}.chunk takes 1 to {self.call_size} points, "
                             f"got {n}")
        return n, np.minimum(np.arange(self.call_size), n - 1)

    def __call__(self, points: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run any number of points (``call_size`` at a time)."""
        n = len(next(iter(points.values())))
        outputs = []
        for start in range(0, n, self.call_size):
            outputs.append(self.chunk({k: np.asarray(v)[start:start + self.call_size]
                                       for k, v in points.items()}))
        return {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}


_REBUILT: dict = {}  # token -> runner: the runners this process unpickled (a worker's)
_REBUILT_MAX = 8


def _rebuilt(cls, token: str, recipe: dict) -> AbstractRunner:
    """The runner pickled with ``token``, built once in this process (see ``__reduce__``)."""
    if token not in _REBUILT:
        if len(_REBUILT) >= _REBUILT_MAX:
            del _REBUILT[next(iter(_REBUILT))]
        _REBUILT[token] = cls(**recipe)
    return _REBUILT[token]


class Runner(AbstractRunner):
    """Runs a per-point function on any number of points, in fixed-size calls over devices.

    One ``Runner`` compiles its function once (for its call size and the points' structure;
    once per device on accelerators) and reuses the program for every call; :func:`run` and
    the phase diagram's threshold refinement share one.

    Each call is split evenly into one share per device; every share runs the same
    single-device program, ``lax.map`` over **fixed-width vmapped batches** of ``batch`` lanes.
    Each share is launched from its own thread, so the shares run concurrently, each with its
    own solver loop (no per-step cross-device reduction). Why not ``shard_map``: XLA compiles
    a multi-device program differently, and its results differ from the one-device run in the
    last bits (measured: 8 ulp on 3 of 48 margins with 4 CPU devices); and a vmapped batch's width
    changes the vectorized code, hence the last bits too. With one program and one batch width
    whatever the device count, a lane's result is **bitwise identical** on 1, 2, 4 ... devices.
    Small batches also keep a vmapped while loop's lanes in lockstep with similar lanes.

    **CPU devices share one program.** ``jax.jit`` compiles a program once per device it runs
    on, and on CPU the persistent compilation cache is keyed on the device too, so ``N`` CPU
    devices (the ``jaxflow`` command asks for one per core) would compile and cache the same
    program ``N`` times. On CPU every share therefore runs on the first device, each launched
    from its own thread: XLA's CPU client runs concurrent executions of one program in
    parallel, one core each, as it runs separate devices' programs (measured on the 2-core
    machine, the default phase diagram: 2.6-3.3 s computing on one device from two threads,
    2.6-2.7 s on two devices, 4.7 s from one thread), and the program is compiled and cached
    once (``jaxflow phase-diagram`` on 2 CPU devices: 4.8 s of CPU compiling per device, 1.4 s
    once). Accelerators (GPU, TPU) keep their own devices.

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
        chunk_size = check_count("chunk_size", chunk_size)
        batch = check_count("batch", batch)
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
        # where each share runs: on CPU all on the first device (one program, see above)
        cpu = all(d.platform == "cpu" for d in self.devices)
        self._placement = [self.devices[0]] * ndev if cpu else self.devices
        self._serial = None  # decided on the first call (see jaxflow.sweep.concurrency)

    def output_shapes(self, example: Mapping[str, jax.ShapeDtypeStruct]) -> dict:
        """As :meth:`AbstractRunner.output_shapes`, read from the trace of the compiled call
        itself, which its first call then reuses: the per-point function is traced once, not
        once for the shapes and again for the program (measured: 1.9 s each on the default
        phase diagram, a fifth of its run with the compilation cache filled).

        >>> runner = Runner(lambda p: {"y": p["x"] * np.ones(3)}, chunk_size=4, batch=2)
        >>> runner.output_shapes({"x": jax.ShapeDtypeStruct((), np.float32)})["y"].shape
        (3,)
        >>> runner({"x": np.arange(4.0)})["y"].shape, runner.traces
        ((4, 3), 1)
        """
        if self.float32:  # points cast to float32, outputs as the caller's precision says
            return super().output_shapes(example)
        # as chunk() calls it: one device's share of the points, in the caller's precision
        share = self.call_size // len(self.devices)
        x64 = _x64.x64_enabled()
        dtype = np.float64 if x64 else np.float32
        points = {name: jax.ShapeDtypeStruct((share,), dtype) for name in example}
        with jax.enable_x64(x64):
            traced = self._call.trace(points).out_info
        return {k: jax.ShapeDtypeStruct(v.shape[1:], v.dtype) for k, v in traced.items()}

    def chunk(self, points: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one compiled call on up to ``call_size`` points (padded with a real point).

        >>> import numpy as np
        >>> from jaxflow import sweep
        >>> runner = sweep.Runner(lambda p: {"y": p["x"] ** 2}, chunk_size=4, batch=2)
        >>> out = runner.chunk({"x": np.arange(3.0)})
        >>> out["y"].tolist()
        [0.0, 1.0, 4.0]
        """
        n, index = self._padding(points)
        share = self.call_size // len(self.devices)

        dtype = np.float32 if self.float32 else float
        # The precision is a thread-local setting: a device's thread does not inherit the
        # caller's (a ``jax.enable_x64(True)`` block around the sweep would otherwise compute
        # in float32 there), so it is entered again in each one.
        x64 = False if self.float32 else _x64.x64_enabled()

        def inputs(k):
            rows = index[k * share:(k + 1) * share]
            return {name: jax.device_put(np.asarray(np.asarray(v)[rows], dtype=dtype),
                                         self._placement[k]) for name, v in points.items()}

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
            # One thread per share: on CPU they run concurrently on the first device (see the
            # class docstring); on accelerators each device's first call also compiles there,
            # and the compilations overlap instead of running one after another.
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
