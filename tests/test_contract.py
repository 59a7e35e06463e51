"""The one contract, ``jaxflow.solve(problem, method, request)``: every method through the same
property tests (a table of methods x properties), against independent references.

References: the closed-form learning times of the toy model (:func:`jaxflow.oracles.theory.learning_time`,
itself checked against quadrature in test_theory.py), the logistic solution of the depth-2
factor model, and the exact remaining travel ``|w|`` of an isotropic quadratic.

Tolerances per method: gradient flow is a converged ODE solve (relative 1e-6 at ``rtol=1e-10``);
gradient descent is the explicit Euler scheme of the same flow, first order in the learning
rate, so its tolerance is stated as a multiple of ``learning_rate`` and its order is checked.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxflow
from jaxflow.engine import stationarity
from jaxflow.engine import status as st
from jaxflow.models import toy
from jaxflow.oracles import theory

TARGETS = jnp.array([2.0, 1.0])
LR = 2e-3

METHODS = {
    "flow": jaxflow.Flow(),
    "descent": jaxflow.Descent(learning_rate=LR),
}
# Relative accuracy of learning times and saved modes against the flow's closed forms.
ACCURACY = {"flow": 1e-6, "descent": 10 * LR}
# One request for the tests that save modes (depth-2 factor model, one target): each method
# then compiles one program for all of them (fractions and save-time shapes are static). The
# explicit ``required`` mask (the default's value) keeps that argument's path exercised.
SAVE_REQUEST = jaxflow.Request(save_times=np.array([0.0, 1.2345, 4.0, 10.0]), fractions=(0.5,),
                               required=np.array([[True]]))


def factor_problem(depth=3, scale=1e-4, targets=TARGETS, **kw):
    """The factor-level toy model on its reference time axis (``time_scale = 1/N``)."""
    params0 = toy.factor_init(None, scale, depth=depth, num_coords=targets.shape[0])
    return jaxflow.Problem(loss=toy.factor_loss, params0=params0, args=targets,
                           modes=toy.factor_values, targets=targets,
                           time_scale=toy.factor_time_scale(depth), **kw)


def quadratic_loss(w, curvature):
    return 0.5 * curvature * jnp.sum(w**2)


@pytest.fixture(params=sorted(METHODS))
def method(request):
    return request.param


# ---------------------------------------------------------------------------------------------
# The table: methods x properties


def test_learning_times_against_theory(method):
    fractions = (0.1, 0.5, 0.9)
    traj = jaxflow.solve(factor_problem(), METHODS[method], jaxflow.Request(fractions=fractions))
    exact = np.array([[theory.learning_time(3.0, float(t), 1e-4, f * float(t)) for f in fractions]
                      for t in TARGETS])
    assert st.name(traj.status) == "ok"
    np.testing.assert_allclose(traj.learning_times, exact, rtol=ACCURACY[method])


def test_descent_is_first_order_in_the_learning_rate():
    """Halving the rate halves the error of a learning time (explicit Euler)."""
    problem = factor_problem(depth=2, scale=1e-2, targets=jnp.array([1.0]))
    request = SAVE_REQUEST  # test_save_times_on_one_axis's program (the rate is traced)
    exact = float(jnp.log(99.0))  # the logistic flow sigma (1 - sigma): t_half = ln(1/sigma0 - 1)
    errors = [float(jaxflow.solve(problem, jaxflow.Descent(learning_rate=lr), request)
                    .learning_times[0, 0]) - exact for lr in (4e-3, 2e-3, 1e-3)]
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    np.testing.assert_allclose(ratios, 2.0, rtol=0.1)


def test_save_times_on_one_axis(method):
    """Modes at save times match the logistic closed form; descent saves at the nearest step
    and reports that step's own time."""
    problem = factor_problem(depth=2, scale=1e-2, targets=jnp.array([1.0]))
    save_times = np.asarray(SAVE_REQUEST.save_times)
    traj = jaxflow.solve(problem, METHODS[method], SAVE_REQUEST)
    times = np.asarray(traj.times)
    if method == "flow":
        np.testing.assert_array_equal(times, save_times)
    else:
        step = LR * toy.factor_time_scale(2)
        np.testing.assert_allclose(times, np.round(save_times / step) * step, rtol=1e-12)
    logistic = 1.0 / (1.0 + 99.0 * np.exp(-times))
    np.testing.assert_allclose(traj.modes[:, 0], logistic, rtol=ACCURACY[method])
    # the run went to its horizon, the last save time (the flow's last step may pass it)
    assert st.name(traj.status) == "ok" and float(traj.final_time) >= times[-1] * (1 - 1e-12)


