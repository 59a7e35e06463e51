"""Gradient flow through diffrax, built for long plateaus and many lanes.

The flow ``dy/dt = f(y)`` of a model from a tiny initialization sits on a plateau for up to
1e20 time units and then escapes in O(1). An adaptive explicit Runge-Kutta solver needs only a
few steps per e-fold of the state on the plateau (it is long, not stiff), but in plain time the
step count still depends on how long the plateau is, and under ``vmap`` every lane runs until
the slowest one ends. jaxflow therefore integrates in a reparametrized time ``tau``:

    dy/dtau = f(y) / s(y),    dt/dtau = 1 / s(y),

with the flow time ``t`` carried as a state component. The speed ``s`` is

* ``"arclength"`` (default): ``s = max_i |f_i(y)|``. For a log state (the toy model's
  ``x = ln sigma``) this is the log-arclength of shared/notes/engineering.md: every lane needs
  about the same number of steps, whatever its initialization.
* ``"relative"``: ``s = max |f| / max |y|``, for states that are not logarithms (factors).
* ``"plain"``: ``s = 1`` (ordinary time), for comparison.

The loop is jaxflow's own ``lax.while_loop`` around a diffrax solver's ``step`` and a diffrax
``PIDController`` (relative error control on every component, the flow time included). Owning
the loop lets one solve record, without stopping, the first time each mode reaches each
fraction of its target: the crossing is located on the solver's dense interpolant and then, with
``refine=True``, polished by one exact solver step to the located point and a Newton correction,
so learning times carry the solver's own accuracy. Modes are also saved at requested flow times
(for example a log-spaced grid). Each lane gets a status code (:mod:`jaxflow.status`); a lane that
runs out of steps or meets a non-finite value stops alone, and the others go on.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxflow import flow, theory
    >>> from jaxflow.models import toy
    >>> args = toy.ToyArgs(depth=3.0, targets=jnp.array([1.0]))
    >>> traj = flow.solve(toy.reduced_vector_field, toy.reduced_init(1e-6, 1), args,
    ...                   modes=toy.reduced_modes, targets=args.targets, fractions=(0.5,))
    >>> exact = theory.learning_time(3.0, 1.0, 1e-6, 0.5)
    >>> bool(abs(traj.learning_times[0, 0] / exact - 1) < 1e-7), int(traj.status)
    (True, 0)
"""

from collections.abc import Callable, Sequence
from typing import Any, Literal

import diffrax
import equinox as eqx
import equinox.internal as eqxi
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PyTree

from jaxflow import status as _status


Speed = Literal["arclength", "relative", "plain"] | Callable[[PyTree, PyTree, Any], Array]
_TINY = 1e-300  # floor of the speed: dt/dtau stays finite at an exact fixed point
_ROOT_ITERATIONS = 14  # Illinois iterations on a dense-interpolant polynomial: far past 1e-14
_DEFAULT_DT0 = 0.05  # first step in tau (e-folds of the state) for reparametrized times
_STORE_LIMIT = 4096  # floats of stored crossing steps per lane (see `store_crossings`)


class Trajectory(eqx.Module):
    """What one gradient-flow solve returns (add leading axes under ``vmap``).

    Attributes:
        times: the requested save times ``(K,)``.
        modes: mode values at those times ``(K, M)``; NaN where the lane stopped earlier
            (after a failure), the final values where it became stationary.
        learning_times: ``(M, F)`` first flow time at which ``modes / targets`` reached each
            fraction; ``inf`` if never (or if the target is 0).
        fractions: the fractions ``(F,)``.
        final_time: flow time at the last accepted step.
        final_modes: modes at the last accepted step ``(M,)``.
        final_state: the state at the last accepted step.
        steps: accepted steps; ``rejected``: rejected steps.
        evaluations: vector-field evaluations of the solver's step attempts (accepted and
            rejected; learning-time refinement, saves and stationarity checks excluded); -1
            for solvers whose count jaxflow does not know (implicit ones).
        status: :mod:`jaxflow.status` code.

    Example (no save times: ``K = 0``; one mode, one fraction):
        >>> import jax.numpy as jnp
        >>> from jaxflow import flow, status
        >>> from jaxflow.models import toy
        >>> args = toy.ToyArgs(depth=3.0, targets=jnp.array([1.0]))
        >>> traj = flow.solve(toy.reduced_vector_field, toy.reduced_init(1e-6, 1), args,
        ...                   modes=toy.reduced_modes, targets=args.targets, fractions=(0.5,))
        >>> traj.modes.shape, traj.learning_times.shape, status.name(traj.status)
        ((0, 1), (1, 1), 'ok')
        >>> bool(traj.final_modes[0] >= 0.5), int(traj.steps) < 200
        (True, True)
    """

    times: Float[Array, " K"]
    modes: Float[Array, "K M"]
    learning_times: Float[Array, "M F"]
    fractions: Float[Array, " F"]
    final_time: Float[Array, ""]
    final_modes: Float[Array, " M"]
    final_state: PyTree
    steps: Int[Array, ""]
    rejected: Int[Array, ""]
    evaluations: Int[Array, ""]
    status: Int[Array, ""]


