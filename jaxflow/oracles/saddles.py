"""Plateaus and jumps of any trajectory: saddle-to-saddle dynamics measured from saved values.

From a small initialization, gradient flow (and descent) visits a sequence of saddles: long
*plateaus* on which the tracked values (coordinates, singular values, component norms, the
loss) barely move, separated by short *jumps*. This module reads that staircase off a saved
trajectory ``values(t_k)`` of shape ``(K, M)``, for one lane; ``jax.vmap`` it over lanes. It is
pure ``jax.numpy`` with fixed output shapes (at most ``max_plateaus`` plateaus), so it runs under
``jit`` and ``vmap`` and never stops early.

Definitions (``scale = max_k,m |values|``; every tolerance is relative to it):

* **Segments.** Walking forward in time, a segment starts at an *anchor* sample and goes on while
  every value stays within ``tol * scale`` of the anchor's; the first sample outside that box
  anchors the next segment. A drift never hides inside a segment (it is measured from the
  anchor, not sample to sample), so the result does not depend on how densely the grid samples
  a slow jump.
* **Plateau.** A segment lasting at least ``min_duration`` (flow time), joined with the next
  such segments while no value moves by more than ``tol * scale`` between their ends (an
  exponential approach to a saddle leaves its anchor box several times). Its *level* is the
  values at its last sample (the saddle the trajectory approached most closely), its *loss*
  the loss there, and its *active set* the values with ``|value| > active * scale``.
* **Jump.** The passage between consecutive plateaus ``j`` and ``j + 1``. The *jump time of a
  mode* is the first time, between the two plateaus, at which that mode crosses the midpoint of
  its two levels, ``(level_j + level_(j+1)) / 2``, located by linear interpolation between
  samples; NaN when the mode moved less than ``tol * scale``. The *jump time* is that of the mode
  that moved most. For a depth-2 mode rising from ~0 to its target, this is the time of half
  the target: the learning time at fraction 1/2 of :mod:`jaxflow.engine.flow`. The levels are known
  to within ``tol * scale`` (a plateau still drifts inside its box), so a jump time is exact up
  to about ``tol * scale / slope`` at the crossing, plus the error of linear interpolation where
  the grid is coarser than the jump.

Values that rise and fall again, change sign, or leave the active set are handled alike (each
jump has its own levels); so are rank increments (pass singular values) and loss drops (pass
``loss[:, None]`` as the values). A trajectory sampled exactly on a piecewise-linear staircase
gives its ramp midpoints back to rounding (tests/test_saddles.py).

Example (two ramps with midpoints t = 3 and t = 7):
    >>> import jax.numpy as jnp
    >>> from jaxflow.oracles import saddles
    >>> t = jnp.linspace(0.0, 10.0, 101)
    >>> ramp = lambda c: jnp.clip((t - c) / 0.5 + 0.5, 0.0, 1.0)
    >>> values = jnp.stack([2.0 * ramp(3.0), ramp(7.0)], axis=1)
    >>> st = saddles.detect(t, values, max_plateaus=4)
    >>> int(st.num_plateaus), [round(float(x), 9) for x in st.jump_times[:2]]
    (3, [3.0, 7.0])
    >>> st.active[:3].tolist()
    [[False, False], [True, False], [True, True]]
"""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int

__all__ = ["Staircase", "detect", "segments"]


class Staircase(eqx.Module):
    """Plateaus and jumps of one trajectory (add leading axes under ``vmap``).

    Slots past ``num_plateaus`` (or ``num_plateaus - 1`` for jumps) hold NaN (times, levels,
    losses) and False (active sets).

    Attributes:
        num_plateaus: plateaus found (at most ``P = max_plateaus``; more are dropped).
        plateau_start, plateau_end: ``(P,)`` flow times of each plateau's first and last sample.
        levels: ``(P, M)`` the values at each plateau's last sample.
        plateau_loss: ``(P,)`` the loss there (NaN if no loss was given).
        active: ``(P, M)`` ``|level| > active * scale``.
        jump_times: ``(P - 1,)`` time of jump ``j`` (from plateau ``j`` to ``j + 1``): the
            midpoint crossing of the mode that moved most.
        mode_jump_times: ``(P - 1, M)`` each mode's midpoint crossing in jump ``j`` (NaN if it
            did not move).
        scale: ``max |values|``, the unit of every tolerance.
    """

    num_plateaus: Int[Array, ""]
    plateau_start: Float[Array, " P"]
    plateau_end: Float[Array, " P"]
    levels: Float[Array, "P M"]
    plateau_loss: Float[Array, " P"]
    active: Bool[Array, "P M"]
    jump_times: Float[Array, " J"]
    mode_jump_times: Float[Array, "J M"]
    scale: Float[Array, ""]


