"""Diagonal networks (E3), the max-margin oracle and the E3 experiment at smoke size."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxflow.baselines import max_margin
from jaxflow.engine import descent, flow, status
from jaxflow.experiments import backends
from jaxflow.experiments import diagonal as e3
from jaxflow.experiments.config import ConfigError
from jaxflow.models import diagonal as dn


def _brute_force_svm(z):
    """Max-margin direction by enumerating support sets (tiny problems): among w = Z_S^T lam with
    Z_S w = 1, lam >= 0 and every margin >= 1, the one of least norm."""
    best = None
    for size in range(1, z.shape[0] + 1):
        for subset in itertools.combinations(range(z.shape[0]), size):
            zs = z[list(subset)]
            lam, *_ = np.linalg.lstsq(zs @ zs.T, np.ones(size), rcond=None)
            w = zs.T @ lam
            if np.all(lam >= -1e-12) and np.all(z @ w >= 1 - 1e-9) and np.allclose(zs @ w, 1):
                if best is None or np.linalg.norm(w) < np.linalg.norm(best):
                    best = w
    return best / np.linalg.norm(best), 1.0 / np.linalg.norm(best)


_TRACES = []


def _counting_loss(params, problem):
    _TRACES.append(1)  # runs only while tracing
    return dn.loss(params, problem)


def test_max_margin_matches_brute_force():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 3))
    y = np.where(x @ np.array([1.0, -0.5, 0.2]) >= 0, 1.0, -1.0)
    svm = max_margin.max_margin(jnp.asarray(x), jnp.asarray(y))
    direction, margin = _brute_force_svm(y[:, None] * x)
    np.testing.assert_allclose(svm.direction, direction, atol=1e-10)
    assert float(svm.margin) == pytest.approx(margin, rel=1e-10)
    assert float(svm.kkt_residual) < 1e-10


def test_depth1_exponential_direction_converges_to_svm():
    # Soudry et al.: the flow's direction tends to the SVM's (slowly, ~1/ln t); relative time
    # reaches t = 1e12 in a few hundred steps. Cosine >= 0.99 on a small separable problem.
    # Then the compiled program is reused: a fresh but equal ``backends.TopModes`` and new values
    # of the same shapes (data, scale, depth 2) trace nothing (eqx.filter_jit).
    _TRACES.clear()
    counts = []
    for seed, scale, depth in [(3, 1e-2, 1.0), (4, 1e-3, 2.0)]:
        data = dn.classification_data(jax.random.key(seed), jnp.array([1.0, 0.5, 0.0, 0.0]), 20)
        problem = dn.Problem(data, depth=depth, loss="exponential")
        traj = flow.gradient_flow(
            _counting_loss,
            dn.init(scale, 1, 4),
            problem,
            modes=backends.TopModes(dn.modes, 2),
            targets=jnp.ones(2),
            t_end=jnp.asarray(1e12),
            rtol=1e-8,
            atol=1e-12,
            max_steps=20_000,
            refine=False,
        )
        assert int(traj.status) == status.OK
        counts.append(len(_TRACES))
        if depth == 1.0:
            svm = max_margin.max_margin(data.inputs, data.labels)
            b = dn.beta(traj.final_state, 1.0)
            assert float(dn.cosine(b, svm.direction)) >= 0.99
            assert not bool(jnp.any(jnp.isnan(b)))
    assert counts[0] > 0 and counts[1] == counts[0], counts


def test_modes_learned_in_target_order_at_depth_3():
    # Well-sampled data (m >> d): the coordinates reach |beta_i| = 0.5 largest |w*_i| first and
    # well separated in time (incremental learning); depth 1 has no such separation. The depth-3
    # run reuses the depth-1 run's compiled program: a fresh but equal ``backends.TopModes`` and
    # new values of the same shapes (init, depth) trace nothing (eqx.filter_jit).
    target = dn.sparse_target(6, (8.0, 4.0, 2.0))
    data = dn.classification_data(jax.random.key(0), target, 400)
    times = {}
    _TRACES.clear()
    counts = []
    for depth in (1, 3):
        problem = dn.Problem(data, depth=float(depth), loss="exponential")
        traj = descent.gradient_descent(
            _counting_loss,
            dn.init(1e-3, depth, 6),
            args=problem,
            learning_rate=0.05,
            num_steps=4000,
            save_every=100,
            modes=backends.TopModes(dn.modes, 3),
            targets=dn.targets(problem, 3),
            fractions=(0.5,),
        )
        times[depth] = np.asarray(traj.learning_times[:, 0])
        counts.append(len(_TRACES))
    assert counts[0] > 0 and counts[1] == counts[0], counts
    assert np.all(np.isfinite(times[3])) and np.all(np.diff(times[3]) > 0), times[3]
    # Depth 3 spreads the jumps out (measured 4.55, 9.15, 13.55); depth 1 learns the three
    # coordinates to 0.5 at 1.85, 3.55, 7.05 (all in proportion to the gradient).
    assert times[3][-1] / times[3][0] > 2.5, times[3]


def test_losses_against_closed_forms_and_underflow():
    x = jnp.array([[1.0, 0.0], [0.0, 2.0]])
    data = dn.Data(x, jnp.array([1.0, -1.0]), jnp.array([1.0, -1.0]))
    b = jnp.array([0.5, -0.25])  # margins 0.5, 0.5
    assert float(dn.linear_loss(b, data, "exponential")) == pytest.approx(np.exp(-0.5), rel=1e-14)
    assert float(dn.linear_loss(b, data, "logistic")) == pytest.approx(
        np.log1p(np.exp(-0.5)), rel=1e-14
    )
    assert float(dn.linear_loss(b, data, "squared")) == pytest.approx(
        0.5 * (0.5**2 + 0.5**2), rel=1e-14
    )
    params = {"w_plus": jnp.array([2.0, 0.0]), "w_minus": jnp.array([1.0, 3.0])}
    np.testing.assert_allclose(dn.beta(params, 3.0), [7.0, -27.0])
    # Margins 900: exp(-900) underflows to 0 in float64; the log-loss stays exact and finite.
    huge = {"w_plus": jnp.array([900.0, 0.0]), "w_minus": jnp.array([0.0, 450.0])}
    problem = dn.Problem(data, depth=1.0, loss="exponential")
    assert float(dn.loss(huge, problem)) == 0.0
    assert float(dn.log_loss(huge, problem)) == pytest.approx(-900.0, rel=1e-14)
    assert float(dn.loss_underflow(huge, problem)) == 1.0
    grads = jax.grad(dn.loss)(huge, problem)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(grads))


def test_clear_errors():
    x = jnp.ones((3, 2))
    with pytest.raises(ValueError, match="labels must be -1 or \\+1"):
        dn.Problem(dn.Data(x, jnp.array([0.0, 1.0, 1.0]), jnp.ones(2)), loss="exponential")
    dn.Problem(
        dn.Data(x, jnp.array([0.3, 1.0, 2.0]), jnp.ones(2)), loss="squared"
    )  # regression: any
    with pytest.raises(ValueError, match="labels must have shape"):
        dn.Data(x, jnp.ones(4), jnp.ones(2))
    with pytest.raises(ValueError, match="target must have shape"):
        dn.Data(x, jnp.ones(3), jnp.ones(3))
    with pytest.raises(ValueError, match="loss must be one of"):
        dn.Problem(dn.Data(x, jnp.ones(3), jnp.ones(2)), loss="hinge")
    with pytest.raises(ValueError, match="depth must be >= 1"):
        dn.Problem(dn.Data(x, jnp.ones(3), jnp.ones(2)), depth=0.5)
    with pytest.raises(ValueError, match="not linearly separable"):
        max_margin.max_margin(
            jnp.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]), jnp.array([1.0, 1.0, 1.0])
        )
    with pytest.raises(ValueError, match="labels must have shape"):
        max_margin.max_margin(jnp.ones((3, 2)), jnp.ones(2))
    with pytest.raises(ValueError, match="classify every sample"):
        max_margin.kkt_residual(jnp.array([-1.0, 0.0]), jnp.eye(2), jnp.ones(2))
    with pytest.raises(ConfigError, match="loss must be"):
        e3.DiagonalConfig(loss="squared")
    with pytest.raises(ConfigError, match="depths"):
        e3.DiagonalConfig(depths=(0,))


def test_kkt_residual_of_l1_stationary_point_is_zero():
    # Depth 2 (q = 1): b = (1, 0) with the single sample x = (1, 0.5): z = lam x, lam = 1 gives
    # sign(b_1) = 1 on the support and |z_2| = 0.5 <= 1 off it: a KKT point (residual 0).
    # x = (1, 2): |z_2| = 2 > 1 violates it (the L1 minimum puts weight on coordinate 2 instead).
    assert (
        float(
            max_margin.kkt_residual(
                jnp.array([1.0, 0.0]), jnp.array([[1.0, 0.5]]), jnp.ones(1), depth=2
            )
        )
        < 1e-12
    )
    assert float(
        max_margin.kkt_residual(
            jnp.array([1.0, 0.0]), jnp.array([[1.0, 2.0]]), jnp.ones(1), depth=2
        )
    ) == pytest.approx(1.0, rel=1e-9)


def test_init_and_problem_refuse_an_infinite_scale_or_depth():
    """scale = inf and depth = inf used to give w = inf and w = 1 (beta(0) = 0 forever)."""
    data = dn.Data(jnp.eye(2), jnp.ones(2), jnp.ones(2))
    for call, match in [(lambda: dn.init(float("inf"), 2.0, 2), "scale"),
                        (lambda: dn.init(1e-2, float("inf"), 2), "depth"),
                        (lambda: dn.Problem(data, depth=float("inf")), "depth")]:
        with pytest.raises(ValueError, match=f"{match}.* finite"):
            call()
