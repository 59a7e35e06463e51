"""Gradient flow through diffrax, built for long plateaus, many modes and many lanes.

The flow ``dy/dt = f(y)`` of a model from a tiny initialization sits on a plateau for up to
1e300 time units and then escapes in O(1); a spectrum of k targets does that k times. jaxflow
integrates it in three named parts, each small enough to read on its own:

* **the clock** (:mod:`jaxflow.engine.clock`): a reparametrized time ``tau`` with ``dt/dtau = 1/s(y)``
  in which every e-fold of the state costs a bounded number of steps, whatever the plateau's
  length;
* **the step loop** (:func:`_step`): jaxflow's own ``lax.while_loop`` around a diffrax solver's
  ``step`` and a diffrax ``PIDController`` (relative error control on every component, the flow
  time included), carrying a :class:`_LoopState`;
* **event location** (:func:`_crossing_time`, :func:`_save_between`): the first time each mode
  reaches each fraction of its target is located on the step's dense interpolant by regula falsi
  (:mod:`jaxflow.engine.regula_falsi`) and, with ``refine=True``, polished by one exact solver step to
  the located point plus a Newton correction, so learning times carry the solver's accuracy;
  modes are saved at requested flow times the same way;
* **status** (:func:`_stop`, :mod:`jaxflow.engine.status`): every lane ends ``ok`` (it answered what
  was asked), ``unfinished`` (it reached its horizon first), ``max_steps`` or ``nonfinite``; a
  failing lane stops alone and the others go on.

**Many modes.** A model declared :class:`jaxflow.engine.coordinatewise.Coordinatewise` (the toy model,
the factor-level model) is solved one coordinate per lane, each on its own clock: a converged
mode never has to share a step size with a mode still on its plateau, which would make one
shared clock stiff (measured in ``benchmarks/flow_engines.py``: today's shared clock runs out of
4096 steps on (4, 3, 2, 1) at depth 5 from 1e-6; per-coordinate clocks take ~60 steps a mode).
Coupled models (matrix sensing) use one clock; in plain time with :class:`jaxflow.engine.rkc.RKC` they
are solved to stationarity.

**When a lane stops.** With a horizon (``t_end``, or the last save time) at the horizon, or
earlier where it has become stationary (see ``stationary_tol``). Without one, once every
learning time asked for is found (``required``), or, when none is asked (``fractions=()``),
once it is stationary.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxflow.engine import flow
    >>> from jaxflow.oracles import theory
    >>> from jaxflow.models import toy
    >>> args = toy.ToyArgs(depth=3.0, targets=jnp.array([4.0, 2.0, 1.0]))
    >>> traj = flow.solve(toy.reduced_vector_field, toy.reduced_init(1e-12, 3), args,
    ...                   modes=toy.reduced_modes, targets=args.targets, fractions=(0.5,),
    ...                   time=toy.reduced_speed)
    >>> exact = theory.learning_time(3.0, args.targets, 1e-12, 0.5 * args.targets)
    >>> bool(jnp.allclose(traj.learning_times[:, 0], exact, rtol=1e-7)), int(traj.status)
    (True, 0)
"""

from collections.abc import Callable, Sequence
from typing import Any

import diffrax
import equinox as eqx
import equinox.internal as eqxi
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, PyTree

from jaxflow.engine import status as _status
from jaxflow.engine.clock import DEFAULT_DT0, Speed, check_speed, clock_speed, max_abs
from jaxflow.engine.coordinatewise import Coordinatewise, is_coordinatewise
from jaxflow.engine.regula_falsi import illinois
from jaxflow.engine.solvers import (
    counts_evaluations,
    init_evaluations,
    step_evaluations,
    with_root_finder_tolerances,
)
from jaxflow.engine.trajectory import Trajectory, check_fractions

__all__ = ["Trajectory", "gradient_flow", "solve"]

_STATIONARY_TOL = 1e-10  # relative distance to a fixed point below which a lane has arrived
# Non-finite step attempts a lane may retry (each shrinks the step by the controller's smallest
# factor, 0.2 by default) before it is declared non-finite. A healthy lane meets a few, where a
# long step overshoots into overflow and the controller grows it back (measured: 9 to 12 on
# balanced depth-4 factors in log-factors from 1e-250, fewer elsewhere): 32 leaves a margin.
_NONFINITE_TRIES = 32
_STORE_LIMIT = 4096  # floats of stored crossing steps per lane (see `_initial_state`)


# ---------------------------------------------------------------------------------------------
# The problem and the loop state
# ---------------------------------------------------------------------------------------------


