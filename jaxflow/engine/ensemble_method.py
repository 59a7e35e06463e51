"""The ensemble engine behind ``jaxflow.solve(..., batched=True)``: ``Flow(solver=Ensemble())``.

``jaxflow.Flow(solver=jaxflow.Ensemble(...))`` asks :func:`jaxflow.solve` to integrate a batch
of problems with :func:`jaxflow.engine.ensemble.solve_ensemble` (Tsit5 on a lanes-last block,
per-lane adaptive or fixed steps, a work queue instead of lockstep) rather than ``jax.vmap`` of
the single solve. The problem may be given by a vector field or a loss (its flow is ``-grad
loss``), with any pytree of parameters. It answers the request's saves, its learning times
(landed on and polished, :mod:`jaxflow.engine._ensemble_events`; adaptive steps only), the
final state and the per-lane status, with the default engine's status meanings; it does not
check stationarity (ask the default engine for that). Steps are taken in the flow's plain
time, unless the ``Flow`` names a clock (``Flow(clock=...)``, :mod:`jaxflow.engine.clock`) or
the problem brings one (``Problem(clock=...)``) and the request asks learning times only: then
the lanes integrate ``(params, t)`` on it and answer learning times only.

Example (three decay rates, fixed steps; saves land exactly on the requested times):
    >>> import jax
    >>> jax.config.update("jax_enable_x64", True)
    >>> import jax.numpy as jnp
    >>> import jaxflow
    >>> def decay(y, rate):
    ...     return -rate * y
    >>> rates = jnp.array([0.5, 1.0, 2.0])
    >>> problem = jaxflow.Problem(vector_field=decay, args=rates, params0=jnp.ones((3, 1)),
    ...                           modes=jaxflow.engine.ensemble_method.first_coordinate)
    >>> request = jaxflow.Request(save_times=[0.5, 1.0], fractions=())
    >>> traj = jaxflow.solve(problem, jaxflow.Flow(solver=jaxflow.Ensemble(dt=1e-3)), request,
    ...                      batched=True)
    >>> traj.modes.shape, traj.steps.tolist(), traj.status.tolist()
    ((3, 2, 1), [1000, 1000, 1000], [0, 0, 0])
    >>> bool(jnp.allclose(traj.modes[:, 1, 0], jnp.exp(-rates), rtol=1e-12))
    True

What the batch cost (:class:`EnsembleTrajectory`): 1000 iterations of 128 slots, 125 of them
idle throughout, so a wasted share of 1 - 3/128:
    >>> traj.slots, traj.iterations.tolist(), round(traj.wasted, 4)
    (128, [1000, 1000, 1000], 0.9766)
"""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Int

from jaxflow.engine import _ensemble_events as events_
from jaxflow.engine import ensemble
from jaxflow.engine.clock import DEFAULT_DT0, clock_speed
from jaxflow.engine.problem import Problem
from jaxflow.engine.request import Request, as_fraction_array, progress, required_mask
from jaxflow.engine.trajectory import Trajectory

__all__ = ["Ensemble", "EnsembleTrajectory", "first_coordinate", "run_batch"]


class Ensemble(eqx.Module):
    """Choose the ensemble engine: ``jaxflow.Flow(solver=jaxflow.Ensemble(), rtol=..., atol=...)``.

    Attributes:
        dt: a fixed step on the problem's time axis; ``None`` (default): adaptive steps under
            the ``Flow``'s ``rtol``/``atol`` (its ``dt0``, if given, is the first step; on a
            clock 0.05 unless given, as in the default engine).
        slots: problems advanced together (default ``min(B, 256)`` on CPUs, see
            :func:`jaxflow.engine.ensemble.default_slots`); the rest wait in the
            queue and take the slots that free up.
        pcoeff, icoeff: the step controller (diffrax's ``PIDController`` conventions; the
            default is its I controller, ``pcoeff=0.4, icoeff=0.3`` a common PI one).
        batched_field: the problem's ``vector_field(y, args)`` is written for a block: ``y`` of
            shape ``(d, S)``, the lanes on the last axis of every leaf of ``args``.
        devices: run on these devices (default: the first device): the batch is split in
            contiguous shares, one work queue per device (see
            :func:`jaxflow.engine.ensemble.solve_ensemble`); a problem's answer is the same bits
            on any number of devices.

    Example:
        >>> import jaxflow
        >>> jaxflow.Ensemble(dt=-1.0)
        Traceback (most recent call last):
        ...
        ValueError: Ensemble's dt must be a number > 0 (or None: adaptive steps), got -1.0
    """

    dt: float | None = None
    slots: int | None = eqx.field(static=True, default=None)
    pcoeff: float = eqx.field(static=True, default=0.0)
    icoeff: float = eqx.field(static=True, default=1.0)
    batched_field: bool = eqx.field(static=True, default=False)
    devices: tuple | None = eqx.field(static=True, default=None, converter=lambda d: (
        None if d is None else tuple(d)))

    def __check_init__(self):
        dt = self.dt
        if dt is not None and not isinstance(dt, jax.core.Tracer):
            value = float(dt) if np.ndim(dt) == 0 else np.nan
            if not 0 < value < np.inf:
                raise ValueError(f"Ensemble's dt must be a number > 0 (or None: adaptive steps), "
                                 f"got {dt!r}")
        slots = self.slots
        integer = isinstance(slots, (int, np.integer)) and not isinstance(slots, bool)
        if slots is not None and not (integer and slots >= 1):
            raise ValueError(f"Ensemble's slots must be an integer >= 1 (or None), got {slots!r}")
        if self.devices is not None and (not self.devices or not all(
                isinstance(d, jax.Device) for d in self.devices)):
            raise ValueError(f"Ensemble's devices must be a non-empty sequence of jax devices "
                             f"(or None: the first device), got {self.devices!r}")


