"""The leading-order (sigma0 -> 0) threshold of incremental learning, in closed form.

Part of :mod:`jaxflow.oracles.theory`: the limit of the margin as sigma0 -> 0, solved for
sigma0 (docs/science/incremental-learning.md); the exact threshold tends to it as the ratio of
the targets tends to 1.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from jaxflow import _x64
from jaxflow.oracles._theory_integral import _LOG_HALF, _TERMS, _g_upper, _logit, _Point
from jaxflow.oracles._theory_lanes import _as_f64, _check_depth, _check_pair, _clean, _dispatch

# What the sibling modules (and the public face) import from this one.
__all__ = ["threshold_asymptotic"]


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
