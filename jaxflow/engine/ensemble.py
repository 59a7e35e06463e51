"""Ensembles of any vector field: many ODE problems in one compiled loop, without lockstep.

``solve_ensemble(f, y0, args, save_times)`` integrates ``y' = f(t, y, args)`` for a batch of
``B`` problems (rows of ``y0`` and of every leaf of ``args``) by Tsit5
(``jaxflow.engine._tsit5_lanes``), adaptive (per-lane step size, accept/reject, I or PI
controller) or with a fixed step.

How it runs:

* **struct of arrays, lanes last.** ``S`` slots hold the state as one ``(d, S)`` block; the
  vector field is evaluated once per stage on the whole block (``jax.vmap`` of ``f`` over the
  last axis, or ``f`` itself with ``batched_field=True``), and a step is one fused chain of
  elementwise operations.
* **no lockstep: a work queue inside the loop.** Each iteration of one ``lax.while_loop`` makes
  one step attempt in every busy slot. A lane that finishes (its last save time reached, its
  step budget spent, or a non-finite state) writes its results and its slot takes the next
  pending problem (slots in increasing order take problems in increasing order), so the cost
  follows the sum of the lanes' steps, not ``B`` times the longest. ``EnsembleResult.wasted``
  says which fraction of slot iterations did no work (idle slots while the queue drains).
* **bitwise reproducible.** Every operation is elementwise across lanes, so a problem's answer
  is the same bits whatever its slot, its neighbours or the number of slots.
* **saves by landing on them.** A step that would pass a lane's next save time is clipped to
  end on it (or stretched by at most 1% of the step to reach it); the state there is saved.
  The last save time ends the lane.
* **learning times by landing on them** (``events``, :mod:`jaxflow.engine._ensemble_events`):
  a step that carries a mode past a fraction of its target is turned down, the lane steps to
  the crossing placed on a cubic Hermite interpolant, and a Newton step there gives the time.

Example (``y' = -k y`` for three rates, two slots: the third problem waits for a free slot):
    >>> import jax
    >>> jax.config.update("jax_enable_x64", True)
    >>> import jax.numpy as jnp
    >>> from jaxflow.engine import ensemble
    >>> def decay(t, y, k):
    ...     return -k * y
    >>> rates = jnp.array([0.5, 1.0, 2.0])
    >>> out = ensemble.solve_ensemble(decay, jnp.ones((3, 1)), rates, jnp.array([1.0, 2.0]),
    ...                               rtol=1e-10, atol=1e-10, slots=2)
    >>> exact = jnp.exp(-rates[:, None] * jnp.array([1.0, 2.0]))
    >>> bool(jnp.allclose(out.ys[:, :, 0], exact, rtol=1e-8)), out.status.tolist()
    (True, [0, 0, 0])
"""

import functools
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from jaxflow.engine import _ensemble_events as events_
from jaxflow.engine import _ensemble_queue as queue
from jaxflow.engine import _tsit5_lanes as tsit5
from jaxflow.engine import status

__all__ = ["SLOT_MULTIPLE", "EnsembleResult", "default_slots", "solve_ensemble",
           "wasted_share"]

SLOT_MULTIPLE = 128
"""Slots are padded (idle) to a multiple of this. Why: the compiler runs the lanes of a block
in vector instructions and leftover lanes in scalar ones, and the two differ in the last bit
for some functions (``x ** 0.2`` of the step controller, measured on AVX-512): with no leftover
lanes, every lane runs the same instructions, and a problem's bits do not depend on its slot."""


class EnsembleResult(eqx.Module):
    """What :func:`solve_ensemble` returns: per-problem answers in problem order.

    Attributes:
        ys: ``(B, K, d)`` the state at each save time; NaN at saves a lane never reached.
        final_state, final_time: ``(B, d)``, ``(B,)`` the last accepted step's state and time.
        steps, rejected: ``(B,)`` accepted and rejected step attempts.
        status: ``(B,)`` int8 :mod:`jaxflow.engine.status` codes: ``ok`` (reached its last save
            time, or, with ``events`` that end when answered, found every learning time it
            asks for), ``unfinished`` (reached its last save time without finding them),
            ``max_steps`` (its step budget ran out), ``nonfinite`` (a non-finite state that no
            smaller step avoided).
        iterations: the loop's iterations (each is one step attempt in every busy slot),
            summed over the devices.
        slots: ``S``, the lanes advanced together (on each device).
        learning_times: ``(B, M, F)`` with ``events``: the first time each mode reached each
            level (``inf``: never reached); ``None`` without.
    """

    ys: Float[Array, "B K d"]
    final_state: Float[Array, "B d"]
    final_time: Float[Array, " B"]
    steps: Int[Array, " B"]
    rejected: Int[Array, " B"]
    status: Int[Array, " B"]
    iterations: Int[Array, ""]
    slots: int = eqx.field(static=True)
    learning_times: Float[Array, "B M F"] | None = None

    @property
    def wasted(self) -> float:
        """``(slot iterations - step attempts) / slot iterations``: the share of the loop's lane
        work that advanced no problem (slots idle while the queue drains)."""
        return wasted_share(self.iterations, self.slots, self.steps, self.rejected)


