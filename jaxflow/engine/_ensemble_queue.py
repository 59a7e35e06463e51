"""The work queue of :mod:`jaxflow.engine.ensemble`: which problem each slot holds, loading
the next pending one into a slot whose lane finished, and writing a lane's answers back in
problem order.

Slots in increasing order take the pending problems in increasing order (a running counter),
so the assignment of problems to slots is a deterministic function of the lanes' step counts.
Nothing here mixes lanes: a lane's numbers are gathered from its problem's row and scattered
back to it, so where it ran never shows in its bits. Saves and refills are behind
``lax.cond``: an iteration in which no lane saved or finished pays for neither.
"""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from jaxflow.engine import _ensemble_events as events_

__all__ = ["EventLanes", "Lanes", "Outputs", "Problems", "finish_and_refill", "first_saves",
           "record_saves", "start"]


class Problems(eqx.Module):
    """The batch, problem-major: ``y0 (B, d)``, ``args`` (leaves ``(B, ...)``),
    ``save_times (B, K)``, ``t0 (B,)``, ``dt0 (B,)`` (NaN: choose per lane), and with learning
    times, ``required (B, M, F)``, those a lane must find before it is answered (None
    without)."""

    y0: Array
    args: Any
    save_times: Array
    t0: Array
    dt0: Array
    required: Array | None = None


class EventLanes(eqx.Module):
    """A lane's learning times in the making (:mod:`jaxflow.engine._ensemble_events`), lane axis
    last: the progress at its state ``(M, S)``; the levels it must find, those found and their
    times ``(M, F, S)``; a pending landing: its time ``t_aim`` (inf: none), the levels
    ``aimed`` there, the end ``high`` of the step that crossed them."""

    p: Array
    required: Array
    found: Array
    learning: Array
    t_aim: Array
    aimed: Array
    high: Array


class Lanes(eqx.Module):
    """The slots, lane axis last: states ``(d, S)``, per-lane scalars ``(S,)``, and ``next``,
    the first problem no slot has taken yet. ``pid == B`` marks an idle slot."""

    y: Array
    f0: Array
    t: Array
    dt: Array
    inverse: Array  # the previous accepted step's inverse error ratio (PI controller)
    attempts: Array
    steps: Array
    pid: Array
    k: Array  # index of the next save time
    target: Array  # the next save time
    args: Any
    next: Array
    events: EventLanes | None = None


class Outputs(eqx.Module):
    """The answers, problem-major (see :class:`jaxflow.engine.ensemble.EnsembleResult`)."""

    ys: Array
    final_state: Array
    final_time: Array
    steps: Array
    attempts: Array
    status: Array
    learning: Array | None = None  # (B, M, F), with learning times


class Start(eqx.Module):
    """Per problem: the saves at or before its start (``k0``, taken before any step)."""

    k0: Array
    ys: Array


def first_saves(problems: Problems) -> Start:
    """The saves that need no step (times ``<= t0``): filled from ``y0``, NaN elsewhere."""
    early = problems.save_times <= problems.t0[:, None]
    ys = jnp.where(early[:, :, None], problems.y0[:, None, :], jnp.nan)
    return Start(k0=jnp.sum(early, axis=1, dtype=jnp.int32), ys=ys.astype(problems.y0.dtype))


def _rows(tree, index):
    """Rows ``index`` of every leaf, moved to the lanes-last layout."""
    return jax.tree.map(lambda a: jnp.moveaxis(a[index], 0, -1), tree)


def _target(problems: Problems, pid, k, fallback):
    """The next save time of each lane (``fallback`` once none is left)."""
    num, count = problems.save_times.shape
    row = jnp.minimum(pid, num - 1)
    times = problems.save_times[row, jnp.minimum(k, count - 1)]
    return jnp.where(k < count, times, fallback)


def _load_events(events, problems: Problems, lanes: Lanes, take, row, y, t, args):
    """The learning-time state of the slots where ``take`` after loading problem ``row``: the
    progress at its start (evaluated on the whole block, like ``f0``), the levels it asks for
    and those already reached there."""
    if events is None:
        return None
    pick = lambda new, old: jnp.where(take, new, old)  # noqa: E731
    p = pick(events.lanes(y, args), lanes.events.p)
    required = pick(jnp.moveaxis(problems.required[row], 0, -1), lanes.events.required)
    found, learning = events_.found_at_start(events, p, y, t)
    old = lanes.events
    return EventLanes(p=p, required=required, found=pick(found, old.found),
                      learning=pick(learning, old.learning),
                      t_aim=pick(jnp.full_like(t, jnp.inf), old.t_aim),
                      aimed=pick(jnp.zeros_like(found), old.aimed), high=pick(t, old.high))