def _max_abs(tree) -> Array:
    return jnp.max(jnp.stack([jnp.max(jnp.abs(leaf)) for leaf in jtu.tree_leaves(tree)]))


def _all_finite(tree) -> Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jtu.tree_leaves(tree)]))


def _expand(mask, leaf):
    return mask.reshape(mask.shape + (1,) * (leaf.ndim - mask.ndim))


def _step_evaluations(solver, new_state) -> Array | int:
    """Vector-field evaluations of one step attempt of ``solver`` (-1 where unknown)."""
    if hasattr(solver, "evaluations"):  # jaxflow.rkc.RKC: a stage count chosen per step
        return solver.evaluations(new_state)
    if isinstance(solver, diffrax.AbstractImplicitSolver):
        return -1  # Newton iterations vary per step and diffrax does not report them
    tableau = getattr(solver, "tableau", None)
    if tableau is None:
        return -1
    stages = len(tableau.a_lower) + 1
    # First-same-as-last: the last stage of a step is the first of the next.
    return stages - 1 if getattr(tableau, "fsal", False) else stages


def _counts_evaluations(solver) -> bool:
    """Whether :func:`_step_evaluations` knows ``solver``'s count (a property of its type)."""
    return hasattr(solver, "evaluations") or _step_evaluations(solver, None) >= 0


def _with_root_finder_tolerances(solver, controller):
    """Give an implicit solver's root finder the controller's tolerances where unset.

    ``diffrax.diffeqsolve`` does this for its own loop; :func:`solve` calls ``solver.step``
    directly and must do it too (Kvaerno5 and friends leave rtol/atol to the controller).
    """
    if not isinstance(solver, diffrax.AbstractImplicitSolver):
        return solver
    finder = solver.root_finder
    # diffrax marks "use the controller's value" with a private sentinel object.
    names = [
        n for n in ("rtol", "atol", "norm")
        if type(getattr(finder, n, None)).__name__ == "_UseStepSizeTol"
    ]
    if not names:
        return solver
    return eqx.tree_at(
        lambda s: tuple(getattr(s.root_finder, n) for n in names),
        solver,
        tuple(getattr(controller, n) for n in names),
    )


def _speed(kind, y, velocity, args) -> Array:
    if callable(kind):
        return jnp.maximum(kind(y, velocity, args), _TINY)
    if kind == "plain":
        return jnp.asarray(1.0)
    speed = _max_abs(velocity)
    if kind == "relative":
        speed = speed / jnp.maximum(_max_abs(y), _TINY)
    # A NaN speed (NaN state) must not hide behind the floor: keep it NaN so the lane is flagged.
    return jnp.where(jnp.isnan(speed), speed, jnp.maximum(speed, _TINY))