def wasted_share(iterations, slots: int, steps, rejected) -> float:
    """``(slot iterations - step attempts) / slot iterations`` of one run of the work queue:
    ``iterations`` loop iterations (summed over the devices) of ``slots`` lanes each, against
    the step attempts (``steps + rejected``, summed over the batch) that did work.

    >>> from jaxflow.engine.ensemble import wasted_share
    >>> wasted_share(6, 128, [2, 4, 6], [0, 0, 0])   # 12 of 768 slot iterations did work
    0.984375
    """
    total = float(iterations) * slots
    attempts = float(np.sum(np.asarray(steps)) + np.sum(np.asarray(rejected)))
    return 0.0 if total == 0 else (total - attempts) / total


class _Controller(eqx.Module):
    """The step-size controller's constants (diffrax's ``PIDController`` conventions)."""

    rtol: Any
    atol: Any
    pcoeff: float = eqx.field(static=True, default=0.0)
    icoeff: float = eqx.field(static=True, default=1.0)
    safety: float = eqx.field(static=True, default=0.9)
    factormin: float = eqx.field(static=True, default=0.2)
    factormax: float = eqx.field(static=True, default=10.0)

    def error_ratio(self, y, y1, error):
        """The RMS over the state of ``error / (atol + rtol max(|y|, |y1|))``, per lane; inf
        where it is not finite (a step that produced NaN is rejected, never accepted)."""
        scale = self.atol + self.rtol * jnp.maximum(jnp.abs(y), jnp.abs(y1))
        ratio = jnp.sqrt(jnp.mean(jnp.square(error / scale), axis=0))
        return jnp.where(jnp.isfinite(ratio), ratio, jnp.inf)

    def factor(self, ratio, previous_inverse, accept):
        """The next step over this one: ``safety / ratio^(i+p)/5 * previous^(-p/5)``, at least
        1 after an accepted step and below ``safety`` after a rejected one (as diffrax)."""
        inverse = 1.0 / ratio
        order = tsit5.ERROR_ORDER
        factor = self.safety * inverse ** ((self.icoeff + self.pcoeff) / order)
        if self.pcoeff:
            factor = factor * previous_inverse ** (-self.pcoeff / order)
        low = jnp.where(accept, 1.0, self.factormin)
        high = jnp.where(accept, self.factormax, self.safety)
        return jnp.clip(factor, low, high), inverse