@pytest.mark.parametrize("case, expected", [
    # The case: depth 3, 50 steps of rate 0.01 (t = 0.5) learns nothing.
    ("horizon before learning", "unfinished"),
    ("budget before learning", "max_steps"),
    ("everything answered", "ok"),
    ("non-finite start", "nonfinite"),
])
def test_status_parity(method, case, expected):
    """The same problem and request give the same status whatever the method.

    The problem and fractions are those of test_learning_times_against_theory (depth 3 from
    1e-4, two targets), so that "everything answered" and, for descent, the horizon cases run
    the programs compiled there."""
    problem = factor_problem()
    request = {
        "horizon before learning": jaxflow.Request(horizon=0.5),
        "budget before learning": jaxflow.Request(max_steps=50),
        "everything answered": jaxflow.Request(),
        "non-finite start": jaxflow.Request(horizon=1.0),
    }[case]
    if case == "non-finite start":  # coordinate 0 only: coordinate 1 runs on to the horizon,
        # unfinished, and the trajectory says the more severe of the two (status.worst)
        problem = eqx.tree_at(lambda p: p.params0, problem,
                              jax.tree.map(lambda w: w.at[0].set(jnp.nan), problem.params0))
    method_value = jaxflow.Descent(learning_rate=0.01) if method == "descent" else METHODS[method]
    traj = jaxflow.solve(problem, method_value, request)
    assert st.name(traj.status) == expected
    if expected in ("unfinished", "max_steps"):
        assert np.all(np.isinf(traj.learning_times))
    if expected == "ok":
        assert np.all(np.isfinite(traj.learning_times))


def test_stationarity_has_one_meaning(method):
    """An isotropic quadratic: the remaining travel |g|^3/(g.Hg) is |w| exactly, so a run
    stops once |w| <= tol (max(1, |w|) = 1), and not long before."""
    tol = 1e-6
    problem = jaxflow.Problem(loss=quadratic_loss, params0=jnp.array([0.6, 0.8]), args=0.5)
    method_value = jaxflow.Descent(learning_rate=0.1, check_every=1) if method == "descent" \
        else METHODS[method]
    traj = jaxflow.solve(problem, method_value, jaxflow.Request(stationary_tol=tol, fractions=()))
    final = np.linalg.norm(np.asarray(traj.final_state))
    assert st.name(traj.status) == "ok"
    assert final <= tol
    assert final >= 0.5 * tol if method == "descent" else final >= 1e-3 * tol
    remaining = stationarity.remaining_travel(lambda w, a: -jax.grad(quadratic_loss)(w, a),
                                              traj.final_state, 0.5)[0]
    np.testing.assert_allclose(remaining, final, rtol=1e-9)


def test_no_retrace_for_new_values(method):
    """New values of the same shapes reuse the compiled program: nothing is traced again."""
    traces = 0

    class CountingModes(eqx.Module):
        def __call__(self, params, args):
            nonlocal traces
            traces += 1  # runs only while tracing
            return toy.factor_values(params, args)

    counts = []
    for scale in (1e-3, 1e-2, 3e-2):
        targets = jnp.array([1.0 + scale])
        problem = jaxflow.Problem(loss=toy.factor_loss, args=targets, modes=CountingModes(),
                                  targets=targets,
                                  params0=toy.factor_init(None, scale, depth=2, num_coords=1))
        jaxflow.solve(problem, METHODS[method], jaxflow.Request(fractions=(0.5,)))
        counts.append(traces)
    assert counts[0] > 0 and counts[1] == counts[0] == counts[2]