def _illinois(g, g_lo, g_hi):
    """Root of an increasing scalar function g on [0, 1] with g(0) = g_lo < 0 <= g(1) = g_hi.

    Regula falsi with the Illinois modification: superlinear, never leaves the bracket, and a
    fixed iteration count (it runs inside vmapped loops).
    """

    def body(_, carry):
        lo, hi, glo, ghi, side = carry
        denom = ghi - glo
        theta = jnp.where(denom > 0, (lo * ghi - hi * glo) / jnp.where(denom > 0, denom, 1.0), lo)
        theta = jnp.clip(theta, lo, hi)
        gt = g(theta)
        below = gt < 0
        lo, glo = jnp.where(below, theta, lo), jnp.where(below, gt, glo)
        hi, ghi = jnp.where(below, hi, theta), jnp.where(below, ghi, gt)
        # Illinois: halve the stale end's value when the same end is kept twice.
        ghi = jnp.where(below & (side < 0), 0.5 * ghi, ghi)
        glo = jnp.where(~below & (side > 0), 0.5 * glo, glo)
        side = jnp.where(below, -1, 1)
        return lo, hi, glo, ghi, side

    init = (jnp.asarray(0.0), jnp.asarray(1.0), g_lo, g_hi, jnp.asarray(0))
    lo, hi, glo, ghi, _ = jax.lax.fori_loop(0, _ROOT_ITERATIONS, body, init)
    denom = ghi - glo
    return jnp.where(denom > 0, (lo * ghi - hi * glo) / jnp.where(denom > 0, denom, 1.0), lo)


