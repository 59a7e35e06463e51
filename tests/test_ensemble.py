"""The ensemble engine (jaxflow.engine.ensemble) and its entry, Flow(solver=Ensemble()).

References: closed forms (harmonic oscillator, exponential decay, y' = y^2), scipy's DOP853 at
rtol 1e-13 for Lorenz, diffrax's Tsit5 at the same tolerances, and a NumPy model of the work
queue. Sizes are tiny: the file runs in about 15 s on 2 cores.
"""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import jaxflow
from jaxflow import sweep
from jaxflow.engine import ensemble, status
from jaxflow.models import toy
from jaxflow.oracles import theory


def lorenz(t, y, rho):
    x, v, z = y[0], y[1], y[2]
    return jnp.stack([10.0 * (v - x), x * (rho - z) - v, x * v - (8.0 / 3.0) * z])


TRACES = []


def riccati(t, y, args):
    """y' = a y + b y^2: decay (b = 0), blow-up (a = 0, b = 1), stiffness (a << 0); its closed
    form is y0 e^{at} / (1 - b y0 (e^{at} - 1) / a)."""
    TRACES.append(1)
    a, b = args
    return a * y + b * y * y


def riccati_exact(y0, a, b, t):
    grow = np.exp(a * t)
    ratio = np.where(a == 0, t, np.expm1(a * t) / np.where(a == 0, 1.0, a))
    return y0 * grow / (1 - b * y0 * ratio)


# 260 problems: decays over three decades of rates, two blow-ups (y0 = 1 at t = 1, y0 = 0.1 at
# t = 10), a NaN start, a stiff decay. Most tests share one compiled program: these shapes,
# 128 slots, max_steps 300.
NUM, SAVES = 260, np.array([0.5, 2.0])
A = np.concatenate([-np.geomspace(0.1, 100.0, NUM - 4), [0.0, 0.0, -1.0, -1e5]])
B = np.concatenate([np.zeros(NUM - 4), [1.0, 1.0, 0.0, 0.0]])
Y0 = np.concatenate([np.ones(NUM - 4), [1.0, 0.1, np.nan, 1.0]])


def solve_family(order=None, slots=128, scale=1.0):
    order = np.arange(NUM) if order is None else order
    args = (jnp.asarray(A[order]), jnp.asarray(B[order]))
    return ensemble.solve_ensemble(riccati, jnp.asarray(scale * Y0[order])[:, None], args,
                                   jnp.asarray(SAVES), rtol=1e-10, atol=1e-10, slots=slots,
                                   max_steps=300)


@pytest.fixture(scope="module")
def family():
    return solve_family()


RHOS = np.linspace(0.0, 21.0, 6)


@pytest.fixture(scope="module")
def lorenz_reference():
    """Lorenz at t = 1 for RHOS, by DOP853 at rtol 1e-13."""
    return np.array([solve_ivp(lambda t, y, r=r: [10 * (y[1] - y[0]), y[0] * (r - y[2]) - y[1],
                                                  y[0] * y[1] - 8 / 3 * y[2]],
                               (0, 1), [1.0, 0.0, 0.0], method="DOP853", rtol=1e-13,
                               atol=1e-13).y[:, -1] for r in RHOS])


def test_closed_form_and_status_per_lane(family):
    """Saves land on the requested times within 1e-8 relative + 1e-9 of the closed form at
    rtol = atol = 1e-10. Each failing lane stops alone: the blow-up at t = 1 spends its 300
    attempts creeping up to it (max_steps; its later save NaN), the NaN start is nonfinite, the
    stiff decay (rate 1e5) spends its budget; the other 257 are ok at t = 2."""
    out = family
    codes = np.asarray(out.status)
    assert codes[:-4].tolist() == [status.OK] * (NUM - 4)
    assert codes[-4:].tolist() == [status.MAX_STEPS, status.OK, status.NONFINITE,
                                   status.MAX_STEPS]
    exact = riccati_exact(Y0[:, None], A[:, None], B[:, None], SAVES[None, :])
    ok = codes == status.OK
    np.testing.assert_allclose(out.ys[ok, :, 0], exact[ok], rtol=1e-8, atol=1e-9)
    np.testing.assert_array_equal(out.final_time[ok], 2.0)
    assert float(out.ys[-4, 0, 0]) == pytest.approx(2.0, rel=1e-8)
    assert np.isnan(out.ys[-4, 1, 0]) and 0.99 < float(out.final_time[-4]) < 1.0
    assert int(out.steps[-2]) == 0 and np.isnan(out.ys[-2]).all()
    assert int(out.steps[-1] + out.rejected[-1]) == 300 and np.isnan(out.ys[-1, 0, 0])


