"""Tests of jaxflow.oracles.theory against independent quadrature, closed forms, limits and invariants."""

import doctest
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad

from jaxflow.oracles import theory

DEPTHS = [1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 7.0, 20.0, math.inf]


def vector_field(depth, sigma_star, sigma):
    p = 2.0 - 2.0 / depth
    return sigma**p * (sigma_star - sigma)


def quad_time(depth, sigma_star, sigma0, sigma):
    """Learning time by scipy quadrature in ln sigma, independent of theory.py.

    dt = sigma^q / (sigma* - sigma) d(ln sigma), integrated in y = ln sigma_end - ln sigma so
    that sigma* - sigma = (sigma* - sigma_end) - sigma_end expm1(-y) keeps its relative accuracy
    next to the singularity at sigma*. Pieces: geometric towards sigma*, then 4 units of ln sigma.
    """
    q = -1.0 if math.isinf(depth) else 2.0 / depth - 1.0
    gap = sigma_star - sigma

    def integrand(y):
        return math.exp(-q * y) / (gap - sigma * math.expm1(-y))

    length = math.log(sigma) - math.log(sigma0)
    near = [gap / sigma * (2.0**k - 1.0) for k in range(1, 80)]
    cuts = [c for c in near if c < 1.0] + list(np.arange(1.0, length, 4.0))
    edges = [0.0] + [c for c in cuts if 0.0 < c < length] + [length]
    total = sum(
        quad(integrand, a, b, epsabs=0.0, epsrel=1e-13, limit=200)[0]
        for a, b in zip(edges[:-1], edges[1:])
    )
    return sigma**q * total


def random_points(seed, per_depth):
    """sigma* in [0.1, 10], sigma0/sigma* log-uniform in [1e-250, 0.999], sigma above sigma0 up to
    (1 - 1e-6) sigma*: a third log-uniform in sigma, a third log-uniform in sigma* - sigma, and
    a third within a factor 100 of sigma0 (the plateau, where deep models spend their time)."""
    rng = np.random.default_rng(seed)
    depth = np.repeat(DEPTHS, per_depth)
    n = depth.size
    sigma_star = 10.0 ** rng.uniform(-1.0, 1.0, n)
    u0 = 10.0 ** rng.uniform(-250.0, np.log10(0.999), n)
    u_log = 10.0 ** rng.uniform(np.log10(u0), np.log10(1.0 - 1e-6))
    u_gap = 1.0 - 10.0 ** rng.uniform(-6.0, np.log10(1.0 - u0))
    u_near = np.minimum(u0 * 10.0 ** rng.uniform(0.0, 2.0, n), u_log)
    u = np.choose(rng.integers(0, 3, n), [u_log, u_gap, u_near])
    return depth, sigma_star, u0 * sigma_star, u * sigma_star


# ---------------------------------------------------------------------------------------------
# learning_time


def test_learning_time_matches_quadrature():
    depth, sigma_star, sigma0, sigma = random_points(seed=0, per_depth=24)
    assert depth.size >= 200
    expected = np.array([quad_time(*row) for row in zip(depth, sigma_star, sigma0, sigma)])
    got = np.asarray(theory.learning_time(depth, sigma_star, sigma0, sigma))
    rel = np.abs(got - expected) / expected
    assert rel.max() <= 1e-10, (rel.max(), depth[rel.argmax()])


def test_closed_forms_match_paper_formulas():
    sigma_star, sigma0, sigma = 2.0, np.array([1e-3, 0.3, 1.9]), np.array([1.5, 1.0, 1.99])
    log_odds = np.log(sigma * (sigma_star - sigma0) / (sigma0 * (sigma_star - sigma)))
    expected = {
        1.0: np.log((sigma_star - sigma0) / (sigma_star - sigma)),
        2.0: log_odds / sigma_star,
        math.inf: log_odds / sigma_star**2 + (1.0 / sigma0 - 1.0 / sigma) / sigma_star,
    }
    for depth, value in expected.items():
        got = theory.learning_time(depth, sigma_star, sigma0, sigma)
        np.testing.assert_allclose(got, value, rtol=1e-13)


