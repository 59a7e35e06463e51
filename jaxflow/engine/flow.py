"""Gradient flow through diffrax, built for long plateaus, many modes and many lanes: the engine
behind :class:`jaxflow.Flow`.

**Entry point.** Train a problem by gradient flow with
``jaxflow.solve(problem, jaxflow.Flow(...), request)`` (:func:`jaxflow.solve`). :func:`solve`
(for a vector field) and :func:`gradient_flow` (for a loss) are this engine's classic entry
points, kept for scripts written against them: :class:`jaxflow.Flow` calls them with what its
:class:`~jaxflow.engine.problem.Problem` and :class:`~jaxflow.engine.request.Request` say, so
either route computes the same trajectory with the same compiled program.

The flow ``dy/dt = f(y)`` of a model from a tiny initialization sits on a plateau for up to
1e300 time units and then escapes in O(1); a spectrum of k targets does that k times. jaxflow
integrates it in named parts, each small enough to read on its own (one module each):

* **the clock** (:mod:`jaxflow.engine.clock`): a reparametrized time ``tau`` with ``dt/dtau = 1/s(y)``
  in which every e-fold of the state costs a bounded number of steps, whatever the plateau's
  length;
* **the problem** (``jaxflow.engine._flow_problem``): :func:`solve`'s arguments, checked eagerly
  and built into what the loop reads and never changes;
* **the step loop** (``jaxflow.engine._flow_loop``): jaxflow's own ``lax.while_loop`` around a
  diffrax solver's ``step`` and a diffrax ``PIDController`` (relative error control on every
  component, the flow time included), carrying one loop state per lane;
* **event location** (``jaxflow.engine._flow_events``): the first time each mode
  reaches each fraction of its target is located on the step's dense interpolant by regula falsi
  (:mod:`jaxflow.engine.regula_falsi`) and, with ``refine=True``, polished by one exact solver step to
  the located point plus a Newton correction, so learning times carry the solver's accuracy;
  modes are saved at requested flow times the same way;
* **status** (the loop's stop rule, :mod:`jaxflow.engine.status`): every lane ends ``ok`` (it answered what
  was asked), ``unfinished`` (it reached its horizon first), ``max_steps`` or ``nonfinite``; a
  failing lane stops alone and the others go on.

**Many modes.** A model declared :class:`jaxflow.engine.coordinatewise.Coordinatewise` (the toy model,
the factor-level model) is solved one coordinate per lane, each on its own clock: a converged
mode never has to share a step size with a mode still on its plateau, which would make one
shared clock stiff (measured in ``benchmarks/flow_engines.py``: today's shared clock runs out of
4096 steps on (4, 3, 2, 1) at depth 5 from 1e-6; per-coordinate clocks take ~60 steps a mode).
Coupled models (matrix sensing) use one clock; in plain time with :class:`jaxflow.engine.rkc.RKC` they
are solved to stationarity.

**When a lane stops** (the rules of :mod:`jaxflow.engine.request`, the same for every method).
With a horizon (the request's ``horizon``, or the last save time) at the horizon, or earlier
where it has become stationary (see ``stationary_tol``). Without one, once every learning time
asked for is found (``required``), or, when none is asked (``fractions=()``), once it is
stationary.

Example (three targets of the reduced toy model, each on its own clock, against theory):
    >>> import jax.numpy as jnp
    >>> import jaxflow
    >>> from jaxflow.oracles import theory
    >>> from jaxflow.models import toy
    >>> args = toy.ToyArgs(depth=3.0, targets=jnp.array([4.0, 2.0, 1.0]))
    >>> problem = jaxflow.Problem(vector_field=toy.reduced_vector_field, args=args,
    ...                           params0=toy.reduced_init(1e-12, 3), modes=toy.reduced_modes,
    ...                           targets=args.targets, clock=toy.reduced_speed)
    >>> traj = jaxflow.solve(problem, jaxflow.Flow(), jaxflow.Request(fractions=(0.5,)))
    >>> exact = theory.learning_time(3.0, args.targets, 1e-12, 0.5 * args.targets)
    >>> bool(jnp.allclose(traj.learning_times[:, 0], exact, rtol=1e-7)), int(traj.status)
    (True, 0)
"""