class _Problem(eqx.Module):
    """Everything the loop reads and never changes: the model, the clock, the solver, the asks."""

    vector_field: Callable
    args: Any
    modes: Callable
    targets: Array
    fractions: Array
    save_times: Array
    t_end: Array  # the horizon: inf when there is none
    clock: Any
    solver: diffrax.AbstractAdaptiveSolver
    controller: diffrax.PIDController
    refine: bool = eqx.field(static=True)
    stationary_tol: Any  # None: never check (static), else the tolerance
    asked: Array  # (M, F) learning times the lane must find
    max_steps: int = eqx.field(static=True)

    @property
    def term(self):
        return diffrax.ODETerm(self.tau_field)

    def progress(self, y):
        m = self.modes(y, self.args)
        safe = jnp.where(self.targets != 0, self.targets, 1.0)
        return m, jnp.where(self.targets != 0, m / safe, -jnp.inf)

    def tau_field(self, tau, z, _):
        """``d(y, t)/dtau = (f, 1) / s``: the flow on the clock."""
        y, _t = z
        velocity = self.vector_field(y, self.args)
        s = clock_speed(self.clock, y, velocity, self.args)
        return jtu.tree_map(lambda v: v / s, velocity), 1.0 / s


class _Record(eqx.Module):
    """One step as taken: enough to re-take it exactly and locate a crossing inside it."""

    tau_a: Array
    tau_b: Array
    z_a: PyTree
    solver_state: PyTree


class _LoopState(eqx.Module):
    """The carry of the step loop."""

    tau0: Array
    tau1: Array
    z: PyTree  # (y, t)
    solver_state: PyTree
    controller_state: PyTree
    made_jump: Array
    modes: Array
    found: Array  # (M, F) crossings seen
    records: _Record | None  # (M, F) stored crossing steps, or None (located in the loop)
    learning: Array  # (M, F) learning times located so far
    save_index: Array
    saved: Array  # (K, M)
    steps: Array
    rejected: Array
    evaluations: Array
    nonfinite_tries: Array  # step attempts that came out non-finite (rejected and retried)
    status: Array
    done: Array


# ---------------------------------------------------------------------------------------------
# Event location: learning times and saves inside one step
# ---------------------------------------------------------------------------------------------


def _interpolate(interp, theta, tau_a, tau_b):
    return interp.evaluate(tau_a + theta * (tau_b - tau_a))


def _crossing_time(problem: _Problem, record: _Record, mode_index, level):
    """Flow time at which mode ``mode_index`` reached ``level`` inside the recorded step."""
    term, solver = problem.term, problem.solver
    tau_a, tau_b, z_a, sstate = record.tau_a, record.tau_b, record.z_a, record.solver_state
    # Re-take the recorded step: deterministic, so it reproduces the dense output exactly,
    # and it is cheaper than carrying that output through every iteration.
    z_b, _, dense, _, _ = solver.step(term, tau_a, tau_b, z_a, problem.args, sstate, False)
    p_a, p_b = problem.progress(z_a[0])[1], problem.progress(z_b[0])[1]
    interp = solver.interpolation_cls(t0=tau_a, t1=tau_b, **dense)

    def g(theta):
        return problem.progress(_interpolate(interp, theta, tau_a, tau_b)[0])[1][mode_index] - level

    zero, one = jnp.asarray(0.0), jnp.asarray(1.0)
    theta = illinois(g, zero, one, p_a[mode_index] - level, p_b[mode_index] - level)
    tau_star = tau_a + theta * (tau_b - tau_a)
    if not problem.refine:
        return interp.evaluate(tau_star)[1]
    # Polish: an exact solver step from the step start to the located point, then one Newton
    # step on the exact state: the learning time gets the solver's accuracy, not the
    # interpolant's.
    z_star, _, _, _, _ = solver.step(term, tau_a, tau_star, z_a, problem.args, sstate, False)
    y_star, t_star = z_star
    dy_dtau, dt_dtau = problem.tau_field(tau_star, z_star, None)
    p_star, dp_dtau = jax.jvp(lambda y: problem.progress(y)[1], (y_star,), (dy_dtau,))
    rate = dp_dtau[mode_index]
    safe_rate = jnp.where(rate > 0, rate, 1.0)
    delta = jnp.where(rate > 0, (level - p_star[mode_index]) / safe_rate, 0.0)
    delta = jnp.clip(delta, -theta * (tau_b - tau_a), (1 - theta) * (tau_b - tau_a))
    return t_star + delta * dt_dtau


def _crossing_times(problem: _Problem, records, per_pair: bool):
    """:func:`_crossing_time` for every (mode, fraction): one record each, or one shared."""
    num_modes, num_fractions = problem.asked.shape
    mode_grid = jnp.broadcast_to(jnp.arange(num_modes)[:, None], (num_modes, num_fractions))
    level_grid = jnp.broadcast_to(problem.fractions[None, :], (num_modes, num_fractions))
    axes = 0 if per_pair else None
    one = lambda record, mode, level: _crossing_time(problem, record, mode, level)
    inner = jax.vmap(one, in_axes=(axes, 0, 0))
    return jax.vmap(inner, in_axes=(axes, 0, 0))(records, mode_grid, level_grid)


