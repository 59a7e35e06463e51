"""Run one experiment on both back-ends and assemble the project's experiment layout.

Every paper experiment (matrix sensing, quadratic networks, diagonal and convolutional nets)
produces the same dataset, so notebooks read them alike:

    dims:  backend ("flow", "descent"), depth, time, mode, fraction  (+ experiment variants)
    modes(backend, depth, time, mode)          on one shared time grid (flow time t = lr * step)
    targets(mode)
    learning_time(backend, depth, mode, fraction)
    status(backend, depth)                     jaxflow.engine.status codes
    gradient_evaluations(backend, depth)       cost: the trajectory's ``evaluations`` (flow:
                                               vector-field evaluations; descent: gradients)
    <measure>(backend, depth)                  the experiment's own measures

The time grid is the descent's save grid ``lr * save_every * i``; gradient flow (diffrax,
relative-speed time) saves its modes at exactly those times, so ``modes`` of both back-ends
overlay point by point.

Example:
    ```python
    import jax.numpy as jnp
    from jaxflow.experiments import backends
    from jaxflow.models import toy
    spec = backends.Spec(
        loss=toy.factor_loss, modes=toy.factor_values, targets=jnp.array([2.0, 1.0]),
        init=lambda depth: toy.factor_init(None, 1e-3, depth=depth, num_coords=2), args=jnp.array([2.0, 1.0]))
    ds = backends.run(spec, depths=(2, 3), learning_rate=1e-2, num_steps=2000, save_every=100)
    ds["modes"].dims  # -> ('backend', 'depth', 'time', 'mode')
    ```
"""

import contextlib
import dataclasses
import functools
import time as _time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import numpy as np
import xarray as xr

import jaxflow
from jaxflow import _x64
from jaxflow.engine import status
from jaxflow.provenance import run_metadata
from jaxflow.sweep import cells as _cells

__all__ = ["BACKENDS", "DTYPES", "Settings", "Spec", "TopModes", "cells", "dataset", "outputs",
           "run"]


class TopModes(eqx.Module):
    """``fn(params, args, k=k)``: a model's first ``k`` modes as a ``modes(params, args)``.

    A module, not a ``functools.partial`` or a lambda: equal ``(fn, k)`` compare and hash
    equal, so both back-ends (compiled with ``equinox.filter_jit``, callables static) reuse
    their program across calls, where a fresh closure per call would compile again.

    Example:
        >>> from jaxflow.experiments import backends
        >>> from jaxflow.models import diagonal as dn
        >>> backends.TopModes(dn.modes, 3) == backends.TopModes(dn.modes, 3)
        True
    """

    fn: Callable = eqx.field(static=True)
    k: int = eqx.field(static=True)

    def __call__(self, params, args):
        return self.fn(params, args, k=self.k)


@dataclasses.dataclass(frozen=True)
class Spec:
    """What an experiment runs.

    Attributes:
        loss: ``loss(params, args) -> scalar``.
        modes: ``modes(params, args) -> (M,)``: a module-level function or an equal-comparing
            callable such as :class:`TopModes` (a fresh lambda compiles again each depth).
        targets: ``(M,)`` targets of the modes (0 where a mode should stay unlearned).
        init: ``init(depth) -> params0``.
        args: data passed to ``loss`` and ``modes``.
        depth_args: optional ``depth_args(depth) -> args`` replacing ``args`` at each depth, for
            models whose depth is data (an array inside ``args``): every depth then reuses one
            compiled program.
        measures: ``{name: fn(params, args) -> scalar}`` evaluated on the final parameters.

    Example (the toy model's factor level; :func:`run` runs it):
        >>> import jax.numpy as jnp
        >>> from jaxflow.experiments import backends
        >>> from jaxflow.models import toy
        >>> targets = jnp.array([2.0, 1.0])
        >>> spec = backends.Spec(loss=toy.factor_loss, modes=toy.factor_values, targets=targets,
        ...                      init=lambda depth: toy.factor_init(None, 1e-3, depth, 2),
        ...                      args=targets, measures={"final_loss": toy.factor_loss})
        >>> [round(float(v), 12) for v in spec.modes(spec.init(3), spec.args)]
        [0.001, 0.001]
    """

    loss: Callable
    modes: Callable
    targets: Any
    init: Callable[[int], Any]
    args: Any = None
    depth_args: Callable[[int], Any] | None = None
    measures: Mapping[str, Callable] = dataclasses.field(default_factory=dict)


def _methods(learning_rate: float, rtol: float, atol: float) -> dict:
    """The two methods every experiment compares, as values of the one contract."""
    return {
        # The dense interpolant alone locates learning times to about rtol; the exact-step
        # polish would add a solver step per (mode, fraction) to the compiled loop of these
        # large states for no visible gain.
        "flow": jaxflow.Flow(rtol=rtol, atol=atol, refine=False),
        "descent": jaxflow.Descent(learning_rate=learning_rate),
    }


