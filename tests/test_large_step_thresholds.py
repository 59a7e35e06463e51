"""The incremental threshold under large steps (docs/science/edge-of-stability.md), against an
independent NumPy descent of the balanced toy pair. About 1 s beyond the shared smoke run
(``smoke_run("large-step-thresholds")``, ~10 s of compilation, shared with the registry walk)."""

import math

import pytest
from scipy.optimize import brentq

from jaxflow.engine import status

# shares conftest's smoke_run with tests/test_experiments.py: one worker computes it once
pytestmark = pytest.mark.xdist_group("smoke_runs")


def _learning_time(depth, target, log_scale, eta, fraction, steps=20000):
    """The flow time ``eta x step`` at which balanced descent on one coordinate first reaches
    ``fraction`` of ``target``, interpolated linearly in the progress between the two steps
    (jaxflow.Descent's rule): factor ``w`` with ``P = w^N``, loss ``(s - P)^2 / (2 N^2)``."""
    w = math.exp(log_scale / depth)
    before = w**depth / target
    if before >= fraction:
        return 0.0
    for k in range(1, steps + 1):
        w = w + eta * (target - w**depth) * w ** (depth - 1) / depth**2
        after = w**depth / target
        if after >= fraction:
            return eta * (k - 1 + (fraction - before) / (after - before))
        before = after
    return math.inf


def _incremental(depth, ratio, log_scale, eta, start=0.1, finish=0.9):
    return (_learning_time(depth, 1.0, log_scale, eta, start)
            >= _learning_time(depth, ratio, log_scale, eta, finish))


def _threshold(depth, ratio, eta, lo=-30.0, hi=math.log(0.1), tol=1e-6):
    """Plain bisection of the NumPy reference in ln sigma0 (one sign change on [lo, hi])."""
    assert _incremental(depth, ratio, lo, eta) and not _incremental(depth, ratio, hi, eta)
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _incremental(depth, ratio, mid, eta) else (lo, mid)
    return 0.5 * (lo + hi)


def _flow_threshold_depth2(r):
    """ln sigma0_th of the flow at depth 2, from the logistic solution (c = 1, targets r, 1):
    T_j(0.1) = ln((1 - x) / (9 x)), T_i(0.9) = ln(9 (r - x) / x) / r, equal at x = sigma0_th."""
    gap = lambda x: math.log((1 - x) / (9 * x)) - math.log(9 * (r - x) / x) / r  # noqa: E731
    return math.log(brentq(gap, 1e-12, 0.1, xtol=1e-15, rtol=1e-14))


def test_bracket_ends_agree_with_the_numpy_descent(smoke_run):
    """Every answered lane: the reference calls its lower end incremental, its upper end not,
    and the bracket is 1e-3 relative in the log (the tolerance of the smoke config)."""
    ds = smoke_run("large-step-thresholds")
    assert (ds["status"] == status.OK).all()
    lanes = ds.stack(lane=("depth", "ratio", "eta_factor"))
    for n in range(lanes.sizes["lane"]):
        lane = lanes.isel(lane=n)
        depth, ratio, eta = int(lane["depth"]), float(lane["ratio"]), float(lane["eta"])
        lo, hi = float(lane["log_lo"]), float(lane["log_hi"])
        assert 0 < hi - lo <= 1e-3 * max(1.0, abs(lo))
        assert _incremental(depth, ratio, lo, eta), (depth, ratio, eta)
        assert not _incremental(depth, ratio, hi, eta), (depth, ratio, eta)


def test_small_steps_keep_the_flow_threshold(smoke_run):
    """At eta lambda / 2 = 0.1 descent's threshold is the flow's up to first order in eta:
    within 1% at depth 3, 8% at depth 2 (r = 2; measured 0.5% and 7.5%)."""
    ds = smoke_run("large-step-thresholds").sel(eta_factor=0.1, ratio=2.0)
    exact = _flow_threshold_depth2(2.0)
    assert float(ds["log_threshold_flow"].sel(depth=2)) == pytest.approx(exact, rel=1e-9)
    q = ds["threshold_ratio"].values
    assert abs(q[1] - 1.0) < 0.01 and abs(q[0] - 1.0) < 0.08


def test_descent_threshold_converges_to_the_flow_at_first_order():
    """Independent of jaxflow: ln(sigma_th(eta) / sigma_th(flow)) halves with eta (depth 2,
    r = 2: the reference's own bisection to 1e-6 in ln sigma0, the logistic flow). ~0.3 s."""
    depth, ratio = 2, 2.0
    lam = ratio ** (2 - 2 / depth) / depth
    flow = _flow_threshold_depth2(ratio)
    gaps = [_threshold(depth, ratio, 2 * f / lam, lo=flow - 1.0, hi=flow + 1.0) - flow
            for f in (0.1, 0.05)]
    assert gaps[0] / gaps[1] == pytest.approx(2.0, rel=0.1)


def test_search_steps_out_then_bisects_and_flags_a_second_sign_change():
    """The search's pure parts, without descent: outward steps double until a bracket exists,
    then bisect; the check flags a start above the bracket that is incremental again."""
    import jax.numpy as jnp

    from jaxflow.experiments._step_threshold_search import _check_update, _next_point

    inf = jnp.inf
    x, d = _next_point(jnp.asarray(-inf), jnp.asarray(-4.0), jnp.asarray(0.5), -69.0, -2.3)
    assert (float(x), float(d)) == (-4.5, 1.0)  # only "not incremental" known: step down
    x, d = _next_point(jnp.asarray(-5.0), jnp.asarray(inf), jnp.asarray(4.0), -69.0, -2.3)
    assert (float(x), float(d)) == (-2.3, 8.0)  # step up, clipped at ln(start)
    x, d = _next_point(jnp.asarray(-5.0), jnp.asarray(-4.0), jnp.asarray(8.0), -69.0, -2.3)
    assert (float(x), float(d)) == (-4.5, 8.0)  # bracket: bisect
    state = {"lo": jnp.asarray(-5.0), "hi": jnp.asarray(-4.99), "closed": jnp.asarray(True),
             "wrong": jnp.asarray(False), "largest": jnp.asarray(-inf)}
    ok = _check_update(state, jnp.asarray(-6.0), jnp.asarray(True), jnp.asarray(True))
    assert not bool(ok["wrong"]) and float(ok["largest"]) == -6.0
    flipped = _check_update(ok, jnp.asarray(-4.5), jnp.asarray(True), jnp.asarray(True))
    assert bool(flipped["wrong"]) and float(flipped["largest"]) == -4.5
    undecided = _check_update(ok, jnp.asarray(-7.0), jnp.asarray(True), jnp.asarray(False))
    assert bool(undecided["wrong"])