class EnsembleTrajectory(Trajectory):
    """A batch solved by the ensemble engine: the shared :class:`Trajectory` (batch axis in
    front), plus the work queue's account of what the batch cost.

    Attributes:
        iterations: ``(B,)`` int32, the queue loop's iterations for the whole batch (summed over
            the devices), the same number on every lane (per lane, so that indexing the batch
            indexes every field).
        slots: the lanes advanced together (on each device).

    :attr:`wasted` is the share of slot iterations that advanced no problem (slots idle while
    the queue drains): ``(iterations * slots - sum of steps + rejected) / (iterations *
    slots)``, read on the whole batch.

    The module example shows them: three lanes of 1000 fixed steps in 128 slots.
    """

    iterations: Int[Array, " B"]
    slots: int = eqx.field(static=True, default=0)

    @property
    def wasted(self) -> float:
        """The share of the batch's slot iterations that advanced no problem."""
        # the same count on every lane (one lane of the batch is 0-d)
        iterations = np.asarray(self.iterations).reshape(-1)[0]
        return ensemble.wasted_share(iterations, self.slots, self.steps, self.rejected)


def first_coordinate(y, args):
    """The first coordinate of the state as the one mode: ``y[:1]``."""
    return jnp.ravel(y)[:1]


class _Flat(eqx.Module):
    """A problem's flow on the flat state of one lane, ``f(t, y (d,), args) -> (d,)``: the
    vector field (or ``-grad loss``) of the parameter pytree, raveled and unraveled."""

    field: Callable = eqx.field(static=True)
    is_loss: bool = eqx.field(static=True)
    treedef: object = eqx.field(static=True)
    shapes: tuple = eqx.field(static=True)

    def unravel(self, y):
        sizes = [int(np.prod(s)) for s in self.shapes]
        parts = jnp.split(y, np.cumsum(sizes)[:-1]) if len(sizes) > 1 else [y]
        leaves = [p.reshape(s) for p, s in zip(parts, self.shapes)]
        return jax.tree.unflatten(self.treedef, leaves)

    def __call__(self, t, y, args):
        params = self.unravel(y)
        if self.is_loss:
            velocity = jax.tree.map(jnp.negative, jax.grad(self.field)(params, args))
        else:
            velocity = self.field(params, args)
        return jnp.concatenate([jnp.ravel(leaf) for leaf in jax.tree.leaves(velocity)])


class _Block(eqx.Module):
    """A vector field written for a block, called without the time: ``f(y (d, S), args)``."""

    field: Callable = eqx.field(static=True)

    def __call__(self, t, y, args):
        return self.field(y, args)


def _save_times(request: Request, scale, dtype, learns: bool):
    """The times the engine lands on (flow time) and how many of them were asked for: the
    request's saves, then its horizon where it lies beyond them; without a horizon, a run
    that looks for learning times ends once it has them (a last "save" at ``inf``)."""
    saves = [] if request.save_times is None else list(np.asarray(request.save_times, float))
    horizon = request.stop_horizon()
    if horizon is None and learns:
        horizon = np.inf
    if horizon is None or np.isnan(float(horizon)) or (not learns
                                                       and not np.isfinite(float(horizon))):
        raise ValueError("the ensemble engine needs a finite horizon or save times in the "
                         "request, or learning times to find (fractions and targets)")
    asked = len(saves)
    if not saves or float(horizon) > saves[-1]:
        saves.append(float(horizon))
    return jnp.asarray(saves, dtype) / scale, asked


