"""Illinois regula falsi: the one bracketing root finder of jaxflow (flow events, thresholds).

A root of a monotone scalar function inside a known bracket, located with a *fixed* number of
iterations, so that it runs inside vmapped loops (every lane does the same work) and inside
``jit`` (no data-dependent stopping). Regula falsi never leaves the bracket; the Illinois
modification (halve the stale end's value when the same end is kept twice) makes it
superlinear, so 14 iterations on a smooth function reach far past 1e-14.

Used by :mod:`jaxflow.engine.flow` to place learning times and saves on a step's dense interpolant, and
by the phase diagram to refine thresholds in ``ln sigma0`` on fresh simulations (there each
evaluation of ``g`` is a batch of flows).

Example (the cube root of 2 in [1, 2]):
    >>> import jax.numpy as jnp
    >>> from jaxflow.engine.regula_falsi import illinois
    >>> root = illinois(lambda x: x**3 - 2.0, jnp.asarray(1.0), jnp.asarray(2.0),
    ...                 jnp.asarray(-1.0), jnp.asarray(6.0))
    >>> round(float(root), 12)
    1.259921049895
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

__all__ = ["illinois", "illinois_step", "secant_point"]

ITERATIONS = 14


def _namespace(*arrays):
    """``jax.numpy`` for JAX arrays and tracers (flow events), NumPy for host arrays.

    The phase diagram drives the iteration from the host on NumPy arrays whose length shrinks
    as thresholds converge: run op by op through ``jax.numpy``, every new length compiled each
    small operation again (measured: ~80 compiles, 1.8 s of the default phase diagram's 10 s).
    """
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def _secant(lo, hi, glo, ghi):
    xp = _namespace(lo, hi, glo, ghi)
    denom = ghi - glo
    with np.errstate(invalid="ignore", divide="ignore"):  # NaN brackets (not found) stay NaN
        return xp.where(denom > 0, (lo * ghi - hi * glo) / xp.where(denom > 0, denom, 1.0), lo)


def illinois_step(lo, hi, glo, ghi, side, theta, gtheta):
    """Shrink the bracket ``[lo, hi]`` (``g(lo) < 0 <= g(hi)``) with the trial point ``theta``.

    Returns the new ``(lo, hi, glo, ghi, side)``; the next trial point is
    :func:`secant_point` of them. Split out so that a caller whose ``g`` is expensive and
    batched (the phase diagram's thresholds) can drive the same iteration from outside.
    """
    xp = _namespace(lo, hi, glo, ghi, side, theta, gtheta)
    below = gtheta < 0
    lo, glo_new = xp.where(below, theta, lo), xp.where(below, gtheta, glo)
    hi, ghi_new = xp.where(below, hi, theta), xp.where(below, ghi, gtheta)
    # Illinois: halve the stale end's value when the same end is kept twice.
    ghi_new = xp.where(below & (side < 0), 0.5 * ghi_new, ghi_new)
    glo_new = xp.where(~below & (side > 0), 0.5 * glo_new, glo_new)
    return lo, hi, glo_new, ghi_new, xp.where(below, -1, 1)


def secant_point(lo, hi, glo, ghi):
    """The next trial point of the bracket, clipped into it."""
    xp = _namespace(lo, hi, glo, ghi)
    with np.errstate(invalid="ignore"):
        return xp.clip(_secant(lo, hi, glo, ghi), xp.minimum(lo, hi), xp.maximum(lo, hi))


def illinois(
    g: Callable[[Array], Array], lo: Array, hi: Array, g_lo: Array, g_hi: Array,
    iterations: int = ITERATIONS,
) -> Array:
    """Root of an increasing scalar function ``g`` on ``[lo, hi]`` with ``g(lo) < 0 <= g(hi)``.

    Args:
        g: the function (traced; called ``iterations`` times).
        lo, hi: the bracket; ``g_lo``, ``g_hi``: ``g`` at its ends.
        iterations: fixed iteration count (static).

    Returns:
        The final secant point of the bracket.
    """

    def body(_, carry):
        lo_, hi_, glo, ghi, side = carry
        theta = secant_point(lo_, hi_, glo, ghi)
        return illinois_step(lo_, hi_, glo, ghi, side, theta, g(theta))

    init = (lo, hi, g_lo, g_hi, jnp.asarray(0))
    lo, hi, glo, ghi, _ = jax.lax.fori_loop(0, iterations, body, init)
    return _secant(lo, hi, glo, ghi)
