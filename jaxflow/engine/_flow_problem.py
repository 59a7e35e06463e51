"""The problem a flow's step loop reads: the arguments of :func:`~jaxflow.engine.flow.solve`, built.

Part of :mod:`jaxflow.engine.flow`. Eager checks name the argument at fault before anything is
traced (:func:`_check_eager`, :func:`_check_targets`); :func:`_build_problem` turns the
arguments into the :class:`_Problem` the loop never changes (the model, the clock, the solver
and what is asked); :class:`_Record` is one step as taken, which event location re-takes.
"""

from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jaxtyping import Array, PyTree

from jaxflow.engine.clock import check_speed, clock_speed
from jaxflow.engine.coordinatewise import is_coordinatewise
from jaxflow.engine.request import progress, required_mask
from jaxflow.engine.solvers import with_root_finder_tolerances
from jaxflow.engine.trajectory import check_fractions

# What the sibling modules (and the public face) import from this one.
__all__ = ["_Problem", "_Record", "_build_problem", "_check_eager", "_check_targets"]


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
    valid: Array  # the arguments lie in the model's declared domain (else the lane is INVALID)

    @property
    def term(self):
        return diffrax.ODETerm(self.tau_field)

    def progress(self, y):
        m = self.modes(y, self.args)
        return m, progress(m, self.targets)

    def tau_field(self, tau, z, _):
        """``d(y, t)/dtau = (f, 1) / s``: the flow on the clock."""
        y, _t = z
        velocity = self.vector_field(y, self.args)
        s = clock_speed(self.clock, y, velocity, self.args)
        return jtu.tree_map(lambda v: v / s, velocity), 1.0 / s

    def step(self, tau_a, tau_b, z_a, solver_state, made_jump):
        """One solver step over ``[tau_a, tau_b]`` from ``z_a``: ``(z_b, z_err, dense,
        solver_state, result)``, as ``solver.step`` returns them.

        One jitted function for every step a flow takes: the loop's attempts and the event
        location's re-takes of a recorded step (and its polish) then share one trace of the
        solver's step, instead of tracing diffrax's step three times (the default phase
        diagram's trace: 0.93 s -> 0.83 s). Inside the flow's own program the call is inlined;
        the step is the same computation (the datasets are bitwise the same).
        """
        # strongly typed times: a weakly typed one (a Python number's descendant) would be
        # another signature, hence another trace
        tau_a, tau_b = (jnp.asarray(tau, dtype=jnp.result_type(tau)) for tau in (tau_a, tau_b))
        return _solver_step(self, tau_a, tau_b, z_a, solver_state,
                            jnp.asarray(made_jump, dtype=bool))


@eqx.filter_jit
def _solver_step(problem: _Problem, tau_a, tau_b, z_a, solver_state, made_jump):
    return problem.solver.step(problem.term, tau_a, tau_b, z_a, problem.args, solver_state,
                               made_jump)


class _Record(eqx.Module):
    """One step as taken: enough to re-take it exactly and locate a crossing inside it."""

    tau_a: Array
    tau_b: Array
    z_a: PyTree
    solver_state: PyTree



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


def _build_problem(
    vector_field, args, *, modes, targets, fractions, save_times, t_end, time, solver, rtol,
    atol, max_steps, refine, stationary_tol, required, controller, domain=None,
) -> _Problem:
    """The :class:`_Problem` of one lane, defaults filled in (traced; see :func:`solve`)."""
    solver = diffrax.Tsit5() if solver is None else solver
    targets = jnp.asarray(targets, dtype=float)
    fractions_arr = jnp.asarray(fractions, dtype=float).reshape(-1)
    save_times = jnp.zeros((0,)) if save_times is None else jnp.asarray(save_times, dtype=float)
    if t_end is None:
        t_end = save_times[-1] if save_times.shape[0] else jnp.inf
    asked = required_mask(required, targets, fractions_arr.shape[0])
    if controller is None:
        controller = diffrax.PIDController(rtol=rtol, atol=atol)
    return _Problem(
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
        valid=jnp.asarray(True) if domain is None else jnp.all(domain(args)),
    )
