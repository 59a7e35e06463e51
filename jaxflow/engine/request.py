"""What a solve is asked to answer: one vocabulary for gradient flow and gradient descent.

A :class:`Request` says *what* to compute, never *how*: the times at which to save the modes, the
fractions of each target at which to record learning times, and when to stop. The same request
means the same thing to :class:`jaxflow.Flow` and to :class:`jaxflow.Descent`, on one time axis:
the flow time ``t`` (for descent, ``t = time_scale * learning_rate * step``).

**When a run stops** (both methods):

* at the ``horizon`` (default: the last save time, if there are save times), or earlier where it
  has become stationary;
* without a horizon, once every ``required`` learning time is found; and, when none is required,
  once it is stationary;
* on failure (``nonfinite``, ``diverged``) or when the step budget ``max_steps`` is spent
  (``max_steps``).

**Its status** (:mod:`jaxflow.engine.status`): ``ok`` when it answered everything asked,
``unfinished`` when it reached its horizon before finding every required learning time,
``max_steps`` when the budget ran out first, ``nonfinite`` / ``diverged`` on failure. A stationary
run is ``ok``: the learning times it did not find are ``inf`` (never).

**Stationary** has one meaning: the run contracts towards a fixed point with less than
``stationary_tol * max(1, max|params|)`` left to travel, estimated as ``|f|^3 / (-f.Jf)`` for the
velocity ``f`` (``-grad loss``, so ``|g|^3 / (g.Hg)`` with the Hessian ``H``); exact for a
linear flow. On a plateau the flow expands (``f.Jf > 0``) and the run goes on, however slow.

Example:
    >>> import jaxflow
    >>> request = jaxflow.Request(save_times=[0.0, 1.0, 2.0], fractions=(0.5,))
    >>> request.horizon is None, request.stop_horizon()   # the horizon defaults to the last save
    (True, 2.0)
    >>> jaxflow.Request(horizon=-1.0)
    Traceback (most recent call last):
    ...
    ValueError: horizon must be a number in (0, inf] (or None), got -1.0
"""

from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float

from jaxflow.engine.trajectory import check_fractions

__all__ = ["Request"]


def _is_traced(value) -> bool:
    return isinstance(value, jax.core.Tracer)


class Request(eqx.Module):
    """What to answer and when to stop, for any method (see the module docstring).

    Attributes:
        save_times: sorted, finite, non-negative flow times ``(K,)`` at which to save the modes
            (descent saves at the nearest step, ``round(t / (time_scale * lr))``, and reports that
            step's own time). ``None``: no saves.
        fractions: strictly increasing fractions in ``(0, 1]`` of each target at which learning
            times are recorded; ``()`` asks for none.
        horizon: stop at this flow time (> 0, ``inf`` allowed). Default: the last save time if
            there are save times, else none (the run stops when it has answered or is
            stationary).
        stationary_tol: stop a run that is stationary to this tolerance (module docstring);
            ``None`` never checks (the check costs one Jacobian- or Hessian-vector product);
            ``"auto"`` (default): ``1e-10`` where the run goes to a horizon or is asked no
            learning time, ``None`` where it stops at its learning times.
        max_steps: the step budget (flow: solver step attempts per lane; descent: steps);
            ``None`` takes the method's default (:class:`jaxflow.Flow`: 4096, :class:`jaxflow.Descent`:
            100000). Static: a new value compiles a new program.
        required: ``(M, F)`` mask of the learning times the run must find (default: all of the
            nonzero targets). A run with a horizon that reaches it before finding them is
            ``unfinished``; ``required`` all False asks the run only to reach its horizon.

    Example:
        >>> import jaxflow
        >>> jaxflow.Request(fractions=(0.5, 0.1))
        Traceback (most recent call last):
        ...
        ValueError: fractions must be strictly increasing values in (0, 1] (or empty), got (0.5, 0.1)
    """

    save_times: Float[Array, " K"] | None = None
    fractions: Any = (0.1, 0.5, 0.9)
    horizon: Float[ArrayLike, ""] | None = None
    stationary_tol: Float[ArrayLike, ""] | str | None = "auto"
    max_steps: int | None = eqx.field(static=True, default=None)
    required: Bool[ArrayLike, "M F"] | None = None

    def __check_init__(self):
        check_fractions(self.fractions)
        _check_save_times(self.save_times)
        _check_horizon(self.horizon, self.save_times)
        _check_stationary_tol(self.stationary_tol)
        steps = self.max_steps
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, (int, np.integer))
                                  or steps < 1):
            raise ValueError(f"max_steps must be an integer >= 1 (or None), got {steps!r}")

    def stop_horizon(self):
        """The horizon the run stops at: ``horizon``, else the last save time, else ``None``.

        >>> import jaxflow
        >>> jaxflow.Request(save_times=[0.5, 3.0]).stop_horizon(), jaxflow.Request().stop_horizon()
        (3.0, None)
        """
        if self.horizon is not None:
            return self.horizon
        if self.save_times is not None and np.shape(self.save_times)[0]:
            times = self.save_times
            return times[-1] if _is_traced(times) else float(np.asarray(times)[-1])
        return None

    def resolved_stationary_tol(self, asks_learning_times: bool):
        """``stationary_tol`` with ``"auto"`` resolved (module docstring): a number or ``None``.

        >>> import jaxflow
        >>> r = jaxflow.Request()
        >>> r.resolved_stationary_tol(True), r.resolved_stationary_tol(False)
        (None, 1e-10)
        """
        if not isinstance(self.stationary_tol, str):
            return self.stationary_tol
        goes_to_horizon = self.stop_horizon() is not None
        return 1e-10 if goes_to_horizon or not asks_learning_times else None


