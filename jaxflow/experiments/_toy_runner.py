"""The phase diagram's per-point function and its float32 runner.

:func:`point_function` simulates one (depth, ratio, scale) pair of the toy model and returns its
margin; :func:`jaxflow.sweep.run` vmaps and compiles it over the grid. :class:`Float32Runner`
runs it in float32 (fast on GPU/TPU) and again in float64 on the lanes float32 cannot resolve
(:func:`needs_float64`). The public names are those of :mod:`jaxflow.experiments.phase_diagram`.
"""

import dataclasses
import math
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

import jaxflow
from jaxflow import sweep
from jaxflow.engine import status
from jaxflow.experiments._solvers import SOLVERS
from jaxflow.experiments._toy_queue import ToyQueueRunner, program_values
from jaxflow.models import toy
from jaxflow.oracles import incremental
from jaxflow.sweep.kept_runners import kept_runner

if TYPE_CHECKING:  # the config's module imports this one
    from jaxflow.experiments.phase_diagram import PhaseDiagramConfig

__all__ = ["FLOAT32_RESOLUTION", "FLOAT32_RTOL", "Float32Runner", "ToyRunner", "float64_runner",
           "needs_float64", "outside_float32", "point_function", "shared_runner"]


def point_function(config: "PhaseDiagramConfig", *, with_time: bool = False):
    """The per-point function of the sweep: simulate one (depth, ratio, scale) pair.

    Returns ``margin_in_unit = (T_j(start) - T_i(finish)) / U`` (:func:`jaxflow.oracles.incremental.margin`)
    and ``log_time_unit = ln U``, the worse status of the two coordinates and their total solver
    steps (accepted + rejected); with ``with_time``, also ``time = max(|T_j(start)|,
    |T_i(finish)|) / U``, the size the margin's rounding scales with. An optional input
    ``tolerance_scale`` multiplies ``rtol`` and ``atol`` (default 1): a traced value, so that
    the threshold check's tighter solves run the sweep's own compiled program
    (:class:`ToyRunner`).

    The toy model's coordinates are independent, so the pair is one
    :class:`jaxflow.engine.coordinatewise.Coordinatewise` flow: two scalar flows side by side, each on
    its own clock, each stopping as soon as it has the learning time the margin needs. The start
    is ``ln sigma0`` (no underflow at e^-10000) and the flow runs in the plateau's own time unit
    ``U = sigma0^-(1 - 2/N)`` (:func:`jaxflow.models.toy.log_time_unit`), so margins stay finite
    and keep their sign where the real times (up to e^3333) overflow float64.

    Example (the function :func:`~jaxflow.experiments.phase_diagram.run` hands to
    :mod:`jaxflow.sweep`, which vmaps and compiles it; here called once, eagerly: at depth 3,
    ratio 2, sigma0 = 1e-3 the pair is incremental, as its theory threshold 0.0145 says):
        ```python
        import jax.numpy as jnp
        from jaxflow.experiments import phase_diagram as pd
        point = pd.point_function(pd.PhaseDiagramConfig())
        out = point({"depth": jnp.array(3.0), "ratio": jnp.array(2.0),
                     "log_scale": jnp.log(1e-3)})
        bool(out["margin_in_unit"] > 0), int(out["status"])  # -> (True, 0)
        ```
    """
    solver = SOLVERS[config.solver]()
    # Coordinate i (target ratio) needs its finish time, coordinate j (target 1) its start time.
    required = jnp.array([[False, True], [True, False]])
    request = jaxflow.Request(fractions=(config.start, config.finish), required=required,
                              max_steps=config.max_steps)

    def point(p):
        tighter = p.get("tolerance_scale", 1.0)
        method = jaxflow.Flow(solver=solver, rtol=config.rtol * tighter,
                              atol=config.atol * tighter)
        targets = jnp.stack([p["ratio"], jnp.ones_like(p["ratio"])])
        unit = toy.log_time_unit(p["depth"], p["log_scale"])
        args = toy.ToyArgs(depth=p["depth"], targets=targets, log_time_unit=unit)
        problem = jaxflow.Problem(
            vector_field=toy.reduced_vector_field,
            params0=toy.reduced_init(p["log_scale"], 2, log=True), args=args,
            modes=toy.reduced_modes, targets=targets, clock=toy.reduced_speed,
        )
        traj = jaxflow.solve(problem, method, request)
        times = traj.learning_times
        out = {
            "margin_in_unit": incremental.margin(times[0, 1], times[1, 0]),
            "log_time_unit": unit,
            "status": traj.status,
            "steps": traj.steps + traj.rejected,
        }
        if with_time:
            out["time"] = jnp.maximum(jnp.abs(times[1, 0]), jnp.abs(times[0, 1]))
        return out

    return point