def _save_between(problem: _Problem, interp, tau_a, tau_b, t_a, t_b, index, saved):
    """Save the modes at every requested time in ``(t_a, t_b]``, located on the interpolant."""
    save_times = problem.save_times
    num_saves = save_times.shape[0]

    def cond(c):
        i, _ = c
        return (i < num_saves) & (save_times[jnp.minimum(i, num_saves - 1)] <= t_b)

    def body(c):
        i, saved_ = c
        ts = save_times[i]

        def g(theta):
            return _interpolate(interp, theta, tau_a, tau_b)[1] - ts

        zero, one = jnp.asarray(0.0), jnp.asarray(1.0)
        theta = jnp.where(ts <= t_a, 0.0, illinois(g, zero, one, t_a - ts, t_b - ts))
        m, _ = problem.progress(_interpolate(interp, theta, tau_a, tau_b)[0])
        return i + 1, saved_.at[i].set(m)

    return jax.lax.while_loop(cond, body, (index, saved))


# ---------------------------------------------------------------------------------------------
# Stopping and status
# ---------------------------------------------------------------------------------------------


def _stationary(problem: _Problem, y) -> Array:
    """Whether ``y`` sits at a stable fixed point, up to ``stationary_tol``.

    Near a stable fixed point ``y*`` the flow contracts, and ``|f|^3 / (-f.Jf)`` estimates the
    distance still to travel (exact for a linear flow). A lane whose remaining distance is below
    ``stationary_tol * max(1, max|y|)`` is done. On a plateau the flow expands (``f.Jf > 0``)
    and the lane goes on, however slow it is.
    """
    if problem.stationary_tol is None:
        return jnp.asarray(False)
    field = lambda y_: problem.vector_field(y_, problem.args)
    velocity, jvp = jax.jvp(field, (y,), (field(y),))
    flat_v = jnp.concatenate([jnp.ravel(v) for v in jtu.tree_leaves(velocity)])
    flat_jv = jnp.concatenate([jnp.ravel(v) for v in jtu.tree_leaves(jvp)])
    speed2 = jnp.sum(flat_v**2)
    contraction = -jnp.sum(flat_v * flat_jv)
    remaining = jnp.sqrt(speed2) * speed2 / jnp.where(contraction > 0, contraction, 1.0)
    limit = problem.stationary_tol * jnp.maximum(1.0, max_abs(y))
    return ((contraction > 0) & (remaining <= limit)) | (speed2 == 0)


def _stop(problem: _Problem, t, found, y):
    """``(reached, stationary, answered)``: the lane's stopping facts after a step.

    ``answered``: every learning time asked for is found. ``reached``: the horizon is reached,
    or, without one, everything asked is answered (and something was asked).
    """
    answered = jnp.all(found | ~problem.asked)
    asked_any = jnp.any(problem.asked)
    reached = jnp.where(jnp.isfinite(problem.t_end), t >= problem.t_end, answered & asked_any)
    return reached, _stationary(problem, y), answered


def _new_status(old, *, finite, out_of_steps, unfinished):
    code = lambda c: jnp.int8(c)
    new = jnp.where(unfinished, code(_status.UNFINISHED), old)
    new = jnp.where(out_of_steps, code(_status.MAX_STEPS), new)
    return jnp.where(finite, new, code(_status.NONFINITE))


# ---------------------------------------------------------------------------------------------
# The step loop
# ---------------------------------------------------------------------------------------------