def test_fixed_step_lands_on_save_times():
    """Fixed dt = 0.01 from 0 to 0.25, 1, 2: 200 steps, every save exactly on its time, error
    <= 1e-11 against exp(-t) (Tsit5's O(dt^5)); y' = y^2 from 1 turns nonfinite by t = 2."""
    out = ensemble.solve_ensemble(riccati, jnp.array([[1.0], [1.0]]),
                                  (jnp.array([-1.0, 0.0]), jnp.array([0.0, 1.0])),
                                  jnp.array([0.25, 1.0, 2.0]), dt=0.01)
    assert out.status.tolist() == [status.OK, status.NONFINITE]
    assert int(out.steps[0]) == 200 and float(out.final_time[0]) == 2.0
    np.testing.assert_allclose(out.ys[0, :, 0], np.exp(-np.array([0.25, 1.0, 2.0])),
                               rtol=1e-11)


def test_lorenz_accuracy_within_twice_diffrax(lorenz_reference):
    """At rtol = atol = 1e-8, jaxflow's deviation from DOP853 is at most twice diffrax's Tsit5
    (same tableau, controller and first step: measured equal to ~1e-12)."""
    y0 = jnp.tile(jnp.array([1.0, 0.0, 0.0]), (len(RHOS), 1))
    rho = jnp.asarray(RHOS)
    out = ensemble.solve_ensemble(lorenz, y0, rho, jnp.array([1.0]), rtol=1e-8, atol=1e-8,
                                  dt0=1e-3)
    ours = np.max(np.abs(np.asarray(out.final_state) - lorenz_reference))

    def one(y, r):
        sol = diffrax.diffeqsolve(diffrax.ODETerm(lorenz), diffrax.Tsit5(), 0.0, 1.0, 1e-3, y, r,
                                  stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-8))
        return sol.ys[0]

    theirs = np.max(np.abs(np.asarray(jax.vmap(one)(y0, rho)) - lorenz_reference))
    assert ours <= 2 * theirs and ours < 1e-6, (ours, theirs)


def test_results_bitwise_identical_whatever_slot_and_batch(family):
    """A problem's answer has the same bits with 128 or 384 slots (all at once, no refill), or
    in a shuffled batch (other neighbours, other slot, other refill order)."""
    wide = solve_family(slots=384)
    order = np.random.default_rng(0).permutation(NUM)
    shuffled = solve_family(order)
    for out, rows in ((wide, np.arange(NUM)), (shuffled, order)):
        np.testing.assert_array_equal(out.ys, family.ys[rows])
        np.testing.assert_array_equal(out.final_state, family.final_state[rows])
        np.testing.assert_array_equal(out.steps, family.steps[rows])


def _queue_model(attempts, slots):
    """Iterations of a queue whose slots take problems in order, a problem holding its slot
    for as many iterations as its step attempts, a freed slot refilled in the same iteration."""
    busy = [int(a) for a in attempts[:slots]] + [0] * max(0, slots - len(attempts))
    pending = [int(a) for a in attempts[slots:]]
    iteration = 0
    while any(b > 0 for b in busy):
        iteration += 1
        busy = [b - 1 for b in busy]
        for i, b in enumerate(busy):
            if b == 0 and pending:
                busy[i] = pending.pop(0)
    return iteration


