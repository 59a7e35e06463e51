"""Sharpness by Hessian-vector products, the toy model's closed forms, and descent regimes at the
edge of stability (docs/science/edge-of-stability.md). About 12 CPU-seconds, most of them the
one compiled descent of ``edge_runs``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import jaxflow
from jaxflow.engine import regime
from jaxflow.engine.sharpness import sharpness, top_eigenpair
from jaxflow.models import toy
from jaxflow.oracles import minimum_sharpness as ms

TARGETS = jnp.array([2.0, 0.7])

# The functions under test and the references, each compiled whole: run eagerly, every one of
# their operations would compile on its own (most of this file's time once); same values.
_sharpness = jax.jit(sharpness, static_argnums=0)
_top_eigenpair = jax.jit(top_eigenpair, static_argnums=0, static_argnames="iterations")
_flow_solution = jax.jit(ms.flow_solution)
_flow_solution_sharpness = jax.jit(ms.flow_solution_sharpness)
_classify = jax.jit(regime.classify)
_stable_at_end = jax.jit(regime.stable_at_end)


@jax.jit
def _factor_hessian_top(params, args):
    return _hessian_top(toy.factor_loss, params, args)


def _hessian_top(loss, params, args):
    """The reference: the top eigenvalue of the dense Hessian (jax.hessian + eigvalsh)."""
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    dense = jax.hessian(lambda v: loss(unravel(v), args))(flat)
    return jnp.linalg.eigvalsh(dense)[-1]


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_balanced_minimum_sharpness_matches_hvp(depth):
    minimum = {"plus": jnp.abs(TARGETS)[:, None] ** (1.0 / depth) * jnp.ones((2, depth))}
    exact = float(ms.balanced_minimum_sharpness(depth, TARGETS))
    # the closed form: max_i s_i^(2 - 2/N) / N, here coordinate 0 (s = 2)
    assert exact == pytest.approx(2.0 ** (2 - 2 / depth) / depth, rel=1e-14)
    assert float(_sharpness(toy.factor_loss, minimum, TARGETS)) == pytest.approx(exact, rel=1e-8)


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_flow_solution_sharpness_matches_hvp_at_the_reached_minimum(depth):
    start = {"plus": 0.3 + jax.random.uniform(jax.random.PRNGKey(depth), (2, depth))}
    end = _flow_solution(start, TARGETS)
    w0, w1 = np.asarray(start["plus"]), np.asarray(end["plus"])
    # invariants of the flow: the products reach the targets, the squared differences are kept
    np.testing.assert_allclose(np.prod(w1, axis=-1), TARGETS, rtol=1e-12)
    np.testing.assert_allclose(w1**2 - w1[:, :1] ** 2, w0**2 - w0[:, :1] ** 2, atol=1e-12)
    hvp_value = float(_sharpness(toy.factor_loss, end, TARGETS))
    assert float(_flow_solution_sharpness(start, TARGETS)) == pytest.approx(hvp_value, rel=1e-8)


def test_flow_solution_is_where_gradient_flow_goes():
    """Independent of the closed form: integrate the flow by scipy from an unbalanced start."""
    w0, target, depth = np.array([0.9, 0.4, 0.6]), 1.5, 3

    def minus_gradient(t, w):  # -dL/dw_j = (s - P) P / w_j / N^2 for L = (s - P)^2 / (2 N^2)
        product = np.prod(w)
        return (target - product) * product / w / depth**2

    end = solve_ivp(minus_gradient, (0.0, 400.0), w0, method="DOP853", rtol=1e-12, atol=1e-14).y[:, -1]
    closed = np.asarray(_flow_solution({"plus": jnp.asarray(w0)[None]}, jnp.array([target]))["plus"][0])
    np.testing.assert_allclose(closed, end, rtol=1e-9)


def test_wrong_sign_has_no_minimum_to_reach():
    start = {"plus": jnp.array([[-0.5, 0.4]])}
    assert np.isnan(float(_flow_solution_sharpness(start, jnp.array([1.0]))))
    with pytest.raises(ValueError, match="unsigned toy model"):
        _flow_solution({"plus": start["plus"], "minus": start["plus"]}, jnp.array([1.0]))


def test_lanczos_finds_the_top_eigenvalue_past_a_saddle_and_warm_starts():
    """Near the plateau's saddle the Hessian has a negative eigenvalue of larger magnitude (power
    iteration's answer); Lanczos returns the top one."""
    params = {"plus": jnp.array([[0.1, -0.12, 0.05], [0.2, 0.3, 0.25]])}
    targets = jnp.array([3.0, 1.0])
    reference = float(_factor_hessian_top(params, targets))
    value, vector = _top_eigenpair(toy.factor_loss, params, targets, iterations=6)
    assert float(value) == pytest.approx(reference, rel=1e-10)
    # warm started from its own vector, one step is already the answer
    again, _ = _top_eigenpair(toy.factor_loss, params, targets, iterations=1, start=vector)
    assert float(again) == pytest.approx(reference, rel=1e-10)
    with pytest.raises(ValueError, match="iterations must be an integer >= 1"):
        top_eigenpair(toy.factor_loss, params, targets, iterations=0)