@pytest.mark.parametrize(
    "depth, nearby",
    [(1.0, 1.0 + 1e-9), (2.0, 2.0 + 1e-9), (2.0, 2.0 - 1e-9), (math.inf, 1e9)],
)
def test_closed_forms_continue_the_series(depth, nearby):
    sigma0 = np.array([1e-200, 1e-30, 1e-3, 0.4, 0.7])
    sigma = np.array([0.3, 0.9, 0.6, 0.999999, 0.75])
    exact = theory.learning_time(depth, 1.0, sigma0, sigma)
    series = theory.learning_time(nearby, 1.0, sigma0, sigma)
    np.testing.assert_allclose(series, exact, rtol=1e-6)


def test_learning_time_is_negative_backwards():
    forward = theory.learning_time(3.0, 1.0, 1e-4, 0.8)
    np.testing.assert_allclose(theory.learning_time(3.0, 1.0, 0.8, 1e-4), -forward, rtol=1e-14)


# ---------------------------------------------------------------------------------------------
# solution


def test_solution_inverts_learning_time():
    depth, sigma_star, sigma0, sigma = random_points(seed=1, per_depth=24)
    t = np.asarray(theory.learning_time(depth, sigma_star, sigma0, sigma))
    # Keep the well-conditioned points: an error e in t moves sigma by f(sigma) t e / sigma
    # relatively, which reaches 1e200 on long plateaus (every sigma there shares one t).
    q = 2.0 / depth - 1.0
    with np.errstate(over="ignore"):
        conditioning = sigma ** (-q) * (sigma_star - sigma) * t  # f(sigma) t / sigma, no underflow
    keep = conditioning <= 1e3
    assert keep.sum() >= 100 and set(depth[keep]) == set(DEPTHS)
    back = theory.solution(depth[keep], sigma_star[keep], sigma0[keep], t[keep])
    np.testing.assert_allclose(back, sigma[keep], rtol=1e-12)


def test_solution_after_plateaus_longer_than_1e20():
    depth = np.array([2.5, 3.0, 4.0, 7.0, 20.0, math.inf])
    sigma0 = np.full(depth.shape, 1e-200)
    t = theory.learning_time(depth, 1.0, sigma0, 3.0 * sigma0)
    assert np.all(np.asarray(t) > 1e20)
    np.testing.assert_allclose(theory.solution(depth, 1.0, sigma0, t), 3.0 * sigma0, rtol=1e-12)


@pytest.mark.parametrize("t", [1e25, 1e300, math.inf])
def test_solution_reaches_the_target(t):
    depth = np.array(DEPTHS)
    np.testing.assert_allclose(theory.solution(depth, 3.0, 1e-5, t), 3.0, rtol=1e-15)


def test_solution_starts_at_sigma0():
    depth, sigma_star, sigma0, _ = random_points(seed=2, per_depth=10)
    np.testing.assert_allclose(theory.solution(depth, sigma_star, sigma0, 0.0), sigma0, rtol=1e-14)


def test_solution_time_derivative_is_the_vector_field():
    depth, sigma_star, sigma0, _ = random_points(seed=3, per_depth=1)
    sigma0 = np.maximum(sigma0, 1e-100 * sigma_star)  # so that the reference f does not underflow
    # inside the climb, where the reference has no cancellation in sigma* - sigma
    t = 0.7 * np.asarray(theory.learning_time(depth, sigma_star, sigma0, 0.9 * sigma_star))
    rate = jax.vmap(jax.grad(theory.solution, argnums=3))(depth, sigma_star, sigma0, t)
    sigma = theory.solution(depth, sigma_star, sigma0, t)
    np.testing.assert_allclose(rate, vector_field(depth, sigma_star, np.asarray(sigma)), rtol=1e-10)


# ---------------------------------------------------------------------------------------------
# incremental_margin and incremental_threshold


def test_margin_is_the_difference_of_learning_times():
    depth, ratio, sigma0 = np.array(DEPTHS), 1.7, 1e-4
    expected = theory.learning_time(depth, 1.0, sigma0, 0.2) - theory.learning_time(
        depth, ratio, sigma0, 0.8 * ratio
    )
    got = theory.incremental_margin(depth, ratio, sigma0, start=0.2, finish=0.8)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


THRESHOLD_DEPTHS = np.array([1.5, 2.0, 2.5, 3.0, 4.0, 7.0, math.inf])


