"""When a run has arrived: the one stationarity rule of every method.

A run following the velocity ``f(y)`` (gradient flow: ``f = -grad loss``; a descent step moves
along the same direction) is *stationary* when it contracts towards a fixed point with less than
``tol * max(1, max|y|)`` left to travel. The distance still to travel is estimated from one
Jacobian-vector product as ``|f|^3 / (-f.Jf)``: exact for a linear flow ``f = -A (y - y*)``
along an eigenvector of ``A``, and a Newton-step length in general (for a loss, ``-f.Jf = g.Hg``
with the gradient ``g`` and the Hessian ``H``). On a plateau the flow expands away from the
saddle it sits near (``-f.Jf < 0``) and the run goes on, however slow it is; a run whose velocity
is exactly zero has arrived.

Example (a linear flow ``f = -(y - 1)`` from ``y = 1.001``: 0.001 left to travel):
    >>> import jax.numpy as jnp
    >>> from jaxflow.engine import stationarity
    >>> field = lambda y, args: -(y - 1.0)
    >>> y = jnp.array([1.001])
    >>> round(float(stationarity.remaining_travel(field, y, None)[0]), 6)
    0.001
    >>> bool(stationarity.is_stationary(field, y, None, 1e-2)), bool(stationarity.is_stationary(field, y, None, 1e-4))
    (True, False)
    >>> plateau = lambda y, args: y                  # expanding: never stationary
    >>> bool(stationarity.is_stationary(plateau, jnp.array([1e-30]), None, 1e-10))
    False
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, PyTree

from jaxflow.engine.clock import max_abs

__all__ = ["is_stationary", "remaining_travel"]


def _flat(tree) -> Array:
    return jnp.concatenate([jnp.ravel(leaf) for leaf in jtu.tree_leaves(tree)])


def remaining_travel(field: Callable[[PyTree, Any], PyTree], y: PyTree, args: Any):
    """``(remaining, contraction, speed2)``: the estimated distance left to a fixed point
    ``|f|^3 / (-f.Jf)`` (meaningful where ``contraction = -f.Jf > 0``) and ``|f|^2``."""
    along = lambda y_: field(y_, args)
    velocity, jvp = jax.jvp(along, (y,), (along(y),))
    flat_v, flat_jv = _flat(velocity), _flat(jvp)
    speed2 = jnp.sum(flat_v**2)
    contraction = -jnp.sum(flat_v * flat_jv)
    remaining = jnp.sqrt(speed2) * speed2 / jnp.where(contraction > 0, contraction, 1.0)
    return remaining, contraction, speed2


def is_stationary(field: Callable[[PyTree, Any], PyTree], y: PyTree, args: Any, tol) -> Array:
    """Whether ``y`` has arrived at a stable fixed point of ``field`` up to ``tol`` (module
    docstring): contracting with ``remaining <= tol * max(1, max|y|)``, or at rest."""
    remaining, contraction, speed2 = remaining_travel(field, y, args)
    limit = tol * jnp.maximum(1.0, max_abs(y))
    return ((contraction > 0) & (remaining <= limit)) | (speed2 == 0)