from collections.abc import Callable, Sequence
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, PyTree

from jaxflow.engine import status as _status
from jaxflow.engine._flow_loop import _integrate
from jaxflow.engine._flow_problem import _build_problem, _check_eager, _check_targets
from jaxflow.engine.clock import DEFAULT_DT0, Speed
from jaxflow.engine.coordinatewise import Coordinatewise, is_coordinatewise
from jaxflow.engine.problem import numbers_as_arrays
from jaxflow.engine.trajectory import Trajectory

__all__ = ["Trajectory", "gradient_flow", "solve"]

_STATIONARY_TOL = 1e-10  # relative distance to a fixed point below which a lane has arrived


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

    The engine's classic entry point, which :class:`jaxflow.Flow` calls for a
    :class:`~jaxflow.engine.problem.Problem` given by its vector field: new code writes
    ``jaxflow.solve(jaxflow.Problem(vector_field=vector_field, params0=y0, args=args,
    modes=modes, targets=targets, clock=time), jaxflow.Flow(solver=solver, rtol=rtol,
    atol=atol, refine=refine, dt0=dt0, controller=controller),
    jaxflow.Request(save_times=save_times, fractions=fractions, horizon=t_end,
    stationary_tol=stationary_tol, max_steps=max_steps, required=required))``, the same
    computation.

    Args:
        vector_field: ``f(y, args) -> dy/dt``, same pytree structure as ``y``. For a model,
            give a :class:`~jaxflow.engine.problem.Problem` its ``loss`` (or use
            :func:`gradient_flow`), which builds ``-grad(loss)``. Declared
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
        A :class:`Trajectory` (:mod:`jaxflow.engine.trajectory`, the answer every method
        gives). Its status is ``ok`` when everything asked was answered,
        ``unfinished`` when the horizon came first, ``max_steps`` or ``nonfinite`` otherwise.

    Raises:
        ValueError: for invalid settings (names the argument and the allowed range).

    Example (the toy model against its exact learning times, by both routes):
        >>> import jax.numpy as jnp
        >>> import jaxflow
        >>> from jaxflow.engine import flow
        >>> from jaxflow.oracles import theory
        >>> from jaxflow.models import toy
        >>> args = toy.ToyArgs(depth=3.0, targets=jnp.array([4.0, 2.0, 1.0]))
        >>> traj = flow.solve(toy.reduced_vector_field, toy.reduced_init(1e-40, 3), args,
        ...                   modes=toy.reduced_modes, targets=args.targets, fractions=(0.5,),
        ...                   time=toy.reduced_speed)
        >>> exact = theory.learning_time(3.0, args.targets, 1e-40, 0.5 * args.targets)
        >>> bool(jnp.allclose(traj.learning_times[:, 0], exact, rtol=1e-7))
        True
        >>> problem = jaxflow.Problem(vector_field=toy.reduced_vector_field, args=args,
        ...                           params0=toy.reduced_init(1e-40, 3), modes=toy.reduced_modes,
        ...                           targets=args.targets, clock=toy.reduced_speed)
        >>> same = jaxflow.solve(problem, jaxflow.Flow(), jaxflow.Request(fractions=(0.5,)))
        >>> bool(jnp.all(same.learning_times == traj.learning_times))
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
    # A model that declares its domain (Coordinatewise(domain=...)) refuses concrete arguments
    # outside it here, naming them; traced ones make the lane INVALID (see _initial_state).
    domain = getattr(vector_field, "domain", None)
    if domain is not None:
        domain(args)
    # One compiled program per call signature: the setup (controller, first step, records)
    # would otherwise run op by op, each op compiled on its own (seconds of overhead per call).
    # Callables are static (equinox's filter), arrays are traced, and so are Python numbers in
    # args: a new depth is not a new program, and jaxflow.solve reaches the same one.
    args = numbers_as_arrays(args)
    entry = _solve_coordinatewise_jit if is_coordinatewise(vector_field) else _solve_jit
    return entry(
        vector_field, y0, args, modes=modes, targets=targets, fractions=tuple(fractions),
        save_times=save_times, t_end=t_end, time=time, solver=solver, rtol=rtol, atol=atol,
        max_steps=max_steps, refine=refine, stationary_tol=stationary_tol, required=required,
        dt0=dt0, controller=controller, domain=domain,
    )


