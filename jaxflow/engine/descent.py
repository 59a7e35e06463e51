"""Gradient descent through optax: :func:`gradient_descent`, a thin classic entry point.

Train a problem by gradient descent with ``jaxflow.solve(problem,
jaxflow.Descent(learning_rate), request)`` (:func:`jaxflow.solve`); the engine lives in
:mod:`jaxflow.engine.descent_loop`. :func:`gradient_descent`, kept for scripts written against
it, states a fixed-length run in steps (``num_steps``, ``save_every``), translates it into a
:class:`~jaxflow.engine.problem.Problem`, a :class:`~jaxflow.engine.methods.Descent` and a
:class:`~jaxflow.engine.request.Request`, and calls :func:`jaxflow.solve`.

Gradient descent with rate ``eta`` is the explicit Euler scheme of the gradient flow
``d params/dt = -grad loss(params)``: after ``k`` steps it sits at flow time ``t = eta * k``
(times ``time_scale``), up to an ``O(eta)`` error, so both are read on one axis.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxflow.engine.contract import solve
from jaxflow.engine.methods import Descent
from jaxflow.engine.problem import Problem
from jaxflow.engine.request import Request
from jaxflow.engine.trajectory import DescentTrajectory

__all__ = ["DescentTrajectory", "gradient_descent"]


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int >= 1 (a Python int: it is static); got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be an int >= 1; got {value!r}")
    return int(value)


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
    that axis, times ``time_scale``. It is ``jaxflow.solve(Problem(loss, ...), Descent(learning_rate,
    check_every=save_every), Request(save_times=<every save_every steps>, horizon=<num_steps>,
    required=<none>))``: one summary (loss and modes) is saved every ``save_every`` steps, the
    initial point included; the learning of each mode is tracked after *every* step; and a run
    that takes its ``num_steps`` steps is ``ok`` whatever it learned (nothing is required). New
    code calls :func:`jaxflow.solve` itself, which says the same in flow time.

    One run per call: to sweep learning rates, initializations or targets, vmap it yourself,
    e.g. ``jax.vmap(lambda lr: gradient_descent(loss, w0, learning_rate=lr, num_steps=1000))(lrs)``.
    It also works under ``jax.jit``. The swept values are traced arrays, so calling again with
    new values of the same shapes and dtypes never recompiles (``loss``, ``modes``,
    ``optimizer``, ``num_steps`` and ``save_every`` are static: pass the same function objects
    or equal ``eqx.Module`` callables).

    A run stops updating (its parameters and optimizer state are frozen at the last good state,
    via ``jnp.where``) when a step would make the loss non-finite or larger than ``loss_bound``
    (status ``DIVERGED``) or the parameters non-finite (status ``NONFINITE``); ``diverged_step``
    is the step of that rejected state. The saves after it are NaN (loss and modes; as the
    flow's, nothing looks computed that was not), while ``final_state``, ``final_modes`` and
    ``final_time`` hold the last good state; other lanes of a vmap are unaffected.

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
            ``save_every`` steps where it is stationary (the one rule of every method,
            :mod:`jaxflow.engine.stationarity`: less than ``stationary_tol * max(1,
            max|params|)`` left to travel; ``steps`` says where), and a run that spends the
            budget first ends with status ``max_steps``. Saves past a stationary stop repeat
            the final state. Under ``jax.vmap`` the batch runs until its last lane stops;
            stopped lanes stay frozen.

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
    if targets is not None and modes is None:
        raise ValueError("targets were given without modes: pass modes(params, args) too")
    method = Descent(learning_rate=learning_rate, optimizer=optimizer, loss_bound=loss_bound,
                     check_every=save_every)
    problem = Problem(loss=loss, params0=params0, args=args, modes=modes, targets=targets,
                      time_scale=time_scale)
    # The saves and the horizon on the flow-time axis map back to exact step counts
    # (round(k * save_every * dt / dt)); a run told to stop when stationary has no horizon, so
    # spending num_steps first is max_steps.
    dt = jnp.asarray(learning_rate) * jnp.asarray(time_scale)
    save_times = dt * jnp.arange(0, num_steps + 1, save_every, dtype=dt.dtype)
    request = Request(
        save_times=save_times, fractions=fractions,
        horizon=dt * float(num_steps) if stationary_tol is None else jnp.inf,
        stationary_tol=stationary_tol, max_steps=num_steps,
        required=np.zeros((1, 1), dtype=bool),
    )
    return solve(problem, method, request)