@pytest.mark.parametrize("ratio", [1.5, 12.0])
def test_threshold_is_the_root_of_the_margin(ratio):
    threshold = np.asarray(theory.incremental_threshold(THRESHOLD_DEPTHS, ratio))
    if ratio == 1.5:  # depth 1.5 learns the pair incrementally only for large ratios
        assert threshold[0] == 0.0
    keep = threshold > 0.0
    depth, threshold = THRESHOLD_DEPTHS[keep], threshold[keep]
    scale = theory.learning_time(depth, 1.0, threshold, 0.1)
    margin = theory.incremental_margin(depth, ratio, threshold)
    assert np.all(np.abs(margin) <= 1e-8 * scale)
    assert np.all(np.asarray(theory.incremental_margin(depth, ratio, 0.99 * threshold)) > 0.0)
    assert np.all(np.asarray(theory.incremental_margin(depth, ratio, 1.01 * threshold)) < 0.0)


def test_threshold_is_linear_in_the_smaller_target():
    depth, ratio, start, finish = np.array([2.0, 3.0, math.inf]), 2.0, 0.1, 0.9
    threshold = np.asarray(theory.incremental_threshold(depth, ratio))
    for scale in (1e-3, 7.0):
        def margin(sigma0):
            t_j = theory.learning_time(depth, scale, sigma0, start * scale)
            t_i = theory.learning_time(depth, ratio * scale, sigma0, finish * ratio * scale)
            return np.asarray(t_j - t_i), np.asarray(t_j)

        at, size = margin(scale * threshold)
        assert np.all(np.abs(at) <= 1e-8 * size)
        assert np.all(margin(0.99 * scale * threshold)[0] > 0.0)
        assert np.all(margin(1.01 * scale * threshold)[0] < 0.0)


def test_threshold_increases_with_depth_and_ratio():
    depth = np.array([1.0, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 7.0, 20.0, math.inf])[:, None]
    ratio = np.array([1.01, 1.1, 1.5, 2.0, 4.0, 10.0, 100.0])
    # One ratio at a time: 10 depths fill the 16-lane program the other tests compiled (the
    # whole 10 x 7 grid would compile a 256-lane one); lanes are independent.
    log_threshold = np.stack(
        [np.asarray(theory.incremental_threshold(depth[:, 0], r, log=True)) for r in ratio], axis=1
    )
    assert np.all(np.isneginf(log_threshold[0]))  # depth 1: never incremental
    assert np.isfinite(log_threshold[1, -1]) and np.isneginf(log_threshold[1, 0])
    assert np.all(np.isfinite(log_threshold[3:]))
    for along_depth in (True, False):
        low = log_threshold[:-1] if along_depth else log_threshold[:, :-1]
        high = log_threshold[1:] if along_depth else log_threshold[:, 1:]
        assert np.all(np.where(np.isfinite(low), high > low, high >= low))  # -inf: none yet
    # continuous through the closed form at depth 2
    near = theory.incremental_threshold(np.array([[2.0 - 1e-9], [2.0 + 1e-9]]), ratio, log=True)
    np.testing.assert_allclose(near, log_threshold[[3, 3]], rtol=1e-6)


def test_depth_one_has_no_threshold():
    ratio = np.array([1.001, 2.0, 1e6])
    assert np.all(np.asarray(theory.incremental_threshold(1.0, ratio)) == 0.0)
    assert np.all(np.isneginf(theory.incremental_threshold(1.0, ratio, log=True)))
    assert np.all(np.asarray(theory.threshold_asymptotic(1.0, ratio)) == 0.0)


def test_log_threshold_is_consistent_with_plain():
    depth = np.array([1.5, 2.0, 3.0, 4.0, math.inf])
    for ratio in (1.3, 20.0):
        plain = theory.incremental_threshold(depth, ratio)
        np.testing.assert_allclose(
            jnp.exp(theory.incremental_threshold(depth, ratio, log=True)), plain, rtol=1e-14
        )


