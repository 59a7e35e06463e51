"""The step loop of a flow: its state, one step attempt, when a lane stops, its trajectory.

Part of :mod:`jaxflow.engine.flow`. jaxflow's own ``lax.while_loop`` around a diffrax solver's
``step`` and a diffrax ``PIDController`` carries a :class:`_LoopState` per lane; each attempt
(:func:`_step`) is taken, adapted, checked for crossings (:mod:`jaxflow.engine._flow_events`)
and saves, and stops the lane when it has answered what was asked, reached its horizon, become
stationary (:func:`_stationary`), run out of steps or gone non-finite; :func:`_finish` turns the
final state into a :class:`~jaxflow.engine.trajectory.Trajectory`.
"""

from typing import NamedTuple

import diffrax
import equinox as eqx
import equinox.internal as eqxi
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, PyTree

from jaxflow.engine import status as _status
from jaxflow.engine._flow_events import _crossing_times, _save_between
from jaxflow.engine._flow_problem import _Problem, _Record
from jaxflow.engine.evaluations import counts_evaluations, init_evaluations, step_evaluations
from jaxflow.engine.stationarity import is_stationary
from jaxflow.engine.trajectory import Trajectory

# What the sibling modules (and the public face) import from this one.
__all__ = ["_integrate"]

# Non-finite step attempts a lane may retry (each shrinks the step by the controller's smallest
# factor, 0.2 by default) before it is declared non-finite. A healthy lane meets a few, where a
# long step overshoots into overflow and the controller grows it back (measured: 9 to 12 on
# balanced depth-4 factors in log-factors from 1e-250, fewer elsewhere): 32 leaves a margin.
_NONFINITE_TRIES = 32
# The flow time's absolute tolerance, as a fraction of atol (see `_time_error_relative`).
# Learning times down to ~_TIME_ATOL time units keep rtol. Smaller costs steps where t grows
# exponentially on its plateau (depths < 2): on the default phase diagram 2^-14 adds 14% steps
# (50-70% on its depth-1 and 1.5 lanes), 1e-6 more; the flow time's error there is set by the
# plateau's last e-folds, where t is large, so a smaller floor buys no accuracy.
_TIME_ATOL = 2.0**-14
_STORE_LIMIT = 4096  # floats of stored crossing steps per lane (see `_initial_state`)


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


def _stationary(problem: _Problem, y) -> Array:
    """Whether ``y`` sits at a stable fixed point, up to ``stationary_tol``: the one rule of
    every method (:mod:`jaxflow.engine.stationarity`)."""
    if problem.stationary_tol is None:
        return jnp.asarray(False)
    return is_stationary(problem.vector_field, y, problem.args, problem.stationary_tol)


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
        status=jnp.where(problem.valid, _status.OK, _status.INVALID).astype(jnp.int8),
        done=reached | stationary | ~problem.valid,
    )



class _Attempt(NamedTuple):
    """One step attempt as taken and judged by the controller."""

    z_b: PyTree  # (y, t) at the end of the attempt
    dense: PyTree  # the solver's dense output of the attempt
    solver_state: PyTree
    keep: Array  # accepted (finite, successful, within the controller's tolerance)
    next_a: Array
    next_b: Array
    made_jump: Array
    controller_state: PyTree
    nonfinite_tries: Array
    finite: Array  # the lane may go on (not out of non-finite retries, next step finite)


def _time_error_relative(controller, z_a, z_b, z_err):
    """``z_err`` with the flow time's error rescaled so the controller bounds it relatively.

    The controller divides each component's error by ``atol + rtol * |component|``. On the flow
    time ``t`` the ``atol`` term bounds a learning time ``t << 1`` absolutely: at rtol = atol =
    1e-8 a learning time of 1e-5 time units came out 1.6e-4 off
    (``benchmarks/learning_time_accuracy.py``). Multiplying t's error by
    ``(atol + rtol |t|) / (_TIME_ATOL atol + rtol |t|)`` makes the controller bound it by
    ``_TIME_ATOL atol + rtol |t|``: relatively down to ``_TIME_ATOL`` time units. The time
    itself is not rescaled: scaling t (u = 2^14 t) made a trial step that overshoots into the
    clock's speed floor (dt/dtau = 1e300) overflow u, and the lane non-finite.
    """
    y_err, t_err = z_err
    t = jnp.maximum(jnp.abs(z_a[1]), jnp.abs(z_b[1]))
    relative = controller.rtol * t
    gain = (controller.atol + relative) / (controller.atol * _TIME_ATOL + relative)
    return y_err, t_err * gain


