"""The phase diagram on the ensemble engine: each chunk of grid points is one work queue.

A point ``(depth, ratio, log_scale)`` needs two learning times of the reduced toy flow: the
larger target's (``ratio``) at ``finish`` and the smaller target's (1) at ``start``. The
coordinates are independent, so a point is two lanes of
``jaxflow.Flow(solver=jaxflow.Ensemble(), clock=toy.reduced_speed)``, each a one-coordinate flow
on its own clock that stops at its own learning time (:func:`pair_problems`). The lanes of a
chunk wait in one queue; a lane that has its learning time hands its slot to the next one, so a
chunk costs the sum of its lanes' steps, not its size times the slowest lane's (the lockstep of
``jax.vmap``, :class:`~jaxflow.experiments.phase_diagram.ToyRunner`).

How the queue maps onto the store: a chunk is one queue and one call, written with its
checksum once the queue is empty, so ``--resume`` loses at most the chunks in flight. A lane's
answer does not depend on its slot, its neighbours, the chunk size or the device count (the
engine's operations are elementwise across lanes): a resumed or re-chunked sweep is bitwise
the uninterrupted one. Each point stores its share of its chunk's slot iterations
(``slot_iterations``), from which :func:`wasted_share` reads what the queues idled.

Measured on the default grid (49,152 points, two CPU devices, compile excluded;
``benchmarks/phase_diagram_engines.py``, the points in the sweep's order): 0.55 s against 1.21 s
for the lockstep runner (its batches grouped by depth, as the sweep groups them), 116
against 130 solver attempts per point (the lockstep runner also pays the slowest lane of each
vmap batch), about 3% of slot iterations idle in chunks of 4096 (5.6% in chunks of 2048), the
same incremental verdict and status on every point, and margins as close to the closed form
as the lockstep runner's (worst 1.8e-6 against 2.1e-6, median 1.1e-9 against 1.0e-9).
"""

import dataclasses
import math
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

import jaxflow
from jaxflow import _programs, sweep
from jaxflow.engine import ensemble, status
from jaxflow.models import toy
from jaxflow.oracles import incremental

if TYPE_CHECKING:  # the config's module imports this one
    from jaxflow.experiments.phase_diagram import PhaseDiagramConfig

__all__ = ["PROGRAM_MULTIPLE", "ToyQueueRunner", "pair_problems", "program_values",
           "wasted_share"]

PROGRAM_MULTIPLE = 64  # points: the compiled calls' sizes (see ToyQueueRunner)


def program_values(config: "PhaseDiagramConfig", *, skip: tuple[str, ...] = ()) -> tuple:
    """``(name, value)`` of every field of ``config`` that a phase diagram's compiled program
    may read, but ``skip``: all of them except the grid's axes and ``scales`` (the points are
    the program's arguments), ``refine_iterations`` and ``seed`` (the threshold search's and
    the sweep's, host-side). A field added later counts as read until it is named here.

    >>> from jaxflow.experiments import phase_diagram as pd
    >>> [name for name, _ in program_values(pd.PhaseDiagramConfig())]
    ['start', 'finish', 'solver', 'rtol', 'atol', 'max_steps', 'chunk_size', 'dtype']
    """
    host_side = {*type(config).AXES, "scales", "refine_iterations", "seed", *skip}
    return tuple((f.name, getattr(config, f.name)) for f in dataclasses.fields(config)
                 if f.name not in host_side)


