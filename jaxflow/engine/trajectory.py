"""The one answer of every method: what :func:`jaxflow.solve` returns, and the one rule on the
fractions at which learning times are recorded.

``jaxflow.solve(problem, jaxflow.Flow(), request)`` returns a :class:`Trajectory`;
``jaxflow.solve(problem, jaxflow.Descent(learning_rate), request)`` returns a
:class:`DescentTrajectory`, which *is* a :class:`Trajectory` (same fields, same meaning, on the
same flow-time axis ``t``, same status codes) plus three fields only descent has (``loss``,
``learning_steps``, ``diverged_step``). Code that compares the methods reads the shared fields
and never asks which method it holds. The classic entry points
(:func:`jaxflow.engine.flow.solve`, :func:`~jaxflow.engine.flow.gradient_flow`,
:func:`jaxflow.engine.descent.gradient_descent`), thin wrappers of the same engines, return the
same classes.

Example (one problem, one request, two methods, one contract):
    >>> import jax.numpy as jnp
    >>> import jaxflow
    >>> from jaxflow.engine import trajectory
    >>> from jaxflow.models import toy
    >>> targets = jnp.array([1.0])
    >>> problem = jaxflow.Problem(loss=toy.factor_loss, args=targets, modes=toy.factor_values,
    ...                           params0=toy.factor_init(None, 1e-2, depth=2, num_coords=1),
    ...                           targets=targets)
    >>> request = jaxflow.Request(save_times=[0.0, 10.0, 20.0], fractions=(0.5,))
    >>> gf = jaxflow.solve(problem, jaxflow.Flow(), request)
    >>> gd = jaxflow.solve(problem, jaxflow.Descent(learning_rate=0.05), request)
    >>> isinstance(gf, trajectory.Trajectory), isinstance(gd, trajectory.DescentTrajectory)
    (True, True)
    >>> gf.modes.shape == gd.modes.shape, gf.learning_times.shape == gd.learning_times.shape
    (True, True)
    >>> int(gd.steps), int(gd.evaluations), int(gd.rejected)   # t = 20 at rate 0.05
    (400, 401, 0)
"""

from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import numpy as np
from jaxtyping import Array, Float, Int, PyTree

__all__ = ["DescentTrajectory", "Trajectory", "check_fractions"]


class Trajectory(eqx.Module):
    """What one run of any method returns (add leading axes under ``vmap`` or ``batched=True``).

    ``K`` saves, ``M`` tracked modes, ``F`` fractions. Times are flow times ``t`` (for descent,
    ``t = time_scale * learning_rate * step``).

    Attributes:
        times: the save times ``(K,)``.
        modes: mode values at those times ``(K, M)``. A save past the end of a run holds the
            final values where the run ended ``ok`` (it became stationary before the save) and
            is NaN otherwise (after ``nonfinite``, ``diverged``, ``max_steps``): nothing looks
            computed that was not. The same for every method.
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

    Example (three saves, one mode, one fraction; the module example's problem and request,
    so its compiled program; without save times ``K = 0``):
        >>> import jax.numpy as jnp
        >>> import jaxflow
        >>> from jaxflow.engine import status
        >>> from jaxflow.models import toy
        >>> targets = jnp.array([1.0])
        >>> problem = jaxflow.Problem(loss=toy.factor_loss, args=targets, modes=toy.factor_values,
        ...                           params0=toy.factor_init(None, 1e-2, depth=2, num_coords=1),
        ...                           targets=targets)
        >>> request = jaxflow.Request(save_times=[0.0, 10.0, 20.0], fractions=(0.5,))
        >>> traj = jaxflow.solve(problem, jaxflow.Flow(), request)
        >>> traj.modes.shape, traj.learning_times.shape, status.name(traj.status)
        ((3, 1), (1, 1), 'ok')
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

    Each save time ``t`` is taken at the nearest step ``round(t / (time_scale * learning_rate))``,
    and ``times`` reports that step's own time.

    Attributes:
        loss: ``(K,)`` the loss at each save (NaN, as the modes, at a save the run never reached
            after a failure).
        learning_steps: ``(M, F)`` int32, the first step (0 = the initial point) at which
            ``modes / targets >= fraction``, checked after every step; -1 if never reached.
        diverged_step: int32, the step at which the run diverged (the first state found with a
            non-finite or too large loss, or non-finite parameters); -1 if it never did.
        peak_loss, peak_step: the largest loss over the accepted states (the initial one
            included) and the step where it was first reached.
        sharpness: ``(K,)`` the top Hessian eigenvalue at each save (``Descent(sharpness=k)``,
            :mod:`jaxflow.engine.sharpness`); None when not asked.
        observed: ``(K, O)`` ``Descent(observe=f)``'s ``f(params, args)`` at each save; None
            when not asked. Both follow the rule of ``modes`` past the end of a run.

    ``final_params`` reads ``final_state`` (the parameters after the last accepted step).

    Example (saves every 10 time units, to t = 20 at rate 0.05: 400 steps; the module
    example's problem and request, so its compiled program):
        >>> import jax.numpy as jnp
        >>> import jaxflow
        >>> from jaxflow.models import toy
        >>> targets = jnp.array([1.0])
        >>> problem = jaxflow.Problem(loss=toy.factor_loss, args=targets, modes=toy.factor_values,
        ...                           params0=toy.factor_init(None, 1e-2, depth=2, num_coords=1),
        ...                           targets=targets)
        >>> request = jaxflow.Request(save_times=[0.0, 10.0, 20.0], fractions=(0.5,))
        >>> traj = jaxflow.solve(problem, jaxflow.Descent(learning_rate=0.05), request)
        >>> traj.times.shape, traj.modes.shape, traj.loss.shape, traj.learning_steps.shape
        ((3,), (3, 1), (3,), (1, 1))
        >>> int(traj.status), int(traj.diverged_step), int(traj.steps), float(traj.final_time)
        (0, -1, 400, 20.0)
        >>> traj.final_params is traj.final_state
        True
    """

    loss: Float[Array, " K"]
    learning_steps: Int[Array, "M F"]
    diverged_step: Int[Array, ""]
    peak_loss: Float[Array, ""] | None = None
    peak_step: Int[Array, ""] | None = None
    sharpness: Float[Array, " K"] | None = None
    observed: Float[Array, "K O"] | None = None

    @property
    def final_params(self) -> Any:
        """The parameters after the last accepted step: ``final_state``, by its descent name."""
        return self.final_state


def check_fractions(fractions: Sequence[float] | Array) -> None:
    """Require strictly increasing fractions in ``(0, 1]``; ``()`` (none asked) is allowed.

    Every method calls it before compiling. A traced array is checked for its shape only.

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
