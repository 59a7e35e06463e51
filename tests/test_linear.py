"""Deep linear networks (jaxflow.models.linear): Saxe's transitions, deep matrix factorization
and the toy model against their closed forms through jaxflow.oracles.saddles; the conserved
balancedness of unbalanced and lambda-balanced starts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxflow.engine import flow
from jaxflow.models import linear, toy
from jaxflow.oracles import saddles, theory

SINGULAR_VALUES = jnp.array([3.0, 1.5, 0.75])
# Every staircase below is detected on 25,001 samples of 3 values: one compiled detection for
# the file (saddles.detect compiles once per shape).
SAMPLES = 25_001
# The depth-2 flows (Saxe's transitions, balancedness) share one compiled solve: the same
# parameter shapes ((3, 3) and (4, 3)), save times and tolerances.
SAXE_GRID = jnp.linspace(0.0, 60.0, SAMPLES)
SAXE_TOLERANCES = dict(rtol=1e-10, atol=1e-40)


@jax.jit  # one program (op by op, every QR and product would compile on its own)
def _target():
    # A non-diagonal target: the singular directions are rotated.
    q1, _ = jnp.linalg.qr(jax.random.normal(jax.random.key(1), (4, 4)))
    q2, _ = jnp.linalg.qr(jax.random.normal(jax.random.key(2), (3, 3)))
    return q1[:, :3] @ jnp.diag(SINGULAR_VALUES) @ q2.T


def _aligned_flow(a0, depth, grid, **solver):
    """The flow of the aligned balanced start on the rotated target, saved on ``grid``, and
    its detected staircase."""
    target = _target()
    traj = flow.gradient_flow(
        linear.loss, linear.aligned_init(target, a0, depth), target, modes=linear.modes,
        targets=jnp.zeros(3), save_times=grid, **solver,
    )  # fmt: skip
    assert int(traj.status) == 0
    return traj, saddles.detect(grid, traj.modes, tol=1e-5, max_plateaus=5)


def test_saxe_transitions_against_the_closed_form():
    # a0 = 1e-30: the plateaus between transitions are long (t = 11.7, 23.2, 46.1).
    a0, grid = 1e-30, SAXE_GRID
    traj, st = _aligned_flow(a0, 2, grid, **SAXE_TOLERANCES)
    exact = linear.saxe_strength(SINGULAR_VALUES, a0, grid[:, None])
    # The SVD resolves a small singular value next to a large one to ~1e-16 * ||W|| only.
    np.testing.assert_allclose(traj.modes, exact, rtol=1e-6, atol=1e-14)
    transition = linear.saxe_transition_time(SINGULAR_VALUES, a0)
    np.testing.assert_allclose(st.jump_times[:3], transition, rtol=1e-4)
    assert st.active[:4].sum(axis=1).tolist() == [0, 1, 2, 3]  # one rank increment per jump


def test_deep_factorization_jump_times_against_theory():
    # Depth 3, aligned balanced start: each singular value is the toy model with c = N.
    a0, depth, grid = 1e-9, 3, jnp.linspace(0.0, 2000.0, SAMPLES)
    # Plain time: in relative time a learned mode (rate ~ N s^(2-2/N)) makes the plateau that
    # follows stiff (out of steps); Tsit5 at its stability limit takes ~6600 steps.
    _, st = _aligned_flow(a0, depth, grid, rtol=1e-10, atol=1e-14, max_steps=20_000,
                          time="plain")
    exact = theory.learning_time(float(depth), SINGULAR_VALUES, a0, 0.5 * SINGULAR_VALUES) / depth
    np.testing.assert_allclose(st.jump_times[:3], exact, rtol=2e-4)


def test_toy_model_jump_times_against_theory():
    # sigma0 = 1e-8: at depth 4, sigma^(-1/2) falls linearly, so mode 2 has grown 4x when
    # mode 1 jumps; the plateaus separate at tol = 1e-5 only from such small scales. The
    # coordinates are decoupled: each is solved alone (toy.reduced_speed keeps each lane at a
    # few hundred steps; together, a learned coordinate would make the others' plateau stiff).
    depth, sigma0 = 4.0, 1e-8
    targets = jnp.array([4.0, 2.0, 1.0])
    grid = jnp.linspace(0.0, 25_000.0, SAMPLES)
    columns = []
    for target in targets:
        args = toy.ToyArgs(depth=depth, targets=target[None])
        traj = flow.solve(
            toy.reduced_vector_field,
            toy.reduced_init(sigma0, 1),
            args,
            modes=toy.reduced_modes,
            targets=jnp.zeros(1),
            save_times=grid,
            rtol=1e-10,
            atol=1e-12,
            time=toy.reduced_speed,
        )
        assert int(traj.status) == 0
        columns.append(traj.modes[:, 0])
    st = saddles.detect(grid, jnp.stack(columns, axis=1), tol=1e-5, max_plateaus=5)
    exact = theory.learning_time(depth, targets, sigma0, 0.5 * targets)
    # Mode 1's jump (width ~ 0.1) is narrower than the grid's spacing (1): linear
    # interpolation between samples places it within 0.2 (measured 3.4e-5 relative).
    np.testing.assert_allclose(st.jump_times[:3], exact, rtol=1e-4)
    assert st.active[:4].sum(axis=1).tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("balance", [None, 0.0, 0.3])
def test_balancedness_is_conserved(balance):
    # Unbalanced Gaussian and lambda-balanced starts: W2^T W2 - W1 W1^T stays at its start to
    # the solver's tolerance through every transition (every mode is learned by t = 30; the
    # flow runs to t = 60 on Saxe's grid and tolerances, reusing that test's program).
    target = _target()
    params = linear.init(jax.random.key(3), 1e-3, (3, 3, 4), balance=balance)
    traj = flow.gradient_flow(
        linear.loss,
        params,
        target,
        modes=linear.modes,
        targets=jnp.zeros(3),
        save_times=SAXE_GRID,
        **SAXE_TOLERANCES,
    )
    assert int(traj.status) == 0
    assert float(linear.loss(traj.final_state, target)) < 1e-6  # every mode learned
    drift = linear.balancedness(traj.final_state)[0] - linear.balancedness(params)[0]
    assert float(jnp.abs(drift).max()) < 1e-8


def test_init_rejects_bad_balance():
    # Widths of test_balancedness_is_conserved's layers where possible (the Gaussian draws of a
    # new shape compile on their own).
    with pytest.raises(ValueError, match="indefinite"):
        linear.init(jax.random.key(0), 1e-2, (3, 3, 4), balance=-1.0)
    with pytest.raises(ValueError, match="output width"):
        linear.init(jax.random.key(0), 1e-2, (3, 4, 3), balance=0.0)


def test_inits_refuse_bad_scale_depth_and_target():
    """A negative scale made aligned_init's factors complex; depth 1 gave two layers."""
    target = jnp.diag(jnp.array([2.0, 1.0]))
    for call, match in [
        (lambda: linear.init(jax.random.key(0), 0.0, (3, 2)), "scale"),
        (lambda: linear.aligned_init(target, -1e-4, 2), "scale"),
        (lambda: linear.aligned_init(target, 1e-4, 1),
         r"depth \(aligned_init\) must be an integer >= 2"),
        (lambda: linear.aligned_init(jnp.zeros((2, 2)), 1e-4, 2), "non-zero"),
    ]:
        with pytest.raises(ValueError, match=match):
            call()
