"""Jumps matched by time (jaxflow.oracles.jump_matching): the widths against an independent ODE
solve, the assignment against brute force, and simulated random sparse problems whose jump gaps
range from below to far above the resolution, scored against the jump-process oracle.

Times: the property test over simulated problems about 7 CPU-seconds (one compiled batched
flow, run once per problem), the rest under 1 s together.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import optimized
from scipy.integrate import solve_ivp

import jaxflow
from jaxflow.models import log_diagonal as ld
from jaxflow.oracles import jump_matching as jm
from jaxflow.oracles import jump_process as jpm
from jaxflow.oracles import saddles


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_width_is_the_single_coordinate_rise_time(depth):
    # One coordinate, L = (beta - v)^2 / 2, beta = w_+^N - w_-^N from w = alpha^(1/N): scipy
    # integrates the weights' flow and times the passage from 12% to 88% of v (logit -2 to 2).
    v, log_alpha = 0.7, np.log(1e-12)
    w0 = np.exp(log_alpha / depth)

    def field(t, w):
        g = w[0] ** depth - w[1] ** depth - v
        return [-depth * w[0] ** (depth - 1) * g, depth * w[1] ** (depth - 1) * g]

    def crossing(level):
        event = lambda t, w: w[0] ** depth - w[1] ** depth - level * v  # noqa: E731
        event.terminal = level > 0.5
        return event

    lo, hi = 1.0 / (1.0 + np.e**2), 1.0 / (1.0 + np.e**-2)
    end = 50.0 * jpm.time_scale(depth, log_alpha) / v
    sol = solve_ivp(field, (0.0, end), [w0, w0], method="LSODA", rtol=1e-11, atol=1e-14,
                    events=[crossing(lo), crossing(hi)])
    flow_width = sol.t_events[1][0] - sol.t_events[0][0]
    expected = flow_width / jpm.time_scale(depth, log_alpha)
    # The w_- factor shrinks as w_+ grows; at alpha = 1e-12 it changes beta by < 1e-11.
    np.testing.assert_allclose(jm.widths(np.array([v]), depth, log_alpha), [expected], rtol=1e-6)


def _brute_force(oracle, detected, reach):
    """Most pairs within reach, then least total distance: every injective assignment."""
    best = (-1, np.inf, None)
    slots = range(oracle.size)
    for size in range(min(oracle.size, detected.size), -1, -1):
        for events in itertools.permutations(range(detected.size), size):
            for targets in itertools.combinations(slots, size):
                d = np.abs(detected[list(events)] - oracle[list(targets)])
                if (d <= reach[list(targets)]).all() and (size, -d.sum()) > (best[0], -best[1]):
                    best = (size, d.sum(), dict(zip(targets, events)))
        if best[0] == size:
            break
    return best


def test_assignment_is_optimal_and_not_by_position():
    # Position pairing would give oracle jump 2 (t = 2) the detection at 2.9 (error 0.9).
    oracle = np.array([1.0, 2.0, 3.0])
    m = jm.match(oracle, np.array([1.01, 2.9]), np.full(3, 0.2), np.full(3, 0.05))
    assert [jm.name(c) for c in m.codes] == ["matched", "missed", "matched"]
    np.testing.assert_allclose(m.errors, [0.01, np.nan, -0.1])
    # Random instances (windows wide enough to overlap, no groups): the assignment has the
    # brute force's number of pairs and total distance.
    rng = np.random.default_rng(0)
    for _ in range(200):
        oracle = np.sort(rng.uniform(0, 4, rng.integers(1, 5)))
        detected = rng.uniform(-0.5, 4.5, rng.integers(0, 5))
        reach = rng.uniform(0.1, 1.5, oracle.size)
        m = jm.match(oracle, detected, reach, np.zeros(oracle.size))
        size, total, _ = _brute_force(oracle, detected, reach)
        matched = m.codes == jm.MATCHED
        assert matched.sum() == size == (m.assigned >= 0).sum()
        np.testing.assert_allclose(np.abs(m.times[matched] - oracle[matched]).sum(), total,
                                   atol=1e-12)
        assert m.num_extra == detected.size - size


def test_merged_only_below_the_resolution_and_extra_named():
    oracle = np.array([1.0, 1.1, 1.2, 4.0])
    res = np.array([0.15, 0.05, 0.3, np.nan])  # 1.0 and 1.1 closer than 0.15; 1.1-1.2 apart
    assert jm.groups(oracle, res).tolist() == [0, 0, 1, 2]
    m = jm.match(oracle, np.array([1.06, 1.2, 9.0]), np.full(4, 0.1), res)
    assert [jm.name(c) for c in m.codes] == ["merged", "merged", "matched", "missed"]
    assert m.assigned.tolist()[2] == -1 and m.num_extra == 1
    # Nothing found for the pair: missed, never merged.
    m = jm.match(oracle, np.array([4.05]), np.full(4, 0.1), res)
    assert [jm.name(c) for c in m.codes] == ["missed", "missed", "missed", "matched"]
    # Edge cases: no oracle jump (every detection extra), no detection (every jump missed).
    assert jm.match(np.array([]), np.array([1.0, 2.0]), np.array([]), np.array([])).num_extra == 2
    m = jm.match(oracle, np.array([np.nan]), np.full(4, 0.1), res)
    assert (m.codes == jm.MISSED).all() and m.num_extra == 0


def _random_problems(count, seed, d=6, m=10):
    """Sparse regressions y = X beta* (unit columns, 2-3 nonzeros in +-[0.5, 4]), m > d."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        x = rng.standard_normal((m, d))
        x /= np.linalg.norm(x, axis=0)
        beta = np.zeros(d)
        support = rng.choice(d, rng.integers(2, 4), replace=False)
        beta[support] = rng.choice([-1.0, 1.0], support.size) * rng.uniform(0.5, 4, support.size)
        out.append((2 * x.T @ x / m, 2 * x.T @ x @ beta / m, beta))
    return out