def pair_problems(depth, ratio, log_scale, start: float, finish: float) -> jaxflow.Problem:
    """The batch of one-coordinate toy flows of the points ``(depth, ratio, log_scale)`` (each
    of shape ``(n,)``): lane ``2k`` is point ``k``'s larger target (``ratio``), lane ``2k + 1``
    its smaller one (1), both from ``ln sigma0 = log_scale`` in the plateau's time unit
    (:func:`jaxflow.models.toy.log_time_unit`).

    Each lane asks for one learning time, at the level its margin needs: the problem's
    ``targets`` (what progress is measured against) are the levels ``finish * ratio`` and
    ``start * 1``, and the request's one fraction is 1. The flow's own targets stay ``ratio``
    and 1 (:class:`jaxflow.models.toy.ToyArgs`).

    Example (one point, depth 3, ratio 2, sigma0 = 1e-3; solved with
    ``jaxflow.solve(problem, jaxflow.Flow(solver=jaxflow.Ensemble(), clock=toy.reduced_speed),
    jaxflow.Request(fractions=(1.0,)), batched=True)``, as :class:`ToyQueueRunner` does):
        >>> import jax
        >>> jax.config.update("jax_enable_x64", True)
        >>> import jax.numpy as jnp
        >>> from jaxflow.experiments._toy_queue import pair_problems
        >>> one = lambda x: jnp.array([x])
        >>> problem = pair_problems(one(3.0), one(2.0), jnp.log(one(1e-3)), 0.1, 0.9)
        >>> problem.targets.tolist(), problem.args.targets.tolist()   # levels, flow targets
        ([[1.8], [0.1]], [[2.0], [1.0]])
    """
    depth, ratio, log_scale = (jnp.repeat(jnp.asarray(x), 2) for x in (depth, ratio, log_scale))
    larger = jnp.arange(depth.shape[0]) % 2 == 0
    targets = jnp.where(larger, ratio, 1.0)
    levels = jnp.where(larger, finish * ratio, start)
    args = toy.ToyArgs(depth=depth, targets=targets[:, None], time_scale=jnp.ones_like(depth),
                       log_time_unit=toy.log_time_unit(depth, log_scale))
    return jaxflow.Problem(vector_field=toy.reduced_vector_field, args=args,
                           params0=log_scale[:, None], modes=toy.reduced_modes,
                           targets=levels[:, None])


