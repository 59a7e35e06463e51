"""jaxflow.engine.rkc: the Runge-Kutta-Chebyshev solver against closed forms, orders and stability.

References are independent of the solver: exact solutions of linear ODEs, the theory's learning
times (jaxflow.oracles.theory, itself checked against scipy quadrature), and Tsit5 on the same problem.
"""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxflow.engine import flow, status
from jaxflow.engine.rkc import RKC, stability_bound
from jaxflow.models import matrix_sensing as ms
from jaxflow.models import toy
from jaxflow.oracles import theory


def _constant_step_solve(term, y0, t1, num_steps, solver=None):
    """``num_steps`` constant steps to ``t1``. diffeqsolve's filter_jit keeps Python floats and
    callables static: with one ``term`` object, the step as an array and a fixed step budget,
    every ``num_steps`` runs the same compiled program."""
    sol = diffrax.diffeqsolve(
        term, solver or RKC(), 0.0, t1, jnp.asarray(t1 / num_steps), y0,
        stepsize_controller=diffrax.ConstantStepSize(), max_steps=_MAX_CONSTANT_STEPS,
    )
    assert int(sol.stats["num_steps"]) == num_steps
    return sol.ys[-1]


_MAX_CONSTANT_STEPS = 81  # the most steps asked below, plus one


def test_second_order_convergence():
    # Harmonic oscillator: exact (cos t, -sin t). Halving h divides the error by 4.
    term = diffrax.ODETerm(lambda t, y, args: jnp.stack([y[1], -y[0]]))
    errors = []
    for n in (10, 20, 40, 80):
        y = _constant_step_solve(term, jnp.array([1.0, 0.0]), 1.0, n)
        errors.append(float(jnp.hypot(y[0] - jnp.cos(1.0), y[1] + jnp.sin(1.0))))
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(np.abs(orders - 2.0) < 0.1), orders


def test_time_dependent_stages_are_second_order():
    # y' = cos(t) y: exact exp(sin t); checks the stage times c_j of the recurrence.
    term = diffrax.ODETerm(lambda t, y, args: jnp.cos(t) * y)
    errors = []
    for n in (10, 20, 40):
        y = _constant_step_solve(term, jnp.array(1.0), 2.0, n)
        errors.append(abs(float(y) - np.exp(np.sin(2.0))))
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(np.abs(orders - 2.0) < 0.15), orders


@pytest.mark.parametrize("stages", [60, 200, 320])
def test_stability_bound_matches_asymptote(stages):
    # For large s, w0 = 1 + eps/s^2 puts T_s near cosh(a), a = sqrt(2 eps), and Chebyshev's
    # equation gives beta(s) / s^2 -> 2 (a coth a - 1) / a^2 = (2/3)(1 - 2 eps/15 + ...), which is
    # 0.6534 for eps = 2/13. Within 1e-3 from s = 60 on.
    a = np.sqrt(2 * 2 / 13)
    limit = 2 * (a / np.tanh(a) - 1) / a**2
    beta = float(stability_bound(stages))
    assert abs(beta / (limit * stages**2) - 1) < 1e-3, (beta / stages**2, limit)


def test_stability_bound_two_stages_closed_form():
    # s = 2: T_2' = 4 w0, T_2'' = 4, so beta = (1 + w0) / w0 with w0 = 1 + eps / 4.
    w0 = 1 + (2 / 13) / 4
    assert abs(float(stability_bound(2)) - (1 + w0) / w0) < 1e-14


def test_one_step_never_amplifies_a_decaying_mode():
    # y' = -lam y: whatever h*lam (up to the stage cap), the stage count chosen from the
    # estimated spectral radius keeps |y1/y0| <= 1; the exact spectral radius is lam.
    solver = RKC()
    h_lambda = np.concatenate([np.linspace(0.01, 10, 50), np.geomspace(10, 2e4, 80)])

    def amplification(x):
        term = diffrax.ODETerm(lambda t, y, args: -x * y)
        state = solver.init(term, 0.0, 1.0, jnp.array(1.0), None)
        y1, err, _, new_state, _ = solver.step(term, 0.0, 1.0, jnp.array(1.0), None, state, False)
        return y1, solver.evaluations(new_state)

    # jit: one compiled program (an eager vmap compiles every operation on its own)
    amp, evals = jax.jit(jax.vmap(amplification))(jnp.asarray(h_lambda))
    assert np.all(np.abs(np.asarray(amp)) <= 1.0), np.max(np.abs(amp))
    # Cost grows like sqrt(h lam), not like h lam: 2e4 costs well under 300 evaluations.
    assert int(evals[-1]) < 300


def test_stiff_forced_problem_against_closed_form():
    # y' = -lam (y - cos t), y(0) = 0: exact y = lam/(lam^2+1) (lam cos t + sin t - lam e^{-lam t}).
    lam = 1e4
    term = diffrax.ODETerm(lambda t, y, args: -lam * (y - jnp.cos(t)))
    solve = lambda solver: diffrax.diffeqsolve(
        term, solver, 0.0, 2.0, 1e-4, jnp.array(0.0), saveat=diffrax.SaveAt(t1=True),
        stepsize_controller=diffrax.PIDController(rtol=1e-7, atol=1e-9), max_steps=100_000,
    )
    sol, tsit5 = solve(RKC()), solve(diffrax.Tsit5())
    exact = lam / (lam**2 + 1) * (lam * np.cos(2.0) + np.sin(2.0))
    assert abs(float(sol.ys[0]) - exact) < 1e-6
    # Tsit5 needs at least 2 lam / 3.5 = 5700 steps for stability alone; RKC follows accuracy.
    assert int(tsit5.stats["num_steps"]) > 5700
    assert int(sol.stats["num_steps"]) * 3 < int(tsit5.stats["num_steps"])


