"""The compiled loop of gradient descent: optax steps, saves, learning times and stops.

One ``lax.while_loop`` over chunks of ``check_every`` steps, each chunk a ``lax.scan`` of masked
steps: a run that has stopped (or failed) mid-chunk stays frozen (``jnp.where``), so under
``vmap`` every lane stops on its own rule and never poisons the others. Between chunks the loop
checks stationarity (:mod:`jaxflow.engine.stationarity`, one Hessian-vector product), so that
check costs ``1/check_every`` of a gradient per step.

Everything that changes between points of a sweep is a traced array (learning rate, initial
parameters, args, targets, fractions, save times, horizon, loss bound, time scale, tolerance):
new values of the same shapes and dtypes reuse the compiled program. The loss, the modes, the
optimizer, the step budget and ``check_every`` are static.

The run is read on the flow-time axis ``t = time_scale * learning_rate * step``: save times map
to the nearest step, the horizon to the first step at or past it. The first step at which
``modes / targets`` reached each fraction (checked after every step) is ``learning_steps``; the
learning time locates the crossing between that step and the one before by linear
interpolation of the progress, so that it is a smooth function of the learning rate (the
first-order error of the scheme, not a step's rounding).
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jax import lax

from jaxflow.engine.request import required_mask
from jaxflow.engine.stationarity import is_stationary
from jaxflow.engine.status import DIVERGED, MAX_STEPS, NONFINITE, OK, UNFINISHED
from jaxflow.engine.trajectory import DescentTrajectory

__all__ = ["descent_loop"]


def _all_finite(tree) -> jax.Array:
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.asarray(True)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))


def _select(pred, new, old):
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), new, old)


class _NegativeGradient(eqx.Module):
    """``-grad loss``: the velocity that the stationarity rule reads."""

    loss: Callable = eqx.field(static=True)

    def __call__(self, params, args):
        return jax.tree.map(jnp.negative, jax.grad(self.loss)(params, args))


def _steps_of(times, dt, cap):
    """Flow times as step indices ``round(t / dt)``, capped at ``cap`` (int32-safe)."""
    return jnp.minimum(jnp.round(times / dt), cap).astype(jnp.int32)


def _horizon_step(horizon, dt, cap):
    """The first step at or past ``horizon`` (``cap``: none within the budget). The factor
    ``1 - 1e-12`` absorbs the rounding of ``horizon / dt`` (``0.3 / 0.1 = 3.0000000000000004``)."""
    n = jnp.ceil(horizon / dt * (1.0 - 1e-12))
    return jnp.where(jnp.isfinite(horizon), jnp.minimum(n, cap), cap).astype(jnp.int32)


def descent_loop(
    params0, learning_rate, args, targets, fractions, required, save_times, horizon, loss_bound,
    time_scale, stationary_tol, *, loss_fn, modes_fn, optimizer, max_steps, check_every,
):
    """The run (traced; :class:`jaxflow.Descent` checks its inputs and calls it compiled).

    ``horizon`` is ``inf`` for none; ``stationary_tol`` is ``None`` (static) for no check.
    Returns a :class:`~jaxflow.engine.trajectory.DescentTrajectory`.
    """
    dt = learning_rate * time_scale
    cap = max_steps + 1  # "never within the budget"
    optim = optimizer(learning_rate)
    value_and_grad = jax.value_and_grad(loss_fn)

    def evaluate(params):
        value, grads = value_and_grad(params, args)
        return value, grads, jnp.asarray(modes_fn(params, args)).astype(fractions.dtype)

    loss0, grads0, modes0 = evaluate(params0)
    targets, required = _targets_and_mask(targets, required, modes0, loss0, fractions)
    has_target = targets != 0
    safe = jnp.where(has_target, targets, 1.0)
    save_steps = _steps_of(save_times, dt, cap)
    stop_step = _horizon_step(horizon, dt, cap)
    has_horizon = stop_step < cap
    asked_any = jnp.any(required)

    def progress(modes):
        return jnp.where(has_target, modes / safe, -jnp.inf)

    def reached(modes):
        return progress(modes)[:, None] >= fractions[None, :]

    def crossing(before, after, step_before):
        """The time a fraction is crossed between two steps, interpolated linearly in the
        progress (a step's own time where the progress does not move)."""
        a, b = progress(before)[:, None], progress(after)[:, None]
        width = jnp.where(b > a, b - a, 1.0)
        theta = jnp.clip(jnp.where(b > a, (fractions[None, :] - a) / width, 1.0), 0.0, 1.0)
        return dt * (step_before.astype(dt.dtype) + theta)

    def answered(first):
        return jnp.all((first >= 0) | ~required)

    def ends(step, first, status):
        """Whether a run stops after ``step`` steps (not counting stationarity)."""
        done_asking = answered(first) & asked_any & ~has_horizon
        return (status != OK) | (step >= stop_step) | (step >= max_steps) | done_asking

    def loss_ok(value):
        return jnp.isfinite(value) & (value <= loss_bound)

    params_ok0 = _all_finite(params0)
    status0 = jnp.where(params_ok0, jnp.where(loss_ok(loss0), OK, DIVERGED), NONFINITE)
    status0 = status0.astype(jnp.int8)
    first0 = jnp.where(reached(modes0), 0, -1).astype(jnp.int32)
    zero = jnp.asarray(0, jnp.int32)
    carry0 = dict(
        params=params0, opt_state=optim.init(params0), loss=loss0, grads=grads0, modes=modes0,
        status=status0, diverged_step=jnp.where(status0 == OK, -1, 0).astype(jnp.int32),
        first=first0, crossed=jnp.where(first0 >= 0, 0.0, jnp.inf).astype(dt.dtype), step=zero, saved_modes=jnp.full(save_steps.shape + modes0.shape, jnp.nan,
                                                      modes0.dtype),
        saved_loss=jnp.full(save_steps.shape, jnp.nan, loss0.dtype),
        stationary=jnp.asarray(False), done=ends(zero, first0, status0),
    )
    carry0 = _save(carry0, save_steps, zero, status0 == OK)

    def step(carry, _):
        active = ~carry["done"]
        updates, opt_state = optim.update(carry["grads"], carry["opt_state"], carry["params"])
        params = optax.apply_updates(carry["params"], updates)
        value, grads, modes = evaluate(params)
        params_ok = _all_finite(params)
        accept = active & params_ok & loss_ok(value)
        failing = active & ~accept
        new_step = carry["step"] + active.astype(jnp.int32)
        failed = jnp.where(params_ok, DIVERGED, NONFINITE).astype(jnp.int8)
        status = jnp.where(failing, failed, carry["status"])
        hit = reached(modes) & (carry["first"] < 0) & accept
        first = jnp.where(hit, new_step, carry["first"])
        crossed = jnp.where(hit, crossing(carry["modes"], modes, carry["step"]), carry["crossed"])
        out = dict(
            carry,
            params=_select(accept, params, carry["params"]),
            opt_state=_select(accept, opt_state, carry["opt_state"]),
            loss=jnp.where(accept, value, carry["loss"]),
            grads=_select(accept, grads, carry["grads"]),
            modes=jnp.where(accept, modes, carry["modes"]),
            status=status,
            diverged_step=jnp.where(failing, new_step, carry["diverged_step"]),
            first=first,
            crossed=crossed,
            step=new_step,
            done=carry["done"] | ends(new_step, first, status),
        )
        return _save(out, save_steps, new_step, accept), None

    def check(carry):
        if stationary_tol is None:
            return carry
        arrived = is_stationary(_NegativeGradient(loss_fn), carry["params"], args, stationary_tol)
        arrived = arrived & (carry["status"] == OK) & ~carry["done"]
        return dict(carry, stationary=arrived, done=carry["done"] | arrived)

    def chunk(carry):
        carry, _ = lax.scan(step, carry, None, length=check_every)
        return check(carry)

    final = lax.while_loop(lambda c: ~c["done"], chunk, check(carry0))
    return _trajectory(final, carry0, save_steps, stop_step, has_horizon, required, dt,
                       fractions, modes0, loss0, answered)


def _targets_and_mask(targets, required, modes0, loss0, fractions):
    """The targets (zeros where none were given: never learned) checked against the modes'
    shape, and the ``(M, F)`` mask of the learning times the run must find."""
    if jnp.shape(loss0) != ():
        raise ValueError(f"loss(params, args) must return a scalar; got shape {jnp.shape(loss0)}")
    if modes0.ndim != 1:
        raise ValueError(f"modes(params, args) must return a 1-d array (M,); got shape {modes0.shape}")
    if targets is None:
        targets = jnp.zeros(modes0.shape, modes0.dtype)
    if targets.shape != modes0.shape:
        raise ValueError(f"targets must have the shape (M,) = ({modes0.shape[0]},) of "
                         f"modes(params, args); got {targets.shape}")
    return targets, required_mask(required, targets, fractions.shape[0])


def _save(carry, save_steps, step, accept):
    """Record the modes and loss at the first save mapped to ``step`` (later saves on the same
    step are copied from it in :func:`_trajectory`)."""
    num = save_steps.shape[0]
    if num == 0:
        return carry
    pos = jnp.searchsorted(save_steps, step, side="left")
    index = jnp.minimum(pos, num - 1)
    hit = accept & (pos < num) & (save_steps[index] == step)
    modes = carry["saved_modes"].at[index].set(
        jnp.where(hit, carry["modes"], carry["saved_modes"][index]))
    loss = carry["saved_loss"].at[index].set(jnp.where(hit, carry["loss"], carry["saved_loss"][index]))
    return dict(carry, saved_modes=modes, saved_loss=loss)


def _trajectory(final, carry0, save_steps, stop_step, has_horizon, required, dt, fractions,
                modes0, loss0, answered):
    """The run's :class:`DescentTrajectory`: saves completed, status decided (see
    :mod:`jaxflow.engine.request` for the rules)."""
    step, first = final["step"], final["first"]
    found_all = answered(first)
    horizon_reached = has_horizon & (step >= stop_step)
    answered_early = ~has_horizon & found_all & jnp.any(required)
    status = jnp.where(
        final["stationary"] | (horizon_reached & found_all) | answered_early,
        OK, jnp.where(horizon_reached, UNFINISHED, MAX_STEPS),
    )
    status = jnp.where(final["status"] == OK, status, final["status"]).astype(jnp.int8)
    # Saves mapped to one step hold the same values; saves past the end hold the final state
    # where the run ended well (a fixed point, or everything answered) and NaN otherwise.
    failed_at = final["diverged_step"]
    taken = jnp.where(failed_at >= 0, jnp.maximum(failed_at - 1, 0), step)
    firsts = jnp.searchsorted(save_steps, save_steps, side="left")
    saved_modes, saved_loss = final["saved_modes"][firsts], final["saved_loss"][firsts]
    pending = save_steps > taken
    fill = pending & (status == OK)
    saved_modes = jnp.where(fill[:, None], final["modes"][None, :], saved_modes)
    saved_loss = jnp.where(fill, final["loss"], saved_loss)
    time = lambda steps: dt * steps.astype(dt.dtype)
    return DescentTrajectory(
        times=time(save_steps),
        modes=saved_modes,
        learning_times=final["crossed"],
        fractions=fractions,
        final_time=time(taken),
        final_modes=final["modes"],
        final_state=final["params"],
        steps=taken,
        rejected=jnp.asarray(0, jnp.int32),
        # one gradient at the initial point, then one per step attempted
        evaluations=(1 + step).astype(jnp.int32),
        status=status,
        loss=saved_loss,
        learning_steps=first,
        diverged_step=final["diverged_step"],
    )


descent_loop_jit = eqx.filter_jit(descent_loop)
