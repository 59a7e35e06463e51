"""How a problem is trained: :class:`Flow` (gradient flow, diffrax) and :class:`Descent`
(gradient descent or any optax optimizer). A method is a value, like a diffrax solver: it holds
only *how* to compute; :func:`jaxflow.solve` gives it the problem and the request.

Switching between the two changes only this argument: both read the same
:class:`~jaxflow.engine.problem.Problem` and :class:`~jaxflow.engine.request.Request` and return
the same :class:`~jaxflow.engine.trajectory.Trajectory` fields with the same status codes
(descent adds its loss trace, learning steps and divergence step).

Example (one problem, one request, two methods; the depth-2 factor model learns ``1`` from
``1e-2``, half of it at ``t = ln(99) / 2`` on the reference axis of :func:`toy.factor_time_scale`):
    >>> import jax.numpy as jnp
    >>> import jaxflow
    >>> from jaxflow.models import toy
    >>> targets = jnp.array([1.0])
    >>> problem = jaxflow.Problem(loss=toy.factor_loss, args=targets, modes=toy.factor_values,
    ...                           params0=toy.factor_init(None, 1e-2, depth=2, num_coords=1),
    ...                           targets=targets, time_scale=toy.factor_time_scale(2))
    >>> request = jaxflow.Request(fractions=(0.5,))
    >>> gf = jaxflow.solve(problem, jaxflow.Flow(), request)
    >>> gd = jaxflow.solve(problem, jaxflow.Descent(learning_rate=1e-3), request)
    >>> exact = float(jnp.log(99.0))
    >>> round(float(gf.learning_times[0, 0]) / exact, 6), round(float(gd.learning_times[0, 0]) / exact, 3)
    (1.0, 1.0)
    >>> jaxflow.status.name(gf.status), jaxflow.status.name(gd.status)
    ('ok', 'ok')
"""

from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxflow.engine import flow as _flow
from jaxflow.engine.clock import Speed, check_speed
from jaxflow.engine.descent_loop import descent_loop_jit
from jaxflow.engine.problem import Problem, numbers_as_arrays
from jaxflow.engine.request import Request, as_fraction_array
from jaxflow.engine.trajectory import DescentTrajectory, Trajectory

__all__ = ["Descent", "Flow"]


def _float_dtype(params0):
    """The floating dtype that the scalars of a run take: that of the parameters (JAX's default
    float where they mix dtypes or hold none)."""
    dtypes = {jnp.result_type(leaf) for leaf in jax.tree.leaves(params0)}
    floats = [d for d in dtypes if jnp.issubdtype(d, jnp.floating)]
    return floats[0] if len(floats) == 1 else jnp.result_type(float)