def segments(values: Float[ArrayLike, "K M"], tol: Float[ArrayLike, ""]) -> Int[Array, " K"]:
    """Anchor index of the segment of every sample (module docstring), ``tol`` absolute.

    >>> import jax.numpy as jnp
    >>> segments(jnp.array([[0.0], [0.05], [0.2], [0.21], [1.0]]), 0.1).tolist()
    [0, 0, 2, 2, 4]
    """
    values = jnp.asarray(values, dtype=float)

    def step(carry, item):
        anchor, anchor_index = carry
        k, v = item
        # NaN is outside every box: a failed sample never joins a plateau.
        inside = jnp.all(jnp.abs(v - anchor) <= tol)
        anchor = jnp.where(inside, anchor, v)
        anchor_index = jnp.where(inside, anchor_index, k)
        return (anchor, anchor_index), anchor_index

    ks = jnp.arange(values.shape[0])
    _, anchors = jax.lax.scan(step, (values[0], jnp.asarray(0)), (ks, values))
    return anchors


def _crossings(times, values, first, last, before, after):
    """First linear-interpolated crossing of ``(before + after) / 2`` in samples first..last.

    ``first``, ``last``: scalars (sample indices); ``before``, ``after``: ``(M,)`` levels.
    Returns ``(M,)`` times (NaN if no crossing).
    """
    mid = 0.5 * (before + after)
    direction = jnp.sign(after - before)
    k = jnp.arange(times.shape[0] - 1)
    g = direction * (values - mid)  # increasing through 0 at the crossing
    g0, g1 = g[:-1], g[1:]
    window = (k >= first) & (k < last)
    hit = window[:, None] & (g0 < 0) & (g1 >= 0)
    index = jnp.argmax(hit, axis=0)
    found = jnp.any(hit, axis=0)
    a, b = g0[index, jnp.arange(g.shape[1])], g1[index, jnp.arange(g.shape[1])]
    theta = jnp.where(b > a, -a / jnp.where(b > a, b - a, 1.0), 0.0)
    t = times[index] + theta * (times[index + 1] - times[index])
    return jnp.where(found & (direction != 0), t, jnp.nan)


def detect(
    times: Float[ArrayLike, " K"],
    values: Float[ArrayLike, "K M"],
    loss: Float[ArrayLike, " K"] | None = None,
    *,
    tol: float = 1e-3,
    min_duration: Float[ArrayLike, ""] | None = None,
    active: float = 1e-2,
    max_plateaus: int = 8,
) -> Staircase:
    """Plateaus, jumps and active sets of one saved trajectory (definitions: module docstring).

    Args:
        times: ``(K,)`` increasing sample times (flow time ``t``, or any rescaled time).
        values: ``(K, M)`` tracked values at those times (signed coordinates, singular values,
            component norms; ``loss[:, None]`` to segment the loss itself).
        loss: optional ``(K,)`` loss, reported per plateau.
        tol: relative size of a plateau's box (and of the smallest move that counts).
        min_duration: shortest plateau, in the units of ``times``; default 2% of the time span.
        active: a value is active on a plateau when ``|level| > active * scale``.
        max_plateaus: ``P``, a static bound giving fixed output shapes.

    Returns:
        A :class:`Staircase`.

    Example (a coordinate that rises and falls again: three plateaus, two jumps):
        >>> import jax.numpy as jnp
        >>> t = jnp.linspace(0.0, 9.0, 91)
        >>> bump = jnp.clip(t - 2.5, 0, 1) - jnp.clip(t - 5.5, 0, 1)     # up at 3, down at 6
        >>> st = detect(t, bump[:, None], loss=1.0 - 0.5 * bump, max_plateaus=4)
        >>> [round(float(x), 9) for x in st.jump_times[:2]], st.active[:3, 0].tolist()
        ([3.0, 6.0], [False, True, False])
        >>> [float(x) for x in st.plateau_loss[:3]]
        [1.0, 0.5, 1.0]
    """
    times = jnp.asarray(times, dtype=float)
    values = jnp.asarray(values, dtype=float)
    if values.ndim != 2 or times.ndim != 1 or values.shape[0] != times.shape[0]:
        raise ValueError(
            f"times must have shape (K,) and values (K, M); got {times.shape} and {values.shape}"
        )
    if isinstance(max_plateaus, bool) or int(max_plateaus) != max_plateaus or max_plateaus < 2:
        raise ValueError(f"max_plateaus must be an integer >= 2, got {max_plateaus!r}")
    loss = jnp.full(times.shape, jnp.nan) if loss is None else jnp.asarray(loss, dtype=float)
    if min_duration is None:
        min_duration = 0.02 * (times[-1] - times[0])
    # One compiled program per shape: op by op, the scan and the gathers compile one by one.
    return _detect(
        times,
        values,
        loss,
        jnp.asarray(tol, dtype=float),
        jnp.asarray(min_duration, dtype=float),
        jnp.asarray(active, dtype=float),
        int(max_plateaus),
    )