def test_depth_two_threshold_underflows_but_its_log_does_not():
    assert float(theory.incremental_threshold(2.0, 1.001)) == 0.0
    log_threshold = float(theory.incremental_threshold(2.0, 1.001, log=True))
    assert np.isfinite(log_threshold) and -5000.0 < log_threshold < -4000.0
    deeper = float(theory.incremental_threshold(2.0, 1.0001, log=True))
    assert -4.5e4 < deeper < -4.3e4


def test_depth_two_threshold_is_exponentially_small():
    ratio, start, finish = 1.0 + 1e-6, 0.1, 0.9
    log_threshold = theory.incremental_threshold(2.0, ratio, start, finish, log=True)
    limit = math.log(start / (1.0 - start)) - math.log(finish / (1.0 - finish))
    np.testing.assert_allclose((ratio - 1.0) * log_threshold, limit, rtol=1e-4)


def test_deeper_thresholds_are_polynomially_small():
    depth = np.array([3.0, 4.0, 7.0, 20.0])
    gaps = np.array([[1e-6], [1e-7]])
    log_threshold = np.asarray(theory.incremental_threshold(depth, 1.0 + gaps, log=True))
    slope = (log_threshold[0] - log_threshold[1]) / math.log(10.0)
    np.testing.assert_allclose(slope, depth / (depth - 2.0), atol=1e-3)


def test_asymptotic_threshold_is_the_small_ratio_limit():
    depth = np.array([1.5, 2.0, 2.5, 3.0, 4.0, 7.0, math.inf])
    for ratio in (1.0 + 1e-5, 1.0 + 1e-7):
        exact = np.asarray(theory.incremental_threshold(depth, ratio, log=True))
        leading = np.asarray(theory.threshold_asymptotic(depth, ratio, log=True))
        assert np.isneginf(exact[0]) and np.isneginf(leading[0])
        np.testing.assert_allclose(leading[1:], exact[1:], rtol=1e-3)
    np.testing.assert_allclose(
        jnp.exp(theory.threshold_asymptotic(depth, 1.5, log=True)),
        theory.threshold_asymptotic(depth, 1.5),
        rtol=1e-14,
    )


# ---------------------------------------------------------------------------------------------
# jit, vmap, grad


# One jitted wrapper each, shared by the tests below with the same shapes: one compilation each.
JIT_TIME = jax.jit(theory.learning_time)
JIT_SOLUTION = jax.jit(theory.solution)
JIT_THRESHOLD = jax.jit(theory.incremental_threshold, static_argnames="log")
JIT_DEPTH = np.array([3.0, 1.5, 2.0, math.inf])


def test_jit_and_vmap_match_eager():
    sigma0, sigma, ratio = np.array([1e-200, 0.3, 1e-5, 0.1]), np.array([0.3, 0.9, 0.99, 0.2]), 3.0
    np.testing.assert_allclose(
        JIT_TIME(JIT_DEPTH, 1.5, sigma0, sigma),
        theory.learning_time(JIT_DEPTH, 1.5, sigma0, sigma),
        rtol=1e-14,
    )
    np.testing.assert_allclose(
        JIT_SOLUTION(JIT_DEPTH, 1.5, sigma0, np.full(4, 3.0)),
        theory.solution(JIT_DEPTH, 1.5, sigma0, 3.0),
        rtol=1e-14,
    )
    np.testing.assert_allclose(
        JIT_THRESHOLD(JIT_DEPTH, np.full(4, ratio), log=True),
        theory.incremental_threshold(JIT_DEPTH, ratio, log=True),
        rtol=1e-14,
    )
    np.testing.assert_allclose(
        jax.vmap(theory.incremental_margin, in_axes=(0, None, None))(JIT_DEPTH, ratio, 1e-5),
        theory.incremental_margin(JIT_DEPTH, ratio, 1e-5),
        rtol=1e-14,
    )
    np.testing.assert_allclose(
        jax.jit(theory.threshold_asymptotic)(JIT_DEPTH, ratio),
        theory.threshold_asymptotic(JIT_DEPTH, ratio),
        rtol=1e-14,
    )


def test_learning_time_gradient_is_the_inverse_vector_field():
    depth, sigma_star, sigma0, sigma = random_points(seed=5, per_depth=1)
    rate = jax.vmap(jax.grad(theory.learning_time, argnums=3))(depth, sigma_star, sigma0, sigma)
    np.testing.assert_allclose(rate, 1.0 / vector_field(depth, sigma_star, sigma), rtol=1e-10)


