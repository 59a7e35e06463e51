"""A sweep whose chunks are ensembles: each chunk is one work queue of the ensemble engine.

:class:`EnsembleRunner` runs a grid of problems of any vector field through
``jaxflow.solve(..., jaxflow.Flow(solver=jaxflow.Ensemble()), batched=True)`` (per-lane adaptive
steps, no lockstep: a lane that finishes hands its slot to the next problem of the queue), inside
:func:`jaxflow.sweep.run` and its store, ``--resume``, processes and executors.

How refilled lanes map onto the store: **a chunk is one queue.** The problems of one chunk (its
``chunk_size`` grid points, the last chunk padded with copies of its last point) are the queue
of one call; slots refill only from that queue, so a chunk is finished, and written with its
checksum, exactly when its queue is empty. A run killed mid-sweep loses at most the chunks in
flight, as any sweep, and ``--resume`` computes only the missing ones. A problem's answer does
not depend on its slot, its neighbours, the chunk size or the device (the engine's operations
are elementwise across lanes), so a resumed sweep is bitwise the uninterrupted one.

What the queues wasted, ``(slot iterations - step attempts) / slot iterations``: every lane
stores its share of its chunk's slot iterations (``slot_iterations``, the chunk's total split
equally among its points), so :func:`wasted_share` reads the whole sweep's from its dataset,
however many processes or resumes computed it. (The points with which a sweep pads its last
chunk are not in the dataset, so neither are their steps and their share.)

Example (Lorenz, rho over a grid; chunks of 3 problems, the state at t = 0.5 and 1):
    >>> import jax
    >>> jax.config.update("jax_enable_x64", True)
    >>> import jax.numpy as jnp
    >>> import jaxflow
    >>> from jaxflow import sweep
    >>> from jaxflow.engine.ensemble_method import first_coordinate
    >>> def lorenz(y, rho):
    ...     return jnp.stack([10.0 * (y[1] - y[0]), y[0] * (rho - y[2]) - y[1],
    ...                       y[0] * y[1] - 8.0 / 3.0 * y[2]])
    >>> def problems(points):
    ...     rho = jnp.asarray(points["rho"])
    ...     return jaxflow.Problem(vector_field=lorenz, args=rho, modes=first_coordinate,
    ...                            params0=jnp.tile(jnp.array([1.0, 0.0, 0.0]), (rho.size, 1)))
    >>> runner = sweep.EnsembleRunner(problems, jaxflow.Flow(solver=jaxflow.Ensemble()),
    ...                               jaxflow.Request(save_times=[0.5, 1.0], fractions=()),
    ...                               chunk_size=3)
    >>> ds = sweep.run(None, {"rho": [0.0, 10.0, 21.0, 28.0]}, runner=runner, quiet=True,
    ...                output_dims={"modes": ("save", "mode"), "final_modes": ("mode",)})
    >>> dict(ds.sizes), ds["status"].values.tolist()
    ({'rho': 4, 'mode': 1, 'save': 2}, [0, 0, 0, 0])
    >>> wasted = sweep.ensemble_runner.wasted_share(ds)   # 4 problems in 128 slots: most idle
    >>> bool(0.9 < wasted < 1)
    True
"""

from collections.abc import Callable, Mapping

import jax
import numpy as np

from jaxflow.engine.contract import solve
from jaxflow.engine.ensemble_method import Ensemble, EnsembleTrajectory
from jaxflow.engine.methods import Flow
from jaxflow.engine.request import Request
from jaxflow.sweep.device_runner import DEFAULT_CHUNK_SIZE, AbstractRunner
from jaxflow.sweep.errors import SweepError, check_count

__all__ = ["EnsembleRunner", "default_outputs", "wasted_share"]