def test_refill_is_the_queue_model_and_beats_lockstep(family):
    """The loop's iteration count is that of the in-order queue model (deterministic refill),
    within the list-scheduling bound sum / S + max of the lanes' attempts (no lockstep), its
    wasted share is what idle slots leave, below lockstep's (chunks of 128 each taking its
    longest lane's attempts; measured 0.58 against 0.71, the 300-attempt lanes dominating)."""
    attempts = np.asarray(family.steps + family.rejected)
    iterations = int(family.iterations)
    assert iterations == _queue_model(attempts, 128)
    assert iterations <= attempts.sum() / 128 + attempts.max()
    wasted = 1 - attempts.sum() / (iterations * 128)
    assert family.wasted == pytest.approx(wasted, abs=1e-12)
    chunks = [attempts[i:i + 128] for i in range(0, NUM, 128)]
    lockstep = 1 - attempts.sum() / (sum(c.max() for c in chunks) * 128)
    assert family.wasted < lockstep - 0.1, (family.wasted, lockstep)


def test_no_retrace_for_a_new_batch_of_the_same_shape(family):
    traced = len(TRACES)
    out = solve_family(scale=0.5)
    assert len(TRACES) == traced > 0
    np.testing.assert_allclose(out.ys[:4, 1, 0], 0.5 * np.exp(2 * A[:4]), rtol=1e-8)


def test_float32_lorenz_fixed_step(lorenz_reference):
    """The whole loop in float32 (dt = 1e-3): within 1e-3 of the float64 reference."""
    y0 = jnp.tile(jnp.array([1.0, 0.0, 0.0], jnp.float32), (len(RHOS), 1))
    out = ensemble.solve_ensemble(lorenz, y0, jnp.asarray(RHOS, jnp.float32), jnp.array([1.0]),
                                  dt=1e-3)
    assert out.ys.dtype == jnp.float32 and out.status.tolist() == [0] * len(RHOS)
    np.testing.assert_allclose(out.final_state, lorenz_reference, rtol=0, atol=1e-3)


def quadratic(params, scale):
    return 0.5 * scale * (jnp.sum(params["w"] ** 2) + params["b"] ** 2)


def test_solve_with_ensemble_on_a_loss_with_pytree_params():
    """jaxflow.solve(..., batched=True) through Ensemble: -grad of 0.5 a |p|^2 gives
    p0 exp(-a t) on every leaf; times scale with time_scale; non-batched calls are refused."""
    scale = jnp.array([0.5, 2.0])
    params0 = {"w": jnp.array([[1.0, 2.0], [3.0, 4.0]]), "b": jnp.array([1.0, -1.0])}
    problem = jaxflow.Problem(loss=quadratic, args=scale, params0=params0, time_scale=2.0)
    request = jaxflow.Request(save_times=[1.0, 2.0], fractions=())
    flow = jaxflow.Flow(solver=jaxflow.Ensemble(), rtol=1e-10, atol=1e-10)
    traj = jaxflow.solve(problem, flow, request, batched=True)
    decayed = np.exp(-np.asarray(scale) * 1.0)  # flow time 1 at problem time 2
    np.testing.assert_allclose(traj.final_state["w"], params0["w"] * decayed[:, None], rtol=1e-8)
    np.testing.assert_allclose(traj.final_state["b"], params0["b"] * decayed, rtol=1e-8)
    np.testing.assert_array_equal(traj.final_time, [2.0, 2.0])
    assert traj.times.shape == (2, 2) and traj.status.tolist() == [0, 0]
    # the queue's account reaches the contract's answer: its iterations are the queue model's,
    # its wasted share what the idle slots leave (2 lanes in 128 slots)
    attempts = np.asarray(traj.steps + traj.rejected)
    assert traj.slots == 128
    assert traj.iterations.tolist() == [_queue_model(attempts, 128)] * 2
    assert traj.wasted == pytest.approx(1 - attempts.sum() / (attempts.max() * 128), abs=1e-12)
    with pytest.raises(ValueError, match="batched=True"):
        jaxflow.solve(problem, flow, request)
    with pytest.raises(ValueError, match=r"at least one problem \(B >= 1\)"):
        empty = jaxflow.Problem(vector_field=lambda y, a: -a * y, args=jnp.zeros(0),
                                params0=jnp.ones((0, 1)))
        jaxflow.solve(empty, flow, request, batched=True)
    targeted = jaxflow.Problem(loss=quadratic, args=scale, params0=params0,
                               modes=lambda p, a: p["b"][None], targets=jnp.ones((2, 1)))
    with pytest.raises(ValueError, match="learning times .* need adaptive steps"):
        jaxflow.solve(targeted, jaxflow.Flow(solver=jaxflow.Ensemble(dt=0.1)),
                      jaxflow.Request(horizon=1.0), batched=True)
    with pytest.raises(ValueError, match="devices must be a non-empty sequence of jax devices"):
        jaxflow.Ensemble(devices=[])
    with pytest.raises(ValueError, match="does not check stationarity"):
        jaxflow.solve(targeted, flow, jaxflow.Request(horizon=1.0, stationary_tol=1e-6),
                      batched=True)


