"""Analytic oracles for the depth-N toy model: learning times, trajectories, incremental thresholds.

The toy model (docs/science/toy-model.md, Gissin et al. 2020) is one scalar ODE per coordinate,

    d sigma / dt = sigma^p (sigma* - sigma),    p = 2 - 2/N,    q := 1 - p = 2/N - 1,

with the project's time convention c = 1. The depth N is any real number in [1, inf]; N = inf
means p = 2 (the exponential parametrization). Everything here is float64 and broadcasts over
all arguments; every function is safe under ``jax.jit``, ``jax.vmap`` and ``jax.grad``.

Numerical method
----------------
With u = sigma / sigma* the time from u0 to u1 is T = sigma*^(-p) G(u0 -> u1), where
G = integral of u^(-p) / (1 - u) du. No hypergeometric routine is used (they lose accuracy as
u -> 1). G is split at u = 1/2:

- below 1/2, the geometric series of 1/(1 - u) integrates term by term to
  sum_k (b^e - a^e)/e with e = k + q. Each difference is evaluated from the logarithms of the
  endpoints, b^e * ln(b/a) * exprel(-e ln(b/a)), so that sigma0 far below the float64 range
  (ln sigma0 = -1e6, as the depth-2 threshold search needs) neither underflows nor cancels, and
  e = 0 (N = 2, or N = inf at k = 1) is the limit ln(b/a) rather than 0/0;
- above 1/2, in v = 1 - u, G = ln(v_a/v_b) + sum_k c_k (v_a^k - v_b^k)/k with the binomial
  coefficients c_k = (p)_k / k! of (1 - v)^(-p); the logarithm carries the singularity at u = 1.

64 terms of each series reach double precision (ratio at most 1/2). N = 1, 2 and inf use their
closed forms. Endpoints are carried as (ln u, ln v), with v computed as (sigma* - sigma)/sigma*,
never 1 - u. ``solution`` inverts G by a fixed-count bisection in asinh(logit u) followed by one
differentiable Newton step; ``incremental_threshold`` bisects the margin in ln sigma0, again
followed by one Newton step. Those Newton steps make first derivatives exact (implicit function
theorem) while the bisection itself is never differentiated. The series terms carry a hand-written
derivative (the automatic one would cancel catastrophically when a^e >> b^e).

Eager calls are compiled once per lane-count class (16, 64, 256, ... lanes, padded), not once per
shape; under an outer ``jit`` or ``vmap`` the arguments pass through unchanged.

Invalid input
-------------
Called eagerly with concrete values, every function raises ``ValueError`` naming the offending
argument and its allowed range (NaN is always invalid). Under tracing (``jit``, ``vmap``,
``grad``) raising is impossible: invalid lanes return NaN instead, and are replaced by harmless
values before any arithmetic, so valid lanes are never NaN and their gradients stay finite.

Reference: D. Gissin, S. Shalev-Shwartz, A. Daniely, "The Implicit Bias of Depth: How Incremental
Learning Drives Generalization", ICLR 2020 (arXiv 1909.12051).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from jaxflow import _x64

__all__ = [
    "incremental_margin",
    "incremental_threshold",
    "learning_time",
    "solution",
    "threshold_asymptotic",
]

_TERMS = 64
"""Series terms on each side of u = 1/2: the terms shrink at least like 2^-k."""
_LOG_HALF = math.log(0.5)
_EXP_LIMIT = 650.0
"""Largest |q ln sigma0| the threshold search visits: u0^q stays below e^650, leaving room for
the 1/|q| and ln(1/u0) factors of the learning times before float64 overflows (e^709)."""
_X_FLOOR = 1e15
"""The threshold search never goes below ln sigma0 = -1e15 (N -> 2 from below), so 200
bisections still resolve the root to float64 precision."""
_TAU_MAX = 1e250
"""Normalized times beyond this give u = 1 exactly; clamping keeps the bisection bracket finite."""
_SOLUTION_ITERS = 110
_THRESHOLD_ITERS = 200


# --------------------------------------------------------------------------------------------
# Validation


def _is_traced(*args) -> bool:
    return any(isinstance(a, jax.core.Tracer) for a in args)


def _require(name: str, allowed: str, ok, *args):
    """The lanes where ``ok(*args)`` holds; raise if the arguments are concrete and one fails.

    ``ok`` uses comparisons only, so NaN always fails, and it works on numpy and jax arrays.
    The first of ``args`` is the argument named in the message.
    """
    good = ok(*args)
    if not _is_traced(*args) and not np.all(good):
        bad = np.broadcast_to(args[0], np.shape(good))[~good].ravel()[0]
        raise ValueError(f"{name} must be {allowed}; got {bad!r}")
    return good


def _check_depth(depth):
    return _require("depth", "in [1, inf]", lambda n: n >= 1.0, depth)


def _check_target(sigma_star):
    return _require("sigma_star", "in (0, inf)", lambda s: (s > 0.0) & (s < np.inf), sigma_star)


def _check_below_target(name, sigma, sigma_star):
    return _require(name, "in (0, sigma_star)", lambda s, a: (s > 0.0) & (s < a), sigma, sigma_star)


def _check_pair(ratio, start, finish):
    return (
        _require("ratio", "> 1 and finite", lambda r: (r > 1.0) & (r < np.inf), ratio)
        & _require("start", "in (0, 1)", lambda s: (s > 0.0) & (s < 1.0), start)
        & _require("finish", "in (start, 1)", lambda f, s: (f > s) & (f < 1.0), finish, start)
    )


def _as_f64(**named) -> list:
    """float64 arrays of one broadcast shape: numpy when all are concrete (validation then
    costs no compilation), jax otherwise. Wrong kinds (strings, complex, None) and shapes that
    do not broadcast raise, naming the arguments; so do empty arrays."""
    if _is_traced(*named.values()):
        return jnp.broadcast_arrays(*(jnp.asarray(a, dtype=jnp.float64) for a in named.values()))
    arrays = []
    for name, value in named.items():
        try:
            arr = np.asarray(value)
        except (TypeError, ValueError):
            arr = np.asarray(None)
        if arr.dtype.kind not in "iuf":
            raise TypeError(f"{name} must be a real number or an array of them; got {value!r}")
        if arr.size == 0:
            raise ValueError(f"{name} must not be empty; got {value!r}")
        arrays.append(arr.astype(np.float64))
    try:
        return np.broadcast_arrays(*arrays)
    except ValueError:
        shapes = ", ".join(f"{n} {a.shape}" for n, a in zip(named, arrays))
        raise ValueError(f"{', '.join(named)} must broadcast to one shape; got {shapes}") from None


def _dispatch(core, valid, *args) -> Float[Array, "..."]:
    """Run a jitted core. Concrete calls go flat and padded to 16, 64, 256, ... lanes, so that
    a notebook (or a test suite) compiles once per size class rather than once per shape; the
    padding lanes are invalid, hence cleaned, and dropped. Traced calls pass straight through.
    """
    if _is_traced(valid, *args):
        return core(valid, *args)
    shape = np.shape(valid)
    size = int(np.prod(shape))
    lanes = 16
    while lanes < size:
        lanes *= 4

    def pad(a, fill):
        return np.pad(np.ravel(a), (0, lanes - size), constant_values=fill)

    out = core(pad(valid, False), *(pad(a, 1.0) for a in args))
    return (out if size == lanes else out[:size]).reshape(shape)


def _clean(valid, args, safe):
    """Replace invalid lanes by safe values, so no NaN or inf reaches the arithmetic (or the
    gradients of the valid lanes, through broadcasting)."""
    return [jnp.where(valid, a, s) for a, s in zip(args, safe)]


# --------------------------------------------------------------------------------------------
# The integral G(u0 -> u1) = int u^-p / (1 - u) du


class _Point(NamedTuple):
    """An endpoint u in (0, 1), stored as ln u and ln v with v = 1 - u."""

    log_u: Array
    log_v: Array


def _point_from_sigma(sigma, sigma_star) -> _Point:
    # v from sigma* - sigma, not 1 - u: near sigma* that difference is exact, 1 - u is not.
    # Far from sigma*, ln v = log1p(-u) keeps its relative accuracy as u -> 0 (N = 1 needs it).
    u = sigma / sigma_star
    small = u < 0.5
    log_v = jnp.where(
        small,
        jnp.log1p(-jnp.where(small, u, 0.0)),
        jnp.log((sigma_star - sigma) / sigma_star),
    )
    return _Point(jnp.log(sigma) - jnp.log(sigma_star), log_v)


def _point_from_log_u(log_u) -> _Point:
    # ln(1 - e^x) without cancellation on either side of x = -ln 2.
    log_v = jnp.where(
        log_u < _LOG_HALF,
        jnp.log1p(-jnp.exp(jnp.minimum(log_u, _LOG_HALF))),
        jnp.log(-jnp.expm1(jnp.maximum(log_u, _LOG_HALF))),
    )
    return _Point(log_u, log_v)


def _point_from_logit(z) -> _Point:
    # Accurate for |z| up to 1e300: u = e^(-1e300) and v = e^(-1e300) stay representable as logs.
    return _Point(jax.nn.log_sigmoid(z), jax.nn.log_sigmoid(-z))


def _exprel(z):
    """expm1(z)/z with the limit 1 at z = 0, differentiable there (double-where)."""
    small = jnp.abs(z) < 1e-5
    z_safe = jnp.where(small, 1.0, z)
    return jnp.where(small, 1.0 + z * (0.5 + z / 6.0), jnp.expm1(z_safe) / z_safe)


def _ramp(z):
    """int_0^1 s e^(z s) ds for z <= 0: a series near 0 (the closed form cancels there)."""
    small = jnp.abs(z) < 0.1
    z_safe = jnp.where(small, -1.0, z)
    series = sum(z**n / (math.factorial(n) * (n + 2.0)) for n in range(10))
    return jnp.where(small, series, (jnp.exp(z_safe) * (z_safe - 1.0) + 1.0) / z_safe**2)


@jax.custom_jvp
def _power_difference(e, log_a, log_b):
    """(b^e - a^e)/e from ln a and ln b, for any sign of e and of ln(b/a); ln(b/a) at e = 0.

    Factoring out the larger of a^e, b^e leaves exprel of a non-positive number, which lies in
    (0, 1]: nothing overflows unless the result does, and close endpoints do not cancel.
    """
    log_ratio = log_b - log_a
    bounded = log_ratio * _exprel(-jnp.abs(e * log_ratio))
    return jnp.exp(jnp.maximum(e * log_a, e * log_b)) * bounded


@_power_difference.defjvp
def _power_difference_jvp(primals, tangents):
    # Differentiating the factored form above would recover b^e as the difference of two
    # terms of size a^e (catastrophic when a^e >> b^e); the derivatives in closed form do not.
    e, log_a, log_b = primals
    de, dla, dlb = tangents
    value = _power_difference(e, log_a, log_b)
    log_ratio = log_b - log_a
    # d/de int_{ln a}^{ln b} e^(e l) dl = L e^M int_0^1 (l_M + s (l_m - l_M)) e^(-w s) ds,
    # with l_M the endpoint of the larger e l, l_m the other one and w = |e L|.
    b_larger = e * log_ratio >= 0.0
    log_top = jnp.where(b_larger, log_b, log_a)
    toward_other = jnp.where(b_larger, -log_ratio, log_ratio)
    w = jnp.abs(e * log_ratio)
    d_e = (
        log_ratio
        * jnp.exp(e * log_top)
        * (log_top * _exprel(-w) + toward_other * _ramp(-w))
    )
    tangent = d_e * de + jnp.exp(e * log_b) * dlb - jnp.exp(e * log_a) * dla
    return value, tangent


def _g_lower(q, lo: _Point, hi: _Point):
    """The part of G over [min(u0, 1/2), min(u1, 1/2)]: sum_k (b^(k+q) - a^(k+q))/(k+q)."""
    log_a = jnp.minimum(lo.log_u, _LOG_HALF)[..., None]
    log_b = jnp.minimum(hi.log_u, _LOG_HALF)[..., None]
    e = jnp.arange(_TERMS, dtype=jnp.float64) + q[..., None]
    return jnp.sum(_power_difference(e, log_a, log_b), axis=-1)


_PARTIAL_SUMS = np.triu(np.ones((_TERMS - 1, _TERMS - 1)))


def _binomial_series(p):
    """c_k = (p)_k / k! for k = 1.._TERMS, as p prod_{j=2}^{k} (p + j - 1)/j.

    The products are sums of logarithms taken by one matrix product: a cumulative product
    compiles several times slower, and every factor here is >= 1/j > 0, so the logs are finite
    (also at p = 0, N = 1).
    """
    j = jnp.arange(2, _TERMS + 1, dtype=jnp.float64)
    log_factors = jnp.log((p[..., None] + (j - 1.0)) / j)
    rest = jnp.exp(log_factors @ _PARTIAL_SUMS)
    return p[..., None] * jnp.concatenate([jnp.ones_like(p)[..., None], rest], axis=-1)


def _g_upper(q, lo: _Point, hi: _Point):
    """The part of G over [max(u0, 1/2), max(u1, 1/2)], in v = 1 - u:
    ln(va/vb) + sum_k c_k (va^k - vb^k)/k, c_k = (p)_k / k!."""
    log_va = jnp.minimum(lo.log_v, _LOG_HALF)
    log_vb = jnp.minimum(hi.log_v, _LOG_HALF)
    k = jnp.arange(1, _TERMS + 1, dtype=jnp.float64)
    terms = _binomial_series(1.0 - q) * _power_difference(k, log_vb[..., None], log_va[..., None])
    return (log_va - log_vb) + jnp.sum(terms, axis=-1)


def _g(depth, lo: _Point, hi: _Point):
    """G(u0 -> u1) = int_{u0}^{u1} u^-p/(1 - u) du; negative when u1 < u0."""
    q = 2.0 / depth - 1.0
    series = _g_lower(q, lo, hi) + _g_upper(q, lo, hi)
    log_odds = (hi.log_u - lo.log_u) + (lo.log_v - hi.log_v)
    n1 = lo.log_v - hi.log_v
    is_inf = jnp.isinf(depth)
    # 1/u0 overflows for the tiny u0 of other depths' threshold searches; keep it finite there.
    inv_u0 = jnp.exp(-jnp.where(is_inf, lo.log_u, 0.0))
    inv_u1 = jnp.exp(-jnp.where(is_inf, hi.log_u, 0.0))
    n_inf = log_odds + (inv_u0 - inv_u1)
    return jnp.where(
        depth == 1.0, n1, jnp.where(depth == 2.0, log_odds, jnp.where(is_inf, n_inf, series))
    )


# --------------------------------------------------------------------------------------------
# learning_time and solution


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


# --------------------------------------------------------------------------------------------
# Incremental learning of a pair: margin and threshold (sigma*_j = 1, sigma*_i = ratio)


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


def _logit(u):
    return jnp.log(u) - jnp.log1p(-u)


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


def _f_series(q, u: _Point):
    """F(u) = sum_k u^(k+q)/(k+q), continued above u = 1/2 by the upper part of G."""
    log_w = jnp.minimum(u.log_u, _LOG_HALF)[..., None]
    e = jnp.arange(_TERMS, dtype=jnp.float64) + q[..., None]
    e = jnp.where(e == 0.0, 1.0, e)  # only N = 2 and N = inf have e = 0; they use closed forms
    lower = jnp.sum(jnp.exp(e * log_w) / e, axis=-1)
    half = _Point(jnp.full_like(q, _LOG_HALF), jnp.full_like(q, _LOG_HALF))
    return lower + _g_upper(q, half, u)


@jax.jit
def _log_threshold_asymptotic(valid, depth, ratio, start, finish):
    depth, ratio, start, finish = _clean(valid, (depth, ratio, start, finish), (3.0, 2.0, 0.1, 0.9))
    r, s, f = ratio, start, finish
    is_inf = jnp.isinf(depth)
    special = (depth == 1.0) | (depth == 2.0)
    q = jnp.where(special, -1.0 / 3.0, 2.0 / depth - 1.0)  # N = 1, 2: a harmless stand-in
    a, p = -q, 1.0 - q
    s_pt = _Point(jnp.log(s), jnp.log1p(-s))
    f_pt = _Point(jnp.log(f), jnp.log1p(-f))
    f_of_s = jnp.where(is_inf, -1.0 / s + _logit(s), _f_series(q, s_pt))
    f_of_f = jnp.where(is_inf, -1.0 / f + _logit(f), _f_series(q, f_pt))
    base = (r - 1.0) / (a * r * (jnp.exp(-p * jnp.log(r)) * f_of_f - f_of_s))
    general = jnp.where(base > 0.0, jnp.log(jnp.where(base > 0.0, base, 1.0)) / a, -jnp.inf)
    depth_2 = (r * _logit(s) - _logit(f) - jnp.log(r)) / (r - 1.0)
    x = jnp.where(depth == 1.0, -jnp.inf, jnp.where(depth == 2.0, depth_2, general))
    return jnp.where(valid, x, jnp.nan)


@_x64.needs_x64
def threshold_asymptotic(
    depth: ArrayLike,
    ratio: ArrayLike,
    start: ArrayLike = 0.1,
    finish: ArrayLike = 0.9,
    log: bool = False,
) -> Float[Array, "..."]:
    """Leading-order (sigma0 -> 0) threshold, the closed form of docs/science/incremental-learning.md.

    From margin ~ F(s) - r^-p F(f) + u0^-a (1 - 1/r)/a, a = (N - 2)/N:

    - N = 1: 0 (never incremental);
    - N = 2: ln sigma0_th = [r logit(s) - logit(f) - ln r]/(r - 1);
    - other N: sigma0_th = base^(1/a), base = (r - 1)/(a r (r^-p F(f) - F(s))), with
      F(u) = sum_{k>=0} u^(k+q)/(k+q) (N = inf: F(u) = -1/u + logit(u)); 0 where base <= 0
      (possible for 1 < N < 2).

    It tends to ``incremental_threshold`` as r -> 1 (relatively, in logarithms). Large finite N
    is not continuous with N = inf here (the dropped u0^(1+q)/(1+q) term is not small there).

    Args:
        depth: N, real in [1, inf].
        ratio: r = sigma*_i / sigma*_j > 1.
        start: fraction s of sigma*_j that marks the start of learning, 0 < s < finish.
        finish: fraction f of sigma*_i that marks the end of learning, start < f < 1.
        log: return ln sigma0_th instead (static Python bool); as for the exact threshold the
            plain N = 2 value underflows to 0.0 for r below ~1.006.

    Returns:
        sigma0_th (or its logarithm), float64, the broadcast shape of the arguments.

    Raises:
        ValueError: for concrete arguments out of range or NaN (under ``jit`` such lanes give NaN).

    Example:
        >>> from jaxflow.oracles import theory
        >>> print(round(float(theory.threshold_asymptotic(2.0, 1.5, log=True)), 4))
        -11.7971

    Reference: Gissin et al. 2020, section 3 (docs/science/incremental-learning.md).
    """
    depth, ratio, start, finish = _as_f64(depth=depth, ratio=ratio, start=start, finish=finish)
    valid = _check_depth(depth) & _check_pair(ratio, start, finish)
    x = _dispatch(_log_threshold_asymptotic, valid, depth, ratio, start, finish)
    return x if log else jnp.exp(x)
