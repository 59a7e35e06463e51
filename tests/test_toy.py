"""The toy model: the reduced vector field is the toy ODE of docs/science/toy-model.md, the factor-level model's jax.grad
flow reduces to it from a balanced start (c = 1/N), and the field stays finite everywhere."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxflow.models import toy


@pytest.mark.parametrize("depth", [1.0, 1.5, 2.0, 3.0, 7.0, np.inf])
def test_reduced_field_is_the_paper_ode(depth):
    """d(ln sigma)/dt * sigma == c sigma^(2-2/N) (sigma* - sigma), independent formula."""
    sigma = np.array([1e-9, 1e-3, 0.3, 1.7, 2.9])
    targets = np.array([3.0, 1.0, 0.5, 2.0, 3.0])
    c = 0.7
    args = toy.ToyArgs(depth=depth, targets=jnp.asarray(targets), time_scale=c)
    got = np.asarray(toy.reduced_vector_field(jnp.log(jnp.asarray(sigma)), args)) * sigma
    p = 2.0 - 2.0 / depth
    np.testing.assert_allclose(got, c * sigma**p * (targets - sigma), rtol=1e-13)


@pytest.mark.parametrize("depth", [1.0, 1.5, 2.0, 6.0, np.inf])
def test_reduced_field_finite_for_any_trial_state(depth):
    args = toy.ToyArgs(depth=depth, targets=jnp.array([1e-3, 1.0, 1e3]))
    for x in (-1e6, -2000.0, -700.0, 0.0, 50.0, 800.0, 1e6):
        v = toy.reduced_vector_field(jnp.full((3,), x), args)
        assert np.all(np.isfinite(np.asarray(v))), (depth, x)
        s = toy.reduced_speed(jnp.full((3,), x), v, args)
        assert np.isfinite(float(s)) and float(s) >= 0  # flow.solve floors it at 1e-300


@pytest.mark.parametrize("depth", [2, 3, 5])
def test_balanced_factor_gradient_is_reduced_flow_with_c_one_over_n(depth):
    """d sigma_i/dt = sum_j (d sigma/d w_ij)(-dL/dw_ij) = (1/N) sigma^(2-2/N)(sigma* - sigma)."""
    targets = jnp.array([2.0, 0.5, 1.0])
    sigma0 = jnp.array([1e-4, 0.3, 0.9])
    params = {"plus": jnp.broadcast_to((sigma0 ** (1.0 / depth))[:, None], (3, depth))}
    grads = jax.grad(toy.factor_loss)(params, targets)
    velocity = jax.tree.map(jnp.negative, grads)
    _, dsigma = jax.jvp(toy.factor_values, (params,), (velocity,))
    args = toy.ToyArgs(depth=float(depth), targets=targets, time_scale=toy.factor_time_scale(depth))
    expected = toy.reduced_vector_field(jnp.log(sigma0), args) * sigma0
    np.testing.assert_allclose(np.asarray(dsigma), np.asarray(expected), rtol=1e-12)


def test_factor_init_balanced_unbalanced_signed():
    p = toy.factor_init(None, 1e-6, depth=3, num_coords=4)
    np.testing.assert_allclose(np.asarray(toy.factor_values(p)), 1e-6, rtol=1e-12)
    s = toy.factor_init(None, 1e-6, depth=3, num_coords=4, signed=True)
    np.testing.assert_allclose(np.asarray(toy.factor_values(s)), 0.0, atol=1e-20)
    key = jax.random.key(0)
    a = toy.factor_init(key, 1e-6, depth=3, num_coords=4, balanced=False)
    b = toy.factor_init(key, 1e-6, depth=3, num_coords=4, balanced=False)
    c = toy.factor_init(jax.random.key(1), 1e-6, depth=3, num_coords=4, balanced=False)
    np.testing.assert_array_equal(np.asarray(a["plus"]), np.asarray(b["plus"]))
    assert not np.allclose(np.asarray(a["plus"]), np.asarray(c["plus"]))
    # Gaussian factors of standard deviation sigma0^(1/N) = 1e-2.
    big = toy.factor_init(key, 1e-6, depth=3, num_coords=20000, balanced=False)["plus"]
    assert abs(float(jnp.std(big)) / 1e-2 - 1) < 0.02


def test_signed_targets_are_reached_by_gradient_descent_direction():
    targets = jnp.array([-1.0, 2.0])
    params = toy.factor_init(None, 1e-2, depth=2, num_coords=2, signed=True)
    params = jax.tree.map(lambda w: w.at[:, 0].multiply(1.5), params)  # break the w+ = w- tie

    def step(_, p):
        grads = jax.grad(toy.factor_loss)(p, targets)
        return jax.tree.map(lambda w, g: w - 0.05 * g, p, grads)

    params = jax.jit(lambda p: jax.lax.fori_loop(0, 20000, step, p))(params)
    np.testing.assert_allclose(np.asarray(toy.factor_values(params)), np.asarray(targets), atol=1e-3)


@pytest.mark.parametrize("depth", [0, 2.5, -1])
def test_factor_init_rejects_bad_depth(depth):
    with pytest.raises(ValueError, match="depth"):
        toy.factor_init(None, 1e-3, depth=depth, num_coords=2)


def test_factor_init_unbalanced_needs_key():
    with pytest.raises(ValueError, match="key"):
        toy.factor_init(None, 1e-3, depth=2, num_coords=2, balanced=False)


@pytest.mark.parametrize("scale, log", [(0.0, False), (1.0, False), (-1e-3, False),
                                        (float("inf"), False), (float("nan"), False),
                                        (0.0, True), (float("-inf"), True)])
def test_initial_scale_outside_the_model_is_refused(scale, log):
    """The toy model is defined for 0 < sigma0 < 1 (ln sigma0 < 0, finite): anything else is
    refused at the boundary, naming the argument and its range."""
    from jaxflow.models import toy

    with pytest.raises(ValueError, match="scale"):
        toy.reduced_init(scale, 2, log=log)
    if not log:
        with pytest.raises(ValueError, match=r"scale \(sigma0\) must be in \(0, 1\)"):
            toy.factor_init(None, scale, depth=3, num_coords=2)


# The reduced model's domain at the flow's boundary (~2 s: one compile for the traced case).
def _reduced_problem(depth, targets, scale=1e-3):
    import jaxflow

    args = toy.ToyArgs(depth=depth, targets=jnp.asarray(targets))
    return jaxflow.Problem(vector_field=toy.reduced_vector_field, args=args,
                           params0=toy.reduced_init(scale, len(targets)),
                           modes=toy.reduced_modes, targets=args.targets,
                           clock=toy.reduced_speed)


@pytest.mark.parametrize("depth, targets, message", [
    (0.5, [1.0], "depth must be >= 1 (inf allowed), got 0.5"),
    (-3.0, [1.0], "depth must be >= 1 (inf allowed), got -3.0"),
    (float("nan"), [1.0], "depth must be >= 1"),
    (2.0, [1.0, 0.0], "targets must be > 0 and finite, got 0.0"),
    (2.0, [-1.0], "targets must be > 0 and finite, got -1.0"),
])
def test_reduced_model_refuses_arguments_outside_its_domain(depth, targets, message):
    import jaxflow

    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        jaxflow.solve(_reduced_problem(depth, targets), jaxflow.Flow(), jaxflow.Request())


# One traced run serves the two tests below: depths below, inside and at the ends of the
# domain, targets 1e6 and 1e4 from sigma0 = 0.1 (one compile instead of three).
DOMAIN_DEPTHS = (0.5, 1.0, 1.5, 3.0, np.inf)
SHORT_FRACTIONS = (0.2, 0.9)


@pytest.fixture(scope="module")
def short_runs():
    import jaxflow

    def lane(depth):
        problem = _reduced_problem(depth, jnp.array([1e6, 1e4]), scale=0.1)
        return jaxflow.solve(problem, jaxflow.Flow(rtol=1e-8, atol=1e-8),
                             jaxflow.Request(fractions=SHORT_FRACTIONS))

    return jax.jit(jax.vmap(lane))(jnp.array(DOMAIN_DEPTHS))


def test_reduced_model_outside_its_domain_is_invalid_under_jit(short_runs):
    from jaxflow.engine import status

    expected = [status.INVALID] + [status.OK] * (len(DOMAIN_DEPTHS) - 1)
    assert [int(c) for c in short_runs.status] == expected


def test_short_learning_times_keep_the_relative_tolerance(short_runs):
    # Target 1e6 from sigma0 = 0.1: learning times ~1e-5 time units, where the flow time's
    # absolute tolerance used to dominate (1.6e-4 off at rtol = atol = 1e-8; now 3.7e-8).
    from jaxflow.oracles import theory

    targets = np.array([[1e6], [1e4]])
    for i, depth in enumerate(DOMAIN_DEPTHS):
        if depth < 1.0:
            continue  # outside the domain (the test above)
        exact = theory.learning_time(float(depth), targets, 0.1,
                                     targets * np.array(SHORT_FRACTIONS))
        np.testing.assert_allclose(short_runs.learning_times[i], exact, rtol=1e-7,
                                   err_msg=str(depth))
