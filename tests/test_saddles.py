"""Plateau and jump detection (jaxflow.oracles.saddles) on synthetic staircases with known jumps."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxflow.oracles import saddles


def _ramp(t, centre, width, height):
    """A linear ramp of ``height`` whose midpoint is at ``centre``."""
    return height * jnp.clip((t - centre) / width + 0.5, 0.0, 1.0)


def test_exact_recovery_on_piecewise_linear_staircase():
    # Grid points do not fall on the ramp midpoints, so recovery relies on the interpolation.
    t = jnp.linspace(0.0, 10.0, 1001)
    centres = np.array([1.234, 4.567, 8.123])
    values = jnp.stack(
        [
            _ramp(t, centres[0], 0.3, 3.0),
            _ramp(t, centres[1], 0.2, 2.0) - _ramp(t, centres[2], 0.1, 2.0),  # rises, then leaves
            _ramp(t, centres[2], 0.1, -1.0),  # enters with a negative sign
        ],
        axis=1,
    )
    loss = 10.0 - jnp.sum(jnp.abs(values), axis=1)
    st = saddles.detect(t, values, loss, max_plateaus=6)
    assert int(st.num_plateaus) == 4
    np.testing.assert_allclose(st.jump_times[:3], centres, rtol=0, atol=1e-12)
    np.testing.assert_allclose(st.mode_jump_times[2, 1:], [centres[2]] * 2, atol=1e-12)
    assert np.isnan(st.mode_jump_times[0, 1:]).all()  # only mode 0 moves in jump 0
    assert st.active[:4].tolist() == [
        [False, False, False],
        [True, False, False],
        [True, True, False],
        [True, False, True],
    ]
    np.testing.assert_allclose(st.plateau_loss[:4], [10.0, 7.0, 5.0, 6.0])
    np.testing.assert_allclose(st.levels[3], [3.0, 0.0, -1.0], atol=1e-12)
    assert np.isnan(st.jump_times[3:]).all() and not st.active[4:].any()


def test_logistic_staircase_recovered_to_its_width():
    # Smooth steps never stop moving; the jumps are still found at their midpoints up to the
    # tails' overlap (exponentially small) and the tolerance box.
    t = jnp.linspace(0.0, 30.0, 3001)
    centres = (5.0, 12.0, 21.0)
    values = jnp.stack([h * jax.nn.sigmoid((t - c) / 0.2) for h, c in zip((4, 2, 1), centres)], 1)
    st = saddles.detect(t, values, tol=1e-4)
    np.testing.assert_allclose(st.jump_times[:3], centres, atol=2e-3)
    assert int(st.num_plateaus) == 4


def test_batch_under_jit_and_vmap():
    t = jnp.linspace(0.0, 10.0, 401)
    centres = jnp.array([[2.0, 6.0], [3.0, 7.5], [1.5, 4.0]])

    def lane(c):
        return jnp.stack([_ramp(t, c[0], 0.25, 1.0), _ramp(t, c[1], 0.25, 0.5)], axis=1)

    detect = jax.jit(jax.vmap(functools.partial(saddles.detect, t, max_plateaus=4)))
    st = detect(jax.vmap(lane)(centres))
    assert st.jump_times.shape == (3, 3) and st.active.shape == (3, 4, 2)
    np.testing.assert_allclose(st.jump_times[:, :2], centres, atol=1e-12)


def test_loss_alone_and_failed_lane():
    t = jnp.linspace(0.0, 10.0, 201)
    loss = 1.0 - _ramp(t, 3.0, 0.5, 0.6) - _ramp(t, 6.0, 0.5, 0.3)
    st = saddles.detect(t, loss[:, None], loss)
    np.testing.assert_allclose(st.jump_times[:2], [3.0, 6.0], atol=1e-12)
    np.testing.assert_allclose(st.plateau_loss[:3], [1.0, 0.4, 0.1], atol=1e-12)
    # A lane that failed after t = 5 (NaN) keeps its first jump and reports nothing made up.
    broken = jnp.where(t > 5.0, jnp.nan, loss)
    st = saddles.detect(t, broken[:, None])
    assert int(st.num_plateaus) == 2
    np.testing.assert_allclose(st.jump_times[0], 3.0, atol=1e-12)
    assert np.isnan(st.jump_times[1:]).all()


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="values"):
        saddles.detect(jnp.arange(3.0), jnp.zeros(3))
    with pytest.raises(ValueError, match="max_plateaus"):
        saddles.detect(jnp.arange(3.0), jnp.zeros((3, 1)), max_plateaus=1)