def _initial_state(problem: _Problem, y0, dt0) -> _LoopState:
    term, solver, controller = problem.term, problem.solver, problem.controller
    z0 = (y0, jnp.asarray(0.0))
    tau0 = jnp.asarray(0.0)
    error_order = solver.error_order(term)
    tau1, controller_state = controller.init(
        term, tau0, jnp.inf, z0, dt0, problem.args, solver.func, error_order
    )
    solver_state = solver.init(term, tau0, tau1, z0, problem.args)
    modes0, progress0 = problem.progress(y0)
    found0 = progress0[:, None] >= problem.fractions[None, :]
    # Storing a crossing step per (mode, fraction) costs a copy of the state per step; it pays
    # for small states (the toy model: thousands of lanes, few crossings each), while large
    # states (matrix models: few lanes) locate crossings inside the loop instead (records None).
    record0 = _Record(tau0, tau1, z0, solver_state)
    record_size = sum(leaf.size for leaf in jtu.tree_leaves(record0)) * found0.size
    records = None
    if record_size <= _STORE_LIMIT:
        records = jtu.tree_map(lambda leaf: jnp.broadcast_to(leaf, found0.shape + leaf.shape), record0)
    reached, stationary, _ = _stop(problem, jnp.asarray(0.0), found0, y0)
    return _LoopState(
        tau0=tau0,
        tau1=tau1,
        z=z0,
        solver_state=solver_state,
        controller_state=controller_state,
        made_jump=jnp.asarray(False),
        modes=modes0,
        found=found0,
        records=records,
        learning=jnp.where(found0, 0.0, jnp.inf),
        save_index=jnp.asarray(0),
        saved=jnp.full((problem.save_times.shape[0], problem.targets.shape[0]), jnp.nan),
        steps=jnp.asarray(0),
        rejected=jnp.asarray(0),
        evaluations=jnp.asarray(init_evaluations(solver, solver_state), dtype=jnp.int32),
        nonfinite_tries=jnp.asarray(0),
        status=jnp.asarray(_status.OK, dtype=jnp.int8),
        done=reached | stationary,
    )


def _step(problem: _Problem, c: _LoopState) -> _LoopState:
    """One step attempt: take it, adapt the step size, record crossings and saves, stop or not."""
    term, solver, controller = problem.term, problem.solver, problem.controller
    error_order = solver.error_order(term)
    tau_a, tau_b, z_a = c.tau0, c.tau1, c.z
    z_b, z_err, dense, sstate, result = solver.step(
        term, tau_a, tau_b, z_a, problem.args, c.solver_state, c.made_jump
    )
    # A trial step that overflows (a stage wandered where exp() overflows, say) is rejected
    # and retried smaller, as diffrax does: an infinite error makes the controller shrink the
    # step by its smallest factor. A lane that fails again and again (a model that is not
    # finite beyond some point: the steps would creep up to it until max_steps) is non-finite.
    trial_finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jtu.tree_leaves(z_b)]))
    z_err = jtu.tree_map(lambda e: jnp.where(trial_finite, e, jnp.inf), z_err)
    keep, next_a, next_b, made_jump, cstate, _ = controller.adapt_step_size(
        tau_a, tau_b, z_a, z_b, problem.args, z_err, error_order, c.controller_state
    )
    nonfinite_tries = c.nonfinite_tries + (~trial_finite).astype(c.nonfinite_tries.dtype)
    finite = (nonfinite_tries < _NONFINITE_TRIES) & jnp.isfinite(next_b)
    keep = keep & trial_finite & finite & (result == diffrax.RESULTS.successful)
    y_b, t_b = z_b
    modes_b, p_b = problem.progress(y_b)
    crossed = keep & ~c.found & (p_b[:, None] >= problem.fractions[None, :])
    record = _Record(tau_a, tau_b, z_a, c.solver_state)
    records, learning = c.records, c.learning
    if records is not None:
        # Keep the step that crossed; the crossing is located once, after the loop.
        expand = lambda leaf: crossed.reshape(crossed.shape + (1,) * (leaf.ndim - crossed.ndim))
        fresh = jtu.tree_map(lambda leaf: jnp.broadcast_to(leaf, crossed.shape + leaf.shape), record)
        records = jtu.tree_map(lambda new, old: jnp.where(expand(old), new, old), fresh, records)
    elif crossed.size:  # (no learning time asked: nothing to locate)
        # Large states: locate now, and only on iterations where some lane crossed.
        learning = jax.lax.cond(
            eqxi.unvmap_any(crossed),
            lambda: jnp.where(crossed, _crossing_times(problem, record, per_pair=False), learning),
            lambda: learning,
        )
    save_index, saved = c.save_index, c.saved
    if problem.save_times.shape[0]:
        interp = solver.interpolation_cls(t0=tau_a, t1=tau_b, **dense)
        idx, sv = _save_between(problem, interp, tau_a, tau_b, z_a[1], t_b, save_index, saved)
        save_index, saved = jnp.where(keep, idx, save_index), jnp.where(keep, sv, saved)

    found = c.found | crossed
    steps = c.steps + keep.astype(c.steps.dtype)
    rejected = c.rejected + (~keep).astype(c.rejected.dtype)
    reached, stationary, answered = _stop(problem, t_b, found, y_b)
    finished = keep & (reached | stationary)
    out_of_steps = (steps + rejected >= problem.max_steps) & ~finished
    select = lambda new, old: jtu.tree_map(lambda a, b: jnp.where(keep, a, b), new, old)
    return _LoopState(
        tau0=jnp.where(finite, next_a, tau_a),
        tau1=jnp.where(finite, next_b, tau_b),
        z=select(z_b, z_a),
        solver_state=select(sstate, c.solver_state),
        controller_state=cstate,
        made_jump=made_jump,
        modes=jnp.where(keep, modes_b, c.modes),
        found=found,
        records=records,
        learning=learning,
        save_index=save_index,
        saved=saved,
        steps=steps,
        rejected=rejected,
        evaluations=c.evaluations + jnp.asarray(step_evaluations(solver, sstate), jnp.int32),
        nonfinite_tries=nonfinite_tries,
        status=_new_status(
            c.status,
            finite=finite,
            out_of_steps=out_of_steps,
            unfinished=finished & ~stationary & ~answered,
        ),
        done=finished | ~finite | out_of_steps,
    )


