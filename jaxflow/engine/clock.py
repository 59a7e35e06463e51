"""The clock of a flow: the reparametrized time ``tau`` that :func:`jaxflow.engine.flow.solve` steps in.

A flow from a tiny initialization sits on a plateau for up to 1e300 time units and then escapes
in O(1). Stepping in plain time, the step count grows with the plateau's length; stepping in a
time ``tau`` with

    dy/dtau = f(y) / s(y),    dt/dtau = 1 / s(y),

where the speed ``s`` is the size of ``f`` on the plateau, every e-fold of the state costs a
bounded number of steps whatever its length (shared/notes of the project: 50-85 steps for any
sigma0, against up to 480 in plain time). The flow time ``t`` is carried as a state component,
so learning times and saves come out in real time.

Speeds:

* ``"arclength"`` (default): ``s = max_i |f_i(y)|``. For a log state (the toy model's
  ``x = ln sigma``) this is the log-arclength: unit speed in log space.
* ``"relative"``: ``s = max|f| / max|y|``, for states that are not logarithms (factors).
* ``"plain"``: ``s = 1``, ordinary time (coupled stiff models, with :class:`jaxflow.engine.rkc.RKC`).
* a callable ``s(y, f, args)``, e.g. :func:`jaxflow.models.toy.reduced_speed`.

>>> import jax.numpy as jnp
>>> from jaxflow.engine.clock import clock_speed
>>> float(clock_speed("relative", jnp.array([2.0, -4.0]), jnp.array([1.0, 0.5]), None))
0.25
"""

from collections.abc import Callable
from typing import Any, Literal

import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, PyTree

__all__ = ["DEFAULT_DT0", "SPEEDS", "Speed", "check_speed", "clock_speed", "max_abs"]

Speed = Literal["arclength", "relative", "plain"] | Callable[[PyTree, PyTree, Any], Array]
SPEEDS = ("arclength", "relative", "plain")
# First step in tau for the reparametrized clocks: tau counts e-folds of the state, so 0.05 is
# the natural scale and saves the ~8 steps an automatic guess spends growing from 1e-8.
DEFAULT_DT0 = 0.05
_TINY = 1e-300  # floor of the speed: dt/dtau stays finite at an exact fixed point


def max_abs(tree) -> Array:
    """``max |leaf|`` over every leaf of a pytree."""
    return jnp.max(jnp.stack([jnp.max(jnp.abs(leaf)) for leaf in jtu.tree_leaves(tree)]))


def check_speed(speed) -> None:
    """Raise a one-line ``ValueError`` unless ``speed`` is a known name or a callable."""
    if not callable(speed) and not (isinstance(speed, str) and speed in SPEEDS):
        raise ValueError(f"time must be 'arclength', 'relative', 'plain' or a callable, got {speed!r}")


def clock_speed(kind: Speed, y: PyTree, velocity: PyTree, args: Any) -> Array:
    """The speed ``s(y) = dtau/dt`` of clock ``kind`` at state ``y`` with ``velocity = f(y)``."""
    if callable(kind):
        return jnp.maximum(kind(y, velocity, args), _TINY)
    if kind == "plain":
        return jnp.asarray(1.0)
    speed = max_abs(velocity)
    if kind == "relative":
        speed = speed / jnp.maximum(max_abs(y), _TINY)
    # A NaN speed (NaN state) must not hide behind the floor: keep it NaN so the lane is flagged.
    return jnp.where(jnp.isnan(speed), speed, jnp.maximum(speed, _TINY))