BACKENDS = ("flow", "descent")
DTYPES = ("float64", "float32")


@dataclasses.dataclass(frozen=True)
class Settings:
    """How :func:`run` runs a :class:`Spec` (the arguments of :func:`run` but ``spec`` and
    ``quiet``; see there).

    >>> from jaxflow.experiments import backends
    >>> s = backends.Settings(depths=(2, 3), learning_rate=1e-2, num_steps=100, save_every=10)
    >>> float(s.times()[-1]), s.backends
    (1.0, ('flow', 'descent'))
    """

    depths: Sequence[int]
    learning_rate: float
    num_steps: int
    save_every: int
    fractions: Sequence[float] = (0.1, 0.5, 0.9)
    rtol: float = 1e-6
    atol: float = 1e-9
    max_steps: int = 200_000
    require_targets: bool = False
    backends: Sequence[str] = BACKENDS
    dtype: str = "float64"

    def __post_init__(self):
        for b in self.backends:
            if b not in BACKENDS:
                raise ValueError(f"backends must be among {BACKENDS}, got {b!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")

    def times(self) -> np.ndarray:
        """The shared time grid, ``learning_rate * save_every * i``."""
        return self.learning_rate * self.save_every * np.arange(
            self.num_steps // self.save_every + 1)


def _float32(tree):
    """``tree`` with its floating leaves as float32 NumPy arrays (drawn in float64 before:
    a float32 random draw would be another problem, not the same one rounded)."""
    def cast(leaf):
        dtype = getattr(leaf, "dtype", None)
        if dtype is not None and np.issubdtype(dtype, np.floating):
            return np.asarray(leaf, dtype=np.float32)
        return leaf

    return jax.tree_util.tree_map(cast, tree)


def _solve_cell(spec: Spec, settings: Settings, backend: str, depth: int) -> dict:
    """One back-end at one depth: the outputs of one cell (see :func:`cells`)."""
    targets = np.asarray(spec.targets, dtype=float)
    params0 = spec.init(int(depth))
    args = spec.args if spec.depth_args is None else spec.depth_args(int(depth))
    times = settings.times()
    fractions = tuple(settings.fractions)
    float32 = settings.dtype == "float32"
    if float32:  # inputs made in float64, rounded once; the run below traces in float32
        params0, args, targets, times = _float32((params0, args, targets, times))
    start = _time.perf_counter()
    with jax.enable_x64(False) if float32 else contextlib.nullcontext():
        # One request for both: save on the descent's grid, run to its end (the learning times
        # passed on the way are recorded; inf: not reached by the horizon). The budget covers
        # either method (descent: num_steps steps; flow: solver steps). Required learning
        # times (the engine keeps only those of nonzero targets) make a run that misses one
        # unfinished.
        request = jaxflow.Request(
            save_times=times, fractions=fractions,
            max_steps=max(settings.max_steps, settings.num_steps),
            required=np.full((targets.size, len(fractions)), bool(settings.require_targets)),
        )
        method = _methods(settings.learning_rate, settings.rtol, settings.atol)[backend]
        problem = jaxflow.Problem(loss=spec.loss, params0=params0, args=args,
                                  modes=spec.modes, targets=targets)
        traj = jaxflow.solve(problem, method, request)
        jax.block_until_ready(traj.final_state)
        wall = _time.perf_counter() - start
        out = {name: np.asarray(fn(traj.final_state, args))
               for name, fn in spec.measures.items()}
    out.update(modes=np.asarray(traj.modes), learning_time=np.asarray(traj.learning_times),
               status=int(traj.status), gradient_evaluations=int(traj.evaluations),
               wall_time=wall)
    return out


def outputs(spec: Spec, settings: Settings) -> dict:
    """``{output: (shape, dtype)}`` of one cell of :func:`cells`, known before it runs.

    >>> import jax.numpy as jnp
    >>> from jaxflow.experiments import backends
    >>> from jaxflow.models import toy
    >>> spec = backends.Spec(loss=toy.factor_loss, modes=toy.factor_values,
    ...                      targets=jnp.array([2.0, 1.0]), init=None)
    >>> s = backends.Settings(depths=(2,), learning_rate=1e-2, num_steps=100, save_every=10)
    >>> backends.outputs(spec, s)["modes"]
    ((11, 2), dtype('float64'))
    """
    real = np.dtype(np.float32 if settings.dtype == "float32" else np.float64)
    num_modes = int(np.size(spec.targets))
    shapes = {
        "modes": ((settings.num_steps // settings.save_every + 1, num_modes), real),
        "learning_time": ((num_modes, len(settings.fractions)), real),
        "status": ((), np.dtype(np.int8)),
        "gradient_evaluations": ((), np.dtype(np.int64)),
        "wall_time": ((), np.dtype(np.float64)),
    }
    shapes.update({name: ((), real) for name in spec.measures})
    return shapes


def cells(spec: Spec, settings: Settings, *, prefix: str = "") -> list[_cells.Cell]:
    """The cells of one experiment: one back-end at one depth each, depth by depth, named
    ``"{prefix}{backend} depth={depth}"``; :func:`dataset` lays their outputs out.

    With ``settings.dtype == "float32"`` the inputs (drawn in float64) are rounded to float32
    and each cell traces and runs in float32 (``jax.enable_x64(False)`` around it), its
    outputs stored as float32.
    """
    shapes = outputs(spec, settings)
    # Cost: a deeper model has more weights and plateaus longer (an executor hands the deepest
    # cells out first).
    return [
        _cells.Cell(f"{prefix}{backend} depth={int(depth)}", shapes,
                    functools.partial(_solve_cell, spec, settings, backend, int(depth)),
                    cost=float(depth))
        for depth in settings.depths for backend in settings.backends
    ]


def dataset(spec: Spec, settings: Settings, results: Sequence[Mapping]) -> xr.Dataset:
    """The layout of the module docstring from the outputs of :func:`cells`, in their order."""
    targets = np.asarray(spec.targets, dtype=float)
    backends, depths = list(settings.backends), [int(d) for d in settings.depths]
    shape = (len(depths), len(backends))  # the cells' order; the dataset's is (backend, depth)

    def gather(name):
        values = np.stack([np.asarray(r[name]) for r in results])
        values = values.reshape(shape + values.shape[1:])
        return np.swapaxes(values, 0, 1)

    coords = {
        "backend": backends,
        "depth": depths,
        "time": settings.times(),
        "mode": np.arange(targets.size),
        "fraction": list(settings.fractions),
    }
    per_run = ("backend", "depth")
    data = {
        "modes": (per_run + ("time", "mode"), gather("modes")),
        "targets": (("mode",), targets),
        "learning_time": (per_run + ("mode", "fraction"), gather("learning_time")),
        "status": (per_run, gather("status")),
        "gradient_evaluations": (per_run, gather("gradient_evaluations")),
        "wall_time": (per_run, gather("wall_time")),
    }
    data.update({name: (per_run, gather(name)) for name in spec.measures})
    ds = xr.Dataset(data, coords=coords)
    ds["time"].attrs.update(long_name="flow time t = learning_rate * step")
    ds.attrs.update(run_metadata())
    ds.attrs.update(learning_rate=settings.learning_rate, num_steps=settings.num_steps,
                    save_every=settings.save_every, flow_rtol=settings.rtol,
                    flow_atol=settings.atol, solver="Tsit5", flow_clock="relative",
                    dtype=settings.dtype)
    ds.attrs["ok"] = int((ds["status"].values == status.OK).all())
    return ds


@_x64.needs_x64
def run(
    spec: Spec,
    *,
    depths: Sequence[int],
    learning_rate: float,
    num_steps: int,
    save_every: int,
    fractions: Sequence[float] = (0.1, 0.5, 0.9),
    rtol: float = 1e-6,
    atol: float = 1e-9,
    max_steps: int = 200_000,
    require_targets: bool = False,
    backends: Sequence[str] = BACKENDS,
    dtype: str = "float64",
    quiet: bool = False,
) -> xr.Dataset:
    """Gradient flow and gradient descent for every depth, in the shared experiment layout.

    The run is the :func:`cells` of ``spec``, computed in memory; an experiment that keeps a
    store runs those cells through :func:`jaxflow.sweep.cells.run` itself, with its other
    cells, and lays them out with :func:`dataset`.

    Args:
        spec: the experiment (:class:`Spec`).
        depths: integer depths (each compiles its own program: weight shapes depend on depth).
        learning_rate: the descent's rate; the flow is compared on ``t = lr * step``.
        num_steps, save_every: descent length and save interval (the time grid).
        fractions: fractions of each target at which learning times are recorded.
        rtol, atol, max_steps: gradient-flow solver settings.
        require_targets: every learning time of a nonzero target must be found by the horizon:
            a run that reaches it first is ``unfinished`` (default: only the horizon is asked,
            and a learning time not reached is ``inf`` in an ``ok`` run).
        backends: which back-ends to run (default both).
        dtype: ``"float64"``, or ``"float32"`` (inputs rounded once, every cell traced and run
            in float32, outputs stored as float32).
        quiet: no progress bar (it is also off when stderr is not a terminal).

    Returns:
        ``xarray.Dataset`` in the layout of the module docstring, plus ``wall_time(backend,
        depth)`` in seconds (compilation included).

    Example: see the module docstring.
    """
    settings = Settings(depths=tuple(depths), learning_rate=learning_rate, num_steps=num_steps,
                        save_every=save_every, fractions=tuple(fractions), rtol=rtol,
                        atol=atol, max_steps=max_steps, require_targets=require_targets,
                        backends=tuple(backends), dtype=dtype)
    results = _cells.run(cells(spec, settings), quiet=quiet, desc="depth x back-end")
    return dataset(spec, settings, results)
