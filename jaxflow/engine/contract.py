"""The one entry point: ``jaxflow.solve(problem, method, request) -> Trajectory``.

In the style of ``diffrax.diffeqsolve``: *what* is trained (:class:`~jaxflow.engine.problem.Problem`),
*how* (a method value, :class:`~jaxflow.engine.methods.Flow` or
:class:`~jaxflow.engine.methods.Descent`) and *what to answer* (:class:`~jaxflow.engine.request.Request`)
are three separate values, so switching gradient flow for gradient descent changes one argument,
and every experiment speaks one vocabulary.

Example (a batch of three initialization scales, one compiled program):
    >>> import jax, jax.numpy as jnp
    >>> import jaxflow
    >>> from jaxflow.models import toy
    >>> from jaxflow.oracles import theory
    >>> scales = jnp.array([1e-30, 1e-12, 1e-4])
    >>> args = jax.vmap(lambda s: toy.ToyArgs(depth=3.0, targets=jnp.array([1.0])))(scales)
    >>> problem = jaxflow.Problem(vector_field=toy.reduced_vector_field, args=args,
    ...                           params0=jax.vmap(lambda s: toy.reduced_init(s, 1))(scales),
    ...                           modes=toy.reduced_modes, targets=args.targets,
    ...                           clock=toy.reduced_speed)
    >>> traj = jaxflow.solve(problem, jaxflow.Flow(), jaxflow.Request(fractions=(0.5,)),
    ...                      batched=True)
    >>> exact = theory.learning_time(3.0, 1.0, scales, 0.5)
    >>> traj.learning_times.shape, bool(jnp.allclose(traj.learning_times[:, 0, 0], exact, rtol=1e-7))
    ((3, 1, 1), True)
"""

import jax
import numpy as np

from jaxflow import _x64
from jaxflow.engine.ensemble_method import Ensemble, run_batch
from jaxflow.engine.methods import Descent, Flow
from jaxflow.engine.problem import Problem
from jaxflow.engine.request import Request
from jaxflow.engine.trajectory import Trajectory

__all__ = ["solve"]

METHODS = (Flow, Descent)


def _check_stop_rule(problem: Problem, request: Request) -> None:
    """A run must have something that ends it besides its step budget."""
    fractions = request.fractions
    asks = bool(np.ndim(fractions) and np.shape(fractions)[0]) and problem.targets is not None
    if request.stop_horizon() is None and not asks and request.stationary_tol is None:
        raise ValueError(
            "request has no stop rule: give a horizon (or save_times), learning times to find "
            "(fractions and targets), or a stationary_tol"
        )


def _check_batch(problem: Problem) -> int:
    """The batch size: the one leading axis of every array leaf of params0, args and targets."""
    leaves = jax.tree.leaves((problem.params0, problem.args, problem.targets))
    sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in leaves}
    if len(sizes) != 1 or None in sizes:
        shapes = sorted({str(np.shape(leaf)) for leaf in leaves})
        raise ValueError(
            "batched=True needs a leading axis of one size on every array leaf of params0, args "
            f"and targets; got leaves of shapes {', '.join(shapes)}"
        )
    return sizes.pop()


def solve(problem: Problem, method: Flow | Descent, request: Request | None = None, *,
          batched: bool = False) -> Trajectory:
    """Train ``problem`` by ``method`` and answer ``request``.

    Args:
        problem: what is trained (:class:`jaxflow.Problem`: a loss or a vector field, the
            initial parameters, args, modes and targets, the time scale).
        method: :class:`jaxflow.Flow` (gradient flow) or :class:`jaxflow.Descent` (gradient
            descent or any optax optimizer).
        request: what to answer and when to stop (:class:`jaxflow.Request`; default
            ``Request()``: learning times at fractions 0.1, 0.5, 0.9 of every nonzero target).
        batched: ``problem`` holds a batch: a leading axis of one size ``B`` on every array leaf
            of ``params0``, ``args`` and ``targets``. The answer gets the same leading axis.
            One compiled program serves the batch: ``jax.vmap`` of the single solve, or, with
            ``Flow(solver=jaxflow.Ensemble(...))``, the ensemble engine
            (:mod:`jaxflow.engine.ensemble_method`: per-lane steps without lockstep; saves,
            learning times and final states; no stationarity check).

    Returns:
        A :class:`jaxflow.Trajectory` (descent: a :class:`~jaxflow.engine.trajectory.DescentTrajectory`,
        the same fields plus ``loss``, ``learning_steps`` and ``diverged_step``; the ensemble
        engine: an :class:`~jaxflow.engine.ensemble_method.EnsembleTrajectory`, plus the work
        queue's ``iterations``, ``slots`` and ``wasted`` share of slot iterations): saves on
        ``times``, ``learning_times`` ``(M, F)``, the final state, step counts and a
        :mod:`jaxflow.engine.status` code with one meaning for every method: ``ok`` (answered
        everything asked), ``unfinished`` (the horizon came first), ``max_steps`` (the budget
        ran out), ``nonfinite`` or ``diverged``.

    Raises:
        ValueError: for a bad argument (naming it and the allowed range), descent on a problem
            without a loss, or a request that nothing would stop.
        jaxflow._x64.X64Error: float64 inputs while JAX's x64 mode is off.

    Example: see the module docstring and :mod:`jaxflow.engine.methods`.
    """
    if not isinstance(problem, Problem):
        raise ValueError(f"problem must be a jaxflow.Problem, got {type(problem).__name__}")
    if not isinstance(method, METHODS):
        raise ValueError(f"method must be jaxflow.Flow(...) or jaxflow.Descent(...), got {method!r}")
    request = Request() if request is None else request
    if not isinstance(request, Request):
        raise ValueError(f"request must be a jaxflow.Request, got {type(request).__name__}")
    _x64.require_x64_for("jaxflow.solve", problem.params0, problem.args, problem.targets)
    _check_stop_rule(problem, request)
    ensemble = isinstance(method, Flow) and isinstance(method.solver, Ensemble)
    if not batched:
        if ensemble:
            raise ValueError("Flow(solver=Ensemble()) solves batches: call jaxflow.solve(..., "
                             "batched=True) with a leading batch axis on params0 and args")
        return method.run(problem, request)

    _check_batch(problem)
    if ensemble:
        return run_batch(problem, method, request)

    def one(params0, args, targets):
        if targets is not None and np.ndim(targets) != 1:
            raise ValueError(
                "batched=True needs a leading batch axis on targets (one (M,) row per problem); "
                f"got targets of shape {np.shape(problem.targets)}"
            )
        lane = Problem(params0=params0, args=args, loss=problem.loss,
                       vector_field=problem.vector_field, modes=problem.modes, targets=targets,
                       time_scale=problem.time_scale, clock=problem.clock)
        return method.run(lane, request)

    return jax.vmap(one)(problem.params0, problem.args, problem.targets)
