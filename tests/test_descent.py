"""Tests of jaxflow.engine.descent: gradient descent through optax + lax.scan.

The oracle is a self-contained depth-N factor model: params w of shape (d, N), sigma_i = prod_j
w_ij, loss = 1/(2 N^2) sum_i (sigma*_i - sigma_i)^2. On a balanced init (w_ij = sigma0^(1/N)) its
gradient flow keeps the factors equal and gives

    d sigma/dt = (1/N) sigma^(2 - 2/N) (sigma* - sigma),

i.e. the reduced c = 1 flow of docs/science/toy-model.md run at speed c = 1/N (N distinct factors with
the 1/(2 N^2) loss; the shared-weight model w^N has c = 1). So GD is compared with the reduced
flow with ``time_scale = 1/N``: reduced time = learning_rate * step / N.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.integrate import solve_ivp

import jaxflow.engine.descent
import jaxflow.engine.flow
from jaxflow.engine.descent import DescentTrajectory, gradient_descent
from jaxflow.engine.status import DIVERGED, MAX_STEPS, NONFINITE, OK
from jaxflow.engine.trajectory import Trajectory

# ----------------------------------------------------------------------------------------------
# The toy model (module-level functions: the same objects reuse the compiled program)

SSTAR = np.array([1.0, 0.5])


def factor_loss(w, sstar):
    n = w.shape[1]
    return jnp.sum((sstar - jnp.prod(w, axis=1)) ** 2) / (2.0 * n * n)


def factor_modes(w, sstar):
    return jnp.prod(w, axis=1)


def balanced_init(depth, sigma0, d=2):
    return jnp.full((d, depth), sigma0 ** (1.0 / depth))


def logistic(sstar, sigma0, t):
    """Closed form of d sigma/dt = sigma (sigma* - sigma) (N = 2, c = 1)."""
    return sstar / (1.0 + (sstar / sigma0 - 1.0) * np.exp(-sstar * t))


def logistic_time(sstar, sigma0, sigma):
    return np.log(sigma * (sstar - sigma0) / (sigma0 * (sstar - sigma))) / sstar


def reference_flow(depth, sstar, sigma0, t_end):
    """scipy reference of the reduced flow: sigma(t_end) and the event times sigma = f sigma*."""
    p = 2.0 - 2.0 / depth
    fractions = (0.1, 0.5, 0.9)
    events = [(lambda t, y, f=f: y[0] - f * sstar) for f in fractions]
    sol = solve_ivp(
        lambda t, y: y ** p * (sstar - y),
        (0.0, t_end),
        [sigma0],
        method="DOP853",
        rtol=1e-12,
        atol=1e-300,
        events=events,
    )
    times = [ev[0] if len(ev) else np.inf for ev in sol.t_events]
    return sol.y[0, -1], np.array(times)


def run_lanes(depth, sigma0, learning_rates, num_steps, save_every):
    w0 = balanced_init(depth, sigma0)
    sstar = jnp.asarray(SSTAR)
    return jax.vmap(
        lambda lr: gradient_descent(
            factor_loss,
            w0,
            learning_rate=lr,
            num_steps=num_steps,
            save_every=save_every,
            args=sstar,
            modes=factor_modes,
            targets=sstar,
            time_scale=1.0 / depth,
        )
    )(jnp.asarray(learning_rates))


# Order runs: three lanes with rates 4 eta, 2 eta, eta, all reaching reduced time T at saves
# 1, 2 and 4 of a K-step run saved every K/4 steps: one compiled program per depth.
K = 1600
ORDER_CASES = {2: (0.01, 6.0), 3: (0.04, 8.0)}  # depth: (sigma0, T)


def order_run(depth):
    sigma0, t_end = ORDER_CASES[depth]
    lrs = np.array([4.0, 2.0, 1.0]) * depth * t_end / K
    return lrs, run_lanes(depth, sigma0, lrs, K, K // 4)


def sigma_at_t(traj, t_end):
    saves = [1, 2, 4]
    times = np.array([traj.times[lane, s] for lane, s in enumerate(saves)])
    np.testing.assert_allclose(times, t_end, rtol=1e-14)
    return np.array([traj.modes[lane, s] for lane, s in enumerate(saves)])  # (3 lanes, M)


def measured_orders(errors):
    errors = np.asarray(errors)
    return np.log2(errors[:-1] / errors[1:])


# ----------------------------------------------------------------------------------------------
# Convergence to the gradient flow


def test_first_order_in_learning_rate_depth2_closed_form():
    _, traj = order_run(2)
    sigma0, t_end = ORDER_CASES[2]
    exact = logistic(SSTAR, sigma0, t_end)
    errors = np.abs(sigma_at_t(traj, t_end) - exact).max(axis=1)
    assert errors[-1] < 1e-3
    orders = measured_orders(errors)
    assert np.all((orders > 0.8) & (orders < 1.2)), (errors, orders)


def test_first_order_in_learning_rate_depth3_solve_ivp():
    _, traj = order_run(3)
    sigma0, t_end = ORDER_CASES[3]
    exact = np.array([reference_flow(3, s, sigma0, t_end)[0] for s in SSTAR])
    errors = np.abs(sigma_at_t(traj, t_end) - exact).max(axis=1)
    assert errors[-1] < 1e-3
    orders = measured_orders(errors)
    assert np.all((orders > 0.8) & (orders < 1.2)), (errors, orders)


@pytest.mark.parametrize("depth", [2, 3])
def test_learning_times_match_flow(depth):
    lrs, traj = order_run(depth)
    sigma0, _ = ORDER_CASES[depth]
    fractions = np.array([0.1, 0.5, 0.9])
    if depth == 2:
        exact = np.array([logistic_time(s, sigma0, fractions * s) for s in SSTAR])
    else:
        exact = np.array([reference_flow(3, s, sigma0, 1e3)[1] for s in SSTAR])
    steps = np.asarray(traj.learning_steps)
    assert steps.dtype == np.int32
    for lane, lr in enumerate(lrs):
        t_run = lr * K / depth  # reduced time reached at the end of this lane
        reached = exact < t_run - lr
        assert np.all(steps[lane][reached] >= 0)
        measured = np.asarray(traj.learning_times[lane])
        found = steps[lane] >= 0
        # the learning time is interpolated inside the step that crossed (learning_steps)
        step_time = lr * steps[lane][found] / depth
        assert np.all((measured[found] > step_time - lr / depth) & (measured[found] <= step_time))
        # O(lr) agreement with the exact learning times (GD lags slightly).
        assert np.all(np.abs(measured[reached] - exact[reached]) < lr), (lane, measured, exact)
        # never reached -> -1 / inf
        assert np.all((steps[lane] >= 0) | np.isinf(measured))
        assert np.all(np.isinf(measured[steps[lane] < 0]))


def test_learning_steps_checked_after_every_step():
    """The running record finds the exact first step, not the first save after it."""
    sstar = jnp.asarray(SSTAR)
    w0 = balanced_init(2, 0.01)
    kw = dict(learning_rate=0.03, num_steps=K, args=sstar, modes=factor_modes, targets=sstar,
              time_scale=0.5)
    every = gradient_descent(factor_loss, w0, save_every=1, **kw)
    coarse = gradient_descent(factor_loss, w0, save_every=K // 4, **kw)
    ratio = np.asarray(every.modes) / SSTAR  # (K + 1, M), row k = step k
    for i in range(2):
        for j, f in enumerate((0.1, 0.5, 0.9)):
            hits = np.nonzero(ratio[:, i] >= f)[0]
            expected = hits[0] if hits.size else -1
            assert int(every.learning_steps[i, j]) == expected
            assert int(coarse.learning_steps[i, j]) == expected
    assert np.any(np.asarray(coarse.learning_steps) % (K // 4) != 0)
    assert every.times.shape == (K + 1,) and coarse.times.shape == (5,)
    np.testing.assert_allclose(coarse.times, 0.03 * np.arange(0, K + 1, K // 4) / 2.0, rtol=1e-14)
    np.testing.assert_allclose(coarse.loss, every.loss[:: K // 4], rtol=1e-13)


def test_zero_target_and_initial_point():
    """Zero targets are never reached; a mode already past a fraction counts at step 0."""
    sstar = jnp.asarray(SSTAR)
    w0 = balanced_init(2, 0.01).at[1].set(0.6 ** 0.5)  # mode 1 starts at 0.6 / 0.5 > 0.9 sigma*
    traj = gradient_descent(factor_loss, w0, learning_rate=0.03, num_steps=100, save_every=10,
                            args=sstar, modes=factor_modes, targets=jnp.array([0.0, 0.5]))
    assert np.all(np.asarray(traj.learning_steps[0]) == -1)
    assert np.all(np.isinf(traj.learning_times[0]))
    assert np.all(np.asarray(traj.learning_steps[1]) == 0)
    assert np.all(np.asarray(traj.learning_times[1]) == 0.0)


# ----------------------------------------------------------------------------------------------
# Divergence and status


DIVERGENCE_RATES = jnp.array([0.01, 0.02, 1e3, 1e6])


@pytest.fixture(scope="module")
def divergence_lanes():
    """Two good and two diverging rates in one vmapped run (400 steps, saved every 50), read by
    the divergence and trajectory-contract tests (one compile, one run)."""
    return DIVERGENCE_RATES, run_lanes(2, 0.01, DIVERGENCE_RATES, 400, 50)


def test_divergence_freezes_one_lane_only(divergence_lanes):
    lrs, traj = divergence_lanes
    assert traj.status.dtype == jnp.int8 and traj.diverged_step.dtype == jnp.int32
    np.testing.assert_array_equal(traj.status, [OK, OK, DIVERGED, DIVERGED])
    div = np.asarray(traj.diverged_step)
    np.testing.assert_array_equal(div[:2], [-1, -1])
    assert np.all((div[2:] >= 1) & (div[2:] <= 400))
    np.testing.assert_array_equal(traj.steps, [400, 400, div[2] - 1, div[3] - 1])
    assert np.all(np.isfinite(traj.final_params))
    assert np.all(np.isfinite(traj.loss[:2])) and np.all(np.isfinite(traj.modes[:2]))
    # the failed lanes, as a failed flow lane: saves up to the last good step computed, NaN
    # after it (nothing looks computed that was not)
    steps = np.arange(0, 401, 50)
    for lane in (2, 3):
        good = steps <= div[lane] - 1
        assert np.all(np.isfinite(traj.loss[lane][good])), traj.loss[lane]
        assert np.all(np.isnan(traj.loss[lane][~good])) and np.all(np.isnan(traj.modes[lane][~good]))
    # the good lanes equal separate runs
    for lane in range(2):
        single = gradient_descent(factor_loss, balanced_init(2, 0.01), learning_rate=lrs[lane],
                                  num_steps=400, save_every=50, args=jnp.asarray(SSTAR),
                                  modes=factor_modes, targets=jnp.asarray(SSTAR), time_scale=0.5)
        np.testing.assert_allclose(traj.modes[lane], single.modes, rtol=1e-13)
        np.testing.assert_allclose(traj.final_params[lane], single.final_params, rtol=1e-13)


def test_loss_bound():
    sstar = jnp.asarray(SSTAR)
    w0 = balanced_init(2, 0.01)
    traj = gradient_descent(factor_loss, w0, learning_rate=0.03, num_steps=100, args=sstar,
                            loss_bound=1e-3)  # the initial loss (~0.16) is already too large
    assert int(traj.status) == DIVERGED and int(traj.diverged_step) == 0
    assert int(traj.steps) == 0
    np.testing.assert_array_equal(traj.final_params, w0)


def sqrt_loss(w, args):
    return jnp.sum(jnp.sqrt(jnp.abs(w)))


def test_nonfinite_params():
    # The gradient of sqrt|w| at w = 0 is NaN: the first update makes the parameters NaN.
    traj = gradient_descent(sqrt_loss, jnp.array([0.0, 1.0]), learning_rate=0.1, num_steps=10)
    assert int(traj.status) == NONFINITE and int(traj.diverged_step) == 1
    assert int(traj.steps) == 0
    np.testing.assert_array_equal(traj.final_params, [0.0, 1.0])
    # non-finite initial parameters: NONFINITE at step 0
    traj = gradient_descent(sqrt_loss, jnp.array([1.0, jnp.nan]), learning_rate=0.1, num_steps=10)
    assert int(traj.status) == NONFINITE and int(traj.diverged_step) == 0


# ----------------------------------------------------------------------------------------------
# Compilation, jit and vmap


def test_no_recompile_eager_calls():
    """Python floats given eagerly are turned into arrays: new values reuse the program."""
    calls = 0

    def counting_loss(w, args):
        nonlocal calls
        calls += 1
        return jnp.sum((1.0 - w) ** 2)

    first = gradient_descent(counting_loss, jnp.full((3,), 0.5), learning_rate=0.1, num_steps=20,
                             save_every=5)
    traced = calls
    assert traced > 0
    for lr, w0, bound, scale in [(0.2, 0.1, 1e6, 0.5), (0.05, 2.0, 1e12, 1.0)]:
        again = gradient_descent(counting_loss, jnp.full((3,), w0), learning_rate=lr, num_steps=20,
                                 save_every=5, loss_bound=bound, time_scale=scale)
        assert calls == traced
        assert not np.array_equal(again.loss, first.loss)


class ScaledLoss(eqx.Module):
    """A loss as a module: its array field is traced, its identity compares by value."""

    weight: jax.Array

    def __call__(self, w, sstar):
        return self.weight * factor_loss(w, sstar)


def test_equal_module_callables_reuse_the_program():
    """Compiled like flow.solve (equinox's filter): a fresh but equal eqx.Module loss and new
    array values of the same shapes reuse the program; nothing is traced again."""
    traces = 0

    class CountingModes(eqx.Module):
        def __call__(self, w, sstar):
            nonlocal traces
            traces += 1  # runs only while tracing
            return factor_modes(w, sstar)

    sstar = jnp.asarray(SSTAR)
    losses = []
    for weight, lr, s0 in [(1.0, 0.01, 0.01), (2.0, 0.02, 0.1), (0.5, 0.05, 1e-3)]:
        traj = gradient_descent(ScaledLoss(jnp.asarray(weight)), balanced_init(2, s0), sstar,
                                learning_rate=lr, num_steps=100, save_every=10,
                                modes=CountingModes(), targets=sstar)
        losses.append(float(traj.loss[-1]))
        if weight == 1.0:
            first = traces
    assert first > 0 and traces == first
    assert len(set(losses)) == 3


def test_args_positional_or_keyword():
    sstar = jnp.asarray(SSTAR)
    kw = dict(learning_rate=0.03, num_steps=100, save_every=10, modes=factor_modes, targets=sstar)
    positional = gradient_descent(factor_loss, balanced_init(2, 0.01), sstar, **kw)
    keyword = gradient_descent(factor_loss, balanced_init(2, 0.01), args=sstar, **kw)
    for name in ("loss", "modes", "learning_steps", "final_state"):
        np.testing.assert_array_equal(getattr(positional, name), getattr(keyword, name))


def test_shared_trajectory_contract(divergence_lanes):
    """The fields of jaxflow.engine.trajectory.Trajectory mean what they mean for the flow."""
    lrs, traj = divergence_lanes
    assert isinstance(traj, Trajectory) and isinstance(traj, jaxflow.engine.flow.Trajectory)
    np.testing.assert_array_equal(traj.rejected, [0, 0, 0, 0])
    np.testing.assert_array_equal(traj.fractions[0], [0.1, 0.5, 0.9])
    # Flow time reached: that of the last accepted step (time_scale 1/2).
    np.testing.assert_allclose(traj.final_time, np.asarray(lrs) * np.asarray(traj.steps) / 2,
                               rtol=1e-15)
    np.testing.assert_allclose(traj.final_time[0], traj.times[0, -1], rtol=1e-15)
    np.testing.assert_array_equal(traj.final_modes[0], traj.modes[0, -1])
    assert np.all(np.isnan(traj.modes[2:, -1]))  # failed before the last save: not computed
    np.testing.assert_array_equal(traj.final_params, traj.final_state)
    # Gradients: one at the initial point, one per step until the run ended or failed.
    div = np.asarray(traj.diverged_step[2:])
    np.testing.assert_array_equal(traj.evaluations, [401, 401, *(1 + div)])


def test_optimizer_factories():
    sstar = jnp.asarray(SSTAR)
    w0 = balanced_init(2, 0.01)
    kw = dict(learning_rate=0.03, num_steps=100, save_every=10, args=sstar)
    # with modes and targets, as test_zero_target_and_initial_point: the same program
    plain = gradient_descent(factor_loss, w0, modes=factor_modes, targets=sstar, **kw)
    injected = gradient_descent(factor_loss, w0, optimizer=optax.inject_hyperparams(optax.sgd),
                                **kw)
    np.testing.assert_allclose(injected.loss, plain.loss, rtol=1e-14)
    heavy = gradient_descent(factor_loss, w0, optimizer=lambda lr: optax.sgd(lr, momentum=0.9),
                             **kw)
    assert int(heavy.status) == OK and heavy.loss[-1] < plain.loss[-1]


def test_float32_params():
    w0 = balanced_init(2, 0.01).astype(jnp.float32)
    sstar = jnp.asarray(SSTAR, jnp.float32)
    traj = gradient_descent(factor_loss, w0, learning_rate=0.03, num_steps=100, save_every=10,
                            args=sstar, modes=factor_modes, targets=sstar)
    assert traj.final_params.dtype == jnp.float32 and traj.loss.dtype == jnp.float32
    assert traj.times.dtype == jnp.float32


# ----------------------------------------------------------------------------------------------
# Stopping when stationary


def quadratic_loss(w, curvature):
    return 0.5 * jnp.sum(curvature * w**2)


@pytest.fixture(scope="module")
def quadratic_lanes():
    """A vmap of a fast (lam = 1) and a slow (lam = 0.1) curvature: w0 = 1, eta = 0.1, a budget
    of 200 steps saved every 10, stationary_tol = 1e-6 (one compile for the two tests below)."""
    run = jax.vmap(lambda lam: gradient_descent(
        quadratic_loss, jnp.array([1.0]), args=lam, learning_rate=0.1, num_steps=200,
        save_every=10, stationary_tol=1e-6))
    return run(jnp.array([1.0, 0.1]))


def test_stationary_stop_on_a_quadratic(quadratic_lanes):
    """L = lam w^2 / 2 from w0 = 1: GD gives w_k = (1 - eta lam)^k, so the gradient
    lam (1 - eta lam)^k first drops to tol at k* = ceil(ln(tol / lam) / ln(1 - eta lam)); the run
    stops at the first check (a multiple of save_every) at or after k*. (Its flow time eta * k is
    the flow's ln(lam / tol) / lam up to O(eta).) The fast lane of ``quadratic_lanes``."""
    lam, eta, tol, every = 1.0, 0.1, 1e-6, 10
    k_star = math.ceil(math.log(tol / lam) / math.log(1.0 - eta * lam))  # 132
    expected = every * math.ceil(k_star / every)  # 140
    traj = jax.tree.map(lambda leaf: leaf[0], quadratic_lanes)
    assert int(traj.status) == OK and int(traj.steps) == expected
    assert abs(eta * expected - math.log(lam / tol) / lam) < 0.5
    np.testing.assert_allclose(float(traj.final_params[0]), (1.0 - eta * lam) ** expected,
                               rtol=1e-12)
    # Saves past the stop repeat the final state.
    stop = expected // every
    assert traj.loss.shape[0] > stop + 1  # there are saves past the stop
    np.testing.assert_array_equal(traj.loss[stop:], np.full(traj.loss.shape[0] - stop,
                                                            float(traj.loss[stop])))
    assert abs(lam * float(traj.final_params[0])) <= tol


def test_budget_spent_first_is_max_steps_and_lanes_are_independent(quadratic_lanes):
    """The fast lane stops stationary (ok: on this quadratic the remaining travel |g|^3/(g.Hg)
    is |w| exactly, below 1e-6 from 0.9^132 on, checked every 10 steps), the slow one spends its
    200-step budget first (max_steps: 0.99^200 = 0.13 is far from stationary)."""
    traj = quadratic_lanes
    assert traj.status.tolist() == [OK, MAX_STEPS]
    assert traj.steps.tolist() == [140, 200]
    np.testing.assert_allclose(np.asarray(traj.final_params[:, 0]), [0.9**140, 0.99**200],
                               rtol=1e-12)


def test_stationary_tol_none_is_the_fixed_step_run():
    """A tolerance never met runs the same steps as no tolerance: the same numbers, bitwise,
    and only the status differs (max_steps: the budget ran out before it was stationary)."""
    # the settings of test_divergence_freezes_one_lane_only's single runs: the same program
    w0, kw = balanced_init(2, 0.01), dict(args=jnp.asarray(SSTAR), learning_rate=0.05,
                                          num_steps=400, save_every=50, modes=factor_modes,
                                          targets=jnp.asarray(SSTAR), time_scale=0.5)
    fixed = gradient_descent(factor_loss, w0, **kw)
    budget = gradient_descent(factor_loss, w0, stationary_tol=1e-300, **kw)
    assert int(fixed.status) == OK and int(budget.status) == MAX_STEPS
    for name in ("times", "modes", "loss", "learning_steps", "final_params", "steps"):
        np.testing.assert_array_equal(getattr(budget, name), getattr(fixed, name), err_msg=name)


# ----------------------------------------------------------------------------------------------
# Bad input: one test per rule


def call(**overrides):
    kw = dict(learning_rate=0.1, num_steps=10, save_every=1)
    kw.update(overrides)
    return gradient_descent(sqrt_loss, jnp.array([1.0]), **kw)


@pytest.mark.parametrize("lr", [0.0, -0.1, math.nan, math.inf])
def test_bad_learning_rate(lr):
    with pytest.raises(ValueError, match=r"learning_rate must be a number in \(0, inf\)"):
        call(learning_rate=lr)


def test_learning_rate_must_be_scalar():
    with pytest.raises(ValueError, match="learning_rate must be a scalar.*vmap"):
        call(learning_rate=jnp.array([0.1, 0.2]))


@pytest.mark.parametrize("n", [0, -5])
def test_bad_num_steps(n):
    with pytest.raises(ValueError, match="num_steps must be an int >= 1"):
        call(num_steps=n)


def test_bad_save_every():
    with pytest.raises(ValueError, match="save_every must be an int >= 1"):
        call(save_every=0)


def test_num_steps_multiple_of_save_every():
    message = r"num_steps \(10\) must be a multiple of save_every \(3\)"
    with pytest.raises(ValueError, match=message):
        call(save_every=3)


@pytest.mark.parametrize(
    "fractions", [(0.0, 0.5), (0.5, 1.5), (1.5,), (-0.1, 0.2), (0.5, 0.1), (0.1, 0.5, 0.5)]
)
def test_fractions_rule_shared_with_flow(fractions):
    rule = r"fractions must be strictly increasing values in \(0, 1\] \(or empty\)"
    with pytest.raises(ValueError, match=rule):
        call(fractions=fractions)


def test_fractions_one_and_none_allowed():
    sstar = jnp.asarray(SSTAR)
    kw = dict(learning_rate=0.3, num_steps=400, save_every=100, modes=factor_modes, targets=sstar)
    full = gradient_descent(factor_loss, balanced_init(2, 0.01), sstar, fractions=(0.5, 1.0), **kw)
    assert full.learning_steps.shape == (2, 2) and full.fractions.tolist() == [0.5, 1.0]
    none = gradient_descent(factor_loss, balanced_init(2, 0.01), sstar, fractions=(), **kw)
    assert none.learning_times.shape == (2, 0) and none.learning_steps.shape == (2, 0)
    np.testing.assert_array_equal(none.modes, full.modes)


def test_bad_loss_bound_and_time_scale():
    with pytest.raises(ValueError, match=r"loss_bound must be a number in \(0, inf\]"):
        call(loss_bound=0.0)
    with pytest.raises(ValueError, match=r"time_scale must be a number in \(0, inf\)"):
        call(time_scale=-1.0)
    with pytest.raises(ValueError, match=r"stationary_tol must be a number in \(0, inf\)"):
        call(stationary_tol=0.0)


def test_targets_shape_must_match_modes():
    with pytest.raises(ValueError, match=r"targets must have the shape \(M,\) = \(2,\)"):
        gradient_descent(factor_loss, balanced_init(2, 0.1), learning_rate=0.1, num_steps=10,
                         args=jnp.asarray(SSTAR), modes=factor_modes, targets=jnp.ones(3))
