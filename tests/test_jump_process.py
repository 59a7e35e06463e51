"""The jump-process oracle (jaxflow.oracles.jump_process): hand-solved cases, and simulated diagonal
networks (log coordinates, jaxflow.engine.flow) converging to it as the initialization scale -> 0."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxflow.engine import flow
from jaxflow.models import log_diagonal as ld
from jaxflow.oracles import jump_process as jpm
from jaxflow.oracles import saddles

# A coordinate that enters, leaves and comes back with the other sign (solved by hand below).
LEAVING_H = np.array([[1.0, 0.5], [0.5, 0.3]])
LEAVING_B = np.array([2.0, 1.8])


def test_orthogonal_design_jumps_at_inverse_targets():
    b = np.array([0.5, -3.0, 0.0, 1.5])
    jp = jpm.jump_process(np.eye(4), b, offset=0.5 * b @ b)
    np.testing.assert_allclose(jp.times, [0.0, 1 / 3, 2 / 3, 2.0])
    assert jp.entering.tolist() == [-1, 1, 3, 0]
    np.testing.assert_allclose(jp.betas[-1], b)
    np.testing.assert_allclose(jp.losses, [11.5 / 2, 2.5 / 2, 0.25 / 2, 0.0])
    assert jp.active.sum(axis=1).tolist() == [0, 1, 2, 3]


def test_two_correlated_coordinates_by_hand():
    # H = [[1, r], [r, 1]], b = (1, 1/2), r = 1/4: coordinate 0 enters at t = 1 with beta = (1, 0);
    # then ds_1/dt = 1/2 - r, so s_1 = 1/2 + (t - 1)/4 reaches 1 at t = 3, and beta = H^-1 b.
    h = np.array([[1.0, 0.25], [0.25, 1.0]])
    b = np.array([1.0, 0.5])
    jp = jpm.jump_process(h, b)
    np.testing.assert_allclose(jp.times, [0.0, 1.0, 3.0])
    np.testing.assert_allclose(jp.betas, [[0, 0], [1, 0], np.linalg.solve(h, b)], atol=1e-14)


def test_coordinate_leaves_the_active_set_by_hand():
    # t = 1/2: beta = (2, 0), gradient (0, -0.8): s_1 = 0.9 + 0.8 (t - 1/2) reaches 1 at 5/8.
    # The joint minimizer (-6, 16) violates beta_0 >= 0, so beta = (0, 1.8/0.3) = (0, 6) and
    # coordinate 0 leaves (gradient 0.5 * 6 - 2 = 1 > 0): s_0 = 1 - (t - 5/8) reaches -1 at 21/8,
    # where it comes back negative and beta = H^-1 b = (-6, 16).
    jp = jpm.jump_process(LEAVING_H, LEAVING_B)
    np.testing.assert_allclose(jp.times, [0.0, 0.5, 0.625, 2.625], rtol=1e-14)
    np.testing.assert_allclose(jp.betas, [[0, 0], [2, 0], [0, 6], [-6, 16]], atol=1e-12)
    assert jp.active.tolist() == [[False, False], [True, False], [False, True], [True, True]]
    assert jp.entering.tolist() == [-1, 0, 1, 0]


def test_time_scale_limits_agree():
    # (scale^-(1-2/N) - 1) / (N (N - 2)) -> ln(1/scale) / 4 as N -> 2: the two formulas meet.
    log_scale = -50.0
    n = 2.0 + 1e-7
    near = (np.exp(-(1 - 2 / n) * log_scale) - 1) / (n * (n - 2))
    assert abs(near / jpm.time_scale(2.0, log_scale) - 1) < 1e-5
    with pytest.raises(ValueError, match="log_scale"):
        jpm.time_scale(2.0, 1.0)


def _simulate(depth, log_scales, grid, **solver):
    """Jump times (rescaled) of the leaving problem at each scale, and the invariant's drift.

    One lane at a time: a vmapped solve with 10^4 saves copies the saved array per save."""
    problem = ld.Problem(LEAVING_H, LEAVING_B, depth=depth)
    times, drift = [], []
    for log_scale in log_scales:
        traj = flow.solve(
            ld.vector_field,
            ld.init(log_scale, depth, 2),
            problem,
            modes=ld.modes,
            targets=jnp.zeros(2),
            save_times=jpm.time_scale(depth, log_scale) * grid,
            max_steps=50_000,
            **solver,
        )
        assert int(traj.status) == 0
        st = saddles.detect(grid, traj.modes, max_plateaus=6)
        times.append(np.asarray(st.jump_times[:3]))
        drift.append(np.abs(ld.invariant(traj.final_state, problem, log_scale)).max())
    return np.array(times), np.array(drift)


def test_depth_two_converges_to_the_oracle_like_one_over_log_scale():
    # Pesme-Flammarion's alpha is w_+-(0) = scale^(1/2): alpha = 1e-2 .. 1e-300, then e^-1000
    # (log coordinates: far below float64's range). One grid size: one compiled program.
    alphas_log = np.array(
        [np.log(1e-2), np.log(1e-5), np.log(1e-30), np.log(1e-100), np.log(1e-300), -1000.0]
    )
    log_scales = 2.0 * alphas_log
    grid = jnp.linspace(0.0, 3.5, 20001)
    times, drift = _simulate(2.0, log_scales, grid, rtol=1e-10, atol=1e-12)
    oracle = jpm.jump_process(LEAVING_H, LEAVING_B).times[1:]
    error = times - oracle
    # The first escape converges over the whole range (at alpha = 1e-2 there is hardly a
    # plateau yet: detected or not, nothing else is asserted there).
    first = np.abs(error[1:, 0])
    assert (np.diff(first) < 0).all() and first[-1] < 3e-4
    # Every jump, once the plateau between jumps 1 and 2 (1/8 rescaled) is resolved: the error
    # times ln(1/scale) is a constant per jump (measured: 0.35, 1.73, 6.0), the rate 1/ln(1/scale).
    late = error[-3:]
    assert (late > 0).all()  # the flow lags the limit: the transients take O(1) flow time
    scaled = late * -log_scales[-3:, None]
    np.testing.assert_allclose(scaled, scaled[-1:].repeat(3, 0), rtol=0.05)
    assert np.abs(late[-1]).max() < 4e-3
    # a + b is conserved exactly by this vector field: rounding of |a| ~ 1000 only.
    assert (drift / -log_scales < 1e-13).all()


def test_log_diagonal_refuses_depth_below_two_and_infinite_log_scale():
    """Below depth 2 a weight reaches 0 in finite time: ln w has no flow to follow."""
    with pytest.raises(ValueError, match="depth must be >= 2 and finite, got 1.5"):
        ld.Problem(LEAVING_H, LEAVING_B, depth=1.5)
    with pytest.raises(ValueError, match="depth must be >= 2"):
        ld.Problem(LEAVING_H, LEAVING_B, depth=np.array([2.0, 1.0]))  # batched lanes
    with pytest.raises(ValueError, match="log_scale"):
        ld.init(float("-inf"), 2.0, 2)