class ToyRunner(sweep.Runner):
    """The :class:`jaxflow.sweep.Runner` of :func:`point_function`: every call carries the
    input ``tolerance_scale`` (1 where the caller gives none), so the grid, the threshold
    refinement and the threshold check (``tolerance_scale = 1e-3``) share one compiled program
    (a second one would cost its compilation, ~5 s, for ~1000 lanes that run in 0.1 s).

    Example (shown, not run: it compiles a flow; tests/test_phase_diagram.py checks the
    tighter solves through the thresholds' error estimates):
        ```python
        import numpy as np
        from jaxflow.experiments import phase_diagram as pd
        runner = pd.ToyRunner(pd.PhaseDiagramConfig(), chunk_size=2)
        pts = {"depth": np.array([3.0, 3.0]), "ratio": np.array([2.0, 2.0]),
               "log_scale": np.log([1e-3, 1e-3])}
        loose = runner(pts)["margin_in_unit"]
        tight = runner({**pts, "tolerance_scale": np.full(2, 1e-3)})["margin_in_unit"]
        runner.traces  # -> 1: one program for both
        ```
    """

    def __init__(self, config: "PhaseDiagramConfig", *, chunk_size: int | None = None,
                 devices=None, float32: bool = False, with_time: bool = False):
        super().__init__(point_function(config, with_time=with_time),
                         chunk_size=chunk_size or config.chunk_size, devices=devices,
                         float32=float32)

    def chunk(self, points):
        n = len(next(iter(points.values())))
        points = {"tolerance_scale": np.ones(n), **points}
        return super().chunk(points)

    def output_shapes(self, example):
        # the points of every call carry tolerance_scale (see chunk)
        scalar = next(iter(example.values()))
        return super().output_shapes({"tolerance_scale": scalar, **example})


# The float32 path. float32 holds sigma0 only down to its smallest normal number (1.2e-38), and
# its learning times carry a relative error of order FLOAT32_RESOLUTION: eps32 = 1.2e-7 per
# operation, accumulated over ~100 solver steps run at rtol FLOAT32_RTOL (float32 cannot reach
# the float64 default 1e-8). A margin smaller than that fraction of the learning times has an
# unknown sign, so such lanes are recomputed in float64.
FLOAT32_RTOL = 1e-6


FLOAT32_RESOLUTION = 1e-4


def outside_float32(points) -> np.ndarray:
    """Lanes that float32 cannot even state: sigma0 below float32's normal range, or a ratio or
    a scale that rounds to 1 in float32. They go to float64 without a float32 run: run in
    float32 they end non-finite or spend their whole step budget, and a vmapped batch runs as
    long as its slowest lane (measured on the default grid, where 28,281 of 49,536 lanes lie
    below float32's range: 257 steps median and up to 4096 for them against at most 150 for the
    others; the float32 pass took 28 s instead of 3).

    >>> outside_float32({"log_scale": np.log([1e-3, 1e-60, 1e-9]),
    ...                  "ratio": np.array([2.0, 2.0, 1.0 + 1e-9])}).tolist()
    [False, True, True]
    """
    log_scale, ratio = np.asarray(points["log_scale"]), np.asarray(points["ratio"])
    return ((log_scale < math.log(np.finfo(np.float32).tiny))
            | (np.exp(log_scale).astype(np.float32) >= 1)
            | (ratio.astype(np.float32) <= 1))


def needs_float64(points, fast) -> np.ndarray:
    """Lanes whose float32 answer cannot be trusted, from the inputs and the float32 outputs.

    A lane is recomputed in float64 when it lies outside float32 (:func:`outside_float32`), when
    its float32 status is not ok (max_steps, non-finite: e.g. a learning time beyond 3.4e38), or
    when ``|margin| <= FLOAT32_RESOLUTION * time``.

    Example:
        >>> pts = {"log_scale": np.log([1e-3, 1e-60, 1e-3]), "ratio": np.array([2.0, 2.0, 2.0])}
        >>> fast = {"margin_in_unit": np.array([5.0, 5.0, 1e-5]), "time": np.full(3, 10.0),
        ...         "status": np.zeros(3, dtype=np.int8)}
        >>> needs_float64(pts, fast).tolist()
        [False, True, True]
    """
    margin = np.asarray(fast["margin_in_unit"], dtype=float)
    time = np.asarray(fast["time"], dtype=float)
    with np.errstate(invalid="ignore"):
        resolved = np.abs(margin) > FLOAT32_RESOLUTION * time  # False for NaN
    return (
        outside_float32(points)
        | (np.asarray(fast["status"]) != status.OK)
        | ~np.isfinite(time)
        | ~resolved
    )