def _attempt(field, controller, fixed, lanes, save_times, max_steps, events=None):
    """One step attempt in every busy slot: the new lane state and what happened in it."""
    live = lanes.pid < save_times.shape[0]
    ev = lanes.events
    # A lane that stops once answered and already is (every level it needs was reached at its
    # start) ends without a step.
    stop_now = live & events_.answered(ev) if events is not None and events.ends_when_answered \
        else jnp.zeros_like(live)
    stepping = live & ~stop_now
    pending = jnp.zeros_like(live) if ev is None else jnp.isfinite(ev.t_aim)
    remaining = lanes.target - lanes.t
    # Land on the save time; stretch a step by <= 1% rather than leave a sliver behind.
    landing = (remaining <= lanes.dt * 1.01) & ~pending
    # The step is the difference of two representable times, so that the steps of a lane sum
    # to its final time exactly (in float32, 1000 steps of 0.001 otherwise drift by 1e-5).
    t_next = jnp.where(landing, lanes.target, lanes.t + lanes.dt)
    if ev is not None:  # land on a crossing (module _ensemble_events)
        t_next = jnp.where(pending, ev.t_aim, t_next)
    h = jnp.where(stepping, t_next - lanes.t, 0.0)
    ks, increment = tsit5.stages(field, lanes.t, lanes.y, lanes.f0, h, lanes.args)
    y1 = lanes.y + h * increment
    finite = jnp.all(jnp.isfinite(y1), axis=0)
    if fixed:
        accept = finite
        dt, inverse = lanes.dt, lanes.inverse
    else:
        f1 = field(t_next, y1, lanes.args)
        ratio = controller.error_ratio(lanes.y, y1, tsit5.error(h, ks, f1))
        accept = ratio <= 1.0
        factor, inverse = controller.factor(ratio, lanes.inverse, accept)
        proposed = h * factor
        # A step shortened to land on a save time (or a crossing) does not shrink the next one.
        dt = jnp.where(accept & (landing | pending), jnp.maximum(proposed, lanes.dt), proposed)
        inverse = jnp.where(accept, jnp.minimum(inverse, 1e10), lanes.inverse)
    accepted = stepping & accept
    if ev is not None:
        accepted, ev = events_.after_attempt(events, ev, accepted, pending, lanes, y1, f1,
                                             t_next, h)
    t = jnp.where(accepted, t_next, lanes.t)
    # The increment is masked rather than the state selected: XLA then keeps one fused chain
    # (a select between the new and the old state doubled the cost of a fixed step, measured).
    # Where accepted this is y1 (the same operations), elsewhere y.
    y = lanes.y + jnp.where(accepted, h, 0.0) * jnp.where(accepted, increment, 0.0)
    # Fixed steps evaluate the next first stage at the new state (the same count as the
    # seventh stage, which they do not need); adaptive ones reuse the seventh stage.
    f0 = field(t, y, lanes.args) if fixed else jnp.where(accepted, f1, lanes.f0)
    attempts = lanes.attempts + stepping.astype(jnp.int32)
    # Adaptive: a non-finite candidate shrinks the step until it no longer moves the time
    # (or at once, from a state that is itself not finite).
    hopeless = (lanes.t + dt == lanes.t) | ~jnp.all(jnp.isfinite(lanes.y), axis=0)
    stuck = ~finite if fixed else (~finite & hopeless)
    lanes = eqx.tree_at(
        lambda s: (s.y, s.f0, s.t, s.dt, s.inverse, s.attempts, s.steps, s.events),
        lanes,
        (y, f0, t, dt, inverse, attempts, lanes.steps + accepted.astype(jnp.int32), ev),
        is_leaf=lambda x: x is None,
    )
    saved = accepted & landing
    done, code = _ending(events, lanes, live, stop_now, accepted, saved, stuck, save_times,
                         max_steps)
    return lanes, saved, done, code


def _ending(events, lanes, live, stop_now, accepted, saved, stuck, save_times, max_steps):
    """``(done, status code)`` per lane after an attempt (``lanes`` already updated)."""
    last = saved & (lanes.k + 1 >= save_times.shape[1])
    answered = jnp.ones_like(live) if events is None else events_.answered(lanes.events)
    ended = last
    if events is not None and events.ends_when_answered:
        ended = last | stop_now | (accepted & answered)
    failed = live & ~ended & (stuck | (lanes.attempts >= max_steps))
    # At its horizon without every required learning time: unfinished (as the flow's loop).
    good = jnp.where(answered, status.OK, status.UNFINISHED)
    code = jnp.where(ended, good, jnp.where(live & stuck, status.NONFINITE,
                                            status.MAX_STEPS)).astype(jnp.int8)
    return ended | failed, code


def _loop(f, y0, args, save_times, t0, dt0, controller, events=None, required=None, *, fixed,
          slots, max_steps, batched_field):
    field = f if batched_field else jax.vmap(f, in_axes=(0, -1, -1), out_axes=-1)
    problems = queue.Problems(y0=y0, args=args, save_times=save_times, t0=t0, dt0=dt0,
                              required=required)
    start = queue.first_saves(problems)
    initial_dt = None if fixed else (lambda y, fy: _first_step(controller, y, fy))
    lanes, out = queue.start(field, problems, start, slots, initial_dt, events)

    def body(carry):
        lanes, out, iterations = carry
        lanes, saved, done, code = _attempt(field, controller, fixed, lanes, save_times,
                                            max_steps, events)
        lanes, out = queue.record_saves(lanes, out, saved, problems)
        lanes, out = queue.finish_and_refill(field, lanes, out, done, code, problems, start,
                                             initial_dt, events)
        return lanes, out, iterations + 1

    busy = lambda carry: jnp.any(carry[0].pid < save_times.shape[0])  # noqa: E731
    lanes, out, iterations = jax.lax.while_loop(busy, body, (lanes, out, jnp.int32(0)))
    return EnsembleResult(ys=out.ys, final_state=out.final_state, final_time=out.final_time,
                          steps=out.steps, rejected=out.attempts - out.steps,
                          status=out.status, iterations=iterations, slots=slots,
                          learning_times=out.learning)


