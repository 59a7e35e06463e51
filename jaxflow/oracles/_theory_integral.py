"""The integral G(u0 -> u1) = int u^-p / (1 - u) du behind every learning time of the toy model.

Part of :mod:`jaxflow.oracles.theory`, whose docstring ("Numerical method") explains the method:
the endpoints are carried as (ln u, ln v) with v = 1 - u (:class:`_Point`), G is a series in u
below u = 1/2 and a logarithm plus a binomial series in v above it (:func:`_g`), and each term
(b^e - a^e)/e is formed from logarithms with a hand-written derivative
(:func:`_power_difference`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

# What the sibling modules (and the public face) import from this one.
__all__ = [
    "_LOG_HALF", "_TERMS", "_Point", "_g", "_g_upper", "_logit", "_point_from_log_u",
    "_point_from_logit", "_point_from_sigma",
]

_TERMS = 64
"""Series terms on each side of u = 1/2: the terms shrink at least like 2^-k."""
_LOG_HALF = math.log(0.5)


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



def _logit(u):
    return jnp.log(u) - jnp.log1p(-u)