def _attempt(problem: _Problem, c: _LoopState) -> _Attempt:
    """Take the step ``[tau0, tau1]`` and let the controller accept it and size the next one."""
    term, solver, controller = problem.term, problem.solver, problem.controller
    error_order = solver.error_order(term)
    tau_a, tau_b, z_a = c.tau0, c.tau1, c.z
    z_b, z_err, dense, sstate, result = problem.step(
        tau_a, tau_b, z_a, c.solver_state, c.made_jump
    )
    # A trial step that overflows (a stage wandered where exp() overflows, say) is rejected
    # and retried smaller, as diffrax does: an infinite error makes the controller shrink the
    # step by its smallest factor. A lane that fails again and again (a model that is not
    # finite beyond some point: the steps would creep up to it until max_steps) is non-finite.
    trial_finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jtu.tree_leaves(z_b)]))
    z_err = jtu.tree_map(lambda e: jnp.where(trial_finite, e, jnp.inf), z_err)
    # The controller scales each error by atol + rtol |z_b|: an infinite z_b would make that
    # inf / inf = NaN and the next step NaN (the lane non-finite at its first overflow). It
    # judges a non-finite trial against z_a instead, so the infinite error shrinks the step.
    z_judged = jtu.tree_map(lambda b, a: jnp.where(trial_finite, b, a), z_b, z_a)
    z_err = _time_error_relative(controller, z_a, z_judged, z_err)
    keep, next_a, next_b, made_jump, cstate, _ = controller.adapt_step_size(
        tau_a, tau_b, z_a, z_judged, problem.args, z_err, error_order, c.controller_state
    )
    nonfinite_tries = c.nonfinite_tries + (~trial_finite).astype(c.nonfinite_tries.dtype)
    finite = (nonfinite_tries < _NONFINITE_TRIES) & jnp.isfinite(next_b)
    keep = keep & trial_finite & finite & (result == diffrax.RESULTS.successful)
    return _Attempt(z_b, dense, sstate, keep, next_a, next_b, made_jump, cstate,
                    nonfinite_tries, finite)


def _record_crossings(problem: _Problem, c: _LoopState, crossed):
    """``(records, learning)`` after a step in which the (mode, fraction) pairs ``crossed``."""
    record = _Record(c.tau0, c.tau1, c.z, c.solver_state)
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
    return records, learning


def _save_modes(problem: _Problem, c: _LoopState, a: _Attempt):
    """``(save_index, saved)`` after the attempt: the save times it passed, if it is kept."""
    save_index, saved = c.save_index, c.saved
    if problem.save_times.shape[0]:
        tau_a, tau_b = c.tau0, c.tau1
        interp = problem.solver.interpolation_cls(t0=tau_a, t1=tau_b, **a.dense)
        idx, sv = _save_between(problem, interp, tau_a, tau_b, c.z[1], a.z_b[1], save_index,
                                saved)
        save_index, saved = jnp.where(a.keep, idx, save_index), jnp.where(a.keep, sv, saved)
    return save_index, saved


def _step(problem: _Problem, c: _LoopState) -> _LoopState:
    """One step attempt: take it, adapt the step size, record crossings and saves, stop or not."""
    a = _attempt(problem, c)
    keep = a.keep
    y_b, t_b = a.z_b
    modes_b, p_b = problem.progress(y_b)
    crossed = keep & ~c.found & (p_b[:, None] >= problem.fractions[None, :])
    records, learning = _record_crossings(problem, c, crossed)
    save_index, saved = _save_modes(problem, c, a)

    found = c.found | crossed
    steps = c.steps + keep.astype(c.steps.dtype)
    rejected = c.rejected + (~keep).astype(c.rejected.dtype)
    reached, stationary, answered = _stop(problem, t_b, found, y_b)
    finished = keep & (reached | stationary)
    out_of_steps = (steps + rejected >= problem.max_steps) & ~finished
    select = lambda new, old: jtu.tree_map(lambda x, y: jnp.where(keep, x, y), new, old)
    return _LoopState(
        tau0=jnp.where(a.finite, a.next_a, c.tau0),
        tau1=jnp.where(a.finite, a.next_b, c.tau1),
        z=select(a.z_b, c.z),
        solver_state=select(a.solver_state, c.solver_state),
        controller_state=a.controller_state,
        made_jump=a.made_jump,
        modes=jnp.where(keep, modes_b, c.modes),
        found=found,
        records=records,
        learning=learning,
        save_index=save_index,
        saved=saved,
        steps=steps,
        rejected=rejected,
        evaluations=c.evaluations
        + jnp.asarray(step_evaluations(problem.solver, a.solver_state), jnp.int32),
        nonfinite_tries=a.nonfinite_tries,
        status=_new_status(
            c.status,
            finite=a.finite,
            out_of_steps=out_of_steps,
            unfinished=finished & ~stationary & ~answered,
        ),
        done=finished | ~a.finite | out_of_steps,
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


def _integrate(problem: _Problem, y0, dt0) -> Trajectory:
    """Run one lane's loop from ``y0`` to its stop and return its trajectory (traced)."""
    state0 = _initial_state(problem, y0, dt0)
    final = jax.lax.while_loop(lambda c: ~c.done, lambda c: _step(problem, c), state0)
    return _finish(problem, final, state0.found)