def _finish(problem: _Problem, final: _LoopState, found0) -> Trajectory:
    """Locate the stored crossings and fill the saves of a lane that stopped early."""
    learning = final.learning
    if final.records is not None and final.found.size:
        recorded = final.found & ~found0
        learning = jnp.where(recorded, _crossing_times(problem, final.records, True), learning)
    y_final, t_final = final.z
    saved = final.saved
    num_saves = problem.save_times.shape[0]
    if num_saves:
        # A lane that stopped at a fixed point holds its final modes for every later save time;
        # a lane that failed keeps NaN there, so nothing looks computed that was not.
        pending = jnp.arange(num_saves) >= final.save_index
        fill = pending[:, None] & (final.status == _status.OK)
        saved = jnp.where(fill, final.modes[None, :], saved)
    evaluations = final.evaluations
    if not counts_evaluations(problem.solver):
        evaluations = jnp.asarray(-1, jnp.int32)
    return Trajectory(
        times=problem.save_times,
        modes=saved,
        learning_times=learning,
        fractions=problem.fractions,
        final_time=t_final,
        final_modes=final.modes,
        final_state=y_final,
        steps=final.steps,
        rejected=final.rejected,
        evaluations=evaluations,
        status=final.status,
    )


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------


def _check_eager(fractions, save_times, t_end, rtol, atol, max_steps, speed, stationary_tol):
    check_speed(speed)
    if isinstance(max_steps, bool) or not (isinstance(max_steps, int) and max_steps >= 1):
        raise ValueError(f"max_steps must be an integer >= 1, got {max_steps!r}")
    check_fractions(fractions)
    for name, value in (("rtol", rtol), ("atol", atol), ("stationary_tol", stationary_tol)):
        if isinstance(value, jax.core.Tracer) or (name == "stationary_tol" and value is None):
            continue
        try:
            arr = np.asarray(value) if not isinstance(value, (str, bytes)) else np.asarray(None)
        except (TypeError, ValueError):
            arr = np.asarray(None)
        if arr.dtype.kind not in "iuf" or arr.ndim != 0 or not 0 < float(arr) < np.inf:
            raise ValueError(f"{name} must be a number in (0, inf), got {value!r}")
    if t_end is not None and not isinstance(t_end, jax.core.Tracer):
        try:
            bad = np.ndim(t_end) != 0 or not float(t_end) > 0 or np.isnan(float(t_end))
        except (TypeError, ValueError):
            bad = True
        if bad:
            raise ValueError(f"t_end must be a number in (0, inf], got {t_end!r}")
    if save_times is not None and not isinstance(save_times, jax.core.Tracer):
        try:
            ts = np.asarray(save_times, dtype=float)
        except (TypeError, ValueError):
            ts = np.full((1, 1), np.nan)
        if ts.ndim != 1 or not np.all(np.isfinite(ts)) or np.any(ts < 0) or np.any(np.diff(ts) < 0):
            raise ValueError("save_times must be a 1-D, finite, non-negative, sorted array")


def _check_targets(y0, args, modes, targets, vector_field):
    """A wrong-length ``targets`` names itself instead of failing as a broadcast deep inside."""
    num = np.shape(targets)
    if len(num) != 1:
        raise ValueError(f"targets must be a 1-D array (one target per mode), got shape {num}")
    if is_coordinatewise(vector_field):
        d = vector_field.num_coordinates(y0)
        if num[0] != d:
            raise ValueError(f"targets must have one entry per coordinate ({d}), got {num[0]}")
        return
    shape = jax.eval_shape(modes, y0, args).shape
    if shape != num:
        raise ValueError(f"targets must have the shape of modes(y0, args) {shape}, got shape {num}")