_loop_jit = jax.jit(_loop, static_argnames=("f", "fixed", "slots", "max_steps", "batched_field"))


def default_slots(devices) -> int:
    """Slots per device when none are asked for: 256 on CPUs, where the stages of 256 lanes
    stay in the core's cache (on the Lorenz benchmark a lane-step was markedly cheaper with 256
    slots than with 1024; ``benchmarks/lorenz_ensemble.py --slots N`` measures it), and 65,536
    on accelerators, which need many lanes in flight to fill their cores.

    >>> import jax
    >>> from jaxflow.engine.ensemble import default_slots
    >>> default_slots(jax.devices("cpu")[:1])
    256
    """
    return 256 if all(d.platform == "cpu" for d in devices) else 65_536


def _first_step(controller, y, fy):
    """A first step per lane where none is given: ``0.01 |y| / |f|`` in the tolerances' norm
    (the first half of Hairer, Norsett & Wanner's starting-step rule, II.4), 1e-6 where
    either is tiny (or not finite)."""
    scale = controller.atol + controller.rtol * jnp.abs(y)
    d0 = jnp.sqrt(jnp.mean(jnp.square(y / scale), axis=0))
    d1 = jnp.sqrt(jnp.mean(jnp.square(fy / scale), axis=0))
    tiny = (d0 < 1e-5) | (d1 < 1e-5) | ~jnp.isfinite(d0 / d1)
    return jnp.where(tiny, 1e-6, 0.01 * d0 / jnp.where(tiny, 1.0, d1))