@pytest.mark.parametrize("depth", [2.0, 3.0, 7.0, math.inf])
def test_threshold_gradient_matches_finite_differences(depth):
    ratio, step = 1.5, 1e-4

    def log_threshold(r):
        return theory.incremental_threshold(depth, r, log=True)

    derivative = jax.grad(log_threshold)(ratio)
    central = (log_threshold(ratio + step) - log_threshold(ratio - step)) / (2.0 * step)
    np.testing.assert_allclose(derivative, central, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# invalid input


def _time(**kwargs):
    args = dict(depth=3.0, sigma_star=1.0, sigma0=0.1, sigma=0.5) | kwargs
    return theory.learning_time(**args)


def _solution(**kwargs):
    return theory.solution(**(dict(depth=3.0, sigma_star=1.0, sigma0=0.1, t=1.0) | kwargs))


def _margin(**kwargs):
    return theory.incremental_margin(**(dict(depth=3.0, ratio=2.0, sigma0=1e-3) | kwargs))


@pytest.mark.parametrize(
    "call, kwargs, name",
    [
        (_time, dict(depth=0.5), "depth"),
        (_time, dict(depth=math.nan), "depth"),
        (_time, dict(sigma_star=0.0), "sigma_star"),
        (_time, dict(sigma_star=-1.0), "sigma_star"),
        (_time, dict(sigma0=0.0), "sigma0"),
        (_time, dict(sigma0=1.0), "sigma0"),
        (_time, dict(sigma0=np.array([0.1, 2.0])), "sigma0"),
        (_time, dict(sigma=0.0), "sigma"),
        (_time, dict(sigma=1.0), "sigma"),
        (_time, dict(sigma=math.nan), "sigma"),
        (_solution, dict(t=-1.0), "t"),
        (_solution, dict(t=math.nan), "t"),
        (_solution, dict(sigma0=1.5), "sigma0"),
        (_margin, dict(ratio=1.0), "ratio"),
        (_margin, dict(ratio=0.5), "ratio"),
        (_margin, dict(sigma0=1.0), "sigma0"),
        (_margin, dict(start=0.0), "start"),
        (_margin, dict(finish=0.05), "finish"),
        (_margin, dict(finish=1.0), "finish"),
        (theory.incremental_threshold, dict(depth=0.0, ratio=2.0), "depth"),
        (theory.incremental_threshold, dict(depth=3.0, ratio=1.0), "ratio"),
        (theory.incremental_threshold, dict(depth=3.0, ratio=2.0, start=1.0), "start"),
        (theory.incremental_threshold, dict(depth=3.0, ratio=2.0, finish=math.nan), "finish"),
        (theory.threshold_asymptotic, dict(depth=3.0, ratio=math.nan), "ratio"),
    ],
)
def test_bad_input_raises(call, kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name} must"):
        call(**kwargs)


def test_invalid_lanes_are_nan_under_jit():
    depth = np.array([3.0, 0.5, 2.0, math.inf])
    sigma0 = np.array([0.1, 0.1, -1.0, 0.1])
    time = JIT_TIME(depth, 1.0, sigma0, np.full(4, 0.5))
    np.testing.assert_array_equal(np.isnan(time), [False, True, True, False])
    sigma = JIT_SOLUTION(depth, 1.0, sigma0, np.array([1.0, 1.0, 1.0, -1.0]))
    np.testing.assert_array_equal(np.isnan(sigma), [False, True, True, True])
    threshold = JIT_THRESHOLD(depth, np.array([2.0, 2.0, 0.5, 2.0]), log=True)
    np.testing.assert_array_equal(np.isnan(threshold), [False, True, True, False])

    # a shared argument's gradient is not poisoned by the invalid lanes
    def valid_total(sigma_star, depth, sigma0):
        times = theory.learning_time(depth, sigma_star, sigma0, 0.5)
        return jnp.sum(jnp.where(jnp.isnan(times), 0.0, times))

    assert np.isfinite(jax.jit(jax.grad(valid_total))(1.0, depth, sigma0))


def test_docstring_examples():
    result = doctest.testmod(theory, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 5 and result.failed == 0
