"""Event location inside one step of a flow: learning times and saved modes.

Part of :mod:`jaxflow.engine.flow`. The first time each mode reaches each fraction of its target
is located on the step's dense interpolant by regula falsi (:mod:`jaxflow.engine.regula_falsi`)
and, with ``refine=True``, polished by one exact solver step to the located point plus a Newton
correction (:func:`_crossing_time`), so learning times carry the solver's accuracy; the modes
are saved at requested flow times the same way (:func:`_save_between`).
"""

import jax
import jax.numpy as jnp

from jaxflow.engine._flow_problem import _Problem, _Record
from jaxflow.engine.regula_falsi import illinois

# What the sibling modules (and the public face) import from this one.
__all__ = ["_crossing_times", "_save_between"]


def _interpolate(interp, theta, tau_a, tau_b):
    return interp.evaluate(tau_a + theta * (tau_b - tau_a))


def _crossing_time(problem: _Problem, record: _Record, mode_index, level):
    """Flow time at which mode ``mode_index`` reached ``level`` inside the recorded step."""
    solver = problem.solver
    tau_a, tau_b, z_a, sstate = record.tau_a, record.tau_b, record.z_a, record.solver_state
    # Re-take the recorded step: deterministic, so it reproduces the dense output exactly,
    # and it is cheaper than carrying that output through every iteration.
    z_b, _, dense, _, _ = problem.step(tau_a, tau_b, z_a, sstate, False)
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
    z_star, _, _, _, _ = problem.step(tau_a, tau_star, z_a, sstate, False)
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