def _dense_top(params, args):
    return jnp.atleast_1d(_hessian_top(toy.factor_loss, params, args))


@pytest.fixture(scope="module")
def edge_runs():
    """Depth 3, next to the balanced minimum (1% off), eta 2% below and 2% above 2 / lambda:
    one compiled program for both lanes (vmap over the rate)."""
    depth, targets, steps = 3, jnp.array([2.0]), 1500
    lam = float(ms.balanced_minimum_sharpness(depth, targets))
    etas = jnp.array([0.98, 1.02]) * 2.0 / lam
    start = {"plus": jnp.full((1, depth), 2.0 ** (1.0 / depth) * 1.01)}
    problem = jaxflow.Problem(loss=toy.factor_loss, args=targets, modes=toy.factor_values,
                              params0=start, targets=targets)

    def run(eta):
        method = jaxflow.Descent(learning_rate=eta, sharpness=3, observe=_dense_top, loss_bound=1e6)
        request = jaxflow.Request(save_times=jnp.arange(0.0, steps + 1) * eta, stationary_tol=None)
        return jaxflow.solve(problem, method, request)

    return jax.vmap(run)(etas), etas, lam, steps


def _lane(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


def test_two_percent_below_the_edge_converges_and_two_above_leaves(edge_runs):
    runs, etas, lam, steps = edge_runs
    below, above = _lane(runs, 0), _lane(runs, 1)
    code, step = _classify(below, etas[0])
    assert regime.name(code) == "converged" and 0 < int(step) < steps
    np.testing.assert_allclose(below.final_modes, [2.0], rtol=1e-6)
    assert bool(_stable_at_end(below, etas[0]))
    assert float(below.sharpness[-1]) == pytest.approx(lam, rel=1e-8)
    # the warm-started Lanczos trace against the dense Hessian at every save
    np.testing.assert_allclose(below.sharpness, below.observed[:, 0], rtol=1e-8)

    code, step = _classify(above, etas[1])
    assert regime.name(code) == "oscillating" and int(step) == steps
    assert not bool(_stable_at_end(above, etas[1]))
    # it left the minimum: the last saves stay far from sigma* = 2 and from loss 0
    assert float(jnp.min(jnp.abs(above.modes[-10:, 0] - 2.0))) > 1e-2
    assert float(jnp.min(above.loss[-10:])) > 1e-6


def test_regimes_vmap_lane_by_lane_bitwise(edge_runs):
    """A batch of lanes gives each lane the regime and the decision step of its own run."""
    runs, etas, _, _ = edge_runs
    codes, decided = jax.jit(jax.vmap(lambda t, e: regime.classify(t, e)))(runs, etas)
    single = [_classify(_lane(runs, i), etas[i]) for i in range(2)]
    assert [int(c) for c in codes] == [int(c) for c, _ in single] == [regime.CONVERGED,
                                                                       regime.OSCILLATING]
    assert [int(s) for s in decided] == [int(s) for _, s in single]
