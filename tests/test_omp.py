"""Orthogonal Matching Pursuit (E5)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxflow.baselines import omp
from jaxflow.models import diagonal as dn
from jaxflow.oracles import incremental


def test_recovers_support_of_easy_noiseless_instance():
    target = jnp.zeros(60).at[jnp.array([7, 23, 41])].set(jnp.array([5.0, -3.0, 1.5]))
    data = dn.regression_data(jax.random.key(0), target, 40)
    result = omp.omp(data.inputs, data.labels, 3)
    assert sorted(result.order.tolist()) == [7, 23, 41]
    np.testing.assert_allclose(result.coefficients, target, atol=1e-10)
    assert float(result.residual_norms[-1]) < 1e-10


def test_each_step_matches_brute_force_greedy_choice():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 9))
    y = rng.standard_normal(6)
    result = omp.omp(jnp.asarray(x), jnp.asarray(y), 4)
    selected, residual = [], y.copy()
    for _ in range(4):
        scores = [
            abs(x[:, i] @ residual) / np.linalg.norm(x[:, i]) if i not in selected else -1
            for i in range(9)
        ]
        selected.append(int(np.argmax(scores)))
        coef, *_ = np.linalg.lstsq(x[:, selected], y, rcond=None)
        residual = y - x[:, selected] @ coef
    assert result.order.tolist() == selected
    assert float(result.residual_norms[-1]) == pytest.approx(np.linalg.norm(residual), rel=1e-9)


def test_early_stop_pads_and_concurrence():
    result = omp.omp(jnp.eye(4), jnp.array([0.0, 2.0, 0.0, 0.0]), 3)
    assert result.order.tolist() == [1, -1, -1]
    assert incremental.concurrence([1, 2, 3], [3, 2, -1]) == 1.0
    assert incremental.concurrence([1, 2, 3], [4, 2, 5, 6]) == pytest.approx(1 / 3)
    assert np.isnan(incremental.concurrence([-1], [1]))
    for a, b in itertools.product([[0, 1], [2]], repeat=2):
        assert 0.0 <= incremental.concurrence(a, b) <= 1.0


def test_clear_errors():
    with pytest.raises(ValueError, match="observations must have shape"):
        omp.omp(jnp.ones((3, 4)), jnp.ones(4), 1)
    with pytest.raises(ValueError, match="num_atoms must be an integer in"):
        omp.omp(jnp.ones((3, 4)), jnp.ones(3), 4)
    with pytest.raises(ValueError, match="zero column"):
        omp.omp(jnp.zeros((3, 4)), jnp.ones(3), 1)