def _check_positive(name: str, value, *, allow_inf: bool = False) -> None:
    if isinstance(value, jax.core.Tracer):
        return
    upper = "inf]" if allow_inf else "inf)"
    if np.ndim(value) != 0:
        raise ValueError(f"{name} must be a scalar in (0, {upper} (for many values, jax.vmap "
                         f"over them or use batched=True); got shape {np.shape(value)}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = np.nan
    if not (number > 0 and (allow_inf or number < np.inf)):
        raise ValueError(f"{name} must be a number in (0, {upper}, got {value!r}")


def _asks_learning_times(problem: Problem, request: Request) -> bool:
    """Whether the request asks for any learning time (eager; traced targets count as asking)."""
    targets = problem.targets
    if targets is None or not np.shape(request.fractions)[0] or not np.shape(targets)[0]:
        return False
    if request.required is None:
        return True
    try:  # a mask made under a trace (a sweep's point function) counts as asking
        return bool(np.any(np.asarray(request.required)))
    except jax.errors.JAXTypeError:
        return True


class Flow(eqx.Module):
    """Gradient flow, integrated by an adaptive diffrax solver (:mod:`jaxflow.engine.flow`).

    Attributes:
        solver: an adaptive diffrax solver (default ``diffrax.Tsit5()``).
        rtol, atol: the step controller's tolerances (on the state and the flow time).
        clock: the clock (``"arclength"``, ``"relative"``, ``"plain"`` or a callable speed). Default:
            the problem's own (``Problem.clock``), else ``"relative"`` for a loss and
            ``"arclength"`` for a vector field or with ``log_params``.
        refine: polish each learning time by one exact solver step (default).
        dt0: the first step in the clock's time (default: 0.05 on a reparametrized clock,
            whose time counts e-folds of the state; automatic in plain time).
        controller: a ``diffrax.PIDController`` replacing the one built from ``rtol``/``atol``.
        log_params: integrate ``ln(params)`` (positive parameters only): the steps per mode then
            no longer grow with ``ln(1 / scale)``.

    Example:
        >>> import jaxflow
        >>> jaxflow.Flow(rtol=0.0)
        Traceback (most recent call last):
        ...
        ValueError: rtol must be a number in (0, inf), got 0.0
    """

    solver: diffrax.AbstractAdaptiveSolver | None = None
    rtol: float = 1e-10
    atol: float = 1e-10
    clock: Speed | None = None
    refine: bool = eqx.field(static=True, default=True)
    dt0: float | None = None
    controller: diffrax.PIDController | None = None
    log_params: bool = eqx.field(static=True, default=False)

    default_max_steps = 4096

    def __check_init__(self):
        _check_positive("rtol", self.rtol)
        _check_positive("atol", self.atol)
        if self.clock is not None:
            check_speed(self.clock)

    def run(self, problem: Problem, request: Request) -> Trajectory:
        """Solve one problem (see :func:`jaxflow.solve`)."""
        dtype = _float_dtype(problem.params0)
        num_modes = None if problem.targets is not None else problem.num_modes()
        scale = problem.time_scale
        horizon = request.stop_horizon()
        asks = _asks_learning_times(problem, request)
        save_times = request.save_times
        kwargs = dict(
            modes=problem.modes_fn, targets=problem.targets_or_zeros(num_modes, dtype),
            fractions=request.fractions,
            save_times=None if save_times is None else jnp.asarray(save_times, dtype) / scale,
            t_end=None if horizon is None else jnp.asarray(horizon, dtype) / scale,
            solver=self.solver, rtol=self.rtol, atol=self.atol,
            max_steps=request.max_steps or self.default_max_steps, refine=self.refine,
            stationary_tol=request.resolved_stationary_tol(asks), required=request.required,
            dt0=self.dt0, controller=self.controller,
        )
        clock = self.clock if self.clock is not None else problem.clock
        if problem.has_loss:
            if clock is None:
                clock = "arclength" if self.log_params else "relative"
            traj = _flow.gradient_flow(problem.loss, problem.params0, problem.args,
                                       log_params=self.log_params, time=clock, **kwargs)
        else:
            if self.log_params:
                raise ValueError("Flow(log_params=True) needs a Problem with a loss; this one "
                                 "has a vector_field (give its state in logarithms yourself)")
            traj = _flow.solve(problem.vector_field, problem.params0, problem.args,
                               time="arclength" if clock is None else clock, **kwargs)
        return _rescale_times(traj, scale)


def _rescale_times(traj: Trajectory, scale) -> Trajectory:
    """The flow's own times, read on the problem's axis (``time_scale`` times them)."""
    if not isinstance(scale, jax.core.Tracer) and float(scale) == 1.0:
        return traj
    return eqx.tree_at(
        lambda t: (t.times, t.learning_times, t.final_time), traj,
        (traj.times * scale, traj.learning_times * scale, traj.final_time * scale),
    )


class _Constant(eqx.Module):
    """An optax optimizer given as a value, as the factory ``learning_rate -> optimizer``."""

    optimizer: Any = eqx.field(static=True)

    def __call__(self, learning_rate):
        return self.optimizer


class Descent(eqx.Module):
    """Gradient descent (or any optax optimizer), read on the flow time ``t = time_scale *
    learning_rate * step`` (:mod:`jaxflow.engine.descent_loop`).

    Attributes:
        learning_rate: the step size ``eta > 0`` (a traced array inside: ``jax.vmap`` over rates
            never recompiles). It also sets the time axis.
        optimizer: ``None`` (plain ``optax.sgd``), a factory ``learning_rate ->
            optax.GradientTransformation`` (e.g. ``lambda lr: optax.sgd(lr, momentum=0.9)``, or
            ``optax.inject_hyperparams(optax.sgd)``), or an ``optax.GradientTransformation``
            (its own rate then; ``learning_rate`` still sets the time axis).
        loss_bound: a step whose loss exceeds this (or is not finite) ends the run ``diverged``;
            in ``(0, inf]``.
        check_every: steps between stationarity checks (each costs one Hessian-vector product;
            a run may take up to ``check_every - 1`` masked steps past its stop, not counted).
        sharpness: Lanczos steps ``k`` for the top Hessian eigenvalue at every save
            (``trajectory.sharpness``; :mod:`jaxflow.engine.sharpness`, warm-started from the
            previous save); 0 (default) measures nothing. Each save then costs ``k``
            Hessian-vector products: the request's save times are the stride.
        observe: ``f(params, args) -> (O,)`` recorded at every save (``trajectory.observed``),
            e.g. a closed form of the model; None: nothing.

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxflow
        >>> problem = jaxflow.Problem(vector_field=lambda y, args: -y, params0=jnp.ones(1))
        >>> jaxflow.solve(problem, jaxflow.Descent(learning_rate=0.1), jaxflow.Request(horizon=1.0))
        Traceback (most recent call last):
        ...
        ValueError: Descent needs a Problem with a loss; this one has only a vector_field (solve it with jaxflow.Flow)
    """

    learning_rate: Any
    optimizer: Callable | optax.GradientTransformation | None = eqx.field(static=True, default=None)
    loss_bound: Any = 1e12
    check_every: int = eqx.field(static=True, default=100)
    sharpness: int = eqx.field(static=True, default=0)
    observe: Callable | None = eqx.field(static=True, default=None)

    default_max_steps = 100_000

    def __check_init__(self):
        _check_positive("learning_rate", self.learning_rate)
        _check_positive("loss_bound", self.loss_bound, allow_inf=True)
        every = self.check_every
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise ValueError(f"check_every must be an integer >= 1, got {every!r}")
        k = self.sharpness
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ValueError(f"sharpness (Lanczos steps) must be an integer >= 0, got {k!r}")

    def optimizer_factory(self) -> Callable:
        if self.optimizer is None:
            return optax.sgd
        if isinstance(self.optimizer, optax.GradientTransformation):
            return _Constant(self.optimizer)
        return self.optimizer

    def run(self, problem: Problem, request: Request) -> DescentTrajectory:
        """Run one problem (see :func:`jaxflow.solve`)."""
        if not problem.has_loss:
            raise ValueError("Descent needs a Problem with a loss; this one has only a "
                             "vector_field (solve it with jaxflow.Flow)")
        dtype = _float_dtype(problem.params0)
        fractions = as_fraction_array(request.fractions, dtype)
        horizon = request.stop_horizon()
        save_times = () if request.save_times is None else request.save_times
        tol = request.resolved_stationary_tol(_asks_learning_times(problem, request))
        as_array = lambda x: jnp.asarray(x, dtype)
        targets = problem.targets
        required = request.required
        return descent_loop_jit(
            numbers_as_arrays(problem.params0), as_array(self.learning_rate),
            numbers_as_arrays(problem.args), None if targets is None else as_array(targets),
            fractions, None if required is None else jnp.asarray(required, bool),
            as_array(save_times).reshape(-1), as_array(jnp.inf if horizon is None else horizon),
            as_array(self.loss_bound), as_array(problem.time_scale),
            None if tol is None else as_array(tol),
            loss_fn=problem.loss, modes_fn=problem.modes_fn,
            optimizer=self.optimizer_factory(), max_steps=request.max_steps or self.default_max_steps,
            check_every=self.check_every, sharpness_iterations=int(self.sharpness),
            observe=self.observe,
        )
