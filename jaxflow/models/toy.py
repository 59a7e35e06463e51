"""The depth-N toy model of Gissin et al. (2020), docs/science/toy-model.md.

Two views of the same model:

* **Reduced flow.** One value per coordinate, ``sigma_i``, following the decoupled ODEs

      d sigma/dt = c * sigma^(2 - 2/N) * (sigma* - sigma)

  for any real depth ``N >= 1`` or ``N = inf`` (then ``d sigma/dt = c sigma^2 (sigma* - sigma)``).
  jaxflow integrates it in the log state ``x = ln sigma``, where the long plateau of a tiny
  initialization is a straight line and relative accuracy comes for free:

      dx/dt = c * exp((1 - 2/N) x) * (sigma* - exp(x)).

  This vector field is written by hand: it *is* the object of study (and the factor-level model
  below checks it through ``jax.grad``).

* **Factor-level model.** ``N`` distinct scalar factors per coordinate, ``sigma_i = prod_j w_ij``
  (with signed targets: ``sigma_i = prod_j w+_ij - prod_j w-_ij``), loss
  ``L(w) = 1/(2 N^2) sum_i (sigma*_i - sigma_i)^2`` (the project's loss (docs/science/toy-model.md)). Its gradient flow comes
  from ``jax.grad``. From a balanced start (every factor ``sigma0^(1/N)``) every factor stays
  equal and ``sigma_i`` follows the reduced flow with time scale ``c = 1/N`` (docs/science/toy-model.md: a shared
  weight gives ``c = 1``, N distinct factors with loss ``1/2||.||^2`` give ``c = N``; the extra
  ``1/N^2`` here gives ``1/N``). See :func:`factor_time_scale`.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxflow.models import toy
    >>> x = jnp.log(jnp.array([1e-3, 1e-3]))
    >>> dx = toy.reduced_vector_field(x, toy.ToyArgs(depth=3.0, targets=jnp.array([2.0, 1.0])))
    >>> [round(float(v), 4) for v in dx]
    [0.1999, 0.0999]
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from jaxflow.engine.coordinatewise import Coordinatewise
from jaxflow.models import _gaussian

__all__ = [
    "ToyArgs", "args_domain", "factor_init", "factor_loss", "factor_time_scale", "factor_values",
    "log_time_unit", "reduced_init", "reduced_modes", "reduced_speed", "reduced_vector_field",
]


# exp() of more than ~709 overflows float64. A trial stage of an explicit solver can wander far
# outside the true solution's range (Tsit5's stages reach ~30 step lengths away); an infinite
# stage makes diffrax's PID controller produce a NaN step and reject every later step.
# Clamping keeps the field finite for every finite state and leaves it unchanged on every state
# a trajectory can visit (sigma0 <= sigma <= sigma* up to the overshoot margin below).
_MAX_EXPONENT = 600.0
_OVERSHOOT = 10.0  # states are clamped at ln(max sigma*) + 10, i.e. sigma <= 2.2e4 sigma*


class ToyArgs(NamedTuple):
    """Arguments of the reduced toy flow.

    Attributes:
        depth: real depth ``N >= 1`` (``jnp.inf`` allowed); a traced scalar, so sweeping it
            never recompiles.
        targets: ``sigma*_i > 0``, shape ``(d,)``.
        time_scale: the constant ``c`` multiplying the vector field (1 = the project's convention).
        log_time_unit: ``ln U``: the flow runs in units of ``U`` time units (``t = U t_solve``),
            so that the solver's clock stays O(1) when the real plateau lasts up to
            ``e^10000``. :func:`log_time_unit` gives the natural unit, the plateau's own
            length scale; 0 (default) is plain time.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxflow.models import toy
        >>> args = toy.ToyArgs(depth=jnp.inf, targets=jnp.array([2.0, 1.0]))
        >>> float(args.time_scale)
        1.0
    """

    depth: Float[ArrayLike, ""]
    targets: Float[ArrayLike, " d"]
    time_scale: Float[ArrayLike, ""] = 1.0
    log_time_unit: Float[ArrayLike, ""] = 0.0


# The coordinates of the reduced flow are independent: split the targets, share the rest.
_COORDINATE_AXES = ToyArgs(depth=None, targets=0, time_scale=None, log_time_unit=None)


def _growth_exponent(depth):
    # 1 - 2/N, which is 1 for N = inf (2/inf = 0 in IEEE arithmetic, so no special case).
    return 1.0 - 2.0 / depth


def log_time_unit(depth: Float[ArrayLike, ""], log_scale: Float[ArrayLike, ""]) -> Float[Array, ""]:
    """``ln U`` of the plateau's time scale ``U = sigma0^-(1 - 2/N)`` (1 for N <= 2).

    For N > 2 a start ``sigma0`` spends about ``U / (N - 2)`` time units on its plateau; measured
    in units of ``U`` the flow's times are O(1) at every scale, and stay finite where the real
    times overflow float64 (sigma0 = e^-10000 at depth 3: U = e^3333). For N <= 2 the plateau is
    at most logarithmic and the unit is 1. Pass it as :attr:`ToyArgs.log_time_unit`; real times
    are ``exp(log_time_unit) * t``.

    >>> from jaxflow.models import toy
    >>> round(float(toy.log_time_unit(3.0, -3000.0)), 9), float(toy.log_time_unit(2.0, -3000.0))
    (1000.0, 0.0)
    """
    return jnp.maximum(-_growth_exponent(jnp.asarray(depth, dtype=float)) * log_scale, 0.0)


def _log_rate(log_sigma, args: ToyArgs):
    """``ln(c U) + (1 - 2/N) x``, the log of the field's growth factor, and the clamped state."""
    depth = jnp.asarray(args.depth)
    targets = jnp.asarray(args.targets)
    log_sigma = jnp.minimum(log_sigma, jnp.log(jnp.max(jnp.abs(targets))) + _OVERSHOOT)
    exponent = jnp.log(jnp.asarray(args.time_scale, dtype=float)) + args.log_time_unit
    exponent = jnp.minimum(exponent + _growth_exponent(depth) * log_sigma, _MAX_EXPONENT)
    return exponent, log_sigma, targets


def _reduced_vector_field(log_sigma: Float[Array, " d"], args: ToyArgs) -> Float[Array, " d"]:
    """d(ln sigma)/dt of the reduced toy flow, for every coordinate.

    Args:
        log_sigma: ``x = ln sigma``, shape ``(d,)``.
        args: :class:`ToyArgs` (depth, targets, time scale).

    Returns:
        ``c * exp((1 - 2/N) x) * (sigma* - exp(x))``, finite for every finite ``x``.

    Example (depth 2: ``d ln sigma/dt = sigma* - sigma``):
        >>> import jax.numpy as jnp
        >>> from jaxflow.models import toy
        >>> args = toy.ToyArgs(depth=2.0, targets=jnp.array([1.0]))
        >>> [round(float(v), 6) for v in toy.reduced_vector_field(jnp.log(jnp.array([0.25])), args)]
        [0.75]
    """
    exponent, log_sigma, targets = _log_rate(log_sigma, args)
    return jnp.exp(exponent) * (targets - jnp.exp(log_sigma))


def args_domain(args: ToyArgs) -> Array:
    """Whether ``args`` lie in the reduced model's domain: depth ``N >= 1`` (``inf`` allowed),
    targets ``sigma* > 0`` finite, time scale ``c > 0`` finite.

    Concrete values outside it raise a ``ValueError`` naming the argument and its range;
    traced ones cannot raise, and :func:`jaxflow.solve` gives their lane status ``invalid``.
    The flow calls it on every solve of :data:`reduced_vector_field`.

    >>> import jax.numpy as jnp
    >>> from jaxflow.models import toy
    >>> bool(toy.args_domain(toy.ToyArgs(depth=jnp.inf, targets=jnp.array([2.0, 1.0]))))
    True
    >>> toy.args_domain(toy.ToyArgs(depth=0.5, targets=jnp.array([1.0])))
    Traceback (most recent call last):
    ...
    ValueError: depth must be >= 1 (inf allowed), got 0.5
    """
    checks = (
        ("depth", "must be >= 1 (inf allowed)", args.depth, lambda v: v >= 1.0),
        ("targets", "must be > 0 and finite", args.targets,
         lambda v: (v > 0.0) & (v < jnp.inf)),
        ("time_scale", "must be > 0 and finite", args.time_scale,
         lambda v: (v > 0.0) & (v < jnp.inf)),
    )
    valid = jnp.asarray(True)
    for name, allowed, value, ok in checks:
        if not isinstance(value, jax.core.Tracer):
            good = ok(np.asarray(value, dtype=float))  # NaN fails every comparison
            if not np.all(good):
                bad = np.asarray(value, dtype=float)[~good] if np.ndim(good) else value
                raise ValueError(f"{name} {allowed}, got {float(np.ravel(bad)[0])}")
        valid = valid & jnp.all(ok(jnp.asarray(value, dtype=float)))
    return valid


reduced_vector_field = Coordinatewise(_reduced_vector_field, args_axes=_COORDINATE_AXES,
                                      domain=args_domain)


def reduced_speed(log_sigma: Float[Array, " d"], velocity, args: ToyArgs) -> Float[Array, ""]:
    """The reduced flow's clock, given as ``jaxflow.Problem(..., clock=reduced_speed)``.

    ``s = max_i c exp((1 - 2/N) x_i) sigma*_i sqrt|1 - sigma_i/sigma*_i|``: the size of the
    vector field with its vanishing factor ``(1 - sigma/sigma*)`` replaced by its square root.

    * On the plateau (sigma << sigma*) it equals the log-arclength speed ``|dx/dt|``: every
      coordinate moves about one unit of ``ln sigma`` per unit of ``tau``, so the step count does
      not depend on how small sigma0 is.
    * Near the target, plain log-arclength runs into ``sigma*`` at unit speed (a kink that costs
      rejected steps), and dropping the factor altogether gives a slow exponential approach;
      the square root makes the approach quadratic in ``tau``, which an explicit Runge-Kutta
      method integrates in a few steps.

    Measured when it was chosen, on deep lanes run to 0.99 sigma*: about as many steps as
    log-arclength, with a narrower spread of steps across lanes (better lockstep) and a smaller
    learning-time error at a looser rtol (``benchmarks/learning_time_accuracy.py`` measures the
    error of today's flow). Uses the vector field's form only, never its solution.

    Example (on the plateau it is the speed of ``ln sigma``, here ``sigma0^(1/3) * 2``):
        >>> import jax.numpy as jnp
        >>> from jaxflow.models import toy
        >>> args = toy.ToyArgs(depth=3.0, targets=jnp.array([2.0, 1.0]))
        >>> round(float(toy.reduced_speed(toy.reduced_init(1e-6, 2), None, args)), 6)
        0.02
    """
    del velocity
    exponent, log_sigma, targets = _log_rate(log_sigma, args)
    gap = jnp.sqrt(jnp.abs(1.0 - jnp.exp(log_sigma) / targets))
    return jnp.max(jnp.exp(exponent) * jnp.abs(targets) * gap)


def reduced_modes(log_sigma: Float[Array, " d"], args: ToyArgs) -> Float[Array, " d"]:
    """The tracked values of the reduced flow: ``sigma_i = exp(x_i)``.

    >>> import jax.numpy as jnp
    >>> from jaxflow.models import toy
    >>> [float(v) for v in toy.reduced_modes(jnp.log(jnp.array([0.5, 2.0])), None)]
    [0.5, 2.0]
    """
    del args
    return jnp.exp(log_sigma)


def reduced_init(
    scale: Float[ArrayLike, ""], num_coords: int, *, log: bool = False
) -> Float[Array, " d"]:
    """Balanced identical start ``sigma_i(0) = scale`` in the log state ``x = ln scale``.

    Args:
        scale: sigma0 > 0, or with ``log=True`` its logarithm ``ln sigma0`` (any real: the
            state is the logarithm, so sigma0 = e^-10000 is as easy as 1e-6).
        num_coords: number of coordinates ``d``.
        log: whether ``scale`` is given as ``ln sigma0``.

    >>> from jaxflow.models import toy
    >>> [round(float(x), 4) for x in toy.reduced_init(1e-6, 2)]
    [-13.8155, -13.8155]
    >>> [float(x) for x in toy.reduced_init(-1e4, 2, log=True)]
    [-10000.0, -10000.0]
    """
    _check_scale(scale, log=log)
    scale = jnp.asarray(scale, dtype=float)
    return jnp.full((num_coords,), scale if log else jnp.log(scale))


def _check_scale(scale, *, log: bool = False) -> None:
    """The model's domain for the initial scale: ``0 < sigma0 < 1`` and finite (with ``log``:
    ``ln sigma0 < 0`` and finite). Traced values are not checked (they cannot be, under jit)."""
    if isinstance(scale, jax.core.Tracer):
        return
    values = np.asarray(scale, dtype=float)
    if log:
        if not np.all(np.isfinite(values) & (values < 0)):
            raise ValueError(f"scale (ln sigma0, log=True) must be finite and < 0, got {scale!r}")
    elif not np.all(np.isfinite(values) & (values > 0) & (values < 1)):
        raise ValueError(f"scale (sigma0) must be in (0, 1) and finite, got {scale!r}")


# ---------------------------------------------------------------------------------------------
# Factor-level model
# ---------------------------------------------------------------------------------------------


def factor_time_scale(depth: int) -> float:
    """Time scale ``c`` of the factor-level model's balanced flow against the reduced flow.

    With N distinct factors and the project's loss (docs/science/toy-model.md) ``1/(2N^2) ||sigma* - sigma||^2``, a balanced
    start follows ``d sigma/dt = (1/N) sigma^(2-2/N) (sigma* - sigma)``: ``c = 1/N``.

    >>> factor_time_scale(4)
    0.25
    """
    return 1.0 / depth


def factor_init(
    key: jax.Array | None,
    scale: Float[ArrayLike, ""],
    depth: int,
    num_coords: int,
    *,
    balanced: bool = True,
    signed: bool = False,
) -> dict[str, Float[Array, "d N"]]:
    """Initial factors of the factor-level model.

    Args:
        key: PRNG key for the unbalanced (random) start; ignored when ``balanced``.
        scale: ``sigma0``. Balanced: every factor equals ``sigma0^(1/N)``, so ``sigma_i(0) =
            sigma0`` (or 0 with ``signed``, where ``w+ = w-``). Unbalanced: i.i.d. Gaussian
            factors with standard deviation ``sigma0^(1/N)``.
        depth: number of factors ``N`` per coordinate (a static int: it fixes the shapes).
        num_coords: number of coordinates ``d``.
        balanced: balanced identical start (True) or Gaussian random start (False).
        signed: add a second product ``w-`` so that negative targets can be reached.

    Returns:
        ``{"plus": (d, N)}``, and ``"minus"`` when ``signed``.

    >>> p = factor_init(None, 1e-4, depth=4, num_coords=2)
    >>> [round(float(v), 8) for v in factor_values(p)]
    [0.0001, 0.0001]
    """
    if int(depth) != depth or depth < 1:
        raise ValueError(f"depth must be an integer >= 1 for the factor-level model, got {depth}")
    _check_scale(scale)
    factor = jnp.asarray(scale, dtype=float) ** (1.0 / depth)
    names = ("plus", "minus") if signed else ("plus",)
    if balanced:
        return {n: jnp.full((num_coords, depth), factor) for n in names}
    if key is None:
        raise ValueError("key is required for the unbalanced (random Gaussian) initialization")
    keys = jax.random.split(key, len(names))
    return {n: factor * _gaussian.normal(k, (num_coords, depth)) for n, k in zip(names, keys)}


def factor_values(params: dict[str, Float[Array, "d N"]], args=None) -> Float[Array, " d"]:
    """``sigma_i = prod_j w+_ij (- prod_j w-_ij)``: the modes of the factor-level model.

    >>> from jaxflow.models import toy
    >>> params = toy.factor_init(None, 1e-2, depth=2, num_coords=2, signed=True)   # w+ = w-
    >>> [float(v) for v in toy.factor_values(params)]
    [0.0, 0.0]
    """
    del args
    values = jnp.prod(params["plus"], axis=-1)
    if "minus" in params:
        values = values - jnp.prod(params["minus"], axis=-1)
    return values


def _factor_loss(params: dict[str, Float[Array, "d N"]], targets: Float[ArrayLike, " d"]):
    """The project's loss ``1/(2 N^2) sum_i (sigma*_i - sigma_i)^2`` (c = 1/N for the flow).

    >>> import jax.numpy as jnp
    >>> from jaxflow.models import toy
    >>> params = toy.factor_init(None, 0.25, depth=2, num_coords=1)   # sigma = 0.25
    >>> float(toy.factor_loss(params, jnp.array([1.0])))              # 0.75^2 / 8
    0.0703125
    """
    depth = params["plus"].shape[-1]
    residual = jnp.asarray(targets) - factor_values(params)
    return 0.5 * jnp.sum(residual**2) / depth**2


# A sum over coordinates of terms that read one coordinate's factors and target each: the
# factor-level flow of every coordinate is its own (see jaxflow.engine.coordinatewise).
factor_loss = Coordinatewise(_factor_loss, args_axes=0)
