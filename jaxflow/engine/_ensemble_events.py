"""Learning times in the ensemble engine: crossings found at step ends, landed on, polished.

Part of :mod:`jaxflow.engine.ensemble`. A lane's learning time for (mode ``i``, fraction ``f``)
is the first flow time at which ``progress_i = mode_i / target_i`` reaches ``f``. The work
queue has no dense output to search afterwards, so a lane *lands* on each crossing instead:

1. **detect.** An accepted step ``[t, t + h]`` whose end reaches a level not found yet is
   turned down (counted as a rejected attempt): the lane stays at ``t``.
2. **aim.** The crossing is placed on the cubic Hermite interpolant of the progress over the
   step (its values and its rates ``d progress/dt = J_progress f`` at both ends, each a
   Jacobian-vector product), by two Newton iterations from the secant point, written out
   (no loop inside the step loop); the earliest crossing of the step is the target ``t_aim``.
3. **land.** The next attempt is a step from ``t`` that ends exactly at ``t_aim`` (the same
   landing as on a save time). Its end state is the solver's own, not an interpolant's.
4. **polish.** There one Newton step on the exact state, ``t_aim + (f - progress) / rate``,
   gives the learning time: the interpolant's error ``delta`` (fourth order in ``h``) becomes
   ``O(delta^2)``, below the solver's tolerance.

A lane lands once per crossing step (crossings of several levels placed at the same point are
resolved together), so it pays one rejected and one short step per learning time. Every
operation is elementwise across lanes: a lane's learning times do not depend on its slot or its
neighbours. The rates are computed only in loop iterations in which some lane crossed or
landed (``lax.cond``).

Example (the logistic flow ``y' = y (1 - y)`` from three starts: its learning time of level
``f`` is ``logit(f) - logit(y0)``; tests/test_ensemble.py checks the toy model's against the
closed form, through ``jaxflow.solve``):
    ```python
    import jax.numpy as jnp
    from jaxflow.engine import ensemble
    from jaxflow.engine._ensemble_events import Events

    def logistic(t, y, args):
        return y * (1 - y)

    events = Events(progress=lambda y, args: y[:1], levels=jnp.array([0.5, 0.9]),
                    ends_when_answered=True)           # no horizon: stop once answered
    out = ensemble.solve_ensemble(logistic, jnp.array([[1e-2], [1e-4], [0.3]]), None,
                                  jnp.array([jnp.inf]), rtol=1e-10, atol=1e-20, events=events)
    out.learning_times[:, 0]   # (3, 2): logit(0.5) - logit(y0), logit(0.9) - logit(y0)
    ```
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

__all__ = ["Events", "after_attempt", "aim", "answered", "check_required", "found_at_start",
           "polish"]


class Events(eqx.Module):
    """The learning times a batch asks for (see the module docstring).

    Attributes:
        progress: ``progress(y (d,), args) -> (M,)`` of one lane: each mode over its target
            (``-inf`` where the target is 0); the engine maps it over the lanes.
        levels: ``(F,)`` the fractions of the targets.
        ends_when_answered: a lane stops once it has found every learning time it asks for
            (a run without a horizon); otherwise it runs on to its last save time.
        clock: the lanes integrate on a clock ``tau``: the state's last component is the flow
            time ``t`` (``dt/dtau`` its velocity), and learning times are read from it.
    """

    progress: Callable = eqx.field(static=True)
    levels: Array
    ends_when_answered: bool = eqx.field(static=True)
    clock: bool = eqx.field(static=True, default=False)

    def flow_time(self, y, tau):
        """The flow time of the lanes at ``tau``: ``tau`` itself, or the clock's ``t`` (the
        state's last component)."""
        return y[-1] if self.clock else tau

    def lanes(self, y, args):
        """The progress of every lane of a block: ``y (d, S)`` -> ``(M, S)``."""
        return jax.vmap(self.progress, in_axes=(-1, -1), out_axes=-1)(y, args)

    def rates(self, y, velocity, args):
        """``d progress / dt`` of every lane along ``velocity`` (``(d, S)``): ``(M, S)``."""
        return jax.jvp(lambda x: self.lanes(x, args), (y,), (velocity,))[1]

    def reached(self, p):
        """Which levels the progress ``p (M, S)`` has reached: ``(M, F, S)``."""
        return p[:, None, :] >= self.levels[None, :, None]


def found_at_start(events: Events, p, y, t):
    """``(found, learning)`` of freshly loaded lanes: a level already reached at the start
    time was learned then (as the flow's loop says)."""
    found = events.reached(p)
    return found, jnp.where(found, events.flow_time(y, t)[None, None, :], jnp.inf)


def _hermite(theta, p_a, p_b, slope_a, slope_b):
    """The cubic Hermite interpolant on ``[0, 1]`` with values ``p_a, p_b`` and slopes (per unit
    ``theta``) ``slope_a, slope_b``, and its derivative in ``theta``."""
    t2, t3 = theta * theta, theta * theta * theta
    value = ((2 * t3 - 3 * t2 + 1) * p_a + (t3 - 2 * t2 + theta) * slope_a
             + (3 * t2 - 2 * t3) * p_b + (t3 - t2) * slope_b)
    slope = ((6 * t2 - 6 * theta) * (p_a - p_b) + (3 * t2 - 4 * theta + 1) * slope_a
             + (3 * t2 - 2 * theta) * slope_b)
    return value, slope


# Newton iterations on the cubic, written out (no loop inside the step loop). On the toy model
# with depths 2..inf mixed (some lane crosses in most loop iterations) each added about a sixth
# of a step attempt's cost per lane, and 14 regula falsi iterations in a loop made the batch
# slower than vmap. Accuracy, tests/test_ensemble.py: none (the secant point alone) leaves
# errors of 1e-6, one already passes, two keep a margin; the Newton step at the landing
# (polish) squares what the landing point misses.
_ROOT_ITERATIONS = 2