def _check_save_times(save_times) -> None:
    if save_times is None or _is_traced(save_times):
        return
    try:
        times = np.asarray(save_times, dtype=float)
    except (TypeError, ValueError):
        times = np.full((1, 1), np.nan)
    if (times.ndim != 1 or not np.all(np.isfinite(times)) or np.any(times < 0)
            or np.any(np.diff(times) < 0)):
        raise ValueError(
            f"save_times must be a 1-D, finite, non-negative, sorted array, got {save_times!r}"
        )


def _check_horizon(horizon, save_times) -> None:
    if horizon is None or _is_traced(horizon):
        return
    try:
        value = float(horizon) if np.ndim(horizon) == 0 else np.nan
    except (TypeError, ValueError):
        value = np.nan
    if not value > 0:  # NaN fails too
        raise ValueError(f"horizon must be a number in (0, inf] (or None), got {horizon!r}")
    if save_times is not None and not _is_traced(save_times) and np.size(save_times):
        last = float(np.asarray(save_times, dtype=float)[-1])
        if last > value:
            raise ValueError(
                f"horizon ({value:g}) must not come before the last save time ({last:g})"
            )


def _check_stationary_tol(tol) -> None:
    if tol is None or _is_traced(tol):
        return
    if isinstance(tol, str):
        if tol != "auto":
            raise ValueError(f"stationary_tol must be a number in (0, inf), None or 'auto', got {tol!r}")
        return
    try:
        value = float(tol) if np.ndim(tol) == 0 else np.nan
    except (TypeError, ValueError):
        value = np.nan
    if not 0 < value < np.inf:
        raise ValueError(f"stationary_tol must be a number in (0, inf), None or 'auto', got {tol!r}")


def required_mask(required, targets, num_fractions: int) -> Array:
    """The ``(M, F)`` mask of learning times a run must find: ``required`` (default all) and
    only where the target is nonzero (a zero target is never learned).

    >>> import jax.numpy as jnp
    >>> from jaxflow.engine.request import required_mask
    >>> required_mask(None, jnp.array([1.0, 0.0]), 2).tolist()
    [[True, True], [False, False]]
    """
    targets = jnp.asarray(targets)
    asked = jnp.broadcast_to((targets != 0)[:, None], (targets.shape[0], num_fractions))
    if required is not None:
        asked = asked & jnp.broadcast_to(jnp.asarray(required, dtype=bool), asked.shape)
    return asked


def progress(modes, targets) -> Array:
    """How far each mode is towards its target, ``modes / targets``: the quantity whose
    crossings of the fractions are the learning times. A zero target is never learned: its
    progress is ``-inf``, which no fraction reaches.

    >>> import jax.numpy as jnp
    >>> from jaxflow.engine.request import progress
    >>> progress(jnp.array([0.5, 0.3]), jnp.array([2.0, 0.0])).tolist()
    [0.25, -inf]
    """
    has = targets != 0
    return jnp.where(has, modes / jnp.where(has, targets, 1.0), -jnp.inf)


def as_fraction_array(fractions: Sequence[float] | Array, dtype) -> Array:
    """The fractions as a 1-D array of ``dtype`` (``()`` gives shape ``(0,)``)."""
    return jnp.asarray(np.asarray(fractions, dtype=np.float64) if not _is_traced(fractions)
                       else fractions, dtype=dtype).reshape(-1)
