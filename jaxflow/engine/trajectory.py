"""The one trajectory contract of both back-ends: what a gradient-flow solve and a gradient-descent
run return, and the one rule on the fractions at which learning times are recorded.

:func:`jaxflow.engine.flow.solve` (and :func:`~jaxflow.engine.flow.gradient_flow`) return a :class:`Trajectory`;
:func:`jaxflow.engine.descent.gradient_descent` returns a :class:`DescentTrajectory`, which *is* a
:class:`Trajectory` (same fields, same meaning, on the same flow-time axis ``t``) plus three
fields only descent has (``loss``, ``learning_steps``, ``diverged_step``). Code that compares
the back-ends (``jaxflow.experiments.backends``) reads the shared fields and never asks which
back-end it holds.

``jaxflow.engine.flow.Trajectory`` and ``jaxflow.engine.descent.DescentTrajectory`` are these same classes.

Example (one contract, two back-ends):
    >>> import jax.numpy as jnp
    >>> from jaxflow.engine import descent, flow, trajectory
    >>> from jaxflow.models import toy
    >>> targets = jnp.array([1.0])
    >>> params = toy.factor_init(None, 1e-2, depth=2, num_coords=1)
    >>> kw = dict(modes=toy.factor_values, targets=targets, fractions=(0.5,))
    >>> gf = flow.gradient_flow(toy.factor_loss, params, targets, **kw)
    >>> gd = descent.gradient_descent(toy.factor_loss, params, targets, learning_rate=0.05,
    ...                               num_steps=400, save_every=100, **kw)
    >>> isinstance(gf, trajectory.Trajectory), isinstance(gd, trajectory.Trajectory)
    (True, True)
    >>> gf.learning_times.shape == gd.learning_times.shape, int(gd.evaluations), int(gd.rejected)
    (True, 401, 0)
"""

from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import numpy as np
from jaxtyping import Array, Float, Int, PyTree

__all__ = ["DescentTrajectory", "Trajectory", "check_fractions"]


class Trajectory(eqx.Module):
    """What one run of either back-end returns (add leading axes under ``vmap``).

    ``K`` saves, ``M`` tracked modes, ``F`` fractions. Times are flow times ``t`` (for descent,
    ``t = time_scale * learning_rate * step``).

    Attributes:
        times: the save times ``(K,)``.
        modes: mode values at those times ``(K, M)``. Flow: NaN where the lane stopped earlier
            after a failure, the final values where it became stationary. Descent: a lane that
            failed holds its last good values.
        learning_times: ``(M, F)`` first flow time at which ``modes / targets`` reached each
            fraction; ``inf`` if never (or if the target is 0).
        fractions: the fractions ``(F,)``.
        final_time: flow time of the last accepted step (flow: the latest coordinate's, for a
            coordinatewise model, whose coordinates each stop on their own).
        final_modes: modes at the last accepted step ``(M,)``.
        final_state: the state (the parameters, for a model) at the last accepted step.
        steps: accepted steps (flow: summed over the coordinates of a coordinatewise model).
        rejected: rejected step attempts (always 0 for descent, which never retries a step).
        evaluations: vector-field (gradient) evaluations made. Flow: those of the solver's
            step attempts (start-up included; learning-time refinement, saves and stationarity
            checks excluded), -1 for solvers whose count jaxflow does not know (implicit ones).
            Descent: one at the initial point and one per step attempted until the run ended
            or failed.
        status: :mod:`jaxflow.engine.status` code (flow: the worst coordinate's).

    Example (no save times: ``K = 0``; one mode, one fraction):
        >>> import jax.numpy as jnp
        >>> from jaxflow.engine import flow, status
        >>> from jaxflow.models import toy
        >>> args = toy.ToyArgs(depth=3.0, targets=jnp.array([1.0]))
        >>> traj = flow.solve(toy.reduced_vector_field, toy.reduced_init(1e-6, 1), args,
        ...                   modes=toy.reduced_modes, targets=args.targets, fractions=(0.5,))
        >>> traj.modes.shape, traj.learning_times.shape, status.name(traj.status)
        ((0, 1), (1, 1), 'ok')
        >>> bool(traj.final_modes[0] >= 0.5), int(traj.steps) < 200
        (True, True)
    """

    times: Float[Array, " K"]
    modes: Float[Array, "K M"]
    learning_times: Float[Array, "M F"]
    fractions: Float[Array, " F"]
    final_time: Float[Array, ""]
    final_modes: Float[Array, " M"]
    final_state: PyTree
    steps: Int[Array, ""]
    rejected: Int[Array, ""]
    evaluations: Int[Array, ""]
    status: Int[Array, ""]


class DescentTrajectory(Trajectory):
    """A gradient-descent run: the shared :class:`Trajectory`, plus what only descent has.

    Saves are ``S = K = num_steps // save_every + 1`` (the initial point included), at steps
    ``0, save_every, ..., num_steps``.

    Attributes:
        loss: ``(S,)`` the loss at each save.
        learning_steps: ``(M, F)`` int32, the first step (0 = the initial point) at which
            ``modes / targets >= fraction``, checked after every step; -1 if never reached.
        diverged_step: int32, the step at which the run diverged (the first state found with a
            non-finite or too large loss, or non-finite parameters); -1 if it never did.

    ``final_params`` reads ``final_state`` (the parameters after the last accepted step).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxflow.engine import descent
        >>> from jaxflow.models import toy
        >>> targets = jnp.array([2.0, 1.0])
        >>> traj = descent.gradient_descent(
        ...     toy.factor_loss, toy.factor_init(None, 1e-2, depth=2, num_coords=2), targets,
        ...     learning_rate=0.1, num_steps=1000, save_every=100, modes=toy.factor_values,
        ...     targets=targets)
        >>> traj.times.shape, traj.modes.shape, traj.learning_steps.shape
        ((11,), (11, 2), (2, 3))
        >>> int(traj.status), int(traj.diverged_step), int(traj.steps), float(traj.final_time)
        (0, -1, 1000, 100.0)
        >>> traj.final_params is traj.final_state
        True
    """

    loss: Float[Array, " K"]
    learning_steps: Int[Array, "M F"]
    diverged_step: Int[Array, ""]

    @property
    def final_params(self) -> Any:
        """The parameters after the last accepted step: ``final_state``, by its descent name."""
        return self.final_state


def check_fractions(fractions: Sequence[float] | Array) -> None:
    """Require strictly increasing fractions in ``(0, 1]``; ``()`` (none asked) is allowed.

    Both back-ends call it before compiling. A traced array is checked for its shape only.

    Raises:
        ValueError: naming ``fractions`` and the allowed range.

    Example:
        >>> from jaxflow.engine.trajectory import check_fractions
        >>> check_fractions((0.1, 0.5, 1.0)); check_fractions(())
        >>> check_fractions((1.5,))
        Traceback (most recent call last):
        ...
        ValueError: fractions must be strictly increasing values in (0, 1] (or empty), got (1.5,)
    """
    rule = "fractions must be strictly increasing values in (0, 1] (or empty)"
    if isinstance(fractions, jax.core.Tracer):
        if fractions.ndim != 1:
            raise ValueError(f"{rule}, got a traced array of shape {fractions.shape}")
        return
    try:
        values = np.asarray(fractions, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{rule}, got {fractions!r}") from None
    bad = values.ndim != 1 or not np.all((values > 0.0) & (values <= 1.0))
    if bad or np.any(np.diff(values) <= 0.0):
        raise ValueError(f"{rule}, got {fractions!r}")