def test_flow_solve_with_rkc_matches_theory_and_counts_evaluations():
    args = toy.ToyArgs(depth=3.0, targets=jnp.array([2.0, 1.0]))
    traj = flow.solve(
        toy.reduced_vector_field, toy.reduced_init(1e-8, 2), args, modes=toy.reduced_modes,
        targets=args.targets, fractions=(0.5, 0.9), solver=RKC(), rtol=1e-9, atol=1e-9,
        max_steps=20_000,
    )
    assert int(traj.status) == status.OK
    for i, target in enumerate((2.0, 1.0)):
        for k, fraction in enumerate((0.5, 0.9)):
            exact = theory.learning_time(3.0, target, 1e-8, fraction * target)
            assert abs(float(traj.learning_times[i, k]) / exact - 1) < 1e-5
    assert int(traj.evaluations) > int(traj.steps + traj.rejected)  # counted in test below


@pytest.mark.parametrize("solver", [diffrax.Tsit5(), diffrax.Dopri8(), RKC()],
                         ids=["Tsit5", "Dopri8", "RKC"])
def test_evaluations_count_the_real_vector_field_calls(solver):
    """``traj.evaluations`` against a counter that the compiled vector field bumps on every call.

    One lane with one clock (a plain function, not coordinatewise) asked no learning time and
    never checked for stationarity: every call of the vector field is then one the count covers
    (solver start-up, stages of accepted and rejected attempts, RKC's power iterations)."""
    calls = []

    def counted_field(y, args):
        jax.debug.callback(lambda y_: calls.append(1), y)  # on every call the program makes
        return toy.reduced_vector_field.fn(y, args)

    args = toy.ToyArgs(depth=3.0, targets=jnp.array([2.0, 1.0]))
    traj = flow.solve(counted_field, toy.reduced_init(1e-6, 2), args, modes=toy.reduced_modes,
                      targets=args.targets, fractions=(), t_end=jnp.asarray(250.0),
                      stationary_tol=None, solver=solver, rtol=1e-6, atol=1e-8,
                      max_steps=20_000)
    jax.effects_barrier()
    assert int(traj.status) == status.OK
    assert int(traj.steps) > 10 and int(traj.rejected) > 0  # measured: Tsit5 108 and 28
    assert int(traj.evaluations) == len(calls), (int(traj.evaluations), len(calls))


def test_implicit_solver_evaluations_unknown():
    args = toy.ToyArgs(depth=3.0, targets=jnp.array([1.0]))
    kw = dict(modes=toy.reduced_modes, targets=args.targets, fractions=(0.5,), rtol=1e-8, atol=1e-8)
    # Implicit solvers get the controller's tolerances for their root finder (as in diffeqsolve).
    kvaerno = flow.solve(toy.reduced_vector_field, toy.reduced_init(1e-6, 1), args,
                         solver=diffrax.Kvaerno5(), **kw)
    exact = theory.learning_time(3.0, 1.0, 1e-6, 0.5)
    assert abs(float(kvaerno.learning_times[0, 0]) / exact - 1) < 1e-6
    assert int(kvaerno.evaluations) == -1  # unknown: Newton iterations are not reported


def test_rkc_beats_tsit5_on_a_stiff_matrix_sensing_plateau():
    # Depth 4 from 1e-6: once 12 is learned its curvature (about c 12^(3/2) = 330) bounds Tsit5's
    # step while 6 still sits on its plateau. RKC takes the plateau at the accuracy of the slow
    # mode. The solve stops when the two largest values reached 0.99 of their targets.
    target = ms.diagonal_target(6, (12.0, 6.0, 4.0, 3.0))
    problem = ms.gaussian_problem(jax.random.key(0), target, 40)
    params = ms.init(jax.random.key(1), 1e-6, 4, (6, 6))
    targets = ms.targets(problem, 4)
    required = jnp.zeros((4, 2), bool).at[:2].set(True)
    kw = dict(modes=lambda p, a: ms.modes(p, a, k=4), targets=targets, fractions=(0.5, 0.99),
              refine=False, max_steps=50_000, required=required, time="plain")
    tsit5 = flow.gradient_flow(ms.loss, params, problem, rtol=1e-7, atol=1e-10, **kw)
    rkc = flow.gradient_flow(ms.loss, params, problem, solver=RKC(), rtol=1e-5, atol=1e-8, **kw)
    assert int(tsit5.status) == status.OK and int(rkc.status) == status.OK
    # Same learning times (0.5 and 0.99 of 12 and 6) to 1e-3, largest first.
    np.testing.assert_allclose(rkc.learning_times[:2], tsit5.learning_times[:2], rtol=1e-3)
    assert float(rkc.learning_times[0, 1]) < float(rkc.learning_times[1, 0])
    # Measured 5808 against 17137 (2.95x); the gap grows with the plateau (benchmarks/).
    assert int(rkc.evaluations) * 2.5 < int(tsit5.evaluations), (rkc.evaluations, tsit5.evaluations)


def test_gradient_flow_compiles_once_per_loss():
    traces = []

    def loss(params, targets):
        traces.append(1)  # runs only while tracing
        return toy.factor_loss(params, targets)

    targets = jnp.array([1.0])
    counts = []
    for scale in (1e-3, 2e-3, 5e-3):
        params = toy.factor_init(None, scale, depth=3, num_coords=1)
        flow.gradient_flow(loss, params, targets, modes=toy.factor_values, targets=targets,
                           fractions=(0.5,))
        counts.append(len(traces))
    assert counts[0] > 0 and counts[1] == counts[2] == counts[0], counts
