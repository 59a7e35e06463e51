"""Gradient descent through optax, as one compiled ``lax.scan`` program.

Discrete gradient descent with rate ``eta`` is the explicit Euler scheme of the gradient flow
``d params/dt = -grad loss(params)``: after ``k`` steps it sits at flow time ``t = eta * k``, up to
an ``O(eta)`` error. :func:`gradient_descent` runs a fixed number of optimizer steps and reports
its trajectory on that time axis, so that gradient descent and gradient flow (``jaxflow.engine.flow``)
are compared on the same ``t``.

Design (measured choices):

- Nested ``lax.scan``: an outer scan over ``num_steps // save_every`` chunks and an inner scan
  over the ``save_every`` steps of a chunk. Only a small summary (the loss and the tracked
  modes) is saved per chunk; the parameter history is never stored.
- Everything that one may want to sweep (``learning_rate``, ``params0``, ``args``, ``targets``,
  ``fractions``, ``loss_bound``, ``time_scale``) is a traced array: new values of the same shapes
  and dtypes reuse the compiled program. It is compiled with ``equinox.filter_jit``, as
  :func:`jaxflow.engine.flow.solve` is: ``loss``, ``modes``, ``optimizer``, ``num_steps`` and
  ``save_every`` are static, compared by equality (pass the same module-level functions, or
  equal ``eqx.Module`` callables, never fresh lambdas, to reuse the program).
- With ``stationary_tol`` the outer scan becomes a ``lax.while_loop`` over the same chunks,
  which stops once the gradient is small (:func:`stationary`); ``num_steps`` is then a budget,
  and a run that spends it first says so (status ``UNFINISHED``).
- One run per call: sweep learning rates or initializations with ``jax.vmap`` yourself.
  A run that diverges freezes (its parameters stop changing, via ``jnp.where``) and carries a
  status code; it never stops nor poisons the other lanes of a vmap.
- It returns the shared :class:`jaxflow.engine.trajectory.Trajectory` contract of both back-ends, as a
  :class:`~jaxflow.engine.trajectory.DescentTrajectory` (plus ``loss``, ``learning_steps``,
  ``diverged_step``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from jaxflow.engine.status import DIVERGED, NONFINITE, OK, UNFINISHED
from jaxflow.engine.trajectory import DescentTrajectory, check_fractions

__all__ = ["DescentTrajectory", "gradient_descent", "stationary"]


# ----------------------------------------------------------------------------------------------
# Eager input checks (only on concrete values; tracers are skipped)


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be a Python int >= 1 (it is static); got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be an int >= 1; got {value}")
    return int(value)


def _check_positive_scalar(name: str, value, *, allow_inf: bool = False) -> None:
    if jnp.ndim(value) != 0:
        hint = "; vmap gradient_descent yourself to sweep several values"
        raise ValueError(
            f"{name} must be a scalar, got shape {jnp.shape(value)}"
            + (hint if name == "learning_rate" else "")
        )
    if not _is_concrete(value):
        return
    v = float(np.asarray(value))
    allowed = "(0, inf]" if allow_inf else "(0, inf), finite"
    if not (v > 0.0) or (not allow_inf and not np.isfinite(v)):
        raise ValueError(f"{name} must be in {allowed}; got {v}")


def _python_numbers_as_arrays(tree):
    """Python numbers in ``params0`` or ``args`` as arrays, as ``jax.jit`` traced them: equinox's
    filter would make them static (a new value, a new program)."""
    number = lambda leaf: isinstance(leaf, (bool, int, float, complex))  # noqa: E731
    return jax.tree_util.tree_map(lambda leaf: jnp.asarray(leaf) if number(leaf) else leaf, tree)


def _float_dtype(params0):
    """The floating dtype that the scalars of a run take: that of the parameters."""
    leaves = jax.tree_util.tree_leaves(params0)
    dtypes = {jnp.result_type(leaf) for leaf in leaves}
    floats = [d for d in dtypes if jnp.issubdtype(d, jnp.floating)]
    if len(floats) == 1:
        return floats[0]
    return jnp.result_type(float)  # float64 under x64, else float32


# ----------------------------------------------------------------------------------------------
# The compiled program


def _all_finite(tree) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(tree)
    if not leaves:
        return jnp.asarray(True)
    return jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]).all()


def _select(pred, new, old):
    return jax.tree_util.tree_map(lambda n, o: jnp.where(pred, n, o), new, old)


def _no_modes(params, args):
    del params, args
    return jnp.zeros((0,))


def _norm(tree) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(tree)
    if not leaves:
        return jnp.asarray(0.0)
    return jnp.sqrt(sum(jnp.sum(jnp.abs(leaf) ** 2) for leaf in leaves))


def stationary(grads, params, tol) -> jax.Array:
    """The stopping rule of ``gradient_descent(..., stationary_tol=tol)``: whether
    ``||grad loss(params)|| <= tol * max(1, ||params||)`` (Euclidean norms over every leaf).

    On the flow ``d params/dt = -grad loss`` the left side is the speed, so the rule says that
    the parameters would need a flow time of at least ``1 / tol`` to move by their own size (or
    by 1, when they are smaller than 1). The gradient is the one the run has computed anyway,
    so checking costs no evaluation. A plateau slower than that would pass for stationary:
    choose ``tol`` below the slowest plateau speed of the problem (the E1 generalization sweep
    measures its own margin, see :mod:`jaxflow.experiments.generalization`).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxflow.engine.descent import stationary
        >>> bool(stationary(jnp.array([3e-7, 4e-7]), jnp.array([0.0, 2.0]), 1e-6))  # 5e-7 <= 2e-6
        True
        >>> bool(stationary(jnp.array([3e-6, 4e-6]), jnp.array([0.0, 0.5]), 1e-6))  # 5e-6 > 1e-6
        False
    """
    return _norm(grads) <= tol * jnp.maximum(1.0, _norm(params))


def _run(
    params0,
    learning_rate,
    args,
    targets,
    fractions,
    loss_bound,
    time_scale,
    stationary_tol,
    *,
    loss_fn,
    modes_fn,
    optimizer,
    num_steps,
    save_every,
):
    num_chunks = num_steps // save_every
    optim = optimizer(learning_rate)
    value_and_grad = jax.value_and_grad(loss_fn)

    def evaluate(params):
        value, grads = value_and_grad(params, args)
        return value, grads, jnp.asarray(modes_fn(params, args))

    loss_shape = jax.eval_shape(loss_fn, params0, args).shape
    if loss_shape != ():
        raise ValueError(f"loss(params, args) must return a scalar; got shape {loss_shape}")
    loss0, grads0, modes0 = evaluate(params0)
    if modes0.ndim != 1:
        raise ValueError(
            f"modes(params, args) must return a 1-d array (M,); got shape {modes0.shape}"
        )
    num_modes = modes0.shape[0]
    mode_dtype = modes0.dtype if jnp.issubdtype(modes0.dtype, jnp.floating) else loss0.dtype
    modes0 = modes0.astype(mode_dtype)

    if targets is None:
        targets = jnp.zeros((num_modes,), mode_dtype)  # zero targets: never reached
    targets = jnp.asarray(targets).astype(mode_dtype)
    if targets.shape != (num_modes,):
        raise ValueError(
            f"targets must have the shape (M,) = ({num_modes},) of modes(params, args); "
            f"got {targets.shape}"
        )
    fractions = fractions.astype(mode_dtype)
    has_target = targets != 0.0
    safe_targets = jnp.where(has_target, targets, jnp.ones_like(targets))
    loss_bound = loss_bound.astype(loss0.dtype)

    def reached(modes):
        ratio = jnp.where(has_target, modes / safe_targets, -jnp.inf)
        return ratio[:, None] >= fractions[None, :]  # (M, F)

    def loss_ok(value):
        return jnp.isfinite(value) & (value <= loss_bound)

    # The initial point: non-finite parameters -> NONFINITE, bad loss -> DIVERGED, at step 0.
    params_ok0 = _all_finite(params0)
    status0 = jnp.where(
        params_ok0, jnp.where(loss_ok(loss0), OK, DIVERGED), NONFINITE
    ).astype(jnp.int8)
    diverged0 = jnp.where(status0 == OK, -1, 0).astype(jnp.int32)
    first0 = jnp.where(reached(modes0), 0, -1).astype(jnp.int32)

    carry0 = dict(
        params=params0,
        opt_state=optim.init(params0),
        loss=loss0,
        grads=grads0,
        modes=modes0,
        status=status0,
        diverged_step=diverged0,
        first=first0,
        step=jnp.asarray(0, jnp.int32),  # steps attempted (the index of the current state)
        taken=jnp.asarray(0, jnp.int32),  # steps accepted
    )

    def step(carry, _):
        # The carry holds the loss, gradient and modes of its current parameters, so each step
        # costs one value_and_grad and one modes evaluation.
        active = carry["status"] == OK
        updates, opt_state = optim.update(carry["grads"], carry["opt_state"], carry["params"])
        params = optax.apply_updates(carry["params"], updates)
        value, grads, modes = evaluate(params)
        params_ok = _all_finite(params)
        good_loss = loss_ok(value)
        accept = active & params_ok & good_loss
        new_step = carry["step"] + 1
        failed_status = jnp.where(params_ok, DIVERGED, NONFINITE).astype(jnp.int8)
        failing = active & ~accept
        hit = reached(modes) & (carry["first"] < 0) & accept
        return dict(
            params=_select(accept, params, carry["params"]),
            opt_state=_select(accept, opt_state, carry["opt_state"]),
            loss=jnp.where(accept, value, carry["loss"]),
            grads=_select(accept, grads, carry["grads"]),
            modes=jnp.where(accept, modes, carry["modes"]),
            status=jnp.where(failing, failed_status, carry["status"]),
            diverged_step=jnp.where(failing, new_step, carry["diverged_step"]),
            first=jnp.where(hit, new_step, carry["first"]),
            step=new_step,
            taken=carry["taken"] + accept.astype(jnp.int32),
        ), None

    def chunk(carry, _):
        carry, _ = lax.scan(step, carry, None, length=save_every)
        return carry, (carry["loss"], carry["modes"])

    if stationary_tol is None:
        final, (losses, modes) = lax.scan(chunk, carry0, None, length=num_chunks)
        status = final["status"]
    else:
        final, losses, modes, status = _run_until_stationary(
            chunk, carry0, num_chunks, stationary_tol.astype(loss0.dtype)
        )

    steps_saved = jnp.arange(num_chunks + 1, dtype=jnp.int32) * save_every
    scale = learning_rate * time_scale
    times = scale * steps_saved.astype(scale.dtype)
    first = final["first"]
    learning_times = jnp.where(
        first >= 0, scale * first.astype(scale.dtype), jnp.asarray(jnp.inf, scale.dtype)
    )
    # One gradient at the initial point, then one per step attempted until the run ended or
    # failed (a frozen lane's later gradients are discarded, not counted).
    attempted = jnp.where(final["diverged_step"] >= 0, final["diverged_step"], final["taken"])
    return DescentTrajectory(
        times=times,
        modes=jnp.concatenate([modes0[None, :], modes], axis=0),
        learning_times=learning_times,
        fractions=fractions,
        final_time=scale * final["taken"].astype(scale.dtype),
        final_modes=final["modes"],
        final_state=final["params"],
        steps=final["taken"],
        rejected=jnp.asarray(0, jnp.int32),
        evaluations=(1 + attempted).astype(jnp.int32),
        status=status,
        loss=jnp.concatenate([loss0[None], losses], axis=0),
        learning_steps=first,
        diverged_step=final["diverged_step"],
    )


def _run_until_stationary(chunk, carry0, num_chunks, tol):
    """The chunks of :func:`_run` in a ``lax.while_loop`` that ends once the run is
    :func:`stationary` (checked before every chunk, from the carried gradient), has failed, or
    has spent its ``num_chunks`` chunks. The saves a run does not reach repeat its last state,
    as a frozen (diverged) run's do. Status: ``UNFINISHED`` when the budget ran out first."""
    losses0 = jnp.zeros((num_chunks,), carry0["loss"].dtype)
    modes0 = jnp.zeros((num_chunks,) + carry0["modes"].shape, carry0["modes"].dtype)

    def done(carry):
        return stationary(carry["grads"], carry["params"], tol)

    def cond(state):
        carry, index, _, _ = state
        return (index < num_chunks) & (carry["status"] == OK) & ~done(carry)

    def body(state):
        carry, index, losses, modes = state
        carry, (loss, mode) = chunk(carry, None)
        return carry, index + 1, losses.at[index].set(loss), modes.at[index].set(mode)

    final, index, losses, modes = lax.while_loop(
        cond, body, (carry0, jnp.asarray(0, jnp.int32), losses0, modes0)
    )
    unreached = jnp.arange(num_chunks, dtype=jnp.int32) >= index
    losses = jnp.where(unreached, final["loss"], losses)
    modes = jnp.where(unreached[:, None], final["modes"][None, :], modes)
    unfinished = (final["status"] == OK) & ~done(final)
    status = jnp.where(unfinished, UNFINISHED, final["status"]).astype(jnp.int8)
    return final, losses, modes, status


