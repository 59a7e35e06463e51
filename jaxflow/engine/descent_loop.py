"""The compiled loop of gradient descent: optax steps, saves, learning times and stops.

Two nested ``lax.while_loop``: the inner one takes steps up to the next *boundary* (the next
save, the next stationarity check every ``check_every`` steps, or a stop), the outer one records
the save there and checks stationarity (:mod:`jaxflow.engine.stationarity`, one Hessian-vector
product, so ``1/check_every`` of a gradient per step). Saves are written once per boundary, never
per step (a carried save buffer written inside the step loop is copied at every step, which
made the toy model's descent several times slower). A failed step freezes its lane (``jnp.where``); under ``vmap`` the
loops run until the last lane stops, the others held where they stopped, so no lane poisons
another.

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

import jax.flatten_util

from jaxflow.engine.request import progress, required_mask
from jaxflow.engine.sharpness import top_eigenpair
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


class _Rules(eqx.Module):
    """What the loop reads and never changes: the time axis, the targets, the stop rules."""

    dt: jax.Array  # flow time per step: time_scale * learning_rate
    targets: jax.Array
    fractions: jax.Array
    required: jax.Array  # (M, F)
    save_steps: jax.Array  # (K,) int32
    stop_step: jax.Array  # the horizon's step (max_steps + 1: none)
    loss_bound: jax.Array
    max_steps: int = eqx.field(static=True)

    @property
    def has_horizon(self):
        return self.stop_step <= self.max_steps

    def progress(self, modes):
        return progress(modes, self.targets)

    def reached(self, modes):
        return self.progress(modes)[:, None] >= self.fractions[None, :]

    def crossing(self, before, after, step_before):
        """The flow time at which each fraction is crossed between two steps, interpolated
        linearly in the progress (the later step's time where the progress does not move)."""
        a, b = self.progress(before)[:, None], self.progress(after)[:, None]
        moved = b > a
        theta = jnp.where(moved, (self.fractions[None, :] - a) / jnp.where(moved, b - a, 1.0), 1.0)
        return self.dt * (step_before.astype(self.dt.dtype) + jnp.clip(theta, 0.0, 1.0))

    def answered(self, first):
        return jnp.all((first >= 0) | ~self.required)

    def ends(self, step, first, status):
        """Whether a run stops after ``step`` steps (stationarity aside)."""
        done_asking = self.answered(first) & jnp.any(self.required) & ~self.has_horizon
        return (status != OK) | (step >= self.stop_step) | (step >= self.max_steps) | done_asking

    def loss_ok(self, value):
        return jnp.isfinite(value) & (value <= self.loss_bound)


def descent_loop(
    params0, learning_rate, args, targets, fractions, required, save_times, horizon, loss_bound,
    time_scale, stationary_tol, *, loss_fn, modes_fn, optimizer, max_steps, check_every,
    sharpness_iterations=0, observe=None,
):
    """The run (traced; :class:`jaxflow.Descent` checks its inputs and calls it compiled).

    ``horizon`` is ``inf`` for none; ``stationary_tol`` is ``None`` (static) for no check.
    ``sharpness_iterations > 0`` measures the sharpness at every save (Lanczos,
    :mod:`jaxflow.engine.sharpness`, warm-started from the previous save's vector);
    ``observe(params, args) -> (O,)`` is recorded at every save.
    Returns a :class:`~jaxflow.engine.trajectory.DescentTrajectory`.
    """
    dt = learning_rate * time_scale
    optim = optimizer(learning_rate)
    value_and_grad = jax.value_and_grad(loss_fn)

    def evaluate(params):
        value, grads = value_and_grad(params, args)
        return value, grads, jnp.asarray(modes_fn(params, args)).astype(fractions.dtype)

    loss0, grads0, modes0 = evaluate(params0)
    targets, required = _targets_and_mask(targets, required, modes0, loss0, fractions)
    rules = _Rules(dt=dt, targets=targets, fractions=fractions, required=required,
                   save_steps=_steps_of(save_times, dt, max_steps + 1),
                   stop_step=_horizon_step(horizon, dt, max_steps + 1),
                   loss_bound=loss_bound.astype(loss0.dtype), max_steps=max_steps)
    probe = _Probe(loss=loss_fn, observe=observe, iterations=sharpness_iterations)
    carry0 = _initial_carry(rules, params0, optim.init(params0), loss0, grads0, modes0,
                            probe.init(params0, args), args, probe)

    def step(carry):
        updates, opt_state = optim.update(carry["grads"], carry["opt_state"], carry["params"])
        params = optax.apply_updates(carry["params"], updates)
        return _after_step(rules, carry, params, opt_state, *evaluate(params))

    def check(carry):
        if stationary_tol is None:
            return carry
        arrived = is_stationary(_NegativeGradient(loss_fn), carry["params"], args, stationary_tol)
        arrived = arrived & (carry["status"] == OK) & ~carry["done"]
        return dict(carry, stationary=arrived, done=carry["done"] | arrived)

    def segment(carry):
        boundary = _next_boundary(rules, carry, check_every)
        carry = lax.while_loop(lambda c: (c["step"] < boundary) & ~c["done"], step, carry)
        carry = _save_at(rules, carry, args, probe)
        at_check = (carry["step"] % check_every == 0) & ~carry["done"]
        return lax.cond(at_check, check, lambda c: c, carry)

    final = lax.while_loop(lambda c: ~c["done"], segment, check(carry0))
    return _trajectory(rules, final, probe.measure(final, args))


class _Probe(eqx.Module):
    """What is measured at the saves besides modes and loss: the sharpness (Lanczos, warm
    started from the vector carried in ``carry["eigvec"]``) and an ``observe`` function."""

    loss: Callable  # functions or modules: their arrays stay traced, never static
    observe: Callable | None
    iterations: int = eqx.field(static=True)

    def init(self, params0, args) -> dict:
        """The carry's extra entries (save buffers are sized by :func:`_initial_carry`)."""
        extra = {}
        if self.iterations:
            flat = jax.flatten_util.ravel_pytree(params0)[0]
            extra["eigvec"] = jnp.ones_like(flat) / jnp.sqrt(flat.shape[0])
            extra["saved_sharpness"] = jnp.asarray(jnp.nan, flat.dtype)
        if self.observe is not None:
            extra["saved_observed"] = jnp.asarray(self.observe(params0, args)) * jnp.nan
        return extra

    def measure(self, carry, args) -> dict:
        """The measurements at the current state (only those asked for)."""
        out = {}
        if self.iterations:
            value, vector = top_eigenpair(self.loss, carry["params"], args,
                                          iterations=self.iterations, start=carry["eigvec"])
            out["saved_sharpness"], out["eigvec"] = value, vector
        if self.observe is not None:
            out["saved_observed"] = jnp.asarray(self.observe(carry["params"], args))
        return out


def _initial_carry(rules: _Rules, params0, opt_state0, loss0, grads0, modes0, extra, args,
                   probe) -> dict:
    """The loop's state at step 0: the initial point judged and saved where asked."""
    params_ok = _all_finite(params0)
    status0 = jnp.where(params_ok, jnp.where(rules.loss_ok(loss0), OK, DIVERGED), NONFINITE)
    status0 = status0.astype(jnp.int8)
    first0 = jnp.where(rules.reached(modes0), 0, -1).astype(jnp.int32)
    zero = jnp.asarray(0, jnp.int32)
    num_saves = rules.save_steps.shape[0]
    carry = dict(
        params=params0, opt_state=opt_state0, loss=loss0, grads=grads0, modes=modes0,
        status=status0, diverged_step=jnp.where(status0 == OK, -1, 0).astype(jnp.int32),
        first=first0, crossed=jnp.where(first0 >= 0, 0.0, jnp.inf).astype(rules.dt.dtype),
        step=zero, next_save=zero, stationary=jnp.asarray(False),
        saved_modes=jnp.full((num_saves,) + modes0.shape, jnp.nan, modes0.dtype),
        saved_loss=jnp.full((num_saves,), jnp.nan, loss0.dtype),
        peak_loss=loss0, peak_step=zero,
        done=rules.ends(zero, first0, status0),
    )
    for name, value in extra.items():  # save buffers (K, ...) of what the probe measures
        carry[name] = value if name == "eigvec" else jnp.full((num_saves,) + value.shape, value)
    return _save_at(rules, carry, args, probe)


def _after_step(rules: _Rules, carry, params, opt_state, value, grads, modes) -> dict:
    """Accept the step or freeze the lane (``diverged``, ``nonfinite``); record crossings."""
    params_ok = _all_finite(params)
    accept = params_ok & rules.loss_ok(value)
    new_step = carry["step"] + 1
    failed = jnp.where(params_ok, DIVERGED, NONFINITE).astype(jnp.int8)
    status = jnp.where(accept, carry["status"], failed)
    hit = rules.reached(modes) & (carry["first"] < 0) & accept
    higher = accept & (value > carry["peak_loss"])
    first = jnp.where(hit, new_step, carry["first"])
    crossed = lax.cond(jnp.any(hit), lambda: rules.crossing(carry["modes"], modes, carry["step"]),
                       lambda: carry["crossed"])
    return dict(
        carry,
        params=_select(accept, params, carry["params"]),
        opt_state=_select(accept, opt_state, carry["opt_state"]),
        loss=jnp.where(accept, value, carry["loss"]),
        grads=_select(accept, grads, carry["grads"]),
        modes=jnp.where(accept, modes, carry["modes"]),
        status=status,
        diverged_step=jnp.where(accept, carry["diverged_step"], new_step),
        first=first,
        crossed=jnp.where(hit, crossed, carry["crossed"]),
        peak_loss=jnp.where(higher, value, carry["peak_loss"]),
        peak_step=jnp.where(higher, new_step, carry["peak_step"]),
        step=new_step,
        done=rules.ends(new_step, first, status),
    )


def _next_boundary(rules: _Rules, carry, check_every: int):
    """The step at which the inner loop pauses: the next save or stationarity check."""
    num = rules.save_steps.shape[0]
    next_check = (carry["step"] // check_every + 1) * check_every
    if num == 0:
        return next_check
    index = jnp.minimum(carry["next_save"], num - 1)
    next_save = jnp.where(carry["next_save"] < num, rules.save_steps[index], next_check)
    return jnp.minimum(next_check, next_save)


def _save_at(rules: _Rules, carry, args, probe: _Probe) -> dict:
    """Write every save that maps to the current step (if the current state is good)."""
    num = rules.save_steps.shape[0]
    if num == 0:
        return carry
    here = (rules.save_steps == carry["step"]) & (carry["status"] == OK)
    later = jnp.sum(rules.save_steps <= carry["step"]).astype(jnp.int32)
    extra = {}
    if probe.iterations or probe.observe is not None:
        # measured only at a boundary that is a save (the probe costs Hessian-vector products)
        def skip(c):  # shapes of one measurement; unused, as no save is here
            return {k: c[k] if k == "eigvec" else c[k][0] for k in probe.init(c["params"], args)}

        current = lax.cond(jnp.any(here), lambda c: probe.measure(c, args), skip, carry)
        for name, value in current.items():
            if name == "eigvec":
                extra[name] = value
            else:
                mask = here.reshape((num,) + (1,) * value.ndim)
                extra[name] = jnp.where(mask, value[None], carry[name])
    return dict(
        carry,
        **extra,
        saved_modes=jnp.where(here[:, None], carry["modes"], carry["saved_modes"]),
        saved_loss=jnp.where(here, carry["loss"], carry["saved_loss"]),
        next_save=later,
    )


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


def _trajectory(rules: _Rules, final, at_end: dict) -> DescentTrajectory:
    """The run's :class:`DescentTrajectory`: status decided (:mod:`jaxflow.engine.request`
    states the rules), saves past the end filled."""
    step, first, dt = final["step"], final["first"], rules.dt
    found_all = rules.answered(first)
    horizon_reached = rules.has_horizon & (step >= rules.stop_step)
    answered_early = ~rules.has_horizon & found_all & jnp.any(rules.required)
    status = jnp.where(final["stationary"] | (horizon_reached & found_all) | answered_early,
                       OK, jnp.where(horizon_reached, UNFINISHED, MAX_STEPS))
    status = jnp.where(final["status"] == OK, status, final["status"]).astype(jnp.int8)
    failed_at = final["diverged_step"]
    taken = jnp.where(failed_at >= 0, jnp.maximum(failed_at - 1, 0), step)
    # Saves past the end hold the final state where the run ended well (a fixed point, or
    # everything answered) and stay NaN otherwise: nothing looks computed that was not.
    fill = (rules.save_steps > taken) & (status == OK)
    time = lambda steps: dt * steps.astype(dt.dtype)
    return DescentTrajectory(
        times=time(rules.save_steps),
        modes=jnp.where(fill[:, None], final["modes"][None, :], final["saved_modes"]),
        learning_times=final["crossed"],
        fractions=rules.fractions,
        final_time=time(taken),
        final_modes=final["modes"],
        final_state=final["params"],
        steps=taken,
        rejected=jnp.asarray(0, jnp.int32),
        # one gradient at the initial point, then one per step attempted
        evaluations=(1 + step).astype(jnp.int32),
        status=status,
        loss=jnp.where(fill, final["loss"], final["saved_loss"]),
        learning_steps=first,
        diverged_step=failed_at,
        peak_loss=final["peak_loss"],
        peak_step=final["peak_step"],
        sharpness=_filled(final, "saved_sharpness", fill, at_end),
        observed=_filled(final, "saved_observed", fill, at_end),
    )


def _filled(final, name, fill, at_end):
    """A probe's saves, past the end filled as the modes are, with the probe's value at the
    final state (None where not measured)."""
    if name not in final:
        return None
    values = final[name]
    mask = fill.reshape(fill.shape + (1,) * (values.ndim - 1))
    return jnp.where(mask, at_end[name][None], values)


descent_loop_jit = eqx.filter_jit(descent_loop)
