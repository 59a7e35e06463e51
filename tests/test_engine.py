"""The flow engine answers everywhere: many modes, any initialization scale, an honest status.

Checked against :mod:`jaxflow.oracles.theory` (closed forms evaluated by series, independent of the
solver) and, for random unbalanced factors where no closed form exists, against scipy's DOP853:

* the cases that failed before per-coordinate clocks (depth 5 on (4, 3, 2, 1) from 1e-6, ...),
  called as a new user would, with default tolerances (the depth as an array, as ``ToyArgs``
  asks for swept values): status ok, every learning time within 1e-6 relative of theory, at
  most 170 solver steps (accepted + rejected) per mode;
* a grid of k-mode spectra (k = 1, 3, 8; geometric 2^-i and linear k..1) at every depth in
  {1.5, 2, 2.5, 3, 4, 5, 6, 10, 20, inf} and sigma0 from 0.05 sigma*_min down to e^-10000 (for
  depth > 2 down to where the real flow time ~ sigma0^-(1-2/N) reaches e^695), in the plateau's
  own time unit: same bounds;
* below that (sigma0 = e^-10000 at depths 3, 4, 10, inf, every spectrum above), where the real
  times overflow float64, the times in the plateau unit still carry the exact limit
  N / ((N - 2) sigma*);
* the factor-level model, balanced (theory) and random unbalanced (scipy), k = 4, in factors
  and in log-factors;
* a flow asked for nothing runs to stationarity (the other statuses: test_contract.py).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from jaxflow.engine import flow, status
from jaxflow.models import toy
from jaxflow.oracles import theory

DEPTHS = (1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 10.0, 20.0, math.inf)
FRACTIONS = (0.1, 0.5, 0.9)
STEPS_PER_MODE = 170  # measured max 157 (depth 1.5, one mode); 150 before the flow time was
# bounded relatively down to 2^-14 time units (engine._flow_loop._TIME_ATOL), which costs steps
# where t grows exponentially on a depth < 2 plateau
RTOL = 1e-6


def _exact(depth, targets, log_scale, fractions=FRACTIONS):
    targets = np.asarray(targets)[:, None]
    return np.asarray(
        theory.learning_time(depth, targets, log_scale, targets * np.asarray(fractions), log=True)
    )


@pytest.mark.parametrize(
    "depth, targets, scale",
    [
        (5.0, (4.0, 3.0, 2.0, 1.0), 1e-6),
        (3.0, (2.0, 1.0), 1e-30),
        (10.0, (2.0, 1.0), 1e-12),
        (3.0, (8.0, 4.0, 2.0, 1.0), 1e-20),
        (4.0, (3.0, 1.0), 1e-12),
    ],
)
def test_cases_that_used_to_run_out_of_steps(depth, targets, scale):
    """The engine issue's table, called as in the README (default tolerances).

    The depth is given as an array, as ``ToyArgs`` documents for swept values: the five cases
    then share two compiled programs (one per number of targets) instead of five."""
    args = toy.ToyArgs(depth=jnp.asarray(depth), targets=jnp.array(targets))
    traj = flow.solve(
        toy.reduced_vector_field, toy.reduced_init(scale, len(targets)), args,
        modes=toy.reduced_modes, targets=args.targets, time=toy.reduced_speed,
    )
    assert status.name(traj.status) == "ok"
    exact = _exact(depth, targets, math.log(scale))
    np.testing.assert_allclose(traj.learning_times, exact, rtol=RTOL)
    assert int(traj.steps + traj.rejected) <= STEPS_PER_MODE * len(targets)


def _spectrum(k, kind):
    return np.array([2.0**-i for i in range(k)] if kind == "geometric" else np.arange(k, 0, -1.0))


def _log_scales(depth, smallest_target):
    """0.05 sigma*_min down to e^-10000, or for depth > 2 to where T ~ e^695."""
    floor = -10000.0 if depth <= 2 else -min(10000.0, 695.0 / (1.0 - 2.0 / depth))
    grid = np.concatenate([np.log([0.05, 1e-6]), np.linspace(-50.0, floor, 5)])
    return grid + math.log(smallest_target)


# Depths whose times at sigma0 = e^-10000 overflow float64 (checked in the plateau unit).
BEYOND_FLOAT64_DEPTHS = (3.0, 4.0, 10.0, math.inf)
BEYOND_FLOAT64_LOG_SCALE = -10000.0
SPECTRA = [(1, "geometric"), (3, "linear"), (8, "geometric"), (8, "linear")]


@pytest.fixture(scope="module")
def spectrum_runs():
    """``runs(k, kind)``: every (depth, sigma0) lane of one spectrum in one vmapped solve.

    The lanes are the grid of :func:`_log_scales` at every depth of ``DEPTHS``, then sigma0 =
    e^-10000 at each of ``BEYOND_FLOAT64_DEPTHS``; depth and scale are traced, so there is one
    compiled program per spectrum size and one run per spectrum, shared by the tests below."""

    def solve(depth, log_scale, targets):
        unit = toy.log_time_unit(depth, log_scale)
        args = toy.ToyArgs(depth=depth, targets=targets, log_time_unit=unit)
        traj = flow.solve(
            toy.reduced_vector_field, toy.reduced_init(log_scale, targets.shape[0], log=True),
            args, modes=toy.reduced_modes, targets=targets, time=toy.reduced_speed,
            rtol=1e-8, atol=1e-8,
        )
        return traj, unit

    solve_lanes = jax.jit(jax.vmap(solve, in_axes=(0, 0, None)))
    cache = {}

    def runs(k, kind):
        if (k, kind) not in cache:
            targets = _spectrum(k, kind)
            grid = [(d, x) for d in DEPTHS for x in _log_scales(d, targets.min())]
            beyond = [(d, BEYOND_FLOAT64_LOG_SCALE) for d in BEYOND_FLOAT64_DEPTHS]
            depths, log_scales = np.array(grid + beyond).T
            traj, unit = solve_lanes(jnp.asarray(depths), jnp.asarray(log_scales),
                                     jnp.asarray(targets))
            beyond = np.arange(len(depths)) >= len(grid)
            cache[k, kind] = (targets, depths, log_scales, beyond, jax.device_get(traj),
                              np.asarray(unit))
        return cache[k, kind]

    return runs


@pytest.mark.parametrize("k, kind", SPECTRA)
def test_many_modes_any_scale(spectrum_runs, k, kind):
    targets, depths, log_scales, beyond, traj, unit = spectrum_runs(k, kind)
    for depth in DEPTHS:
        lanes = np.flatnonzero((depths == depth) & ~beyond)
        assert len(lanes) == 7, depth
        assert set(np.asarray(traj.status[lanes]).tolist()) == {status.OK}, depth
        # Real time = e^unit * solver time; both sides stay below e^700 on this grid.
        measured = np.asarray(traj.learning_times[lanes]) * np.exp(unit[lanes])[:, None, None]
        exact = np.stack([_exact(depth, targets, x) for x in log_scales[lanes]])
        started = exact > 0  # sigma0 = 0.05 sigma* already sits past fraction 0.1 of the others
        np.testing.assert_allclose(measured[started], exact[started], rtol=RTOL, err_msg=str(depth))
        per_mode = (np.asarray(traj.steps[lanes]) + np.asarray(traj.rejected[lanes])) / k
        assert per_mode.max() <= STEPS_PER_MODE, (depth, per_mode)


@pytest.mark.parametrize("k, kind", SPECTRA)
def test_times_beyond_float64_keep_their_exact_limit(spectrum_runs, k, kind):
    """sigma0 = e^-10000: T ~ e^3333 at depth 3 overflows; in the plateau unit U it is exact.

    For sigma0 -> 0 every learning time of target sigma* tends to U N / ((N - 2) sigma*)
    (the plateau dominates; the rest is O(1) against U >= e^5000 here). Checked at depths 3, 4,
    10 and inf, for every spectrum of the grid above (the lanes of the same run).
    """
    targets, depths, log_scales, beyond, traj, unit = spectrum_runs(k, kind)
    for depth in BEYOND_FLOAT64_DEPTHS:
        (lane,) = np.flatnonzero((depths == depth) & beyond)
        assert int(traj.status[lane]) == status.OK, depth
        assert float(unit[lane]) > 700.0, depth  # the real times are not representable
        limit = (1.0 if math.isinf(depth) else depth / (depth - 2.0)) / targets
        np.testing.assert_allclose(traj.learning_times[lane], np.repeat(limit[:, None], 3, 1),
                                   rtol=1e-7, err_msg=str(depth))


def test_factor_model_balanced_many_modes():
    """Balanced factors follow the reduced flow with time scale 1/N (one clock a coordinate).

    One compiled program per depth (the factors' shape): depth 2, depth 3 (shared with the
    unbalanced case below) and depth 6 from the smallest scale, 1e-30 (measured 462 steps);
    depth 4 in factors is checked in test_flow.py (and in log-factors below)."""
    targets = jnp.array([4.0, 3.0, 2.0, 1.0])
    for depth, scale in [(2, 1e-6), (3, 1e-12), (6, 1e-30)]:
        params = toy.factor_init(None, scale, depth=depth, num_coords=4)
        traj = flow.gradient_flow(
            toy.factor_loss, params, targets, modes=toy.factor_values, targets=targets,
            rtol=1e-8, atol=1e-200,  # atol far below the smallest factor, scale^(1/N)
        )
        assert status.name(traj.status) == "ok"
        exact = _exact(depth, targets, math.log(scale)) / toy.factor_time_scale(depth)
        np.testing.assert_allclose(traj.learning_times, exact, rtol=RTOL)
        assert int(traj.steps + traj.rejected) <= 4 * 250


# Steps a mode of the factor-level flow in log-factors may take, from 1e-2 to 1e-250 (measured:
# at most ~170 balanced and ~270 unbalanced at 1e-250, against ~2500 in the factors themselves,
# whose count grows by ~40 a decade of sigma0).
LOG_FACTOR_STEPS_PER_MODE = 300


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_factor_model_in_log_factors_any_scale(depth):
    """``log_params=True``: balanced factors down to 1e-250 against theory, steps bounded."""
    targets = jnp.array([8.0, 4.0, 2.0, 1.0])
    for scale in (1e-2, 1e-40, 1e-250):
        params = toy.factor_init(None, scale, depth=depth, num_coords=4)
        traj = flow.gradient_flow(
            toy.factor_loss, params, targets, log_params=True, modes=toy.factor_values,
            targets=targets, rtol=1e-8, atol=1e-8,
        )
        assert status.name(traj.status) == "ok"
        exact = _exact(depth, targets, math.log(scale)) / toy.factor_time_scale(depth)
        np.testing.assert_allclose(traj.learning_times, exact, rtol=RTOL)
        assert int(traj.steps + traj.rejected) <= 4 * LOG_FACTOR_STEPS_PER_MODE
        # final_state comes back as factors, not their logarithms
        np.testing.assert_allclose(toy.factor_values(traj.final_state), traj.final_modes, rtol=1e-12)


def test_log_factors_need_positive_factors():
    params = toy.factor_init(None, 1e-3, depth=2, num_coords=2, signed=True)
    params = {"plus": params["plus"], "minus": -params["minus"]}
    with pytest.raises(ValueError, match="log_params=True needs every entry of params0 in"):
        flow.gradient_flow(toy.factor_loss, params, jnp.ones(2), log_params=True,
                           modes=toy.factor_values, targets=jnp.ones(2))


def _scipy_factor_times(w0, target, fractions):
    """Learning times of one coordinate's unbalanced factors by DOP853 (rtol 1e-12).

    The gradient is written out by hand, independently of ``jax.grad``: with ``P = prod w`` and
    the loss ``(target - P)^2 / (2 N^2)``, ``dw_j/dt = (target - P) P / (N^2 w_j)``; integrated
    in ``u = ln w`` (``du_j/dt = (target - P) P / (N^2 w_j^2)``) so that tiny factors keep
    their relative accuracy.
    """
    depth = w0.size

    def field(t, u):
        product = np.exp(np.sum(u))
        return (target - product) * product / (depth**2 * np.exp(2.0 * u))

    def crossing(level):
        event = lambda t, u: np.sum(u) - np.log(level * target)
        event.terminal = level == fractions[-1]  # past it the flow is stiff and irrelevant
        event.direction = 1.0
        return event

    sol = solve_ivp(field, (0.0, 1e30), np.log(w0), method="DOP853", rtol=1e-12, atol=1e-12,
                    events=[crossing(f) for f in fractions])
    return np.array([ev[0] for ev in sol.t_events])


@pytest.mark.parametrize("depth, scale, log_params", [(3, 1e-3, False), (2, 1e-100, True), (3, 1e-20, True)])
def test_factor_model_random_unbalanced(depth, scale, log_params):
    """Random unbalanced factors: no closed form; scipy's DOP853 is the reference.

    Same solver settings and fractions as the balanced tests above (in factors, or in
    log-factors), so each case reuses the program compiled there for its depth."""
    targets = jnp.array([4.0, 3.0, 2.0, 1.0])
    params = toy.factor_init(jax.random.key(3), scale, depth=depth, num_coords=4, balanced=False)
    params = {"plus": jnp.abs(params["plus"])}  # positive products: every mode is learned
    tolerances = dict(rtol=1e-8, atol=1e-8) if log_params else dict(rtol=1e-8, atol=1e-200)
    traj = flow.gradient_flow(
        toy.factor_loss, params, targets, modes=toy.factor_values, targets=targets,
        log_params=log_params, **tolerances,
    )
    assert status.name(traj.status) == "ok"
    for i in range(4):
        reference = _scipy_factor_times(np.asarray(params["plus"][i]), float(targets[i]), FRACTIONS)
        np.testing.assert_allclose(traj.learning_times[i], reference, rtol=RTOL)
    bound = LOG_FACTOR_STEPS_PER_MODE if log_params else STEPS_PER_MODE
    assert int(traj.steps + traj.rejected) <= 4 * bound


def _reduced(depth, scale, targets, **kwargs):
    args = toy.ToyArgs(depth=depth, targets=jnp.asarray(targets))
    return flow.solve(
        toy.reduced_vector_field, toy.reduced_init(scale, len(targets)), args,
        modes=toy.reduced_modes, targets=args.targets, time=toy.reduced_speed, **kwargs,
    )


def test_no_question_runs_to_stationarity():
    """No learning time asked and no horizon: the flow runs until it is stationary."""
    targets = (3.0, 2.0, 1.0)
    traj = _reduced(4.0, 1e-8, targets, fractions=())
    assert status.name(traj.status) == "ok"
    np.testing.assert_allclose(traj.final_modes, targets, rtol=1e-8)
    assert traj.learning_times.shape == (3, 0)