def _cubic_root(a, b, sa, sb, level):
    """The point in ``[0, 1]`` where the cubic Hermite interpolant reaches ``level``, given
    ``a < level <= b`` (elementwise): Newton from the secant point, kept in ``[0, 1]``."""
    theta = jnp.clip((level - a) / jnp.where(b > a, b - a, 1.0), 0.0, 1.0)
    for _ in range(_ROOT_ITERATIONS):
        value, slope = _hermite(theta, a, b, sa, sb)
        step = (level - value) / jnp.where(slope > 0, slope, 1.0)
        theta = jnp.clip(theta + jnp.where(slope > 0, step, 0.0), 0.0, 1.0)
    return theta


def aim(events: Events, crossed, y, f0, p_a, y1, f1, p_b, t, h, args):
    """Where to land for the lanes whose step ``[t, t + h]`` crossed the levels ``crossed``
    ``(M, F, S)``: ``(t_aim (S,), aimed (M, F, S))``, the earliest crossing of each lane and the
    levels placed there (``t_aim = inf`` where nothing crossed)."""
    slope_a = h * events.rates(y, f0, args)
    slope_b = h * events.rates(y1, f1, args)
    expand = lambda x: x[:, None, :]  # noqa: E731  (M, S) -> (M, 1, S)
    level = events.levels[None, :, None]
    # Only crossed levels have a bracket (a < level <= b); the others give an unused point.
    theta = _cubic_root(expand(p_a), expand(p_b), expand(slope_a), expand(slope_b), level)
    theta = jnp.where(crossed, theta, jnp.inf)
    first = jnp.min(theta, axis=(0, 1))
    t_aim = jnp.where(jnp.isfinite(first), t + first * h, jnp.inf)
    return t_aim, crossed & (theta <= first[None, None, :])


def polish(events: Events, resolve, y, velocity, p, t, low, high, args):
    """The learning times of the levels ``resolve`` ``(M, F, S)`` from the exact state ``y`` at
    time ``t`` (the landing point): one Newton step on ``progress(t) = level``, clipped to the
    crossing step ``[low, high]``; on a clock the step is taken in ``tau`` and carried to the
    flow time by ``dt/dtau``."""
    rate = events.rates(y, velocity, args)[:, None, :]
    gap = events.levels[None, :, None] - p[:, None, :]
    safe = jnp.where(rate > 0, rate, 1.0)
    newton = t[None, None, :] + jnp.where(rate > 0, gap / safe, 0.0)
    newton = jnp.clip(newton, low[None, None, :], high[None, None, :])
    if events.clock:
        newton = y[-1][None, None, :] + (newton - t[None, None, :]) * velocity[-1][None, None, :]
    return jnp.where(resolve, newton, jnp.inf)


def answered(ev) -> Array:
    """Per lane: every learning time it asks for is found."""
    return jnp.all(ev.found | ~ev.required, axis=(0, 1))


def after_attempt(events: Events, ev, accepted, pending, lanes, y1, f1, t_next, h):
    """Detect, aim at and polish the crossings of one step attempt of the lanes (steps 1-4 of
    the module docstring): ``(accepted, the lanes' learning-time state)``; a step that crossed
    a level is turned down."""
    p1 = events.lanes(y1, lanes.args)
    # every level is located (as the flow's loop does); `required` only decides when a lane
    # has answered
    newly = accepted[None, None, :] & ~ev.found & events.reached(p1)
    crossing = accepted & ~pending & jnp.any(newly, axis=(0, 1))
    landed = accepted & pending
    accepted = accepted & ~crossing
    inf = jnp.full_like(lanes.t, jnp.inf)

    def aim_crossed(_):
        return aim(events, newly & crossing[None, None, :], lanes.y, lanes.f0, ev.p, y1, f1, p1,
                   lanes.t, h, lanes.args)

    t_aim, aimed = jax.lax.cond(jnp.any(crossing), aim_crossed,
                                lambda _: (inf, jnp.zeros_like(newly)), None)
    resolve = landed[None, None, :] & (ev.aimed | newly)

    def polish_landed(_):
        return polish(events, resolve, y1, f1, p1, t_next, lanes.t, ev.high, lanes.args)

    located = jax.lax.cond(jnp.any(landed), polish_landed,
                           lambda _: jnp.full_like(ev.learning, jnp.inf), None)
    return accepted, eqx.tree_at(
        lambda e: (e.p, e.found, e.learning, e.t_aim, e.aimed, e.high), ev,
        (jnp.where(accepted, p1, ev.p), ev.found | resolve,
         jnp.where(resolve, located, ev.learning), jnp.where(crossing, t_aim, jnp.inf),
         aimed & crossing[None, None, :], jnp.where(crossing, t_next, ev.high)))


def check_required(events, required, y0, args, fixed):
    """``required`` as a ``(B, M, F)`` bool array (``None`` without events); a clear error for
    learning times with fixed steps or a ``required`` of the wrong shape."""
    if events is None:
        if required is not None:
            raise ValueError("required needs events (the learning times it selects)")
        return None
    if fixed:
        raise ValueError("learning times (events) need adaptive steps: leave dt unset")
    num = y0.shape[0]
    one = jax.tree.map(lambda leaf: leaf[0], args)
    modes = jax.eval_shape(events.progress, y0[0], one).shape
    shape = (num, *modes, np.shape(events.levels)[0])
    if required is None:
        return jnp.ones(shape, bool)
    if np.shape(required) != shape:
        raise ValueError(f"required must have shape (B, M, F) = {shape}, "
                         f"got {np.shape(required)}")
    return jnp.asarray(required, bool)