def _solve_one(
    vector_field, y0, args, *, modes, targets, fractions, save_times, t_end, time, solver, rtol,
    atol, max_steps, refine, stationary_tol, required, dt0, controller, domain=None,
) -> Trajectory:
    """Build the problem, run the loop, finish the trajectory (traced; see :func:`solve`)."""
    problem = _build_problem(
        vector_field, args, modes=modes, targets=targets, fractions=fractions,
        save_times=save_times, t_end=t_end, time=time, solver=solver, rtol=rtol, atol=atol,
        max_steps=max_steps, refine=refine, stationary_tol=stationary_tol, required=required,
        controller=controller, domain=domain,
    )
    if dt0 is None and time != "plain":
        dt0 = DEFAULT_DT0
    return _integrate(problem, y0, dt0)


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
        status=_status.worst(lanes.status),  # a failed coordinate outranks an unfinished one
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

    The engine's classic entry point for a loss, which :class:`jaxflow.Flow` calls for a
    :class:`~jaxflow.engine.problem.Problem` with a ``loss``: new code writes
    ``jaxflow.solve(jaxflow.Problem(loss=loss, params0=params0, args=args, modes=...,
    targets=...), jaxflow.Flow(log_params=log_params, ...), jaxflow.Request(...))``, the same
    computation. The gradient always comes from ``jax.grad``; keyword arguments are those of
    :func:`solve` (``modes`` and ``targets`` are required). ``time`` defaults to
    ``"relative"`` here, since model parameters are not logarithms. A loss declared
    :class:`jaxflow.engine.coordinatewise.Coordinatewise` (a sum of per-coordinate terms, like
    :func:`jaxflow.models.toy.factor_loss`) gives a coordinatewise flow: one clock a coordinate.

    ``log_params=True`` integrates ``u = ln(params)`` instead (``du/dt = -grad loss / params``,
    the same flow), for positive parameters that stay positive, such as the factors of the
    factor-level model on positive targets. From a tiny start the parameters grow
    exponentially, which costs an explicit solver a fixed number of steps per e-fold (steps grow
    like ``ln(1/sigma0)``, measured: ~40 a decade); in ``u`` that growth is a straight line,
    and with the ``"arclength"`` clock (the default here) the steps per mode no longer depend
    on ``sigma0``. ``final_state`` is returned as ``params`` (not their logarithms).

    Example (the factor-level toy model, by both routes; then from 1e-200 in log-parameters):
        >>> import jax.numpy as jnp
        >>> import jaxflow
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
        >>> request = jaxflow.Request(fractions=(0.5,))
        >>> problem = jaxflow.Problem(loss=toy.factor_loss, params0=params, args=targets,
        ...                           modes=toy.factor_values, targets=targets)
        >>> same = jaxflow.solve(problem, jaxflow.Flow(), request)
        >>> bool(same.learning_times[0, 0] == traj.learning_times[0, 0])
        True
        >>> tiny = toy.factor_init(None, 1e-200, depth=3, num_coords=1)
        >>> problem = jaxflow.Problem(loss=toy.factor_loss, params0=tiny, args=targets,
        ...                           modes=toy.factor_values, targets=targets)
        >>> traj = jaxflow.solve(problem, jaxflow.Flow(log_params=True), request)
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