def _check_request(request: Request) -> None:
    tol = request.stationary_tol
    if tol is not None and not isinstance(tol, str):
        raise ValueError("the ensemble engine does not check stationarity: pass "
                         "Request(stationary_tol=None) or use the default engine")


class _Progress(eqx.Module):
    """One lane's progress for the engine's learning times: each mode of the raveled state
    over its target (``-inf`` where the target is 0, which no level reaches). The engine's
    ``args`` are the problem's args and the lane's targets."""

    modes: Callable = eqx.field(static=True)
    unravel: Callable = eqx.field(static=True)
    clocked: bool = eqx.field(static=True, default=False)  # the state ends with the flow time

    def __call__(self, y, args):
        problem_args, targets = args
        return progress(self.modes(self.unravel(y[:-1] if self.clocked else y), problem_args),
                        targets)


class _Clocked(eqx.Module):
    """The flow on a clock ``tau`` (:mod:`jaxflow.engine.clock`): the lane's state is the
    raveled parameters and then the flow time ``t``; ``d(y, t)/dtau = (f, 1) / s(y)``."""

    field: Callable = eqx.field(static=True)
    clock: Any = eqx.field(static=True)
    unravel: Callable = eqx.field(static=True)

    def __call__(self, tau, z, args):
        y = z[:-1]
        velocity = self.field(tau, y, args)
        speed = clock_speed(self.clock, self.unravel(y), self.unravel(velocity), args)
        return jnp.concatenate([velocity / speed, jnp.reshape(1.0 / speed, (1,))])


class _WithTargets(eqx.Module):
    """The flow of a lane whose ``args`` carry its targets too: ``field(t, y, args[0])``."""

    field: Callable = eqx.field(static=True)

    def __call__(self, t, y, args):
        return self.field(t, y, args[0])


def _events(problem: Problem, request: Request, field, unravel, dtype, clock=None):
    """``(events, required, engine field, engine args)``: the learning times the request asks
    the ensemble to locate, or ``(None, None, field, args)`` when it asks for none. With a
    ``clock``, the engine integrates the flow on it (:class:`_Clocked`)."""
    fractions = as_fraction_array(request.fractions, dtype)
    if problem.targets is None or fractions.shape[0] == 0:
        return None, None, field, problem.args
    if isinstance(field, _Block):
        raise ValueError("Ensemble(batched_field=True) answers saves, not learning times: pass "
                         "Request(fractions=()) or a vector field of one problem")
    targets = jnp.asarray(problem.targets, dtype)
    required = jax.vmap(lambda t: required_mask(request.required, t, fractions.shape[0]))(
        targets)
    no_horizon = request.stop_horizon() is None
    if no_horizon and not isinstance(required, jax.core.Tracer) and not np.all(
            np.any(np.asarray(required), axis=(1, 2))):
        raise ValueError("without a horizon, every problem must require a learning time (a "
                         "nonzero target): the ensemble engine does not stop at stationarity")
    clocked = clock is not None
    if clocked:
        field = _Clocked(field, clock, unravel)
    events = events_.Events(progress=_Progress(problem.modes_fn, unravel, clocked),
                            levels=fractions, ends_when_answered=no_horizon, clock=clocked)
    return events, required, _WithTargets(field), (problem.args, targets)


def _check_clock(flow, problem: Problem, request: Request):
    """The clock the ensemble integrates on (``None``: plain time): the ``Flow``'s, else the
    problem's own (``Problem.clock``), as the default engine chooses. A clock is for learning
    times alone (the engine would land on save times and horizons in its own variable,
    ``tau``): a request with saves or a horizon runs in plain time when the clock is only the
    problem's default, and is refused when the ``Flow`` names one."""
    clock = flow.clock if flow.clock is not None else problem.clock
    if clock in (None, "plain"):
        return None
    if request.save_times is not None or request.horizon is not None:
        if flow.clock is None:
            return None
        raise ValueError("the ensemble engine on a clock (Flow(clock=...)) answers learning "
                         "times only: leave the request's save_times and horizon unset, or "
                         "leave the clock unset")
    return clock