def default_outputs(traj: EnsembleTrajectory) -> dict:
    """Per lane: the saved modes ``(K, M)``, the final modes and time, the status and the step
    counts (what :class:`EnsembleRunner` stores unless told otherwise)."""
    return {"modes": traj.modes, "final_modes": traj.final_modes, "final_time": traj.final_time,
            "status": traj.status, "steps": traj.steps, "rejected": traj.rejected}


class EnsembleRunner(AbstractRunner):
    """Runs each chunk of a sweep as one batch of the ensemble engine (module docstring).

    Args:
        problems: ``problems(points) -> jaxflow.Problem`` for a batch: ``points`` maps each axis
            to an ``(n,)`` float64 array, the problem's ``params0`` and ``args`` have the leading
            axis ``n``.
        flow: a ``jaxflow.Flow`` whose solver is a ``jaxflow.Ensemble``.
        request: what every lane answers (saves, horizon, learning times; no stationarity).
        outputs: ``outputs(trajectory) -> {name: (n, ...) array}`` (default
            :func:`default_outputs`); ``slot_iterations`` is added to it (module docstring).
            To store learning times, return ``trajectory.learning_times`` too and give its
            dimensions to ``sweep.run`` (``output_dims={"learning_times": ("mode",
            "fraction")}``).
        chunk_size: problems per chunk: one queue, one compiled call, one unit of the store.
    """

    def __init__(self, problems: Callable[[Mapping[str, np.ndarray]], object], flow: Flow,
                 request: Request, outputs: Callable | None = None,
                 chunk_size: int = DEFAULT_CHUNK_SIZE):
        if not (isinstance(flow, Flow) and isinstance(flow.solver, Ensemble)):
            raise SweepError("EnsembleRunner's flow must be jaxflow.Flow(solver=jaxflow.Ensemble"
                             f"(...)), got {flow!r}")
        self.problems, self.flow, self.request = problems, flow, request
        self.outputs = outputs or default_outputs
        self.chunk_size = self.call_size = check_count("chunk_size", chunk_size)
        self.fn = None  # no per-point function: a chunk is solved as a whole

    def _solve(self, points) -> tuple[dict, EnsembleTrajectory]:
        traj = solve(self.problems(points), self.flow, self.request, batched=True)
        outputs = dict(self.outputs(traj))
        if "slot_iterations" in outputs:
            raise SweepError("outputs may not name slot_iterations: EnsembleRunner adds it")
        return outputs, traj

    def output_shapes(self, example) -> dict:
        batch = {name: jax.ShapeDtypeStruct((self.call_size,), np.float64) for name in example}
        with jax.enable_x64(True):
            out, _ = jax.eval_shape(self._solve, batch)
        shapes = {k: jax.ShapeDtypeStruct(v.shape[1:], v.dtype) for k, v in out.items()}
        return {**shapes, "slot_iterations": jax.ShapeDtypeStruct((), np.float64)}

    def chunk(self, points: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        n, index = self._padding(points)
        batch = {name: np.asarray(v, dtype=np.float64)[index] for name, v in points.items()}
        with jax.enable_x64(True):
            out, traj = self._solve(batch)
        cost = int(np.asarray(traj.iterations)[0]) * traj.slots  # this queue's slot iterations
        return {**{name: np.asarray(v)[:n] for name, v in out.items()},
                "slot_iterations": np.full(n, cost / n)}


def wasted_share(ds) -> float:
    """The wasted share of a whole sweep, read back from its dataset (resumed or not, its
    chunks computed by any process) or from any mapping of its per-point arrays:
    ``1 - sum(steps + rejected) / sum(slot_iterations)``. Without ``rejected``, ``steps`` counts
    every attempt (as the phase diagram stores them)."""
    attempts = float(np.sum(np.asarray(ds["steps"])))
    if "rejected" in ds:
        attempts += float(np.sum(np.asarray(ds["rejected"])))
    total = float(np.sum(np.asarray(ds["slot_iterations"])))
    return 0.0 if total == 0 else (total - attempts) / total
