"""Learning times and trajectories of the toy model: the time to reach a value, the value at a time.

Part of :mod:`jaxflow.oracles.theory`: :func:`learning_time` is the integral G scaled by
sigma*^-p (closed forms for N = 1, 2 and inf), :func:`solution` its exact inverse in t
(closed forms for N = 1 and 2, else a bisection and one differentiable Newton step).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from jaxflow import _x64
from jaxflow.oracles._theory_integral import (
    _g,
    _Point,
    _point_from_log_u,
    _point_from_logit,
    _point_from_sigma,
)
from jaxflow.oracles._theory_lanes import (
    _as_f64,
    _check_below_target,
    _check_depth,
    _check_target,
    _clean,
    _dispatch,
    _require,
)

# What the sibling modules (and the public face) import from this one.
__all__ = ["learning_time", "solution"]

_TAU_MAX = 1e250
"""Normalized times beyond this give u = 1 exactly; clamping keeps the bisection bracket finite."""
_SOLUTION_ITERS = 110


@jax.jit
def _learning_time(valid, depth, sigma_star, sigma0, sigma):
    depth, sigma_star, sigma0, sigma = _clean(
        valid, (depth, sigma_star, sigma0, sigma), (3.0, 1.0, 0.25, 0.5)
    )
    p = 1.0 - (2.0 / depth - 1.0)
    g = _g(depth, _point_from_sigma(sigma0, sigma_star), _point_from_sigma(sigma, sigma_star))
    return jnp.where(valid, jnp.exp(-p * jnp.log(sigma_star)) * g, jnp.nan)


@jax.jit
def _learning_time_from_log(valid, depth, sigma_star, log_sigma0, sigma):
    depth, sigma_star, log_sigma0, sigma = _clean(
        valid, (depth, sigma_star, log_sigma0, sigma), (3.0, 1.0, jnp.log(0.25), 0.5)
    )
    p = 1.0 - (2.0 / depth - 1.0)
    start = _point_from_log_u(log_sigma0 - jnp.log(sigma_star))
    g = _g(depth, start, _point_from_sigma(sigma, sigma_star))
    return jnp.where(valid, jnp.exp(-p * jnp.log(sigma_star)) * g, jnp.nan)


@_x64.needs_x64
def learning_time(
    depth: ArrayLike,
    sigma_star: ArrayLike,
    sigma0: ArrayLike,
    sigma: ArrayLike,
    *,
    log: bool = False,
) -> Float[Array, "..."]:
    """Time the depth-N flow takes to go from sigma0 to sigma (c = 1).

    T = int_{sigma0}^{sigma} ds / (s^p (sigma* - s)), p = 2 - 2/N. Against quadrature the
    relative error is below 1e-13 for sigma0 / sigma* from 1e-250 to 0.999 and sigma up to
    (1 - 1e-6) sigma*.

    Args:
        depth: N, real in [1, inf] (``jnp.inf`` gives p = 2).
        sigma_star: the target sigma* > 0.
        sigma0: initial value, in (0, sigma*).
        sigma: the value reached, in (0, sigma*). If sigma < sigma0 the flow never goes there
            and T is negative: minus the time from sigma to sigma0.
        log: ``sigma0`` is given as ``ln sigma0`` (any real below ``ln sigma*``), for starts
            below float64's range (static Python bool).

    Returns:
        T, float64, the broadcast shape of the arguments (``inf`` where it overflows).

    Raises:
        ValueError: for concrete arguments out of range or NaN (under ``jit`` such lanes give NaN).

    Example:
        >>> from jaxflow.oracles import theory
        >>> print(round(float(theory.learning_time(2.0, 1.0, 0.01, 0.5)), 6))  # ln 99
        4.59512
        >>> print(round(float(theory.learning_time(2.0, 1.0, -1e4, 0.5, log=True)), 6))
        10000.0

    Reference: Gissin et al. 2020, the toy model of section 3 (docs/science/toy-model.md).
    """
    depth, sigma_star, sigma0, sigma = _as_f64(
        depth=depth, sigma_star=sigma_star, sigma0=sigma0, sigma=sigma
    )
    valid = _check_depth(depth) & _check_target(sigma_star)
    valid = valid & _check_below_target("sigma", sigma, sigma_star)
    if log:
        valid = valid & _require(
            "sigma0", "(as ln sigma0) in (-inf, ln sigma_star)",
            lambda x, a: (x > -np.inf) & (x < jnp.log(a)), sigma0, sigma_star,
        )
        return _dispatch(_learning_time_from_log, valid, depth, sigma_star, sigma0, sigma)
    valid = valid & _check_below_target("sigma0", sigma0, sigma_star)
    return _dispatch(_learning_time, valid, depth, sigma_star, sigma0, sigma)


@jax.custom_jvp
def _divide(x, y):
    """x / y, with a derivative that stays finite when y^2 underflows (y ~ 1e-200)."""
    return x / y


@_divide.defjvp
def _divide_jvp(primals, tangents):
    (x, y), (dx, dy) = primals, tangents
    ratio = x / y
    # jax's own rule forms x y^-2; multiplying by 1/y never squares y.
    return ratio, (dx - ratio * dy) * (1.0 / y)


def _invert_g(depth, start: _Point, tau):
    """The logit z of u with G(u0 -> u) = tau, by bisection in asinh(z) (no gradient).

    dG/dz = u^q lies in [1/2, 2] above u = 1/2, so G(u0 -> 1/2) >= -2 max(z0, 0) and
    z = 2 tau + 4 max(z0, 0) + 1 is past the root. asinh spreads the bisection over both the
    logits near ln u0 (down to -700) and those of huge times (up to 1e250), and 110 halvings
    of that range reach float64 resolution.
    """
    z0 = start.log_u - start.log_v
    z_hi = 2.0 * tau + 4.0 * jnp.maximum(z0, 0.0) + 1.0

    def bisect(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        below = _g(depth, start, _point_from_logit(jnp.sinh(mid))) < tau
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    lo, hi = jax.lax.fori_loop(0, _SOLUTION_ITERS, bisect, (jnp.arcsinh(z0), jnp.arcsinh(z_hi)))
    return jnp.sinh(0.5 * (lo + hi))


@jax.jit
def _solution(valid, depth, sigma_star, sigma0, t):
    depth, sigma_star, sigma0, t = _clean(
        valid, (depth, sigma_star, sigma0, t), (3.0, 1.0, 0.25, 1.0)
    )
    q = 2.0 / depth - 1.0
    p = 1.0 - q
    tau = t * jnp.exp(p * jnp.log(sigma_star))
    start = _point_from_sigma(sigma0, sigma_star)

    # N = 1: v(tau) = v0 e^-tau, written as a sum of non-negative terms (no cancellation at t = 0).
    sigma_1 = sigma0 * jnp.exp(-tau) - sigma_star * jnp.expm1(-tau)
    # N = 2: the logistic sigma*/(1 + (1/u0 - 1) e^-tau) as sigma0/(u0 + v0 e^-tau): no overflow
    # for any tau, exact at t = 0 and t = inf.
    sigma_2 = _divide(sigma0, sigma0 / sigma_star + jnp.exp(start.log_v - tau))

    # Other N: bisection without gradient, then one Newton step in u at fixed (stopped) root,
    # u = u_r - (G(u0 -> u_r) - tau) u_r^p (1 - u_r); its derivatives are those of the implicit
    # function G(u0 -> u) = tau, and it also polishes the last bits of the bisection.
    tau_c = jnp.minimum(tau, _TAU_MAX)
    stop = jax.lax.stop_gradient
    root = stop(_point_from_logit(_invert_g(stop(depth), stop(start), stop(tau_c))))
    # Near the start, u0 e^(ln u_r - ln u0) is exact at t = 0, where e^(ln u_r) alone carries
    # the rounding of ln u0 (up to ~1e-13 relative for u0 ~ 1e-300).
    step = root.log_u - start.log_u
    near = sigma0 / sigma_star * jnp.exp(jnp.minimum(step, 1.0))
    u_root = stop(jnp.where(step < 1.0, near, jnp.exp(root.log_u)))
    residual = _g(depth, start, root) - tau_c
    # dG/du = u^-p / v, so the step is residual * u^p v = u * (residual * u^-q v); u^p alone
    # underflows for tiny u when p > 1, while residual ~ u0^q keeps the product of order 1.
    u = u_root * (1.0 - residual * jnp.exp(root.log_v - q * root.log_u))
    sigma_n = sigma_star * u

    out = jnp.where(depth == 1.0, sigma_1, jnp.where(depth == 2.0, sigma_2, sigma_n))
    return jnp.where(valid, out, jnp.nan)


@_x64.needs_x64
def solution(
    depth: ArrayLike, sigma_star: ArrayLike, sigma0: ArrayLike, t: ArrayLike
) -> Float[Array, "..."]:
    """The trajectory sigma(t) of the depth-N flow started at sigma0 (c = 1).

    Closed forms for N = 1 (exponential) and N = 2 (logistic); for other N the exact inverse of
    ``learning_time``, by bisection plus one Newton step (derivatives by the implicit function
    theorem, so ``jax.grad`` wrt t gives the vector field). Any t >= 0 works, including the
    plateau times above 1e20 of tiny sigma0, and t -> inf returns sigma* to float precision.

    Args:
        depth: N, real in [1, inf].
        sigma_star: the target sigma* > 0.
        sigma0: initial value, in (0, sigma*).
        t: time, >= 0 (may be ``inf``).

    Returns:
        sigma(t), float64, the broadcast shape of the arguments.

    Raises:
        ValueError: for concrete arguments out of range or NaN (under ``jit`` such lanes give NaN).

    Example:
        >>> from jaxflow.oracles import theory
        >>> print(round(float(theory.solution(3.0, 1.0, 1e-3, 20.0)), 6))
        0.026064

    Reference: Gissin et al. 2020, the toy model of section 3 (docs/science/toy-model.md).
    """
    depth, sigma_star, sigma0, t = _as_f64(depth=depth, sigma_star=sigma_star, sigma0=sigma0, t=t)
    valid = (
        _check_depth(depth)
        & _check_target(sigma_star)
        & _check_below_target("sigma0", sigma0, sigma_star)
        & _require("t", ">= 0", lambda t: t >= 0.0, t)
    )
    return _dispatch(_solution, valid, depth, sigma_star, sigma0, t)