# ---------------------------------------------------------------- learning times

FRACTIONS = (0.1, 0.5, 0.9)
LEARNING = jaxflow.Flow(solver=jaxflow.Ensemble(), rtol=1e-10, atol=1e-12)


def factor_batch(scales, targets, depth=3):
    """The depth-3 factor model (two coordinates) from each scale, on its reference time axis
    (theory.learning_time's), one problem per row of ``targets``."""
    scales, targets = jnp.asarray(scales), jnp.asarray(targets)
    params0 = jax.vmap(lambda s: toy.factor_init(None, s, depth=depth, num_coords=2))(scales)
    return jaxflow.Problem(loss=toy.factor_loss, params0=params0, args=targets,
                           modes=toy.factor_values, targets=targets,
                           time_scale=toy.factor_time_scale(depth))


def exact_learning_times(scales, targets, depth=3):
    return np.array([[[theory.learning_time(float(depth), float(t), float(s), f * float(t))
                       for f in FRACTIONS] for t in row] for s, row in zip(scales, targets)])


def test_learning_times_against_theory_in_any_slot():
    """Without a horizon a lane runs until it has its learning times: each one lands on the
    crossing and is polished there, so it matches the closed form to 1e-9 at rtol = 1e-10
    (scales 1e-1 .. 1e-6, one target below the 0.1 level at the start: learned at t = 0).
    The batch reversed (other slots, other neighbours, another refill order) gives the same
    bits, from the same compiled loop."""
    scales = np.geomspace(1e-1, 1e-6, 6)
    targets = np.tile([2.0, 1.0], (6, 1))
    traj = jaxflow.solve(factor_batch(scales, targets), LEARNING,
                         jaxflow.Request(fractions=FRACTIONS), batched=True)
    assert traj.status.tolist() == [status.OK] * 6
    np.testing.assert_allclose(traj.learning_times, exact_learning_times(scales, targets),
                               rtol=1e-9, atol=1e-12)
    # the lane stops where it landed on its last crossing (the learning time is polished
    # from there)
    np.testing.assert_allclose(traj.final_time, np.max(traj.learning_times, axis=(1, 2)),
                               rtol=1e-7)
    programs = ensemble._loop_jit._cache_size()
    flipped = jaxflow.solve(factor_batch(scales[::-1], targets), LEARNING,
                            jaxflow.Request(fractions=FRACTIONS), batched=True)
    assert ensemble._loop_jit._cache_size() == programs  # same shapes: no new trace
    for name in ("learning_times", "final_time", "steps", "rejected", "final_modes"):
        assert (np.asarray(getattr(flipped, name))[::-1].tobytes()
                == np.asarray(getattr(traj, name)).tobytes()), name


