"""How the toy model's oracles take their arguments: checked, broadcast, padded into lanes.

Part of :mod:`jaxflow.oracles.theory` (its docstring, "Invalid input", says the contract):
concrete arguments out of range raise ``ValueError`` naming the argument; traced ones cannot, so
their invalid lanes become NaN and are replaced by harmless values (:func:`_clean`) before any
arithmetic. Eager calls are flattened and padded to 16, 64, 256, ... lanes (:func:`_dispatch`),
so that each jitted core compiles once per size class rather than once per shape.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from jaxflow import _programs

# What the sibling modules (and the public face) import from this one.
__all__ = [
    "_as_f64", "_check_below_target", "_check_depth", "_check_pair", "_check_target", "_clean",
    "_dispatch", "_require",
]


def _is_traced(*args) -> bool:
    return any(isinstance(a, jax.core.Tracer) for a in args)


def _require(name: str, allowed: str, ok, *args):
    """The lanes where ``ok(*args)`` holds; raise if the arguments are concrete and one fails.

    ``ok`` uses comparisons only, so NaN always fails, and it works on numpy and jax arrays.
    The first of ``args`` is the argument named in the message.
    """
    good = ok(*args)
    if not _is_traced(*args) and not np.all(good):
        bad = np.broadcast_to(args[0], np.shape(good))[~good].ravel()[0]
        raise ValueError(f"{name} must be {allowed}; got {bad!r}")
    return good


def _check_depth(depth):
    return _require("depth", "in [1, inf]", lambda n: n >= 1.0, depth)


def _check_target(sigma_star):
    return _require("sigma_star", "in (0, inf)", lambda s: (s > 0.0) & (s < np.inf), sigma_star)


def _check_below_target(name, sigma, sigma_star):
    return _require(name, "in (0, sigma_star)", lambda s, a: (s > 0.0) & (s < a), sigma, sigma_star)


def _check_pair(ratio, start, finish):
    return (
        _require("ratio", "> 1 and finite", lambda r: (r > 1.0) & (r < np.inf), ratio)
        & _require("start", "in (0, 1)", lambda s: (s > 0.0) & (s < 1.0), start)
        & _require("finish", "in (start, 1)", lambda f, s: (f > s) & (f < 1.0), finish, start)
    )


def _as_f64(**named) -> list:
    """float64 arrays of one broadcast shape: numpy when all are concrete (validation then
    costs no compilation), jax otherwise. Wrong kinds (strings, complex, None) and shapes that
    do not broadcast raise, naming the arguments; so do empty arrays."""
    if _is_traced(*named.values()):
        return jnp.broadcast_arrays(*(jnp.asarray(a, dtype=jnp.float64) for a in named.values()))
    arrays = []
    for name, value in named.items():
        try:
            arr = np.asarray(value)
        except (TypeError, ValueError):
            arr = np.asarray(None)
        if arr.dtype.kind not in "iuf":
            raise TypeError(f"{name} must be a real number or an array of them; got {value!r}")
        if arr.size == 0:
            raise ValueError(f"{name} must not be empty; got {value!r}")
        arrays.append(arr.astype(np.float64))
    try:
        return np.broadcast_arrays(*arrays)
    except ValueError:
        shapes = ", ".join(f"{n} {a.shape}" for n, a in zip(named, arrays))
        raise ValueError(f"{', '.join(named)} must broadcast to one shape; got {shapes}") from None


def _dispatch(core, valid, *args) -> Float[Array, "..."]:
    """Run a jitted core. Concrete calls go flat and padded to 16, 64, 256, ... lanes, so that
    a notebook (or a test suite) compiles once per size class rather than once per shape; the
    padding lanes are invalid, hence cleaned, and dropped. Traced calls pass straight through.
    """
    if _is_traced(valid, *args):
        return core(valid, *args)
    shape = np.shape(valid)
    size = int(np.prod(shape))
    lanes = 16
    while lanes < size:
        lanes *= 4

    def pad(a, fill):
        return np.pad(np.ravel(a), (0, lanes - size), constant_values=fill)

    padded = (pad(valid, False), *(pad(a, 1.0) for a in args))
    # compiled once per size class, or loaded from the executable cache (no trace, no
    # lowering: the phase diagram's thresholds took 0.5 s of a warm run to trace and lower)
    program = _programs.executable(core, padded, name=f"theory.{core.__name__}", built_from=(),
                                   options=_programs.compiler_options(jax.devices()))
    out = program(*padded)
    return (out if size == lanes else out[:size]).reshape(shape)


def _clean(valid, args, safe):
    """Replace invalid lanes by safe values, so no NaN or inf reaches the arithmetic (or the
    gradients of the valid lanes, through broadcasting)."""
    return [jnp.where(valid, a, s) for a, s in zip(args, safe)]

