"""float64 without touching the user's JAX settings.

Thresholds of the depth-2 model sit below 1e-40 and learning times reach 1e20, so jaxflow's
results are float64. Importing jaxflow changes nothing (the ``jaxflow`` command turns x64 on
for its own process, see :func:`jaxflow.cli.main`); instead, every entry point that needs
float64 calls :func:`require_x64` (or is decorated with :func:`needs_x64`) and, while JAX's x64
mode is off, refuses with one :class:`X64Error` that names the fix.

Why an error rather than running the call in a local ``jax.enable_x64(True)`` scope (measured
on jax 0.10.2, x64 off, 2 CPU devices): the scope itself works (the jit cache keys on it, vmap
and an outer jit pass through, 0.6 us to enter), but its edges do not:

* it is thread-local: a thread started inside it computes in float32, so a sweep on 2 devices
  run inside the scope returned float32 numbers in a dataset labelled float64;
* the user's own arrays are made outside it: ``jnp.geomspace(1e-300, 1e-1, 4)`` is already
  float32 (all NaN) before jaxflow sees it, and a float64 answer drops back to float32 at the
  user's next operation (``threshold * 1.0`` is float32, ``learning_time * 1e-300`` is 0.0).

A float64 library in a float32 session is wrong at its edges whatever it does inside; one line,
``jax.config.update("jax_enable_x64", True)`` at the top of the program, makes the whole session
float64. A ``with jax.enable_x64(True):`` block around a call also satisfies the check (the
sweep's device threads and the phase diagram's theory thread inherit the caller's setting).
"""

import functools

import jax
import numpy as np

__all__ = [
    "FIX", "X64Error", "needs_x64", "require_x64", "require_x64_for", "wants_float64",
    "x64_enabled",
]

FIX = 'jax.config.update("jax_enable_x64", True)'
"""The line that makes a session float64, as the error message shows it."""


class X64Error(RuntimeError):
    """A float64 computation was asked for while JAX's x64 mode is off."""


def x64_enabled() -> bool:
    """Whether JAX computes in float64 here (the global setting or a ``jax.enable_x64`` scope of
    this thread)."""
    return bool(jax.config.read("jax_enable_x64"))


def require_x64(where: str, *, dtype="float64", hint: str = "") -> None:
    """Raise :class:`X64Error` if ``dtype`` is float64 and JAX's x64 mode is off.

    Args:
        where: the entry point, as the user called it (``"jaxflow.oracles.theory.learning_time"``).
        dtype: the dtype the call computes in (anything ``numpy.dtype`` reads); only float64
            needs x64, so a float32 request passes.
        hint: an extra alternative for the message (``"or pass ... float32=True"``).

    >>> import jax
    >>> from jaxflow import _x64
    >>> with jax.enable_x64(False):
    ...     _x64.require_x64("f")  # doctest: +ELLIPSIS +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    jaxflow._x64.X64Error: f computes in float64, but JAX's x64 mode is off ... Run
    jax.config.update("jax_enable_x64", True) once at the start of the program, ...
    >>> with jax.enable_x64(False):
    ...     _x64.require_x64("f", dtype="float32")   # nothing to do
    """
    if np.dtype(dtype) != np.float64 or x64_enabled():
        return
    raise X64Error(
        f"{where} computes in float64, but JAX's x64 mode is off (JAX's default). Run {FIX} "
        f"once at the start of the program, before creating arrays{hint}."
    )


def needs_x64(fn):
    """Decorator: ``fn`` calls :func:`require_x64` with its own qualified name first.

    The name is read at call time, so a function re-exported by a public module that claims it
    (``theory.learning_time``, defined in ``_theory_times``) is named by that module. A function
    whose dtype depends on its arguments calls :func:`require_x64` itself instead.
    """

    @functools.wraps(fn)
    def checked(*args, **kwargs):
        require_x64(f"{checked.__module__}.{checked.__qualname__}")
        return fn(*args, **kwargs)

    return checked


def wants_float64(*trees) -> bool:
    """Whether any leaf of ``trees`` is explicitly float64 or complex128 (a NumPy or JAX array,
    or a NumPy scalar). Python floats are weakly typed and count as no request: with x64 off they
    follow JAX's float32 default, as they would anywhere in JAX.

    >>> import numpy as np
    >>> from jaxflow import _x64
    >>> _x64.wants_float64({"w": np.ones(3)}), _x64.wants_float64([1.0, np.float32(2)])
    (True, False)
    """
    # Not ``dtype in _WIDE``: a missing dtype (None) compares equal to float64 in NumPy.
    dtypes = (getattr(leaf, "dtype", None) for leaf in jax.tree.leaves(trees))
    return any(d is not None and np.dtype(d) in _WIDE for d in dtypes)


_WIDE = (np.dtype(np.float64), np.dtype(np.complex128))


def require_x64_for(where: str, *trees) -> None:
    """:func:`require_x64` for an engine that computes in its inputs' dtype: raise only if a leaf
    of ``trees`` is float64 (:func:`wants_float64`) while x64 is off, since JAX would silently
    compute it in float32. float32 inputs (a float32 sweep traces inside
    ``jax.enable_x64(False)``) pass.

    >>> import jax, numpy as np
    >>> from jaxflow import _x64
    >>> with jax.enable_x64(False):
    ...     _x64.require_x64_for("solve", {"y0": np.float32(1.0)})   # float32 asked: runs
    ...     _x64.require_x64_for("solve", {"y0": np.ones(2)})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    jaxflow._x64.X64Error: solve computes in float64, but JAX's x64 mode is off ...
    """
    require_x64(where, dtype=np.float64 if wants_float64(*trees) else np.float32)
