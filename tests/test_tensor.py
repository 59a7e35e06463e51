"""CP tensor factorization (jaxflow.models.tensor): gradients against finite differences,
components learned one at a time, conserved factor-norm differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxflow.engine import flow
from jaxflow.models import tensor
from jaxflow.oracles import saddles


@pytest.mark.parametrize("order", [2, 3, 4])
def test_gradient_against_finite_differences(order):
    target = tensor.orthogonal_target(jax.random.key(0), 3, (2.0, 1.0), order=order)
    params = tensor.init(jax.random.key(1), 0.5, order=order, rank=2, d=3)
    loss = jax.jit(tensor.loss)  # eager, every op of the contraction compiles on its own
    grad = jax.jit(jax.grad(tensor.loss))(params, target)
    direction = jax.random.normal(jax.random.key(2), params.shape)
    h = 1e-6
    central = (loss(params + h * direction, target) - loss(params - h * direction, target)) / (
        2 * h
    )
    np.testing.assert_allclose(central, jnp.vdot(grad, direction), rtol=1e-8)
    # Entry by entry on one factor too (a wrong axis in the contraction would show here).
    for index in [(0, 0, 0), (order - 1, 1, 2)]:
        e = jnp.zeros_like(params).at[index].set(1.0)
        fd = (loss(params + h * e, target) - loss(params - h * e, target)) / (2 * h)
        # atol: a few times the difference quotient's rounding, eps x |loss| / h = 5e-10 here
        # (loss 2.5); the entries are about 1e-3
        np.testing.assert_allclose(fd, grad[index], rtol=1e-7, atol=2e-9)


def test_components_learned_one_at_a_time():
    # Order 3, d = 4, target weights (4, 2, 1), four components from N(0, 1e-2) factors.
    # Measured: jumps at t = 18.1, 57.0, 147.4, one new component on each plateau.
    target = tensor.orthogonal_target(jax.random.key(0), 4, (4.0, 2.0, 1.0), order=3)
    params = tensor.init(jax.random.key(1), 1e-2, order=3, rank=4, d=4)
    grid = jnp.linspace(0.0, 300.0, 3001)
    traj = flow.gradient_flow(
        tensor.loss,
        params,
        target,
        modes=tensor.modes,
        targets=jnp.zeros(4),
        save_times=grid,
        rtol=1e-9,
        atol=1e-14,
        max_steps=20_000,
    )
    assert int(traj.status) == 0
    st = saddles.detect(grid, traj.modes, tol=1e-4)
    assert int(st.num_plateaus) == 4
    assert st.active[:4].sum(axis=1).tolist() == [0, 1, 2, 3]  # rank increments by one
    jumps = np.asarray(st.jump_times[:3])
    assert (np.diff(jumps) > 20.0).all()  # separated plateaus, largest weight first
    np.testing.assert_allclose(st.levels[3, :3], [4.0, 2.0, 1.0], rtol=1e-3)
    np.testing.assert_allclose(jumps, [18.1, 57.0, 147.4], rtol=0.01)
    # ||a_(n,r)||^2 - ||a_(1,r)||^2 is conserved: drift at the solver's tolerance.
    drift = tensor.invariants(traj.final_state) - tensor.invariants(params)
    assert float(jnp.abs(drift).max()) < 1e-10


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="order"):
        tensor.init(jax.random.key(0), 1e-2, order=1, rank=2, d=3)
    with pytest.raises(ValueError, match="weights"):
        tensor.orthogonal_target(jax.random.key(0), 2, (3.0, 2.0, 1.0), order=3)


def test_init_refuses_a_non_positive_or_infinite_scale():
    for scale in (0.0, -1e-2, float("inf")):
        with pytest.raises(ValueError, match=r"scale \(init\) must be > 0 and finite"):
            tensor.init(jax.random.key(0), scale, order=3, rank=2, d=3)