def test_learning_time_statuses_per_lane():
    """A horizon at t = 8 and 200 step attempts, three lanes: from 0.1 every learning time
    comes by t = 6.03 (ok, having run on to the horizon); from 0.01 the second mode's 0.5 and
    0.9 come after 8 (unfinished, those inf); targets 100x larger learn at once but relax so
    stiffly that 200 explicit steps do not reach t = 8 (max_steps). Every learning time found
    matches the closed form; the statuses are the default engine's (test_contract.py)."""
    scales, targets = np.array([1e-1, 1e-2, 1e-2]), np.array([[2.0, 1.0]] * 2 + [[200.0, 100.0]])
    request = jaxflow.Request(fractions=FRACTIONS, horizon=8.0, max_steps=200)
    traj = jaxflow.solve(factor_batch(scales, targets), LEARNING, request, batched=True)
    assert [status.name(c) for c in traj.status.tolist()] == ["ok", "unfinished", "max_steps"]
    exact = exact_learning_times(scales, targets)
    found = np.isfinite(np.asarray(traj.learning_times))
    assert found[0].all() and found[1].sum() == 4 and not found[1, 1, 1:].any()
    np.testing.assert_allclose(traj.learning_times[found], exact[found], rtol=1e-9, atol=1e-12)
    assert float(traj.final_time[0]) == 8.0 and float(traj.final_time[2]) < 8.0


def test_learning_times_on_a_clock_after_plateaus_of_1e30():
    """On the toy model's clock (Flow(clock=toy.reduced_speed), the state ln sigma) the lanes
    cross plateaus of up to 1e30 time units (depth inf from 1e-30) in at most a few hundred
    attempts, and the learning times, read from the clock's flow time, match the closed form
    to 1e-9 at rtol 1e-10. A clock answers learning times only: saves are refused."""
    depths, scales = np.repeat([3.0, 4.0, np.inf], 3), np.tile([1e-30, 1e-12, 1e-3], 3)
    n = depths.size
    args = toy.ToyArgs(depth=jnp.asarray(depths), targets=jnp.ones((n, 1)),
                       time_scale=jnp.ones(n), log_time_unit=jnp.zeros(n))
    problem = jaxflow.Problem(vector_field=toy.reduced_vector_field, args=args,
                              params0=jnp.log(jnp.asarray(scales))[:, None],
                              modes=toy.reduced_modes, targets=args.targets)
    clocked = jaxflow.Flow(solver=jaxflow.Ensemble(), rtol=1e-10, atol=1e-10,
                           clock=toy.reduced_speed)
    traj = jaxflow.solve(problem, clocked, jaxflow.Request(fractions=FRACTIONS), batched=True)
    exact = np.array([[theory.learning_time(d, 1.0, s, f) for f in FRACTIONS]
                      for d, s in zip(depths, scales)])
    assert traj.status.tolist() == [status.OK] * n
    np.testing.assert_allclose(traj.learning_times[:, 0], exact, rtol=1e-9)
    np.testing.assert_allclose(traj.final_time, exact[:, -1], rtol=1e-9)  # the clock's t
    assert traj.final_state.shape == (n, 1) and int(np.max(traj.steps + traj.rejected)) < 400
    with pytest.raises(ValueError, match="on a clock .* learning times only"):
        jaxflow.solve(problem, clocked, jaxflow.Request(fractions=FRACTIONS, save_times=[1.0]),
                      batched=True)
    # The problem's own clock is the default, as in the default engine: the same lanes
    own = jaxflow.Problem(vector_field=toy.reduced_vector_field, args=args,
                          params0=problem.params0, modes=toy.reduced_modes,
                          targets=args.targets, clock=toy.reduced_speed)
    unnamed = jaxflow.Flow(solver=jaxflow.Ensemble(), rtol=1e-10, atol=1e-10)
    same = jaxflow.solve(own, unnamed, jaxflow.Request(fractions=FRACTIONS), batched=True)
    np.testing.assert_array_equal(same.learning_times, traj.learning_times)
    np.testing.assert_array_equal(same.steps, traj.steps)


# ---------------------------------------------------------------- sweeps of ensembles (stores)

SWEPT_RHOS = np.linspace(0.0, 21.0, 10)  # three chunks of 4, the last one padded by the sweep
STEP, STEPS = 1e-3, 1000  # fixed steps to t = 1: every lane takes 1000 (the queue's cost is exact)