def test_python_numbers_in_args_are_traced(method):
    """A Python number in ``args`` (here the curvature c of 0.5 c |w|^2) is traced by both
    methods: a new value reuses the program, and the run follows it (flow: w(t) = w0 e^-ct at
    its final time, which may pass the horizon; descent, rate 0.1: w(1) = w0 (1 - 0.1 c)^10)."""
    traces = 0

    def counting_loss(w, curvature):
        nonlocal traces
        traces += 1  # runs only while tracing
        return quadratic_loss(w, curvature)

    w0 = np.array([0.6, 0.8])
    method_value = jaxflow.Descent(learning_rate=0.1) if method == "descent" else METHODS[method]
    request = jaxflow.Request(horizon=1.0, fractions=(), stationary_tol=None)
    counts = []
    for curvature in (0.5, 0.7):
        problem = jaxflow.Problem(loss=counting_loss, params0=jnp.asarray(w0), args=curvature)
        traj = jaxflow.solve(problem, method_value, request)
        final, t = np.asarray(traj.final_state), float(traj.final_time)
        counts.append(traces)
        decay = np.exp(-curvature * t) if method == "flow" else (1 - 0.1 * curvature) ** 10
        expected = w0 * decay
        np.testing.assert_allclose(final, expected, rtol=ACCURACY[method])
    assert counts[0] > 0 and counts[1] == counts[0]


def test_the_engine_function_below_flow_reaches_the_same_program():
    """``flow.solve``, the engine function that ``jaxflow.Flow`` calls, traces Python numbers
    in ``args`` as ``jaxflow.solve`` does: the same problem (here the depth of the reduced toy
    model, a Python float) compiles one program whichever route reaches it, with the same bits."""
    from jaxflow.engine import flow

    traces = 0

    def counting_field(y, args):
        nonlocal traces
        traces += 1  # runs only while tracing
        return toy.reduced_vector_field(y, toy.ToyArgs(depth=args["depth"], targets=args["t"]))

    def modes(y, args):
        return toy.reduced_modes(y, toy.ToyArgs(depth=args["depth"], targets=args["t"]))

    targets = jnp.array([2.0, 1.0])
    y0 = toy.reduced_init(1e-6, 2)
    problem = jaxflow.Problem(vector_field=counting_field, params0=y0, modes=modes,
                              args={"depth": 3.0, "t": targets}, targets=targets)
    contract = jaxflow.solve(problem, jaxflow.Flow(), jaxflow.Request(fractions=(0.5,)))
    traced = traces
    engine = flow.solve(counting_field, y0, {"depth": 4.0, "t": targets}, modes=modes,
                        targets=targets, fractions=(0.5,))
    assert traced > 0 and traces == traced  # another depth, the other route: no new trace
    again = flow.solve(counting_field, y0, {"depth": 3.0, "t": targets}, modes=modes,
                       targets=targets, fractions=(0.5,))
    assert (np.asarray(again.learning_times).tobytes()
            == np.asarray(contract.learning_times).tobytes())
    exact = theory.learning_time(4.0, targets, 1e-6, 0.5 * targets)
    np.testing.assert_allclose(engine.learning_times[:, 0], exact, rtol=1e-6)


def test_batched_equals_separate_solves(method):
    scales = jnp.array([1e-4, 1e-3, 1e-2])
    targets = jnp.array([1.0])
    one = lambda s: factor_problem(depth=2, scale=s, targets=targets)
    batch = jaxflow.Problem(loss=toy.factor_loss, modes=toy.factor_values,
                            params0=jax.vmap(lambda s: one(s).params0)(scales),
                            args=jnp.broadcast_to(targets, (3, 1)),
                            targets=jnp.broadcast_to(targets, (3, 1)),
                            time_scale=toy.factor_time_scale(2))
    request = SAVE_REQUEST  # the singles below reuse test_save_times_on_one_axis's program
    batched = jaxflow.solve(batch, METHODS[method], request, batched=True)
    assert batched.learning_times.shape == (3, 1, 1)
    for i, s in enumerate(scales):
        single = jaxflow.solve(one(s), METHODS[method], request)
        # The answers are equal up to rounding (vectorized code may round differently). The
        # flow's step sequence moves with that rounding (its last step, which may pass the
        # horizon, by up to 1e-8 measured), so its steps and final state are left out.
        for name in ("learning_times", "times", "modes"):
            np.testing.assert_allclose(getattr(batched, name)[i], getattr(single, name),
                                       rtol=1e-12, atol=1e-300, err_msg=name)
        exact = ("status",) + (("steps", "evaluations", "final_time") if method == "descent" else ())
        for name in exact:
            np.testing.assert_array_equal(getattr(batched, name)[i], getattr(single, name))


# ---------------------------------------------------------------------------------------------
# Method-only properties and errors