def test_oracle_active_sets_ignore_rounding():
    # m > d: the last plateau is beta* itself. A least-squares solve used to leave ~1e-16 on a
    # coordinate whose minimizer is 0, counted active (3 of these 300 problems).
    for hessian, linear, beta in _random_problems(300, seed=0):
        jp = jpm.jump_process(hessian, linear)
        np.testing.assert_allclose(jp.betas[-1], beta, atol=1e-9)
        assert (jp.active[-1] == (beta != 0)).all()


ALPHAS = (1e-10, 1e-30, 1e-100, 1e-300)
SAMPLES = 2001


@pytest.fixture(scope="module")
def simulated():
    """Eight random problems at four scales, flows in rescaled time: each lane's quadratic is
    multiplied by its time unit and by its span (1.25 x its last oracle jump), so one grid
    [0, 1] serves every lane. One compiled batched flow, called once per problem on its four
    scales (a batch of all 32 lanes ran 3x longer: each save of a batched solve copies
    the whole saved array). Returns (problem, alpha, oracle, span, modes) per lane."""
    with optimized():  # 32 long flows at rtol 1e-10: 3x slower unoptimised (tests/conftest.py)
        return _simulate()


def _simulate():
    problems = [(h, b, jpm.jump_process(h, b)) for h, b, _ in _random_problems(8, seed=0)]
    method = jaxflow.Flow(clock="arclength", rtol=1e-10, atol=1e-12)
    request = jaxflow.Request(save_times=np.linspace(0, 1, SAMPLES), max_steps=50_000)
    log_alphas = np.log(np.array(ALPHAS))
    out = []
    for p, (hessian, linear, jp) in enumerate(problems):
        span = 1.25 * jp.times[-1]
        factor = span * np.array([jpm.time_scale(2, la) for la in log_alphas])
        args = ld.Problem(hessian[None] * factor[:, None, None], linear[None] * factor[:, None],
                          np.zeros(len(ALPHAS)), np.full(len(ALPHAS), 2.0))
        problem = jaxflow.Problem(vector_field=ld.vector_field, args=args, modes=ld.modes,
                                  params0=jax.vmap(lambda la: ld.init(la, 2.0, 6))(log_alphas),
                                  targets=jnp.zeros((len(ALPHAS), 6)))
        traj = jaxflow.solve(problem, method, request, batched=True)
        assert (np.asarray(traj.status) == 0).all()
        modes = np.asarray(traj.modes)
        out += [(p, a, jp, span, modes[i]) for i, a in enumerate(ALPHAS)]
    return out


def test_random_problems_matched_by_time(simulated):
    ratios, log_errors, codes = [], {}, []
    for p, alpha, jp, span, modes in simulated:
        oracle, grid = jp.times[1:], np.linspace(0, span, SAMPLES)
        step = grid[1]
        st = saddles.detect(grid, modes, max_plateaus=max(8, oracle.size + 2))
        width = jm.widths(jp.speeds[1:], 2, np.log(alpha))
        res = jm.resolution(width, step)
        m = jm.match(oracle, jm.events(st), jm.windows(jp, width, step), res)
        codes += m.codes.tolist()
        close = np.diff(oracle) < res[:-1]
        ratios += (np.diff(oracle) / res[:-1]).tolist()
        # Merged exactly where a gap is below the resolution; such a pair is never matched.
        apart = ~np.concatenate([[False], close]) & ~np.concatenate([close, [False]])
        assert not (m.codes[apart] == jm.MERGED).any()
        assert not (m.codes[~apart] == jm.MATCHED).any()
        # Time and identity agree: a matched time is the midpoint crossing of the coordinate
        # that the oracle says enters at that jump.
        crossings = np.asarray(st.mode_jump_times)
        for k in np.flatnonzero(m.codes == jm.MATCHED):
            assert np.isclose(crossings[:, jp.entering[k + 1]], m.times[k], atol=0).any()
            log_errors.setdefault((p, k), []).append((alpha, m.errors[k], step))
        if alpha <= 1e-30:
            assert m.num_extra == 0, (p, alpha)
        if alpha == 1e-300:  # a sharp staircase: every jump is found
            assert (m.codes != jm.MISSED).all(), (p, m.codes)
    # The set spans gaps from below the resolution to far above it, and merges some.
    assert min(ratios) < 0.5 and max(ratios) > 50 and jm.MERGED in codes
    # Error = C_k / ln(1/alpha) at alpha <= 1e-30: within C_k / ln(1/alpha) of it, or a grid
    # step where the grid is coarser than the jump (C_k: the median over the scales).
    checked = 0
    for runs in log_errors.values():
        runs = [(a, e, h) for a, e, h in runs if a <= 1e-30]
        if len(runs) < 2:
            continue
        constant = np.median([e * -np.log(a) for a, e, _ in runs])
        for a, e, h in runs:
            assert abs(e - constant / -np.log(a)) <= max(abs(constant) / -np.log(a), h)
        checked += 1
    assert checked >= 15
