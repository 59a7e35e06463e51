"""jaxflow.engine.flow against the analytic oracle (jaxflow.oracles.theory), plus status, saving and no-retrace."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxflow.engine import flow, status
from jaxflow.models import toy
from jaxflow.oracles import theory

DEPTHS = (1.5, 2.0, 3.0, 4.0, 10.0, np.inf)
SCALES = np.geomspace(1e-40, 1e-1, 9)
FRACTIONS = (0.1, 0.5, 0.9)


def _reduced(depth, scale, target=1.0, **kwargs):
    args = toy.ToyArgs(depth=depth, targets=jnp.atleast_1d(target))
    return flow.solve(
        toy.reduced_vector_field,
        jnp.log(jnp.atleast_1d(scale)),
        args,
        modes=toy.reduced_modes,
        **{"targets": args.targets, **kwargs},
    )


@pytest.fixture(scope="module")
def grid_run():
    depth, scale = np.meshgrid(np.asarray(DEPTHS), SCALES, indexing="ij")
    run = jax.jit(jax.vmap(lambda d, s: _reduced(d, s, fractions=FRACTIONS)))
    return depth, scale, run(jnp.asarray(depth.ravel()), jnp.asarray(scale.ravel()))


def test_learning_times_match_theory(grid_run):
    """rtol <= 1e-6 for sigma0 in [1e-40, 1e-1] and N in {1.5, 2, 3, 4, 10, inf} (default tol)."""
    depth, scale, traj = grid_run
    assert np.all(np.asarray(traj.status) == status.OK)
    got = np.asarray(traj.learning_times)[:, 0, :]
    for k, f in enumerate(FRACTIONS):
        d, s = depth.ravel(), scale.ravel()
        below = s < f
        exact = np.asarray(theory.learning_time(d[below], 1.0, s[below], f))
        rel = np.abs(got[below, k] / exact - 1)
        assert rel.max() <= 1e-6, (f, rel.max())
        # A start already past the fraction is learned at t = 0.
        assert np.all(got[~below, k] == 0.0)


def test_step_count_does_not_grow_with_plateau(grid_run):
    """Log state + arclength time: the plateau (up to 1e20 time units) costs O(log 1/sigma0) steps."""
    depth, scale, traj = grid_run
    steps = np.asarray(traj.steps + traj.rejected).reshape(depth.shape)
    plateau = np.asarray(theory.learning_time(depth, 1.0, scale, 0.5))
    assert plateau.max() > 1e19  # the grid does contain enormous plateaus
    # Steps per e-fold of sigma stay bounded: at most ~10 per e-fold over 92 e-folds.
    assert steps.max() <= 10 * np.log(1 / SCALES.min())
    for row in steps:
        # 1e-40 against 1e-4 starts: 10x more e-folds, far less than 10x the plateau ratio
        assert row[0] <= 8 * row[-3]


def _one_fraction(depth, scale, target, fraction, time_scale=1.0, **kwargs):
    """One lane, one learning time. Depth, target and time scale are arrays, so calls with the
    same fraction and keywords share one compiled program (the fraction is static)."""
    args = toy.ToyArgs(depth=jnp.asarray(depth), targets=jnp.array([target]),
                       time_scale=jnp.asarray(time_scale))
    return flow.solve(toy.reduced_vector_field, toy.reduced_init(scale, 1), args,
                      modes=toy.reduced_modes, targets=args.targets, fractions=(fraction,),
                      **kwargs)


def test_scale_of_time_constant():
    """ToyArgs.time_scale = c multiplies the field: times divide by c."""
    traj = _one_fraction(3.0, 1e-6, 2.0, 0.5, time_scale=4.0)
    exact = theory.learning_time(3.0, 2.0, 1e-6, 1.0) / 4.0
    np.testing.assert_allclose(traj.learning_times[0, 0], exact, rtol=1e-7)


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_balanced_factor_model_reproduces_reduced_flow(depth):
    """Factor-level model (jax.grad of the project's loss) from a balanced start = reduced flow, c = 1/N."""
    targets = jnp.array([3.0, 1.0])
    params = toy.factor_init(None, 1e-5, depth=depth, num_coords=2)
    traj = flow.gradient_flow(
        toy.factor_loss, params, targets, modes=toy.factor_values, targets=targets,
        fractions=FRACTIONS,
    )
    assert int(traj.status) == status.OK
    c = toy.factor_time_scale(depth)
    for i, target in enumerate([3.0, 1.0]):
        exact = np.asarray(theory.learning_time(float(depth), target, 1e-5, np.array(FRACTIONS) * target)) / c
        np.testing.assert_allclose(traj.learning_times[i], exact, rtol=1e-6)


def test_saved_modes_follow_solution_on_log_grid():
    """Modes saved on a log-spaced grid sit on the exact trajectory (checked in time, where it is
    well conditioned: learning_time(saved sigma) == save time)."""
    times = jnp.geomspace(1.0, 3e4, 40)
    traj = _reduced(4.0, 1e-8, fractions=(0.5,), save_times=times)
    sigma = np.asarray(traj.modes[:, 0])
    assert int(traj.status) == status.OK
    moving = sigma < 0.999  # beyond that, time is ill-conditioned in sigma
    t_back = np.asarray(theory.learning_time(4.0, 1.0, 1e-8, sigma[moving]))
    np.testing.assert_allclose(t_back, np.asarray(times)[moving], rtol=1e-6)
    # Past convergence the lane stops as stationary and holds sigma* for later saves.
    np.testing.assert_allclose(sigma[-1], 1.0, rtol=1e-8)


def test_max_steps_flags_only_its_lane():
    def one(scale, budget_scale):
        return _reduced(3.0, scale, fractions=(0.5,), max_steps=60)

    traj = jax.vmap(one)(jnp.array([1e-2, 1e-300]), jnp.zeros(2))
    codes = np.asarray(traj.status)
    assert codes[0] == status.OK and codes[1] == status.MAX_STEPS
    assert np.isfinite(traj.learning_times[0, 0, 0]) and np.isinf(traj.learning_times[1, 0, 0])


def test_nonfinite_lane_is_flagged_and_others_continue():
    def field(y, args):
        # Lane with args = 1 turns NaN once y passes -5: a broken model.
        base = toy.reduced_vector_field(y, toy.ToyArgs(depth=3.0, targets=jnp.array([1.0])))
        return jnp.where((args > 0) & (y > -5.0), jnp.nan, base)

    def one(flag):
        return flow.solve(field, jnp.log(jnp.array([1e-4])), flag, modes=toy.reduced_modes,
                          targets=jnp.array([1.0]), fractions=(0.5,))

    traj = jax.vmap(one)(jnp.array([0.0, 1.0]))
    assert list(np.asarray(traj.status)) == [status.OK, status.NONFINITE]
    assert np.isfinite(traj.learning_times[0, 0, 0])
    assert np.all(np.isfinite(np.asarray(traj.final_state[1])))  # last good state kept


def test_interpolant_only_is_less_accurate_but_close():
    exact = theory.learning_time(6.0, 1.0, 1e-9, 0.5)
    fine = _one_fraction(6.0, 1e-9, 1.0, 0.5).learning_times[0, 0]  # test_scale's program
    rough = _one_fraction(6.0, 1e-9, 1.0, 0.5, refine=False).learning_times[0, 0]
    assert abs(fine / exact - 1) <= 1e-8
    assert abs(rough / exact - 1) <= 1e-6


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"fractions": (0.5, 0.2)}, "fractions"),
        ({"fractions": (0.0,)}, "fractions"),
        ({"fractions": (0.5, 0.5)}, "fractions"),
        ({"fractions": ("a",)}, "fractions"),
        ({"t_end": -1.0}, "t_end"),
        ({"t_end": float("nan")}, "t_end"),
        ({"stationary_tol": 0.0}, "stationary_tol"),
        ({"targets": jnp.ones(3)}, "targets"),
        ({"max_steps": 0}, "max_steps"),
        ({"rtol": -1.0}, "rtol"),
        ({"atol": 0.0}, "atol"),
        ({"time": "warp"}, "time"),
        ({"save_times": [1.0, 0.5]}, "save_times"),
        ({"save_times": [-1.0, 0.5]}, "save_times"),
    ],
)
def test_bad_settings_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _reduced(2.0, 1e-3, **kwargs)