def _load(field, problems: Problems, start: Start, lanes: Lanes, take, pid, initial_dt,
          events=None):
    """Put problem ``pid`` into the slots where ``take``: its start state, time, first step,
    args and next save; ``f0`` is evaluated on the whole block (one evaluation per refill)."""
    num = problems.y0.shape[0]
    row = jnp.minimum(pid, num - 1)
    pick = lambda new, old: jnp.where(take, new, old)  # noqa: E731
    y = pick(problems.y0[row].T, lanes.y)
    t = pick(problems.t0[row], lanes.t)
    k = pick(start.k0[row], lanes.k)
    args = jax.tree.map(pick, _rows(problems.args, row), lanes.args)
    f0 = pick(field(t, y, args), lanes.f0)
    dt = problems.dt0[row]
    if initial_dt is not None:
        dt = jnp.where(jnp.isnan(dt), initial_dt(y, f0), dt)
    zero = jnp.zeros_like(lanes.attempts)
    return Lanes(
        y=y, f0=f0, t=t, dt=pick(dt, lanes.dt), inverse=pick(jnp.ones_like(t), lanes.inverse),
        attempts=pick(zero, lanes.attempts), steps=pick(zero, lanes.steps),
        pid=pick(pid, lanes.pid), k=k, target=pick(_target(problems, pid, k, t), lanes.target),
        args=args, next=lanes.next,
        events=_load_events(events, problems, lanes, take, row, y, t, args),
    )


def _blank_events(events, problems: Problems, slots: int, dtype):
    """Empty learning-time state for ``slots`` lanes (None without learning times)."""
    if events is None:
        return None
    _, modes, levels = problems.required.shape
    none = jnp.zeros((modes, levels, slots), bool)
    times = jnp.zeros(slots, dtype)
    return EventLanes(p=jnp.zeros((modes, slots), dtype), required=none, found=none,
                      learning=jnp.zeros((modes, levels, slots), dtype), t_aim=times,
                      aimed=none, high=times)


def start(field, problems: Problems, start_: Start, slots: int, initial_dt, events=None):
    """The first ``slots`` problems in the slots (slots past the batch stay idle), and empty
    outputs."""
    num, d = problems.y0.shape
    dtype = problems.y0.dtype
    pid = jnp.minimum(jnp.arange(slots, dtype=jnp.int32), num)
    empty = jnp.zeros((d, slots), dtype)
    blank = Lanes(y=empty, f0=empty, t=jnp.zeros(slots, dtype), dt=jnp.zeros(slots, dtype),
                  inverse=jnp.ones(slots, dtype), attempts=jnp.zeros(slots, jnp.int32),
                  steps=jnp.zeros(slots, jnp.int32), pid=pid, k=jnp.zeros(slots, jnp.int32),
                  target=jnp.zeros(slots, dtype),
                  args=_rows(problems.args, jnp.minimum(pid, num - 1)),
                  next=jnp.int32(min(slots, num)),
                  events=_blank_events(events, problems, slots, dtype))
    lanes = _load(field, problems, start_, blank, jnp.ones(slots, bool), pid, initial_dt,
                  events)
    learning = None
    if events is not None:
        learning = jnp.full(problems.required.shape, jnp.inf, dtype)
    out = Outputs(ys=start_.ys, final_state=jnp.full((num, d), jnp.nan, dtype),
                  final_time=jnp.full((num,), jnp.nan, dtype),
                  steps=jnp.zeros(num, jnp.int32), attempts=jnp.zeros(num, jnp.int32),
                  status=jnp.zeros(num, jnp.int8), learning=learning)
    return lanes, out


def record_saves(lanes: Lanes, out: Outputs, saved, problems: Problems):
    """Write the state of the lanes that landed on a save time and move them to the next."""
    num = problems.y0.shape[0]

    def write(operand):
        lanes, out = operand
        where = jnp.where(saved, lanes.pid, num)  # row B: dropped
        ys = out.ys.at[where, lanes.k].set(lanes.y.T, mode="drop")
        k = lanes.k + saved.astype(jnp.int32)
        target = _target(problems, lanes.pid, k, lanes.target)
        return eqx.tree_at(lambda s: (s.k, s.target), lanes, (k, target)), eqx.tree_at(
            lambda o: o.ys, out, ys)

    return jax.lax.cond(jnp.any(saved), write, lambda operand: operand, (lanes, out))


def finish_and_refill(field, lanes: Lanes, out: Outputs, done, code, problems: Problems,
                      start_: Start, initial_dt, events=None):
    """Write the answers of the lanes that finished and give their slots the next problems."""
    num = problems.y0.shape[0]

    def refill(operand):
        lanes, out = operand
        where = jnp.where(done, lanes.pid, num)
        put = lambda array, values: array.at[where].set(values, mode="drop")  # noqa: E731
        learning = out.learning
        if events is not None:
            learning = put(learning, jnp.moveaxis(lanes.events.learning, -1, 0))
        out = Outputs(ys=out.ys, final_state=put(out.final_state, lanes.y.T),
                      final_time=put(out.final_time, lanes.t), steps=put(out.steps, lanes.steps),
                      attempts=put(out.attempts, lanes.attempts), status=put(out.status, code),
                      learning=learning)
        rank = jnp.cumsum(done, dtype=jnp.int32) - 1
        pid = jnp.where(done, jnp.minimum(lanes.next + rank, num), lanes.pid)
        lanes = eqx.tree_at(lambda s: s.next, lanes, lanes.next + jnp.sum(done, dtype=jnp.int32))
        take = done & (pid < num)
        lanes = _load(field, problems, start_, lanes, take, pid, initial_dt, events)
        return eqx.tree_at(lambda s: s.pid, lanes, pid), out

    return jax.lax.cond(jnp.any(done), refill, lambda operand: operand, (lanes, out))