def solve(
    vector_field: Callable[[PyTree, Any], PyTree],
    y0: PyTree,
    args: Any = None,
    *,
    modes: Callable[[PyTree, Any], Float[Array, " M"]],
    targets: Float[ArrayLike, " M"],
    fractions: Sequence[float] = (0.1, 0.5, 0.9),
    save_times: Float[ArrayLike, " K"] | None = None,
    t_end: Float[ArrayLike, ""] | None = None,
    time: Speed = "arclength",
    solver: diffrax.AbstractAdaptiveSolver | None = None,
    rtol: Float[ArrayLike, ""] = 1e-10,
    atol: Float[ArrayLike, ""] = 1e-10,
    max_steps: int = 4096,
    refine: bool = True,
    stationary_tol: Float[ArrayLike, ""] | None | str = "auto",
    required: Bool[ArrayLike, "M F"] | None = None,
    dt0: float | None = None,
    controller: diffrax.PIDController | None = None,
) -> Trajectory:
    """Integrate the flow ``dy/dt = vector_field(y, args)`` from ``y0`` (one lane; ``vmap`` it).

    Args:
        vector_field: ``f(y, args) -> dy/dt``, same pytree structure as ``y``. For a model,
            use :func:`gradient_flow`, which builds ``-grad(loss)``. Declared
            :class:`jaxflow.engine.coordinatewise.Coordinatewise`, every coordinate is solved on its own
            clock (module docstring); ``modes`` must then give one mode per coordinate.
        y0: initial state (pytree of float arrays).
        args: passed to ``vector_field`` and ``modes``; put swept values (depth, targets, scale)
            here as arrays so that new values never recompile.
        modes: ``modes(y, args) -> (M,)`` the values whose learning is tracked.
        targets: ``(M,)`` their targets; progress is ``modes / targets`` (0 targets: never).
        fractions: increasing fractions in (0, 1] at which learning times are recorded; ``()``
            asks for none (the lane then runs to its horizon or to stationarity).
        save_times: sorted flow times ``(K,)`` at which to save the modes (e.g. log-spaced).
        t_end: the horizon: stop at this flow time (> 0). Default: the last save time if given,
            else none (see ``required``).
        time: the clock: ``"arclength"``, ``"relative"``, ``"plain"`` or a callable speed
            (:mod:`jaxflow.engine.clock`).
        solver: an adaptive diffrax solver (default ``diffrax.Tsit5()``).
        rtol, atol: ``PIDController`` tolerances on the state and the flow time.
        max_steps: budget of solver steps (accepted + rejected, per coordinate); static.
        refine: polish each learning time by one exact solver step and a Newton correction
            (default); otherwise use the dense interpolant alone.
        stationary_tol: a lane that contracts towards a fixed point with less than
            ``stationary_tol * max(1, max|y|)`` left to travel (estimated as ``|f|^3 /
            (-f.Jf)``, exact for a linear flow) is stationary: it stops, its remaining saves
            hold its final modes and its unfound learning times are ``inf`` (never). ``None``
            never checks (it costs one Jacobian-vector product per step). ``"auto"``
            (default): 1e-10 where the lane runs to a horizon or is asked no learning time,
            ``None`` where it stops at its learning times (the phase diagram's lanes).
        required: ``(M, F)`` mask of the learning times the lane must find; default all
            (nonzero targets). Without a horizon the lane stops once they are found; with one,
            a lane that reaches it first is ``unfinished``.
        dt0: first step in ``tau``. Default: 0.05 for the reparametrized clocks (``tau`` counts
            e-folds of the state), automatic for ``"plain"``.
        controller: a ``diffrax.PIDController`` replacing the one built from ``rtol``/``atol``
            (for example with PI coefficients).

    Returns:
        A :class:`Trajectory` (:mod:`jaxflow.engine.trajectory`, the contract that gradient descent
        shares). Its status is ``ok`` when everything asked was answered,
        ``unfinished`` when the horizon came first, ``max_steps`` or ``nonfinite`` otherwise.

    Raises:
        ValueError: for invalid settings (names the argument and the allowed range).

    Example (the toy model against its exact learning time; ``jax.vmap`` it over lanes):
        >>> import jax, jax.numpy as jnp
        >>> from jaxflow.engine import flow
        >>> from jaxflow.oracles import theory
        >>> from jaxflow.models import toy
        >>> def half_time(scale):
        ...     args = toy.ToyArgs(depth=2.0, targets=jnp.ones(1))
        ...     traj = flow.solve(toy.reduced_vector_field, toy.reduced_init(scale, 1), args,
        ...                       modes=toy.reduced_modes, targets=args.targets, fractions=(0.5,),
        ...                       time=toy.reduced_speed)
        ...     return traj.learning_times[0, 0]
        >>> scales = jnp.array([1e-40, 1e-4])
        >>> exact = theory.learning_time(2.0, 1.0, scales, 0.5)      # ln(1/sigma0 - 1)
        >>> bool(jnp.allclose(jax.vmap(half_time)(scales), exact, rtol=1e-7))
        True
    """
    auto = isinstance(stationary_tol, str) and stationary_tol == "auto"
    _check_eager(fractions, save_times, t_end, rtol, atol, max_steps, time,
                 None if auto else stationary_tol)
    if auto:
        runs_to_horizon = t_end is not None or save_times is not None
        stationary_tol = _STATIONARY_TOL if runs_to_horizon or not len(fractions) else None
    if not isinstance(targets, jax.core.Tracer):
        _check_targets(y0, args, modes, targets, vector_field)
    # One compiled program per call signature: the setup (controller, first step, records)
    # would otherwise run op by op, each op compiled on its own (seconds of overhead per call).
    # Callables and Python numbers are static (equinox's filter), arrays are traced.
    entry = _solve_coordinatewise_jit if is_coordinatewise(vector_field) else _solve_jit
    return entry(
        vector_field, y0, args, modes=modes, targets=targets, fractions=tuple(fractions),
        save_times=save_times, t_end=t_end, time=time, solver=solver, rtol=rtol, atol=atol,
        max_steps=max_steps, refine=refine, stationary_tol=stationary_tol, required=required,
        dt0=dt0, controller=controller,
    )