# Like flow.solve: callables and Python ints are static (equinox's filter: equal callables, e.g.
# equal ``eqx.Module`` instances, reuse the program), arrays are traced.
_run_jit = eqx.filter_jit(_run)


# ----------------------------------------------------------------------------------------------
# Public API


def gradient_descent(
    loss: Callable[[Any, Any], jax.Array],
    params0: Any,
    args: Any = None,
    *,
    learning_rate,
    num_steps: int,
    save_every: int = 1,
    modes: Callable[[Any, Any], jax.Array] | None = None,
    targets=None,
    fractions: Sequence[float] | jax.Array = (0.1, 0.5, 0.9),
    optimizer: Callable[[Any], optax.GradientTransformation] | None = None,
    loss_bound=1e12,
    time_scale=1.0,
    stationary_tol=None,
) -> DescentTrajectory:
    """Run ``num_steps`` steps of gradient descent (or of any optax optimizer) on ``loss``.

    Gradients come from ``jax.grad(loss)``. Gradient descent with rate ``eta`` approximates the
    gradient flow ``d params/dt = -grad loss`` at ``t = eta * step``; the trajectory is reported on
    that axis, times ``time_scale``. The run is one compiled nested ``lax.scan`` (chunks of
    ``save_every`` steps); one summary (loss and modes) is saved per chunk, plus the initial
    point. The learning of each mode is tracked after *every* step.

    One run per call: to sweep learning rates, initializations or targets, vmap it yourself,
    e.g. ``jax.vmap(lambda lr: gradient_descent(loss, w0, learning_rate=lr, num_steps=1000))(lrs)``.
    It also works under ``jax.jit``. The swept values are traced arrays, so calling again with
    new values of the same shapes and dtypes never recompiles (``loss``, ``modes``,
    ``optimizer``, ``num_steps`` and ``save_every`` are static: pass the same function objects
    or equal ``eqx.Module`` callables).

    A run stops updating (its parameters and optimizer state are frozen at the last good state,
    via ``jnp.where``) when a step would make the loss non-finite or larger than ``loss_bound``
    (status ``DIVERGED``) or the parameters non-finite (status ``NONFINITE``); ``diverged_step``
    is the step of that rejected state. The saved loss and modes then stay at the frozen
    state's values; other lanes of a vmap are unaffected.

    Args:
        loss: ``loss(params, args) -> scalar``, differentiable in ``params``.
        params0: the initial parameters, any pytree of float arrays.
        args: extra data passed to ``loss`` and ``modes`` (a pytree of arrays, traced);
            positional or keyword, as in :func:`jaxflow.engine.flow.gradient_flow`.
        learning_rate: positive finite scalar (a traced array inside; sweeping it never
            recompiles).
        num_steps: number of steps, a static int >= 1, a multiple of ``save_every``.
        save_every: save a summary every this many steps (static int >= 1).
        modes: optional ``modes(params, args) -> (M,)`` array of tracked values (coordinates,
            singular values, ...). Without it ``M = 0``.
        targets: ``(M,)`` targets of the modes; a mode counts as learned to fraction ``f`` once
            ``modes / targets >= f``. A zero target (or ``targets=None``) is never reached.
        fractions: ``(F,)`` strictly increasing fractions in (0, 1]; ``()`` asks for none
            (:func:`jaxflow.engine.trajectory.check_fractions`, the rule of both back-ends).
        optimizer: a factory ``learning_rate -> optax.GradientTransformation``; default
            ``optax.sgd`` (plain gradient descent). ``optax.inject_hyperparams(optax.sgd)``
            (hyper-parameters kept in the optimizer state) and e.g.
            ``lambda lr: optax.sgd(lr, momentum=0.9)`` work too. It is called with a traced
            ``learning_rate`` array.
        loss_bound: a run whose loss exceeds this (or becomes non-finite) is marked diverged;
            in (0, inf].
        time_scale: the constant ``c``, positive and finite:
            ``times = c * learning_rate * step``. If the gradient flow of ``loss`` runs a
            reference flow at speed ``c`` (its modes obey ``c * f(sigma)``), this puts GD on the
            reference time axis, as ``ToyArgs.time_scale`` does for the flow; e.g.
            ``toy.factor_time_scale(N) = 1/N`` for N distinct balanced factors with the
            ``1/(2 N^2)`` loss, whose flow is ``d sigma/dt = sigma^(2-2/N) (sigma* - sigma) / N``.
        stationary_tol: ``None`` (default): run exactly ``num_steps`` steps. A positive
            tolerance makes ``num_steps`` a budget: the run stops at the first multiple of
            ``save_every`` steps where it is :func:`stationary`
            (``||grad|| <= stationary_tol * max(1, ||params||)``; ``steps`` says where), and a
            run that spends the budget first ends with status ``UNFINISHED`` (its result is
            right but not converged). Saves past the stop repeat the final state. Under
            ``jax.vmap`` the batch runs until its last lane stops; stopped lanes stay frozen.

    Returns:
        A :class:`~jaxflow.engine.trajectory.DescentTrajectory` (the shared
        :class:`~jaxflow.engine.trajectory.Trajectory` fields plus ``loss``, ``learning_steps`` and
        ``diverged_step``) with ``S = num_steps // save_every + 1`` saves: ``times`` ``(S,)``,
        ``modes`` ``(S, M)``, ``loss`` ``(S,)``, ``learning_steps`` and ``learning_times``
        ``(M, F)``, ``final_state`` (also ``final_params``) at ``final_time``, ``status``
        (int8), ``diverged_step`` (int32, -1 if none), ``steps`` (int32, the steps actually
        taken), ``rejected`` (0) and ``evaluations`` (int32, gradients computed: the initial
        one, then one per step until the run ended or failed). With ``stationary_tol``, the
        flow time it took is ``final_time = time_scale * learning_rate * steps``.

    Raises:
        ValueError: on concrete bad input (tracers are not checked): ``learning_rate`` not in
            (0, inf) or NaN or not a scalar; ``num_steps`` or ``save_every`` not an int >= 1;
            ``num_steps`` not a multiple of ``save_every``; ``fractions`` not in (0, 1] or not
            strictly increasing; ``loss_bound`` not in (0, inf]; ``time_scale`` or
            ``stationary_tol`` not in (0, inf);
            ``targets`` not of shape ``(M,)``; ``loss`` not scalar or ``modes`` not 1-d.

    Example:
        A depth-2 scalar model ``sigma = w1 * w2`` learning ``sigma* = 1`` from
        ``sigma0 = 0.01``; its flow (with the ``1/(2 N^2)`` loss) is the logistic
        ``d sigma/dt = sigma (1 - sigma) / 2``, hence ``time_scale = 0.5`` for the reference
        flow ``sigma (1 - sigma)``:

        >>> import jax, jax.numpy as jnp
        >>> from jaxflow.engine.descent import gradient_descent
        >>> def loss(w, args):
        ...     return 0.125 * (1.0 - w[0] * w[1]) ** 2
        >>> def modes(w, args):
        ...     return jnp.stack([w[0] * w[1]])
        >>> w0 = jnp.full((2,), 0.1)
        >>> traj = gradient_descent(loss, w0, learning_rate=0.01, num_steps=2000, save_every=100,
        ...                         modes=modes, targets=jnp.ones(1), time_scale=0.5)
        >>> traj.loss.shape, traj.modes.shape, traj.learning_steps.shape
        ((21,), (21, 1), (1, 3))
        >>> int(traj.status), int(traj.steps), int(traj.evaluations)
        (0, 2000, 2001)
        >>> t_half = float(traj.learning_times[0, 1])  # exact: ln(99) = 4.595...
        >>> abs(t_half - 4.595) < 0.05
        True
        >>> lrs = jnp.array([0.01, 0.02, 1e3])   # sweep: vmap it yourself
        >>> runs = jax.vmap(lambda lr: gradient_descent(loss, w0, learning_rate=lr,
        ...                 num_steps=2000, save_every=100))(lrs)
        >>> runs.status.tolist()  # the huge rate diverges; the other lanes are unaffected
        [0, 0, 3]
    """
    num_steps = _check_positive_int("num_steps", num_steps)
    save_every = _check_positive_int("save_every", save_every)
    if num_steps % save_every != 0:
        raise ValueError(
            f"num_steps ({num_steps}) must be a multiple of save_every ({save_every})"
        )
    _check_positive_scalar("learning_rate", learning_rate)
    _check_positive_scalar("loss_bound", loss_bound, allow_inf=True)
    _check_positive_scalar("time_scale", time_scale)
    check_fractions(fractions)
    if stationary_tol is not None:
        _check_positive_scalar("stationary_tol", stationary_tol)
    if not isinstance(fractions, jax.Array):
        fractions = np.asarray(fractions, dtype=np.float64).reshape(-1)
    if targets is not None and modes is None:
        raise ValueError("targets were given without modes: pass modes(params, args) too")

    dtype = _float_dtype(params0)
    return _run_jit(
        _python_numbers_as_arrays(params0),
        jnp.asarray(learning_rate).astype(dtype),
        _python_numbers_as_arrays(args),
        None if targets is None else jnp.asarray(targets),
        jnp.asarray(fractions).astype(dtype),
        jnp.asarray(loss_bound).astype(dtype),
        jnp.asarray(time_scale).astype(dtype),
        None if stationary_tol is None else jnp.asarray(stationary_tol).astype(dtype),
        loss_fn=loss,
        modes_fn=_no_modes if modes is None else modes,
        optimizer=optax.sgd if optimizer is None else optimizer,
        num_steps=num_steps,
        save_every=save_every,
    )
