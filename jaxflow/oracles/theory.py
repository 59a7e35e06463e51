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

Where it lives
--------------
This module is the public face; each concept has a private module beside it:

- ``_theory_lanes``: argument checks (eager errors, NaN under tracing) and padded lane dispatch;
- ``_theory_integral``: the integral G from (ln u, ln v) endpoints, its two series;
- ``_theory_times``: :func:`learning_time` and its inverse :func:`solution`;
- ``_theory_thresholds``: :func:`incremental_margin` and the exact :func:`incremental_threshold`;
- ``_theory_asymptotic``: :func:`threshold_asymptotic`, the sigma0 -> 0 closed form.
"""

from jaxflow.oracles._theory_asymptotic import threshold_asymptotic as threshold_asymptotic
from jaxflow.oracles._theory_thresholds import incremental_margin as incremental_margin
from jaxflow.oracles._theory_thresholds import incremental_threshold as incremental_threshold
from jaxflow.oracles._theory_times import learning_time as learning_time
from jaxflow.oracles._theory_times import solution as solution

__all__ = [
    "incremental_margin",
    "incremental_threshold",
    "learning_time",
    "solution",
    "threshold_asymptotic",
]

# The functions are defined beside this module but belong to it: ``help()``, pickling and
# ``doctest.testmod(theory)`` (which skips functions of other modules) see them as its own.
for _function in (incremental_margin, incremental_threshold, learning_time, solution,
                  threshold_asymptotic):
    _function.__module__ = __name__
del _function
