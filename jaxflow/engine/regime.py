"""Regimes of a large-step descent run, beside its status (docs/science/edge-of-stability.md).

The status (:mod:`jaxflow.engine.status`) says whether a run answered what was asked; the
*regime* says how gradient descent behaved, which is what an edge-of-stability map charts. Each
lane gets one of four codes and the step at which it was decided, by these rules, in this order:

``diverged`` (3)
    the run's status is ``diverged`` or ``nonfinite`` (a loss above ``Descent.loss_bound``, or
    not finite). Decided at ``diverged_step``.
``catapult`` (1)
    the final loss is at most ``loss_tol``, the largest loss seen (``peak_loss``, every step
    counted) exceeds ``CATAPULT_RISE = 10`` times the initial loss, and the final sharpness is
    below the initial one (where the sharpness was measured). Decided as ``converged``.
``converged`` (0)
    the final loss is at most ``loss_tol``. Decided at the first save from which every later
    save's loss is at most ``loss_tol`` (the run's last step where the saves never show it).
``oscillating`` (2)
    anything else: finite and bounded, but not converged within the budget (the edge of
    stability, a cycle, or a slow approach). Decided at the last step taken. "Bounded" means
    below ``Descent.loss_bound``: a loss that grows without bound but has not passed it when the
    budget ends is read as oscillating, so choose the bound and the budget together.

Whether a converged lane ended linearly stable, ``sharpness <= 2 / eta``, is then *checked*
(:func:`stable_at_end`), not assumed.

Example (codes and names):
    >>> from jaxflow.engine import regime
    >>> [regime.name(c) for c in range(4)]
    ['converged', 'catapult', 'oscillating', 'diverged']
"""

import jax.numpy as jnp
from jaxtyping import Array, Bool, Int

from jaxflow.engine.status import DIVERGED as _STATUS_DIVERGED
from jaxflow.engine.status import NONFINITE as _STATUS_NONFINITE
from jaxflow.engine.trajectory import DescentTrajectory

__all__ = ["CATAPULT", "CATAPULT_RISE", "CONVERGED", "DIVERGED", "LOSS_TOL", "NAMES",
           "OSCILLATING", "classify", "name", "stable_at_end"]

CONVERGED, CATAPULT, OSCILLATING, DIVERGED = 0, 1, 2, 3
NAMES = ("converged", "catapult", "oscillating", "diverged")
CATAPULT_RISE = 10.0
LOSS_TOL = 1e-12  # the toy model's losses start at O(1e-2 .. 1): 1e-12 is converged


def name(code) -> str:
    """The regime's name for a code (``'unknown(c)'`` for a code outside the table)."""
    code = int(code)
    return NAMES[code] if 0 <= code < len(NAMES) else f"unknown({code})"


def classify(traj: DescentTrajectory, learning_rate, *, time_scale=1.0,
             loss_tol: float = LOSS_TOL) -> tuple[Int[Array, ""], Int[Array, ""]]:
    """``(regime, decided_step)`` of one descent run (module docstring; vmap for a batch).

    Args:
        traj: a :class:`DescentTrajectory` whose first save is at ``t = 0`` (its initial loss
            and sharpness); ``traj.sharpness`` may be None (the catapult's sharpness test is
            then skipped).
        learning_rate, time_scale: the run's, to read its save times as steps.
        loss_tol: the loss at or below which a run has converged (> 0).

    Example (descent on ``w^2 / 2``, which is stable for ``eta < 2``):
        >>> import jax, jax.numpy as jnp
        >>> jax.config.update("jax_enable_x64", True)
        >>> import jaxflow
        >>> from jaxflow.engine import regime
        >>> problem = jaxflow.Problem(loss=lambda w, a: 0.5 * jnp.sum(w**2), params0=jnp.ones(1))
        >>> request = jaxflow.Request(save_times=jnp.arange(0.0, 60.0), stationary_tol=None)
        >>> runs = [jaxflow.solve(problem, jaxflow.Descent(learning_rate=eta, loss_bound=1e3), request)
        ...         for eta in (0.5, 1.0, 2.5)]
        >>> [(regime.name(r), int(s)) for r, s in (regime.classify(t, eta)
        ...                                        for t, eta in zip(runs, (0.5, 1.0, 2.5)))]
        [('converged', 20), ('converged', 1), ('diverged', 10)]
    """
    if not loss_tol > 0:
        raise ValueError(f"loss_tol must be a number > 0, got {loss_tol!r}")
    loss = traj.loss
    final_loss = _final_loss(traj)
    failed = (traj.status == _STATUS_DIVERGED) | (traj.status == _STATUS_NONFINITE)
    converged = ~failed & (final_loss <= loss_tol)
    catapult = converged & (traj.peak_loss > CATAPULT_RISE * loss[0])
    if traj.sharpness is not None:
        catapult = catapult & (_final(traj.sharpness) < traj.sharpness[0])
    code = jnp.where(failed, DIVERGED, jnp.where(catapult, CATAPULT,
                                                 jnp.where(converged, CONVERGED, OSCILLATING)))
    steps = jnp.round(traj.times / (learning_rate * time_scale)).astype(jnp.int32)
    # the first save from which every later save is converged (NaN saves past a stop count)
    below = (loss <= loss_tol) | jnp.isnan(loss)
    tail = jnp.flip(jnp.cumprod(jnp.flip(below).astype(jnp.int32))).astype(bool)
    first = jnp.argmax(tail)
    converged_at = jnp.where(jnp.any(tail), jnp.minimum(steps[first], traj.steps), traj.steps)
    decided = jnp.where(failed, traj.diverged_step, jnp.where(converged, converged_at, traj.steps))
    return code.astype(jnp.int8), decided.astype(jnp.int32)


def _final(values):
    """The last save that is not NaN (the run's last measured value)."""
    ok = ~jnp.isnan(values)
    index = jnp.where(jnp.any(ok), values.shape[0] - 1 - jnp.argmax(jnp.flip(ok)), 0)
    return values[index]


def _final_loss(traj: DescentTrajectory):
    return _final(traj.loss)


def stable_at_end(traj: DescentTrajectory, learning_rate, rtol: float = 1e-6) -> Bool[Array, ""]:
    """Whether the final sharpness is at most ``2 / eta`` (up to ``rtol``): the linear stability
    that a converged lane must show. Needs ``Descent(sharpness=k)``.

    >>> import jax.numpy as jnp
    >>> import jaxflow
    >>> from jaxflow.engine import regime
    >>> problem = jaxflow.Problem(loss=lambda w, a: 0.5 * jnp.sum(w**2), params0=jnp.ones(1))
    >>> request = jaxflow.Request(save_times=jnp.arange(0.0, 5.0), stationary_tol=None)
    >>> traj = jaxflow.solve(problem, jaxflow.Descent(learning_rate=0.5, sharpness=1), request)
    >>> bool(regime.stable_at_end(traj, 0.5)), bool(regime.stable_at_end(traj, 2.5))
    (True, False)
    """
    if traj.sharpness is None:
        raise ValueError("stable_at_end needs the sharpness: run jaxflow.Descent(sharpness=k)")
    return _final(traj.sharpness) <= (2.0 / learning_rate) * (1.0 + rtol)