def solve_ensemble(f: Callable, y0, args, save_times, *, t0=0.0, dt=None, dt0=None,
                   rtol=1e-8, atol=1e-8, pcoeff: float = 0.0, icoeff: float = 1.0,
                   slots: int | None = None, max_steps: int = 100_000,
                   batched_field: bool = False, devices=None,
                   events: "events_.Events | None" = None, required=None) -> EnsembleResult:
    """Integrate ``B`` problems ``y' = f(t, y, args)`` by Tsit5, one compiled loop for all.

    Args:
        f: the vector field of one problem, ``f(t, y, args) -> (d,)`` with ``y`` of shape
            ``(d,)`` and ``args`` one row of ``args``; with ``batched_field=True``, of a block:
            ``t`` ``(S,)``, ``y`` ``(d, S)``, every leaf of ``args`` with the lanes on its last
            axis, returning ``(d, S)``. A module-level function (a new lambda compiles anew).
        y0: ``(B, d)`` initial states.
        args: a pytree whose every leaf has the leading axis ``B`` (``None`` for none).
        save_times: ``(K,)`` or ``(B, K)`` sorted times; the last one ends the lane.
        t0: the start time, a number or ``(B,)``.
        dt: a fixed step (every lane steps by ``dt``, landing on the save times); ``None``:
            adaptive steps, controlled by ``rtol``, ``atol``, ``pcoeff``, ``icoeff`` (diffrax's
            ``PIDController`` conventions: the defaults are its I controller).
        dt0: the first adaptive step (number or ``(B,)``); ``None``: chosen per lane.
        slots: lanes advanced together (default ``min(B, default_slots(devices))``, rounded
            up to a multiple of :data:`SLOT_MULTIPLE`).
        max_steps: step attempts per lane before it stops with ``max_steps``.
        devices: run on these devices (default: the first device): the problems are split in
            contiguous shares, one per device, each with its own slots and work queue (no
            communication between them); a problem's answer is the same bits on any number of
            devices.
        events: learning times to locate (:class:`jaxflow.engine._ensemble_events.Events`: a
            lane's progress ``(M,)``, the levels ``(F,)``, whether a lane stops once it has found
            them; then a last save time of ``inf`` means no horizon). Adaptive steps only.
        required: ``(B, M, F)`` bool, the learning times a problem must find to be answered
            (default all); every level a mode reaches is located either way.

    Returns:
        An :class:`EnsembleResult` in problem order.

    Raises:
        ValueError: naming the argument, for shapes that do not match or a bad number.
    """
    y0 = jnp.asarray(y0)
    if y0.ndim != 2:
        raise ValueError(f"y0 must have shape (B, d), got {y0.shape}")
    num, dtype = y0.shape[0], y0.dtype
    if num == 0:
        raise ValueError(f"y0 must hold at least one problem (B >= 1), got shape {y0.shape}")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"y0 must be a floating array, got dtype {dtype}")
    for leaf in jax.tree.leaves(args):
        if np.ndim(leaf) == 0 or np.shape(leaf)[0] != num:
            raise ValueError(f"every leaf of args needs the leading axis B = {num}, got a leaf "
                             f"of shape {np.shape(leaf)}")
    save_times = jnp.asarray(save_times, dtype)
    if save_times.ndim == 1:
        save_times = jnp.broadcast_to(save_times, (num, save_times.shape[0]))
    if save_times.ndim != 2 or save_times.shape[0] != num or save_times.shape[1] < 1:
        raise ValueError(f"save_times must have shape (K,) or (B, K) with K >= 1 and B = {num}, "
                         f"got {save_times.shape}")
    devices = list(devices) if devices is not None else jax.devices()[:1]
    if not devices:
        raise ValueError("devices must name at least one device")
    if slots is None:
        slots = min(num, default_slots(devices))
    if isinstance(slots, bool) or not isinstance(slots, (int, np.integer)) or slots < 1:
        raise ValueError(f"slots must be an integer >= 1, got {slots!r}")
    slots = -(-min(slots, num) // SLOT_MULTIPLE) * SLOT_MULTIPLE
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
        raise ValueError(f"max_steps must be an integer >= 1, got {max_steps!r}")
    fixed = dt is not None
    if fixed and not isinstance(dt, jax.core.Tracer) and not float(dt) > 0:
        raise ValueError(f"dt must be a number > 0 (or None for adaptive steps), got {dt!r}")
    per_lane = lambda x: jnp.broadcast_to(jnp.asarray(x, dtype), (num,))  # noqa: E731
    first = dt if fixed else (jnp.nan if dt0 is None else dt0)
    controller = _Controller(rtol=jnp.asarray(rtol, dtype), atol=jnp.asarray(atol, dtype),
                             pcoeff=float(pcoeff), icoeff=float(icoeff))
    required = events_.check_required(events, required, y0, args, fixed)
    share = -(-num // len(devices))
    if len(devices) > 1:  # each device's slots are for its own share of the problems
        slots = min(slots, -(-share // SLOT_MULTIPLE) * SLOT_MULTIPLE)
    operands = (y0, args, save_times, per_lane(t0), per_lane(first))
    static = dict(fixed=fixed, slots=int(slots), max_steps=int(max_steps),
                  batched_field=bool(batched_field))
    if len(devices) == 1:
        with jax.default_device(devices[0]):
            return _loop_jit(f, *operands, controller, events, required, **static)
    return _sharded(f, operands, controller, devices, share, static, events, required)


@functools.lru_cache(maxsize=32)
def _sharded_program(f, devices, static):
    """The compiled program of :func:`_sharded`, one per field, device set and static options
    (cached: a second batch of the same shapes neither retraces nor recompiles)."""
    mesh = jax.sharding.Mesh(np.array(devices), ("problems",))
    lanes, whole = jax.sharding.PartitionSpec("problems"), jax.sharding.PartitionSpec()

    def local(controller, events, y0, args, save_times, t0, first, required):
        out = _loop(f, y0, args, save_times, t0, first, controller, events, required,
                    **dict(static))
        return (out.ys, out.final_state, out.final_time, out.steps, out.rejected, out.status,
                out.learning_times, out.iterations[None])

    return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(whole, whole, *[lanes] * 6),
                                 out_specs=lanes, check_vma=False))


def _sharded(f, operands, controller, devices, share, static, events=None,
             required=None) -> EnsembleResult:
    """One work queue per device over a contiguous share of the problems (``share`` each, the
    last share padded with copies of problem 0, whose answers are dropped)."""
    num = operands[0].shape[0]
    padded = share * len(devices)

    def pad(x):
        if padded == num:
            return x
        return jnp.concatenate([x, jnp.broadcast_to(x[:1], (padded - num, *x.shape[1:]))])

    operands = jax.tree.map(pad, (*operands, required))
    program = _sharded_program(f, tuple(devices), tuple(sorted(static.items())))
    *fields, learning, iterations = program(controller, events, *operands)
    ys, final_state, final_time, steps, rejected, code = (x[:num] for x in fields)
    return EnsembleResult(ys=ys, final_state=final_state, final_time=final_time, steps=steps,
                          rejected=rejected, status=code, iterations=jnp.sum(iterations),
                          slots=static["slots"],
                          learning_times=None if learning is None else learning[:num])