@functools.partial(jax.jit, static_argnums=6)
def _detect(times, values, loss, tol, min_duration, active, max_plateaus) -> Staircase:
    num_samples = values.shape[0]
    scale = jnp.nanmax(jnp.abs(values))
    scale = jnp.where(scale > 0, scale, 1.0)

    anchors = segments(values, tol * scale)
    ks = jnp.arange(num_samples)
    # Last sample of each sample's segment: the segment of k ends where the next anchor begins.
    starts = anchors == ks
    next_start = jnp.flip(jax.lax.cummin(jnp.flip(jnp.where(starts, ks, num_samples))))
    following = jnp.concatenate([next_start[1:], jnp.array([num_samples])])
    end_index = following - 1  # meaningful at segment starts
    long_enough = times[jnp.minimum(end_index, num_samples - 1)] - times >= min_duration
    is_plateau = starts & long_enough
    # An exponential approach to a saddle splits its plateau into several long segments whose
    # levels differ by about tol: a candidate joins the previous one unless some value moved by
    # more than tol * scale between their ends.
    end_c = jnp.minimum(end_index, num_samples - 1)
    previous = jnp.concatenate(
        [jnp.array([-1]), jax.lax.cummax(jnp.where(is_plateau, ks, -1))[:-1]]
    )
    moved = jnp.max(jnp.abs(values[end_c] - values[end_c[jnp.maximum(previous, 0)]]), axis=1)
    new_plateau = is_plateau & ((previous < 0) | ~(moved <= tol * scale))
    group = jnp.where(is_plateau, jnp.cumsum(new_plateau) - 1, max_plateaus)
    (first,) = jnp.nonzero(new_plateau, size=max_plateaus, fill_value=num_samples)
    last = jax.ops.segment_max(jnp.where(is_plateau, end_c, -1), group, num_segments=max_plateaus)
    valid = first < num_samples
    first_c = jnp.minimum(first, num_samples - 1)
    last_c = jnp.clip(last, 0, num_samples - 1)
    levels = jnp.where(valid[:, None], values[last_c], jnp.nan)
    plateau_loss = jnp.where(valid, loss[last_c], jnp.nan)
    active_set = valid[:, None] & (jnp.abs(levels) > active * scale)

    def jump(j):
        before, after = levels[j], levels[j + 1]
        t = _crossings(times, values, last_c[j], first_c[j + 1], before, after)
        moved = jnp.abs(after - before) > tol * scale
        t = jnp.where(moved & valid[j + 1], t, jnp.nan)
        leading = jnp.argmax(jnp.where(moved, jnp.abs(after - before), -1.0))
        return t, t[leading]

    mode_jump_times, jump_times = jax.vmap(jump)(jnp.arange(max_plateaus - 1))
    return Staircase(
        num_plateaus=jnp.sum(valid),
        plateau_start=jnp.where(valid, times[first_c], jnp.nan),
        plateau_end=jnp.where(valid, times[last_c], jnp.nan),
        levels=levels,
        plateau_loss=plateau_loss,
        active=active_set,
        jump_times=jump_times,
        mode_jump_times=mode_jump_times,
        scale=scale,
    )
