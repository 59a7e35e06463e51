"""Incremental learning of a pair of targets: the margin and the exact threshold sigma0_th.

Part of :mod:`jaxflow.oracles.theory`: the margin T_j(start) - T_i(finish * ratio) of a pair
(sigma*_j = 1, sigma*_i = ratio) from the integral G, and its root in ln sigma0, found by
bisection followed by one Newton step that carries the derivatives.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from jaxflow import _x64
from jaxflow.oracles._theory_integral import (
    _g,
    _logit,
    _Point,
    _point_from_log_u,
    _point_from_sigma,
)
from jaxflow.oracles._theory_lanes import (
    _as_f64,
    _check_depth,
    _check_pair,
    _clean,
    _dispatch,
    _require,
)

# What the sibling modules (and the public face) import from this one.
__all__ = ["incremental_margin", "incremental_threshold"]

_EXP_LIMIT = 650.0
"""Largest |q ln sigma0| the threshold search visits: u0^q stays below e^650, leaving room for
the 1/|q| and ln(1/u0) factors of the learning times before float64 overflows (e^709)."""
_X_FLOOR = 1e15
"""The threshold search never goes below ln sigma0 = -1e15 (N -> 2 from below), so 200
bisections still resolve the root to float64 precision."""
_THRESHOLD_ITERS = 200


def _margin(depth, ratio, start, finish, j0: _Point, i0: _Point):
    """T_j(start) - T_i(finish * ratio) from the two (normalized) initial points."""
    p = 1.0 - (2.0 / depth - 1.0)
    # Both integrals in one call of _g, stacked on a leading axis: half the program to compile.
    lo = _Point(jnp.stack([j0.log_u, i0.log_u]), jnp.stack([j0.log_v, i0.log_v]))
    hi = _Point(jnp.log(jnp.stack([start, finish])), jnp.log1p(-jnp.stack([start, finish])))
    t_j, t_i = _g(depth, lo, hi)
    return t_j - jnp.exp(-p * jnp.log(ratio)) * t_i


def _margin_at(x, depth, ratio, start, finish):
    """The margin as a function of x = ln sigma0; never exponentiates x itself."""
    j0 = _point_from_log_u(x)
    i0 = _point_from_log_u(x - jnp.log(ratio))
    return _margin(depth, ratio, start, finish, j0, i0)


@jax.jit
def _incremental_margin(valid, depth, ratio, sigma0, start, finish):
    depth, ratio, sigma0, start, finish = _clean(
        valid, (depth, ratio, sigma0, start, finish), (3.0, 2.0, 0.01, 0.1, 0.9)
    )
    j0 = _point_from_sigma(sigma0, 1.0)
    i0 = _point_from_sigma(sigma0, ratio)
    return jnp.where(valid, _margin(depth, ratio, start, finish, j0, i0), jnp.nan)


@_x64.needs_x64
def incremental_margin(
    depth: ArrayLike,
    ratio: ArrayLike,
    sigma0: ArrayLike,
    start: ArrayLike = 0.1,
    finish: ArrayLike = 0.9,
) -> Float[Array, "..."]:
    """Margin T_j(start) - T_i(finish * ratio) of a pair sigma*_j = 1, sigma*_i = ratio.

    Both coordinates start at sigma0. The pair is (start, finish)-incremental (the larger target
    is learned to ``finish`` before the smaller one reaches ``start``) iff the margin is >= 0.
    The margin is in time units of c = 1 and sigma*_j = 1.

    Args:
        depth: N, real in [1, inf].
        ratio: r = sigma*_i / sigma*_j > 1.
        sigma0: common initial value, in (0, 1) (relative to sigma*_j).
        start: fraction s of sigma*_j that marks the start of learning, 0 < s < finish.
        finish: fraction f of sigma*_i that marks the end of learning, start < f < 1.

    Returns:
        The margin, float64, the broadcast shape of the arguments.

    Raises:
        ValueError: for concrete arguments out of range or NaN (under ``jit`` such lanes give NaN).

    Example:
        >>> from jaxflow.oracles import theory
        >>> print(round(float(theory.incremental_margin(3.0, 2.0, 1e-6)), 4))
        143.9125

    Reference: Gissin et al. 2020, section 3 (docs/science/incremental-learning.md).
    """
    depth, ratio, sigma0, start, finish = _as_f64(
        depth=depth, ratio=ratio, sigma0=sigma0, start=start, finish=finish
    )
    valid = (
        _check_depth(depth)
        & _check_pair(ratio, start, finish)
        & _require("sigma0", "in (0, 1) (sigma*_j = 1)", lambda s: (s > 0.0) & (s < 1.0), sigma0)
    )
    return _dispatch(_incremental_margin, valid, depth, ratio, sigma0, start, finish)


@jax.jit
def _log_threshold(valid, depth, ratio, start, finish):
    depth, ratio, start, finish = _clean(valid, (depth, ratio, start, finish), (3.0, 2.0, 0.1, 0.9))
    stop = jax.lax.stop_gradient
    args = (depth, ratio, start, finish)
    fixed = [stop(a) for a in args]
    q = 2.0 / fixed[0] - 1.0
    r, s, f = fixed[1:]

    # Bracket [x_lo, ln s]: the margin is < 0 at sigma0 = s (T_j = 0). Below 2 the search can
    # go as deep as |q x| = 650 allows; above 2 it need not pass the depth-2 threshold (which
    # K2 bounds, and thresholds increase with N).
    x_hi = jnp.log(s)
    k2 = 2.0 * (r * jnp.abs(_logit(s)) + jnp.abs(_logit(f)) + jnp.log(r) + 1.0) / (r - 1.0) + 50.0
    abs_q = jnp.abs(q)
    x_exp = jnp.where(abs_q > 0.0, _EXP_LIMIT / jnp.where(abs_q > 0.0, abs_q, 1.0), jnp.inf)
    x_lo = jnp.where(q > 0.0, -jnp.minimum(x_exp, _X_FLOOR), -jnp.minimum(x_exp, k2))

    def bisect(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        positive = _margin_at(mid, *fixed) > 0.0
        return jnp.where(positive, mid, lo), jnp.where(positive, hi, mid)

    lo, hi = jax.lax.fori_loop(0, _THRESHOLD_ITERS, bisect, (x_lo, x_hi))
    # The margin decreases in x, so the lower end moves iff the margin is positive at x_lo:
    # a threshold exists exactly then.
    exists = (lo > x_lo) & (fixed[0] > 1.0)
    # One Newton step at the stopped root carries the derivatives (implicit function theorem).
    # Lanes without a threshold take a harmless point so that their unused branch stays finite.
    x_root = jnp.where(exists, 0.5 * (lo + hi), x_hi - 1.0)
    margin, slope = jax.jvp(lambda x: _margin_at(x, *args), (x_root,), (jnp.ones_like(x_root),))
    slope = jnp.where(exists & (slope < 0.0), slope, -1.0)
    x = jnp.where(exists, x_root - margin / slope, -jnp.inf)
    return jnp.where(valid, x, jnp.nan)


@_x64.needs_x64
def incremental_threshold(
    depth: ArrayLike,
    ratio: ArrayLike,
    start: ArrayLike = 0.1,
    finish: ArrayLike = 0.9,
    log: bool = False,
) -> Float[Array, "..."]:
    """Largest initialization sigma0_th for which the pair (1, ratio) learns incrementally.

    The exact root of ``incremental_margin`` in ln sigma0 (sigma*_j = 1; for another sigma*_j
    multiply by it: the threshold is linear in sigma*_j and depends on sigma*_i only through
    the ratio). The pair is incremental iff sigma0 <= sigma0_th.

    There is no threshold (0 is returned; -inf with ``log=True``) for N = 1, and for 1 < N < 2
    when the sigma0 -> 0 limit of the margin is <= 0 (thresholds below e^(-650/q) or
    e^(-1e15) are also reported as absent). For N = 2 the threshold is exponentially small in
    1/(r - 1): the plain value is subnormal (fewer digits) below r ~ 1.0065 and underflows to
    0.0 below r ~ 1.006, while ``log=True`` stays exact (ln sigma0_th ~ -4.4e4 at r = 1.0001).

    Args:
        depth: N, real in [1, inf].
        ratio: r = sigma*_i / sigma*_j > 1.
        start: fraction s of sigma*_j that marks the start of learning, 0 < s < finish.
        finish: fraction f of sigma*_i that marks the end of learning, start < f < 1.
        log: return ln sigma0_th instead (static Python bool).

    Returns:
        sigma0_th (or its logarithm), float64, the broadcast shape of the arguments.

    Raises:
        ValueError: for concrete arguments out of range or NaN (under ``jit`` such lanes give NaN).

    Example:
        >>> from jaxflow.oracles import theory
        >>> print(f"{float(theory.incremental_threshold(3.0, 2.0)):.4e}")
        1.4476e-02
        >>> print(round(float(theory.incremental_threshold(2.0, 1.0001, log=True))))
        -43948

    Reference: Gissin et al. 2020, section 3 (docs/science/incremental-learning.md).
    """
    depth, ratio, start, finish = _as_f64(depth=depth, ratio=ratio, start=start, finish=finish)
    valid = _check_depth(depth) & _check_pair(ratio, start, finish)
    x = _dispatch(_log_threshold, valid, depth, ratio, start, finish)
    return x if log else jnp.exp(x)