def _solve_one(
    vector_field, y0, args, *, modes, targets, fractions, save_times, t_end, time, solver, rtol,
    atol, max_steps, refine, stationary_tol, required, dt0, controller,
) -> Trajectory:
    """Build the problem, run the loop, finish the trajectory (traced; see :func:`solve`)."""
    solver = diffrax.Tsit5() if solver is None else solver
    targets = jnp.asarray(targets, dtype=float)
    fractions_arr = jnp.asarray(fractions, dtype=float).reshape(-1)
    save_times = jnp.zeros((0,)) if save_times is None else jnp.asarray(save_times, dtype=float)
    if t_end is None:
        t_end = save_times[-1] if save_times.shape[0] else jnp.inf
    asked = jnp.broadcast_to((targets != 0)[:, None], (targets.shape[0], fractions_arr.shape[0]))
    if required is not None:
        asked = asked & jnp.asarray(required, dtype=bool)
    if controller is None:
        controller = diffrax.PIDController(rtol=rtol, atol=atol)
    problem = _Problem(
        vector_field=vector_field,
        args=args,
        modes=modes,
        targets=targets,
        fractions=fractions_arr,
        save_times=save_times,
        t_end=jnp.asarray(t_end, dtype=float),
        clock=time,
        solver=with_root_finder_tolerances(solver, controller),
        controller=controller,
        refine=refine,
        stationary_tol=stationary_tol,
        asked=asked,
        max_steps=max_steps,
    )
    if dt0 is None and time != "plain":
        dt0 = DEFAULT_DT0
    state0 = _initial_state(problem, y0, dt0)
    final = jax.lax.while_loop(lambda c: ~c.done, lambda c: _step(problem, c), state0)
    return _finish(problem, final, state0.found)


_solve_jit = eqx.filter_jit(_solve_one)


@eqx.filter_jit
def _solve_coordinatewise_jit(vector_field: Coordinatewise, y0, args, *, targets, required, **kw):
    """Every coordinate its own lane and clock; the lanes put back together as one trajectory."""
    fractions = kw["fractions"]
    num_coords = vector_field.num_coordinates(y0)
    targets = jnp.asarray(targets, dtype=float)
    if required is None:
        required = jnp.ones((num_coords, len(fractions)), dtype=bool)
    required = jnp.broadcast_to(jnp.asarray(required, dtype=bool), (num_coords, len(fractions)))

    def one(y_i, args_i, target_i, required_i):
        return _solve_one(
            vector_field.fn, y_i, args_i, targets=target_i, required=required_i, **kw
        )

    ys, split_args = vector_field.split(y0, args)
    lanes = jax.vmap(one, in_axes=(0, vector_field.args_axes, 0, 0))(
        ys, split_args, targets[:, None], required[:, None, :]
    )
    total = lambda counts: jnp.sum(counts)
    return Trajectory(
        times=lanes.times[0],
        modes=jnp.moveaxis(lanes.modes[..., 0], 0, -1),
        learning_times=lanes.learning_times[:, 0, :],
        fractions=lanes.fractions[0],
        final_time=jnp.max(lanes.final_time),
        final_modes=lanes.final_modes[:, 0],
        final_state=jtu.tree_map(lambda leaf: leaf.reshape((num_coords,) + leaf.shape[2:]), lanes.final_state),
        steps=total(lanes.steps),
        rejected=total(lanes.rejected),
        evaluations=jnp.where(jnp.all(lanes.evaluations >= 0), total(lanes.evaluations), -1),
        status=jnp.max(lanes.status),
    )