class ToyQueueRunner(sweep.AbstractRunner):
    """The phase diagram's runner on the ensemble engine (module docstring): the outputs of
    :func:`~jaxflow.experiments.phase_diagram.point_function` (``margin_in_unit``,
    ``log_time_unit``, ``status``, ``steps``; ``time`` with ``with_time``) plus
    ``slot_iterations``, one compiled call per chunk.

    An optional input ``tolerance_scale`` multiplies ``rtol`` and ``atol``, as for
    :class:`~jaxflow.experiments.phase_diagram.ToyRunner`: a traced value of the same program,
    so the threshold refinement and check compile nothing new. Points of one call that ask for
    different scales run as one queue each.

    It is called as :class:`~jaxflow.experiments.phase_diagram.ToyRunner` is (see its example);
    tests/test_phase_diagram.py checks its margins against the closed form and its answers
    against the same points in other calls. The phase diagram takes it for the default solver:
        >>> from jaxflow.experiments import phase_diagram as pd
        >>> type(pd.float64_runner(pd.PhaseDiagramConfig())).__name__
        'ToyQueueRunner'
    """

    def __init__(self, config: "PhaseDiagramConfig", *, chunk_size: int | None = None,
                 devices=None, with_time: bool = False):
        self.config = config
        self.chunk_size = self.call_size = chunk_size or config.chunk_size
        # The compiled call's points: the chunk rounded up to a multiple of PROGRAM_MULTIPLE,
        # the rest padding that answers at once (_padding_point). Chunks of 1 to 64 points
        # share one program (a new chunk size otherwise costs a compilation, ~1.5 s).
        self.program_points = -(-self.chunk_size // PROGRAM_MULTIPLE) * PROGRAM_MULTIPLE
        self.devices = tuple(devices) if devices is not None else tuple(jax.local_devices())
        self.with_time = bool(with_time)
        # On CPUs, 128 slots a device: a chunk of 2048 points (2048 lanes a device) then idles
        # in its queue's tail half as much as with the engine's 256 (5.7% against 11.4% of the
        # slot iterations on the default grid), in the same time (0.58 s). Accelerators keep
        # the engine's default (many lanes in flight).
        cpu = all(d.platform == "cpu" for d in self.devices)
        self.slots = ensemble.SLOT_MULTIPLE if cpu else None
        self.fn = None  # no per-point function: a chunk is solved as a whole
        self.traces = 0
        self.programs = 0  # programs this runner obtained: compiled, or loaded from the cache
        self._call = jax.jit(self._pairs)
        self._program = None

    def _pairs(self, points, tolerance_scale):
        self.traces += 1  # Python side effect: runs once per trace, never per call
        config = self.config
        flow = jaxflow.Flow(solver=jaxflow.Ensemble(devices=self.devices, slots=self.slots),
                            rtol=config.rtol * tolerance_scale,
                            atol=config.atol * tolerance_scale, clock=toy.reduced_speed)
        request = jaxflow.Request(fractions=(1.0,), max_steps=config.max_steps)
        problem = pair_problems(points["depth"], points["ratio"], points["log_scale"],
                                config.start, config.finish)
        traj = jaxflow.solve(problem, flow, request, batched=True)
        times = traj.learning_times[:, 0, 0].reshape(-1, 2)  # (larger's finish, smaller's start)
        out = {
            "margin_in_unit": incremental.margin(times[:, 0], times[:, 1]),
            "log_time_unit": problem.args.log_time_unit[::2],
            "status": status.worst(traj.status.reshape(-1, 2), axis=1),
            "steps": (traj.steps + traj.rejected).reshape(-1, 2).sum(axis=1),
            "slot_iterations": traj.iterations[0] * traj.slots,  # the whole queue's
        }
        if self.with_time:
            out["time"] = jnp.max(jnp.abs(times), axis=1)
        return out

    def compiled(self) -> jax.stages.Compiled:
        """The runner's one program (a call of ``program_points`` points and a tolerance
        scale), compiled on first use or loaded from the executable cache
        (:func:`jaxflow._programs.executable`: a warm run neither traces nor lowers it)."""
        if self._program is None:
            batch = {name: jax.ShapeDtypeStruct((self.program_points,), np.float64)
                     for name in ("depth", "ratio", "log_scale")}
            # chunk_size only through program_points: chunks of 1 to 64 share one program
            built_from = (program_values(self.config, skip=("chunk_size",)), self.slots,
                          self.program_points, self.with_time,
                          [(d.platform, d.id) for d in self.devices])
            with jax.enable_x64(True):
                self._program = _programs.executable(
                    self._call, (batch, jax.ShapeDtypeStruct((), np.float64)),
                    name="phase_diagram.ToyQueueRunner", built_from=built_from,
                    options=_programs.compiler_options(self.devices))
            self.programs += 1
        return self._program

    def output_shapes(self, example) -> dict:
        out = self.compiled().out_info  # the compiled call's own outputs
        shapes = {k: jax.ShapeDtypeStruct(v.shape[1:], v.dtype) for k, v in out.items()}
        # the call returns the queue's count; chunk() stores each point's float share of it
        return {**shapes, "slot_iterations": jax.ShapeDtypeStruct((), np.float64)}

    def _padding_point(self) -> dict:
        """A point whose two lanes start past their levels: each answers at once (learning
        time 0, no step) and frees its slot, so padding a short call (the threshold search
        asks for a few hundred points at a time) costs next to nothing. Its sigma0 lies
        between ``finish * ratio`` and ``ratio``, above ``start``."""
        sigma0 = (1.0 + self.config.finish) / 2
        ratio = 1.0 + (sigma0 / self.config.finish - 1.0) / 2
        return {"depth": 2.0, "ratio": ratio, "log_scale": math.log(sigma0)}

    def chunk(self, points):
        n, _ = self._padding(points)
        scales = np.asarray(points.get("tolerance_scale", np.ones(n)), dtype=np.float64)
        out = None
        padding = self._padding_point()
        for scale in np.unique(scales):  # one queue per tolerance (the threshold check's)
            rows = np.flatnonzero(scales == scale)
            # the call's lanes: these rows, then padding (one shape a call)
            batch = {k: np.concatenate([np.asarray(points[k], dtype=np.float64)[rows],
                                        np.full(self.program_points - rows.size,
                                                padding[k])])
                     for k in ("depth", "ratio", "log_scale")}
            program = self.compiled()
            with jax.enable_x64(True):
                result = jax.device_get(program(batch, np.float64(scale)))
            cost = float(result.pop("slot_iterations"))
            if out is None:
                out = {k: np.zeros((n, *np.shape(v)[1:]), np.asarray(v).dtype)
                       for k, v in result.items()}
                out["slot_iterations"] = np.zeros(n)
            for k, v in result.items():
                out[k][rows] = np.asarray(v)[: rows.size]
            out["slot_iterations"][rows] = cost / rows.size
        return out


def wasted_share(ds) -> float:
    """The share of a phase diagram's slot iterations that advanced no lane (the queues'
    tails), from its dataset (or a runner's outputs): ``1 - sum(steps) / sum(slot_iterations)``
    (its ``steps`` count every attempt), as :func:`jaxflow.sweep.ensemble_runner.wasted_share`
    reads any ensemble sweep; ``nan`` for a dataset computed without queues (no
    ``slot_iterations``).

    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"steps": ("p", np.array([90, 110])),
    ...                  "slot_iterations": ("p", np.array([100.0, 125.0]))})
    >>> round(wasted_share(ds), 4)
    0.1111
    """
    if "slot_iterations" not in ds:
        return float("nan")
    return sweep.ensemble_runner.wasted_share(ds)