def run_batch(problem: Problem, flow, request: Request) -> "EnsembleTrajectory":
    """Solve the batch ``problem`` (leading axis ``B`` on its leaves) with the ensemble engine
    chosen by ``flow.solver`` (an :class:`Ensemble`); see :func:`jaxflow.solve`."""
    method: Ensemble = flow.solver
    _check_request(request)
    clock = _check_clock(flow, problem, request)
    leaves, treedef = jax.tree.flatten(problem.params0)
    num = np.shape(leaves[0])[0]
    if num == 0:
        raise ValueError("params0 must hold at least one problem (B >= 1): its leading axis is 0")
    if method.batched_field:
        if len(leaves) != 1 or np.ndim(leaves[0]) != 2 or problem.has_loss:
            raise ValueError("Ensemble(batched_field=True) needs a vector_field and params0 of "
                             f"shape (B, d); got leaves of shapes {[np.shape(x) for x in leaves]}")
        field = _Block(problem.vector_field)
    else:
        field = _Flat(problem.loss if problem.has_loss else problem.vector_field,
                      problem.has_loss, treedef, tuple(np.shape(x)[1:] for x in leaves))
    y0 = jnp.concatenate([jnp.reshape(x, (num, -1)) for x in leaves], axis=1)
    unravel = _unravel(field, treedef)
    if clock is not None:  # (a block field is refused with the learning times, in _events)
        y0 = jnp.concatenate([y0, jnp.zeros((num, 1), y0.dtype)], axis=1)  # t = 0
    events, required, engine_field, engine_args = _events(problem, request, field, unravel,
                                                          y0.dtype, clock)
    if clock is not None and events is None:
        raise ValueError("the ensemble engine on a clock (Flow(clock=...)) answers learning "
                         "times only: ask for fractions of nonzero targets")
    scale = problem.time_scale
    times, asked = _save_times(request, scale, y0.dtype, events is not None)
    dt = None if method.dt is None else method.dt / scale
    if clock is not None:
        # On a clock the first step is in tau, and 0.05 unless given, as in the default engine
        # (jaxflow.engine.flow): tau counts e-folds of the state. The automatic guess took
        # other steps: on the phase diagram's default grid its margins came out up to 10x
        # further from the closed form than the default engine's (2.2e-5 against 2.1e-6).
        dt0 = DEFAULT_DT0 if flow.dt0 is None else flow.dt0
    else:
        dt0 = None if flow.dt0 is None else flow.dt0 / scale
    out = ensemble.solve_ensemble(
        engine_field, y0, engine_args, times, dt=dt, dt0=dt0, rtol=flow.rtol, atol=flow.atol,
        pcoeff=method.pcoeff, icoeff=method.icoeff, slots=method.slots,
        max_steps=request.max_steps or flow.default_max_steps,
        batched_field=method.batched_field, events=events, required=required,
        devices=method.devices)
    return _trajectory(problem, request, out, times[:asked] * scale, unravel, clock is not None)


def _unravel(field, treedef):
    """One lane's flat state back to the problem's parameter pytree."""
    if isinstance(field, _Flat):
        return field.unravel
    return lambda y: jax.tree.unflatten(treedef, [y])  # noqa: E731


def _trajectory(problem, request, out, times, unravel, clocked=False) -> EnsembleTrajectory:
    """The engine's answer as an :class:`EnsembleTrajectory` with the batch axis in front (on
    a clock, the state's last component is the flow time)."""
    num, dtype = out.ys.shape[0], out.ys.dtype
    final_time = out.final_time
    if clocked:
        final_time = out.final_state[:, -1]
        out = eqx.tree_at(lambda o: (o.final_state, o.ys), out,
                          (out.final_state[:, :-1], out.ys[..., :-1]))
    saves = out.ys[:, : times.shape[0]]
    lane_modes = lambda ys, args: jax.vmap(  # noqa: E731
        lambda y: problem.modes_fn(unravel(y), args))(ys)
    modes = jax.vmap(lane_modes)(saves, problem.args)
    final_state = jax.vmap(unravel)(out.final_state)
    final_modes = jax.vmap(problem.modes_fn)(final_state, problem.args)
    fractions = as_fraction_array(request.fractions, dtype)
    m = final_modes.shape[1]
    learning = jnp.full((num, m, fractions.shape[0]), jnp.inf, dtype)
    if out.learning_times is not None:
        learning = out.learning_times * problem.time_scale
    return EnsembleTrajectory(
        times=jnp.broadcast_to(times, (num, times.shape[0])),
        modes=modes.astype(dtype),
        learning_times=learning,
        fractions=jnp.broadcast_to(fractions, (num, fractions.shape[0])),
        final_time=final_time * problem.time_scale,
        final_modes=final_modes.astype(dtype),
        final_state=final_state,
        steps=out.steps,
        rejected=out.rejected,
        # one evaluation at the start, six per attempt (Tsit5: the first stage is the last one
        # of the step before)
        evaluations=1 + 6 * (out.steps + out.rejected),
        status=out.status,
        iterations=jnp.broadcast_to(out.iterations, (num,)),
        slots=out.slots,
    )
