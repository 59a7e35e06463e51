"""Declare that a model's coordinates evolve independently, so that each gets its own clock.

Many models of incremental learning are *diagonal*: coordinate ``i`` of the state (index ``i`` of
the leading axis of every state leaf) moves under a vector field that reads coordinate ``i`` of
the state and of some arguments only. The toy model is the example: ``d sigma_i/dt`` depends on
``sigma_i`` and ``sigma*_i`` alone, and so does the factor-level model's gradient with respect to
coordinate ``i``'s factors.

Why it matters. Solved as one ODE, such a model is stiff exactly where the science is: once the
largest coordinate has converged it relaxes at a rate of order ``sigma*^(2 - 2/N)``, while the
next coordinate still crawls along a plateau of up to 1e300 time units, and one shared step size
has to serve both. Declared coordinatewise, the flow (:class:`jaxflow.Flow`) integrates every
coordinate as its own one-coordinate flow, each on its own reparametrized clock (a ``vmap`` over
the coordinates), so each costs the few dozen steps of a single plateau and a single jump,
whatever the spectrum. The learning times, saves and final values are then put back together on
the common flow-time axis. Nothing is approximated: for a coordinatewise field the coordinates'
flows *are* independent.

``args_axes`` says, like ``jax.vmap``'s ``in_axes``, which leaves of ``args`` are split along with
the state (``0``: their leading axis is the coordinate axis) and which are shared (``None``).

Example (a field that is coordinatewise in ``y`` and in the first argument):
    >>> import jax.numpy as jnp
    >>> from jaxflow.engine.coordinatewise import Coordinatewise
    >>> field = Coordinatewise(lambda y, args: args[0] - args[1] * y, args_axes=(0, None))
    >>> [float(v) for v in field(jnp.array([0.0, 1.0]), (jnp.array([1.0, 2.0]), 1.0))]
    [1.0, 1.0]
    >>> ys, split = field.split(jnp.array([0.0, 1.0]), (jnp.array([1.0, 2.0]), 1.0))
    >>> ys.shape, split[0].shape, split[1]
    ((2, 1), (2, 1), 1.0)
"""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu

__all__ = ["Coordinatewise", "is_coordinatewise"]


class Coordinatewise(eqx.Module):
    """A function of ``(state, args)`` whose coordinates are independent (module docstring).

    Attributes:
        fn: ``fn(y, args)``: a vector field ``-> dy/dt`` or, for
            a :class:`jaxflow.Problem`'s ``loss``, a loss that is a sum of per-coordinate terms.
        args_axes: a prefix of ``args``' structure, ``0`` for leaves split along their leading
            (coordinate) axis and ``None`` for leaves shared by every coordinate.
        domain: optional ``domain(args) -> bool array``: whether ``args`` lie in the model's
            domain; it raises a ``ValueError`` naming the argument and its range when they are
            concrete and do not. The flow calls it before any work; under ``jit`` (traced
            arguments) a lane outside the domain ends with status ``invalid``.

    Calling it calls ``fn``: a declared model stays an ordinary function for every other use
    (gradient descent, plotting, the user's own code).
    """

    fn: Callable = eqx.field(static=True)
    args_axes: Any = eqx.field(static=True, default=None)
    domain: Callable | None = eqx.field(static=True, default=None)

    def __call__(self, y, args):
        return self.fn(y, args)

    def num_coordinates(self, y) -> int:
        """The length of the leading axis, the same for every state leaf (checked)."""
        lengths = {jnp.shape(leaf)[0] if jnp.ndim(leaf) else None for leaf in jtu.tree_leaves(y)}
        if len(lengths) != 1 or None in lengths:
            raise ValueError(
                "y0 of a Coordinatewise model must have one leading coordinate axis shared by "
                f"every leaf, got leading lengths {sorted(map(str, lengths))}"
            )
        return lengths.pop()

    def split(self, y, args):
        """``(y, args)`` with every split leaf reshaped ``(d, ...) -> (d, 1, ...)``.

        A ``vmap`` over the new axis 0 then hands each coordinate to ``fn`` as a one-coordinate
        model of the same shapes (``(1, ...)``), so ``fn`` never needs to know it is split.
        """
        d = self.num_coordinates(y)

        def one_axis(leaf):
            leaf = jnp.asarray(leaf)
            if leaf.ndim == 0 or leaf.shape[0] != d:
                raise ValueError(
                    f"an argument split by args_axes must have leading length {d} (one entry per "
                    f"coordinate), got shape {leaf.shape}"
                )
            return leaf[:, None]

        ys = jtu.tree_map(lambda leaf: jnp.asarray(leaf)[:, None], y)
        if self.args_axes is None:
            return ys, args

        def split_subtree(axis, subtree):
            if axis is None:
                return subtree
            return jtu.tree_map(one_axis, subtree)

        split_args = jtu.tree_map(split_subtree, self.args_axes, args, is_leaf=lambda x: x is None)
        return ys, split_args

def is_coordinatewise(fn) -> bool:
    """Whether ``fn`` was declared :class:`Coordinatewise`.

    >>> from jaxflow.engine.coordinatewise import Coordinatewise, is_coordinatewise
    >>> is_coordinatewise(Coordinatewise(lambda y, a: -y)), is_coordinatewise(lambda y, a: -y)
    (True, False)
    """
    return isinstance(fn, Coordinatewise)