class Float32Runner(sweep.AbstractRunner):
    """Runs the phase diagram's points in float32 and recomputes in float64 what float32 cannot.

    A :class:`jaxflow.sweep.AbstractRunner` (it defines ``chunk``, ``chunk_size``, ``call_size``
    and ``output_shapes``):
    each chunk runs once in float32 (a ``sweep.Runner(..., float32=True)``: one float32 program,
    fast on GPU and TPU); the lanes :func:`needs_float64` flags run again in float64
    (:func:`float64_runner`), and their float64 results are stored. The extra output
    ``recomputed`` says which lanes were, so a stored answer is never a silently wrong float32
    one. The float64 queues' ``slot_iterations`` are not stored: they cover the recomputed
    lanes only.
    """

    def __init__(self, config: "PhaseDiagramConfig", devices=None):
        self.exact = float64_runner(config, devices=devices)
        fast = dataclasses.replace(
            config, rtol=max(config.rtol, FLOAT32_RTOL), atol=max(config.atol, FLOAT32_RTOL)
        )
        self.fast = ToyRunner(fast, chunk_size=self.exact.chunk_size, devices=devices,
                              float32=True, with_time=True)
        self.chunk_size = self.exact.chunk_size
        self.call_size = self.exact.call_size
        self.fn = None  # the outputs are the float64 runner's (output_shapes)
        example = {k: jax.ShapeDtypeStruct((), jnp.float64) for k in ("depth", "ratio", "log_scale")}
        # read from the float64 program's trace (which its first call reuses)
        self._shapes = {k: v for k, v in self.exact.output_shapes(example).items()
                        if k != "slot_iterations"}

    @property
    def traces(self) -> int:
        """Traces of the two programs (one each once compiled)."""
        return self.fast.traces + self.exact.traces

    def output_shapes(self, example):
        """The stored outputs: the float64 runner's (but ``slot_iterations``) and
        ``recomputed``."""
        return {**self._shapes, "recomputed": jax.ShapeDtypeStruct((), np.dtype(bool))}

    def chunk(self, points):
        n = len(next(iter(points.values())))
        out = {k: np.zeros((n, *v.shape), v.dtype) for k, v in self._shapes.items()}
        # float32 runs only the lanes it can state; the others go straight to float64
        redo = outside_float32(points)
        tried = np.flatnonzero(~redo)
        if tried.size:
            share = {k: np.asarray(v)[tried] for k, v in points.items()}
            fast = self.fast.chunk(share)
            redo[tried] = needs_float64(share, fast)
            for k in out:
                out[k][tried] = np.asarray(fast[k]).astype(out[k].dtype)
        if redo.any():
            index = np.flatnonzero(redo)
            exact = self.exact({k: np.asarray(v)[index] for k, v in points.items()})
            for k in out:
                out[k][index] = exact[k]
        out["recomputed"] = redo
        return out


def float64_runner(config: "PhaseDiagramConfig", *, devices=None) -> sweep.AbstractRunner:
    """The float64 runner of ``config``: the work queues of the ensemble engine
    (:class:`~jaxflow.experiments._toy_queue.ToyQueueRunner`) for the default solver, Tsit5,
    the only one the ensemble engine has; the lockstep :class:`ToyRunner` for the others."""
    if config.solver == "Tsit5":
        return ToyQueueRunner(config, devices=devices)
    return ToyRunner(config, devices=devices)


def shared_runner(config: "PhaseDiagramConfig", devices=None) -> sweep.AbstractRunner:
    """The runner of ``config`` (:func:`float64_runner`, or a :class:`Float32Runner` for
    ``dtype = "float32"``), shared by every run in this process whose program is the same
    (:func:`~jaxflow.experiments._toy_queue.program_values`): a second phase diagram with
    another grid, a resumed one, or the same cell run again in a notebook, skips the
    compilation (~5 s). Kept with the other
    sweeps' runners (:mod:`jaxflow.sweep.kept_runners`).

    >>> from jaxflow.experiments import phase_diagram as pd
    >>> a = pd.shared_runner(pd.PhaseDiagramConfig(depths=(2.0,)))
    >>> a is pd.shared_runner(pd.PhaseDiagramConfig(depths=(3.0,), seed=4))
    True
    >>> a is pd.shared_runner(pd.PhaseDiagramConfig(rtol=1e-9))
    False
    """
    key = ("phase-diagram", program_values(config),
           None if devices is None else tuple(devices))
    return kept_runner(key, lambda: (Float32Runner(config, devices=devices)
                                     if config.dtype == "float32"
                                     else float64_runner(config, devices=devices)))