class _NegativeGradient(eqx.Module):
    """``-grad loss``: a module, not a closure, so the same loss hashes alike across calls and
    :func:`solve`'s compiled program is reused (a fresh closure per call would recompile).

    With ``log_params`` the state is ``u = ln(params)`` and the same flow reads
    ``du/dt = -grad loss(params) / params`` at ``params = exp(u)`` (positive params)."""

    loss: Callable = eqx.field(static=True)
    log_params: bool = eqx.field(static=True, default=False)

    def __call__(self, state, args):
        params = jtu.tree_map(jnp.exp, state) if self.log_params else state
        velocity = jtu.tree_map(jnp.negative, jax.grad(self.loss)(params, args))
        if self.log_params:
            velocity = jtu.tree_map(jnp.divide, velocity, params)
        return velocity


class _ModesAtExp(eqx.Module):
    """``modes(exp(u), args)``: the user's modes, read from log-parameters."""

    modes: Callable = eqx.field(static=True)

    def __call__(self, log_params, args):
        return self.modes(jtu.tree_map(jnp.exp, log_params), args)


def _check_positive_params(params0) -> None:
    """``log_params=True`` needs every parameter > 0 (a log must exist and keep its sign)."""
    for leaf in jtu.tree_leaves(params0):
        if isinstance(leaf, jax.core.Tracer):
            continue
        smallest = float(np.min(np.asarray(leaf))) if np.size(leaf) else 1.0
        if not smallest > 0.0:
            raise ValueError(
                "log_params=True needs every entry of params0 in (0, inf) (it integrates "
                f"ln(params)); got a minimum of {smallest}"
            )


def gradient_flow(
    loss: Callable[[PyTree, Any], Array],
    params0: PyTree,
    args: Any = None,
    *,
    log_params: bool = False,
    **kwargs,
) -> Trajectory:
    """Gradient flow ``d params/dt = -grad loss(params, args)`` of a model (see :func:`solve`).

    The gradient always comes from ``jax.grad``; keyword arguments are those of :func:`solve`
    (``modes`` and ``targets`` are required). ``time`` defaults to ``"relative"`` here, since
    model parameters are not logarithms. A loss declared
    :class:`jaxflow.engine.coordinatewise.Coordinatewise` (a sum of per-coordinate terms, like
    :func:`jaxflow.models.toy.factor_loss`) gives a coordinatewise flow: one clock a coordinate.

    ``log_params=True`` integrates ``u = ln(params)`` instead (``du/dt = -grad loss / params``,
    the same flow), for positive parameters that stay positive, such as the factors of the
    factor-level model on positive targets. From a tiny start the parameters grow
    exponentially, which costs an explicit solver a fixed number of steps per e-fold (steps grow
    like ``ln(1/sigma0)``, measured: ~40 a decade); in ``u`` that growth is a straight line,
    and with the ``"arclength"`` clock (the default here) the steps per mode no longer depend
    on ``sigma0``. ``final_state`` is returned as ``params`` (not their logarithms).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxflow.engine import flow
        >>> from jaxflow.oracles import theory
        >>> from jaxflow.models import toy
        >>> targets = jnp.array([1.0])
        >>> params = toy.factor_init(None, 1e-4, depth=3, num_coords=1)
        >>> traj = flow.gradient_flow(toy.factor_loss, params, targets,
        ...                           modes=toy.factor_values, targets=targets, fractions=(0.5,))
        >>> exact = theory.learning_time(3.0, 1.0, 1e-4, 0.5) / toy.factor_time_scale(3)
        >>> bool(abs(traj.learning_times[0, 0] / exact - 1) < 1e-6)
        True
        >>> tiny = toy.factor_init(None, 1e-200, depth=3, num_coords=1)
        >>> traj = flow.gradient_flow(toy.factor_loss, tiny, targets, log_params=True,
        ...                           modes=toy.factor_values, targets=targets, fractions=(0.5,))
        >>> exact = theory.learning_time(3.0, 1.0, 1e-200, 0.5) / toy.factor_time_scale(3)
        >>> bool(abs(traj.learning_times[0, 0] / exact - 1) < 1e-6), int(traj.steps) < 150
        (True, True)
    """
    if log_params:
        _check_positive_params(params0)
        kwargs.setdefault("time", "arclength")
        if "modes" in kwargs:
            kwargs["modes"] = _ModesAtExp(kwargs["modes"])
        params0 = jtu.tree_map(jnp.log, params0)
    else:
        kwargs.setdefault("time", "relative")
    if is_coordinatewise(loss):
        field = Coordinatewise(_NegativeGradient(loss.fn, log_params), args_axes=loss.args_axes)
    else:
        field = _NegativeGradient(loss, log_params)
    traj = solve(field, params0, args, **kwargs)
    if log_params:
        traj = eqx.tree_at(lambda t: t.final_state, traj, jtu.tree_map(jnp.exp, traj.final_state))
    return traj