def _check_eager(fractions, save_times, rtol, atol, max_steps, speed):
    import numpy as np

    speeds = ("arclength", "relative", "plain")
    if not callable(speed) and not (isinstance(speed, str) and speed in speeds):
        raise ValueError(f"time must be 'arclength', 'relative' or 'plain', got {speed!r}")
    if isinstance(max_steps, bool) or not (isinstance(max_steps, int) and max_steps >= 1):
        raise ValueError(f"max_steps must be an integer >= 1, got {max_steps!r}")
    try:
        fr = [float(f) for f in fractions]
    except (TypeError, ValueError):
        fr = []
    if not fr or any(not (0.0 < f <= 1.0) for f in fr) or any(a >= b for a, b in zip(fr, fr[1:])):
        raise ValueError(f"fractions must be increasing values in (0, 1], got {fractions!r}")
    for name, value in (("rtol", rtol), ("atol", atol)):
        if isinstance(value, jax.core.Tracer):
            continue
        try:
            arr = np.asarray(value) if not isinstance(value, (str, bytes)) else np.asarray(None)
        except (TypeError, ValueError):
            arr = np.asarray(None)
        if arr.dtype.kind not in "iuf" or arr.ndim != 0 or not 0 < float(arr) < np.inf:
            raise ValueError(f"{name} must be a number in (0, inf), got {value!r}")
    if save_times is not None and not isinstance(save_times, jax.core.Tracer):
        try:
            ts = np.asarray(save_times, dtype=float)
        except (TypeError, ValueError):
            ts = np.full((1, 1), np.nan)
        if ts.ndim != 1 or not np.all(np.isfinite(ts)) or np.any(ts < 0) or np.any(np.diff(ts) < 0):
            raise ValueError("save_times must be a 1-D, finite, non-negative, sorted array")


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
    stationary_tol: Float[ArrayLike, ""] = 1e-10,
    required: Bool[ArrayLike, "M F"] | None = None,
    dt0: float | None = None,
    controller: diffrax.PIDController | None = None,
) -> Trajectory:
    """Integrate the flow ``dy/dt = vector_field(y, args)`` from ``y0`` (one lane; ``vmap`` it).

    Args:
        vector_field: ``f(y, args) -> dy/dt``, same pytree structure as ``y``. For a model,
            use :func:`gradient_flow`, which builds ``-grad(loss)``.
        y0: initial state (pytree of float arrays).
        args: passed to ``vector_field`` and ``modes``; put swept values (depth, targets, scale)
            here as arrays so that new values never recompile.
        modes: ``modes(y, args) -> (M,)`` the values whose learning is tracked.
        targets: ``(M,)`` their targets; progress is ``modes / targets`` (0 targets: never).
        fractions: increasing fractions in (0, 1] at which learning times are recorded.
        save_times: sorted flow times ``(K,)`` at which to save the modes (e.g. log-spaced).
        t_end: stop at this flow time. Default: the last save time if given, else stop once every
            mode with a nonzero target reached the last fraction.
        time: time reparametrization, ``"arclength"``, ``"relative"`` or ``"plain"`` (module
            docstring).
        solver: an adaptive diffrax solver (default ``diffrax.Tsit5()``).
        rtol, atol: ``PIDController`` tolerances on the state and the flow time.
        max_steps: budget of solver steps (accepted + rejected); static.
        refine: polish each learning time by one exact solver step and a Newton correction
            (default); otherwise use the dense interpolant alone.
        stationary_tol: with saves or ``t_end``, a lane that contracts towards a fixed point
            with less than ``stationary_tol * max(1, max|y|)`` left to travel (estimated as
            ``|f|^3 / (-f.Jf)``) stops there, and its remaining saves hold its final modes.
        required: ``(M, F)`` mask of the learning times the lane must find before it stops
            (when there is no ``t_end``); default all. The phase diagram needs only the larger
            mode at ``finish`` and the smaller at ``start``, and stops there.
        dt0: first step in ``tau``. Default: 0.05 for the reparametrized times (their ``tau``
            counts e-folds of the state, so that scale is natural and saves the ~8 steps an
            automatic guess spends growing from 1e-8), automatic for ``"plain"``.
        controller: a ``diffrax.PIDController`` replacing the one built from ``rtol``/``atol``
            (for example with PI coefficients).

    Returns:
        A :class:`Trajectory`.

    Raises:
        ValueError: for invalid settings (names the argument and the allowed range).

    Example (the toy model against its exact learning time; ``jax.vmap`` it over lanes):
        >>> import jax, jax.numpy as jnp
        >>> from jaxflow import flow, theory
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
    _check_eager(fractions, save_times, rtol, atol, max_steps, time)
    # One compiled program per call signature: the setup (controller, first step, records)
    # would otherwise run op by op, each op compiled on its own (seconds of overhead per call).
    # Callables and Python numbers are static (equinox's filter), arrays are traced.
    return _solve_jit(
        vector_field, y0, args, modes=modes, targets=targets, fractions=tuple(fractions),
        save_times=save_times, t_end=t_end, time=time, solver=solver, rtol=rtol, atol=atol,
        max_steps=max_steps, refine=refine, stationary_tol=stationary_tol, required=required,
        dt0=dt0, controller=controller,
    )


@eqx.filter_jit
def _solve_jit(
    vector_field, y0, args, *, modes, targets, fractions, save_times, t_end, time, solver, rtol,
    atol, max_steps, refine, stationary_tol, required, dt0, controller,
) -> Trajectory:
    solver = diffrax.Tsit5() if solver is None else solver
    targets = jnp.asarray(targets, dtype=float)
    fractions_arr = jnp.asarray(fractions, dtype=float)
    num_fractions = fractions_arr.shape[0]
    save_times = jnp.zeros((0,)) if save_times is None else jnp.asarray(save_times, dtype=float)
    num_saves = save_times.shape[0]
    # Stationarity only matters when the lane must reach a flow time (saves, t_end); without
    # one it stops once every mode is learned, and skipping the check saves an evaluation.
    check_stationary = t_end is not None or num_saves > 0
    if t_end is None:
        t_end = save_times[-1] if num_saves else jnp.inf
    t_end = jnp.asarray(t_end, dtype=float)
    num_modes = targets.shape[0]
    learnable = jnp.broadcast_to((targets != 0)[:, None], (num_modes, num_fractions))
    if required is not None:
        learnable = learnable & jnp.asarray(required, dtype=bool)

    def progress(y):
        m = modes(y, args)
        safe = jnp.where(targets != 0, targets, 1.0)
        return m, jnp.where(targets != 0, m / safe, -jnp.inf)

    def tau_field(tau, z, _):
        y, _t = z
        velocity = vector_field(y, args)
        s = _speed(time, y, velocity, args)
        return jtu.tree_map(lambda v: v / s, velocity), 1.0 / s

    term = diffrax.ODETerm(tau_field)
    if controller is None:
        controller = diffrax.PIDController(rtol=rtol, atol=atol)
    solver = _with_root_finder_tolerances(solver, controller)
    if dt0 is None and time != "plain":
        dt0 = _DEFAULT_DT0
    error_order = solver.error_order(term)

    z0 = (y0, jnp.asarray(0.0))
    tau0 = jnp.asarray(0.0)
    tau1, controller_state = controller.init(
        term, tau0, jnp.inf, z0, dt0, args, solver.func, error_order
    )
    solver_state = solver.init(term, tau0, tau1, z0, args)
    modes0, prog0 = progress(y0)
    found0 = prog0[:, None] >= fractions_arr[None, :]
    learning0 = jnp.where(found0, 0.0, jnp.inf)
    saved0 = jnp.full((num_saves, targets.shape[0]), jnp.nan)

    def interpolate(interp, theta, tau_a, tau_b):
        return interp.evaluate(tau_a + theta * (tau_b - tau_a))

    def crossing_time(record, mode_index, level):
        """Flow time at which mode `mode_index` reached `level` inside the recorded step."""
        tau_a, tau_b, z_a, sstate = record
        # Re-take the recorded step: deterministic, so it reproduces the dense output exactly,
        # and it is cheaper than carrying that output through every iteration.
        z_b, _, dense, _, _ = solver.step(term, tau_a, tau_b, z_a, args, sstate, False)
        p_a, p_b = progress(z_a[0])[1], progress(z_b[0])[1]
        interp = solver.interpolation_cls(t0=tau_a, t1=tau_b, **dense)

        def g(theta):
            _, p = progress(interpolate(interp, theta, tau_a, tau_b)[0])
            return p[mode_index] - level

        theta = _illinois(g, p_a[mode_index] - level, p_b[mode_index] - level)
        tau_star = tau_a + theta * (tau_b - tau_a)
        if not refine:
            return interp.evaluate(tau_star)[1]
        # Exact solver step from the step start to the located point, then one Newton step on the
        # exact state: the learning time gets the solver's accuracy, not the interpolant's.
        z_star, _, _, _, _ = solver.step(term, tau_a, tau_star, z_a, args, sstate, False)
        y_star, t_star = z_star
        dy_dtau, dt_dtau = tau_field(tau_star, z_star, None)
        p_star, dp_dtau = jax.jvp(lambda y: progress(y)[1], (y_star,), (dy_dtau,))
        rate = dp_dtau[mode_index]
        safe_rate = jnp.where(rate > 0, rate, 1.0)
        delta = jnp.where(rate > 0, (level - p_star[mode_index]) / safe_rate, 0.0)
        delta = jnp.clip(delta, -theta * (tau_b - tau_a), (1 - theta) * (tau_b - tau_a))
        return t_star + delta * dt_dtau

    mode_grid = jnp.broadcast_to(jnp.arange(num_modes)[:, None], (num_modes, num_fractions))
    level_grid = jnp.broadcast_to(fractions_arr[None, :], (num_modes, num_fractions))

    def crossing_times(records, per_pair: bool):
        axes = 0 if per_pair else None
        inner = jax.vmap(crossing_time, in_axes=(axes, 0, 0))
        return jax.vmap(inner, in_axes=(axes, 0, 0))(records, mode_grid, level_grid)

    def save_loop(interp, tau_a, tau_b, t_a, t_b, index, saved):
        def cond(c):
            i, _ = c
            return (i < num_saves) & (save_times[jnp.minimum(i, num_saves - 1)] <= t_b)

        def body(c):
            i, saved_ = c
            ts = save_times[i]

            def g(theta):
                return interpolate(interp, theta, tau_a, tau_b)[1] - ts

            theta = jnp.where(ts <= t_a, 0.0, _illinois(g, t_a - ts, t_b - ts))
            m, _ = progress(interpolate(interp, theta, tau_a, tau_b)[0])
            return i + 1, saved_.at[i].set(m)

        return jax.lax.while_loop(cond, body, (index, saved))

    def stop_reached(t, found, y):
        learned = jnp.all(found | ~learnable)
        reached = jnp.where(jnp.isfinite(t_end), t >= t_end, learned)
        if not check_stationary:
            return reached, jnp.asarray(False)
        # Near a stable fixed point y* the flow contracts, and ||f||^2 / (-f.Jf) estimates the
        # distance still to travel (exact for a linear flow). A lane whose remaining distance is
        # negligible is done: it holds its final modes for every later save. On a plateau the
        # flow expands (f.Jf > 0) and the lane goes on, however slow it is.
        velocity, jvp = jax.jvp(lambda y_: vector_field(y_, args), (y,), (vector_field(y, args),))
        flat_v = jnp.concatenate([jnp.ravel(v) for v in jtu.tree_leaves(velocity)])
        flat_jv = jnp.concatenate([jnp.ravel(v) for v in jtu.tree_leaves(jvp)])
        speed2 = jnp.sum(flat_v**2)
        contraction = -jnp.sum(flat_v * flat_jv)
        remaining = jnp.sqrt(speed2) * speed2 / jnp.where(contraction > 0, contraction, 1.0)
        near = (contraction > 0) & (remaining <= stationary_tol * jnp.maximum(1.0, _max_abs(y)))
        return reached, near | (speed2 == 0)

    record0 = (tau0, tau1, z0, solver_state)
    # Storing a crossing step per (mode, fraction) costs a copy of the state per step; it
    # pays for small states (the toy model: thousands of lanes, few crossings each), while large
    # states (matrix models: few lanes) locate crossings inside the loop instead.
    record_size = sum(leaf.size for leaf in jtu.tree_leaves(record0)) * num_modes * num_fractions
    store_crossings = record_size <= _STORE_LIMIT
    records0 = (
        jtu.tree_map(lambda leaf: jnp.broadcast_to(leaf, found0.shape + leaf.shape), record0)
        if store_crossings
        else None
    )
    carry0 = dict(
        records=records0,
        tau0=tau0,
        tau1=tau1,
        z=z0,
        solver_state=solver_state,
        controller_state=controller_state,
        made_jump=jnp.asarray(False),
        modes=modes0,
        found=found0,
        learning=learning0,
        save_index=jnp.asarray(0),
        saved=saved0,
        steps=jnp.asarray(0),
        rejected=jnp.asarray(0),
        # The start-up evaluations of solver.init: f(y0), plus RKC's power iterations.
        evaluations=jnp.asarray(
            solver.evaluations(solver_state) if hasattr(solver, "evaluations") else 1,
            dtype=jnp.int32,
        ),
        status=jnp.asarray(_status.OK, dtype=jnp.int8),
        done=jnp.asarray(False),
    )
    carry0["done"] = stop_reached(jnp.asarray(0.0), found0, y0)[0]

    def cond_fn(c):
        return ~c["done"]

    def body_fn(c):
        tau_a, tau_b, z_a = c["tau0"], c["tau1"], c["z"]
        z_b, z_err, dense, sstate, result = solver.step(
            term, tau_a, tau_b, z_a, args, c["solver_state"], c["made_jump"]
        )
        keep, next_a, next_b, made_jump, cstate, cresult = controller.adapt_step_size(
            tau_a, tau_b, z_a, z_b, args, z_err, error_order, c["controller_state"]
        )
        finite = _all_finite(z_b) & jnp.isfinite(next_b)
        keep = keep & finite & (result == diffrax.RESULTS.successful)
        y_b, t_b = z_b
        modes_b, p_b = progress(y_b)
        crossed = keep & ~c["found"] & (p_b[:, None] >= fractions_arr[None, :])
        interp = solver.interpolation_cls(t0=tau_a, t1=tau_b, **dense)
        record = (tau_a, tau_b, z_a, c["solver_state"])
        records, learning = c["records"], c["learning"]
        if store_crossings:
            # Keep the step that crossed; the crossing is located once, after the loop.
            records = jtu.tree_map(
                lambda new, old: jnp.where(_expand(crossed, old), new, old),
                jtu.tree_map(lambda leaf: jnp.broadcast_to(leaf, crossed.shape + leaf.shape), record),
                records,
            )
        else:
            # Large states: locate now, and only on iterations where some lane crossed.
            learning = jax.lax.cond(
                eqxi.unvmap_any(crossed),
                lambda: jnp.where(crossed, crossing_times(record, per_pair=False), learning),
                lambda: learning,
            )
        found = c["found"] | crossed
        save_index, saved = c["save_index"], c["saved"]
        if num_saves:
            idx, sv = save_loop(interp, tau_a, tau_b, z_a[1], t_b, save_index, saved)
            save_index = jnp.where(keep, idx, save_index)
            saved = jnp.where(keep, sv, saved)

        steps = c["steps"] + keep.astype(c["steps"].dtype)
        rejected = c["rejected"] + (~keep).astype(c["rejected"].dtype)
        reached, stationary = stop_reached(t_b, found, y_b)
        failed = ~finite
        out_of_steps = (steps + rejected >= max_steps) & ~(keep & (reached | stationary))
        new_status = jnp.where(
            failed,
            jnp.int8(_status.NONFINITE),
            jnp.where(out_of_steps, jnp.int8(_status.MAX_STEPS), c["status"]),
        )
        select = lambda new, old: jtu.tree_map(lambda a, b: jnp.where(keep, a, b), new, old)
        return dict(
            tau0=jnp.where(finite, next_a, tau_a),
            tau1=jnp.where(finite, next_b, tau_b),
            z=select(z_b, z_a),
            solver_state=select(sstate, c["solver_state"]),
            controller_state=cstate,
            made_jump=made_jump,
            modes=jnp.where(keep, modes_b, c["modes"]),
            found=found,
            records=records,
            learning=learning,
            save_index=save_index,
            saved=saved,
            steps=steps,
            rejected=rejected,
            evaluations=c["evaluations"] + jnp.asarray(_step_evaluations(solver, sstate), jnp.int32),
            status=new_status,
            done=(keep & (reached | stationary)) | failed | out_of_steps,
        )

    final = jax.lax.while_loop(cond_fn, body_fn, carry0)
    learning = final["learning"]
    if store_crossings:
        recorded = final["found"] & ~found0
        learning = jnp.where(recorded, crossing_times(final["records"], per_pair=True), learning)
    y_final, t_final = final["z"]
    saved = final["saved"]
    if num_saves:
        # A lane that stopped at a fixed point holds its final modes for every later save time;
        # a lane that failed keeps NaN there, so nothing looks computed that was not.
        pending = jnp.arange(num_saves) >= final["save_index"]
        fill = pending[:, None] & (final["status"] == _status.OK)
        saved = jnp.where(fill, final["modes"][None, :], saved)
    return Trajectory(
        times=save_times,
        modes=saved,
        learning_times=learning,
        fractions=fractions_arr,
        final_time=t_final,
        final_modes=final["modes"],
        final_state=y_final,
        steps=final["steps"],
        rejected=final["rejected"],
        evaluations=final["evaluations"] if _counts_evaluations(solver) else jnp.asarray(-1, jnp.int32),
        status=final["status"],
    )


def gradient_flow(
    loss: Callable[[PyTree, Any], Array],
    params0: PyTree,
    args: Any = None,
    **kwargs,
) -> Trajectory:
    """Gradient flow ``d params/dt = -grad loss(params, args)`` of a model (see :func:`solve`).

    The gradient always comes from ``jax.grad``; keyword arguments are those of :func:`solve`
    (``modes`` and ``targets`` are required). ``time`` defaults to ``"relative"`` here, since
    model parameters are not logarithms.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxflow import flow, theory
        >>> from jaxflow.models import toy
        >>> targets = jnp.array([1.0])
        >>> params = toy.factor_init(None, 1e-4, depth=3, num_coords=1)
        >>> traj = flow.gradient_flow(toy.factor_loss, params, targets,
        ...                           modes=toy.factor_values, targets=targets, fractions=(0.5,))
        >>> exact = theory.learning_time(3.0, 1.0, 1e-4, 0.5) / toy.factor_time_scale(3)
        >>> bool(abs(traj.learning_times[0, 0] / exact - 1) < 1e-6)
        True
    """
    kwargs.setdefault("time", "relative")
    return solve(_NegativeGradient(loss), params0, args, **kwargs)


class _NegativeGradient(eqx.Module):
    """``-grad loss``: a module, not a closure, so the same loss hashes alike across calls and
    :func:`solve`'s compiled program is reused (a fresh closure per call would recompile)."""

    loss: Callable = eqx.field(static=True)

    def __call__(self, params, args):
        return jtu.tree_map(jnp.negative, jax.grad(self.loss)(params, args))