def lorenz_field(y, rho):
    return lorenz(0.0, y, rho)


def every_coordinate(y, rho):
    return y


def lorenz_problems(points):
    """The published ensemble benchmark's problems, one per grid point (rho). Module-level
    functions: a new lambda per chunk would compile the engine's loop anew."""
    rho = jnp.asarray(points["rho"])
    return jaxflow.Problem(vector_field=lorenz_field, args=rho, modes=every_coordinate,
                           params0=jnp.tile(jnp.array([1.0, 0.0, 0.0]), (rho.size, 1)))


FIXED = jaxflow.Flow(solver=jaxflow.Ensemble(dt=STEP))
SAVED = jaxflow.Request(save_times=[0.5, 1.0], fractions=())
DIMS = {"modes": ("save", "coordinate"), "final_modes": ("coordinate",)}


def lorenz_sweep(chunk_size, **kw):
    runner = sweep.EnsembleRunner(lorenz_problems, FIXED, SAVED, chunk_size=chunk_size)
    return sweep.run(None, {"rho": SWEPT_RHOS}, runner=runner, output_dims=DIMS, quiet=True,
                     **kw)


@pytest.fixture(scope="module")
def swept():
    return lorenz_sweep(4)


def test_a_sweep_of_ensembles_is_the_direct_solve_bitwise_whatever_its_chunks(swept):
    """A grid point's answer does not depend on which chunk (queue) it ran in or with whom:
    chunks of 4 and one chunk of all 10 give the bits of one jaxflow.solve of the batch."""
    direct = jaxflow.solve(lorenz_problems({"rho": SWEPT_RHOS}), FIXED, SAVED, batched=True)
    whole = lorenz_sweep(len(SWEPT_RHOS))
    for ds in (swept, whole):
        assert ds["modes"].values.tobytes() == np.asarray(direct.modes).tobytes()
        assert ds["final_time"].values.tolist() == [1.0] * len(SWEPT_RHOS)
        assert ds["steps"].values.tolist() == [STEPS] * len(SWEPT_RHOS)
        assert ds["status"].values.tolist() == [status.OK] * len(SWEPT_RHOS)
    # The wasted share, read from the dataset: each chunk's queue runs STEPS iterations of 128
    # slots for its 4 points (1 - 4/128), the one chunk of 10 for its 10 (1 - 10/128).
    assert sweep.ensemble_runner.wasted_share(swept) == pytest.approx(1 - 4 / 128, abs=1e-12)
    assert sweep.ensemble_runner.wasted_share(whole) == pytest.approx(1 - 10 / 128, abs=1e-12)


def test_a_killed_sweep_of_ensembles_resumes_bitwise(swept, tmp_path, monkeypatch):
    """A chunk is one queue, written when it is empty: killed after one chunk, the store keeps
    it; --resume computes the two others only and gives the uninterrupted dataset's bits."""
    path = tmp_path / "lorenz.zarr"
    real_write, written = sweep.runner._write, []

    def interrupting(backing, index, outputs):
        if written:
            raise KeyboardInterrupt
        real_write(backing, index, outputs)
        written.append(index)

    monkeypatch.setattr(sweep.runner, "_write", interrupting)
    with pytest.raises(KeyboardInterrupt):
        lorenz_sweep(4, store=path)
    monkeypatch.setattr(sweep.runner, "_write", real_write)
    log = tmp_path / "chunks.log"
    monkeypatch.setenv(sweep.CHUNK_LOG_ENV, str(log))
    resumed = lorenz_sweep(4, store=path, resume=True)
    computed = sorted(int(line.split()[1]) for line in log.read_text().splitlines())
    assert computed == sorted({0, 1, 2} - set(written))
    for name in swept.data_vars:
        assert resumed[name].values.tobytes() == swept[name].values.tobytes(), name


def test_an_ensemble_runner_needs_the_ensemble_engine():
    with pytest.raises(sweep.SweepError, match=r"Flow\(solver=jaxflow.Ensemble"):
        sweep.EnsembleRunner(lorenz_problems, jaxflow.Flow(), SAVED)