def test_descent_extras_and_divergence():
    """Descent adds its loss trace and learning steps; a huge rate diverges (flow cannot)."""
    problem = factor_problem(depth=2, scale=1e-2, targets=jnp.array([1.0]))
    request = SAVE_REQUEST  # test_save_times_on_one_axis's program (the rate is traced)
    traj = jaxflow.solve(problem, jaxflow.Descent(learning_rate=0.01), request)
    assert traj.loss.shape == (4,) and traj.learning_steps.shape == (1, 1)
    # the loss trace is the factor model's loss at the saved modes: (1 - sigma)^2 / (2 N^2)
    np.testing.assert_allclose(traj.loss, (1.0 - traj.modes[:, 0]) ** 2 / 8.0, rtol=1e-12)
    # the learning time lies within the step before the learning step (t = N^-1 rate step)
    step = 0.5 * 0.01
    lag = step * float(traj.learning_steps[0, 0]) - float(traj.learning_times[0, 0])
    assert 0.0 <= lag <= step, lag
    far = jaxflow.solve(problem, jaxflow.Descent(learning_rate=1e6), request)
    assert st.name(far.status) == "diverged" and int(far.diverged_step) >= 1


def test_descent_needs_a_loss():
    problem = jaxflow.Problem(vector_field=toy.reduced_vector_field,
                              params0=toy.reduced_init(1e-3, 1),
                              args=toy.ToyArgs(depth=2.0, targets=jnp.ones(1)))
    with pytest.raises(ValueError, match="Descent needs a Problem with a loss"):
        jaxflow.solve(problem, jaxflow.Descent(learning_rate=0.1), jaxflow.Request(horizon=1.0))


@pytest.mark.parametrize("build, message", [
    (lambda: jaxflow.Request(horizon=0.0), r"horizon must be a number in \(0, inf\]"),
    (lambda: jaxflow.Request(save_times=[2.0, 1.0]), "save_times must be a 1-D, finite"),
    (lambda: jaxflow.Request(save_times=[0.0, 2.0], horizon=1.0), "must not come before"),
    (lambda: jaxflow.Request(stationary_tol=-1.0), "stationary_tol must be a number"),
    (lambda: jaxflow.Request(max_steps=0), "max_steps must be an integer >= 1"),
    (lambda: jaxflow.Descent(learning_rate=0.0), r"learning_rate must be a number in \(0, inf\)"),
    (lambda: jaxflow.Descent(learning_rate=jnp.ones(2)), "learning_rate must be a scalar"),
    (lambda: jaxflow.Flow(atol=-1.0), r"atol must be a number in \(0, inf\)"),
    (lambda: jaxflow.Problem(params0=jnp.ones(1)), "needs a loss"),
    (lambda: jaxflow.Problem(loss=quadratic_loss, params0=jnp.ones(1), targets=jnp.ones(1)),
     "targets without modes"),
    (lambda: jaxflow.Problem(loss=quadratic_loss, params0=jnp.ones(1), time_scale=0.0),
     r"time_scale must be a number in \(0, inf\)"),
])
def test_bad_values_name_themselves(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_a_request_nothing_would_stop_is_refused(method):
    problem = jaxflow.Problem(loss=quadratic_loss, params0=jnp.ones(2), args=1.0)
    with pytest.raises(ValueError, match="request has no stop rule"):
        jaxflow.solve(problem, METHODS[method], jaxflow.Request(stationary_tol=None))


def test_batched_without_a_leading_axis_is_refused(method):
    problem = factor_problem(depth=2, scale=1e-2, targets=jnp.array([1.0]))
    with pytest.raises(ValueError, match="batched=True needs a leading (batch )?axis"):
        jaxflow.solve(problem, METHODS[method], jaxflow.Request(fractions=(0.5,)), batched=True)


def test_the_architecture_page_example_runs():
    """The docs' example of the contract runs as printed and both methods answer it."""
    import pathlib
    import re

    page = (pathlib.Path(__file__).parents[1] / "docs" / "architecture.md").read_text()
    block = re.search(r"```python\n(.*?)```", page, flags=re.S).group(1)
    scope: dict = {}
    exec(block, scope)
    exact = [theory.learning_time(3.0, t, 1e-4, 0.5 * t) for t in (2.0, 1.0)]
    np.testing.assert_allclose(scope["flow"].learning_times[:, 0], exact, rtol=1e-6)
    np.testing.assert_allclose(scope["descent"].learning_times[:, 0], exact, rtol=1e-2)
    assert st.name(scope["flow"].status) == st.name(scope["descent"].status) == "ok"
