"""What is trained: a loss (or a reduced model's vector field), its start, its data, its modes.

A :class:`Problem` holds no method and no question: the same problem is solved by gradient flow
or gradient descent (:class:`jaxflow.Flow`, :class:`jaxflow.Descent`) and asked anything a
:class:`jaxflow.Request` can say.

Example (the depth-3 factor-level toy model, one mode learning the target 1 from 1e-3):
    >>> import jax.numpy as jnp
    >>> import jaxflow
    >>> from jaxflow.models import toy
    >>> targets = jnp.array([1.0])
    >>> problem = jaxflow.Problem(loss=toy.factor_loss,
    ...                           params0=toy.factor_init(None, 1e-3, depth=3, num_coords=1),
    ...                           args=targets, modes=toy.factor_values, targets=targets)
    >>> problem.num_modes()
    1
    >>> jaxflow.Problem(params0=jnp.ones(2))
    Traceback (most recent call last):
    ...
    ValueError: Problem needs a loss(params, args) or a vector_field(y, args); got neither
"""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PyTree

from jaxflow.engine.clock import Speed, check_speed

__all__ = ["Problem"]


def no_modes(params, args) -> Array:
    """The modes of a problem that tracks none: an empty ``(0,)`` array."""
    return jnp.zeros((0,))


def numbers_as_arrays(tree):
    """Python numbers in ``params0`` or ``args`` as arrays, as ``jax.jit`` would trace them:
    equinox's filter would make them static, and a new value (a new depth) a new program.

    Both methods apply it, and the engine functions below them too (``flow.solve``), so the
    same problem compiles one program whichever route reaches it.

    >>> numbers_as_arrays({"depth": 3.0, "name": "toy"})["depth"].shape
    ()
    """
    number = lambda leaf: isinstance(leaf, (bool, int, float, complex))  # noqa: E731
    return jax.tree.map(lambda leaf: jnp.asarray(leaf) if number(leaf) else leaf, tree)


class Problem(eqx.Module):
    """A training problem: what :func:`jaxflow.solve` integrates or iterates.

    Attributes:
        params0: the initial parameters (any pytree of float arrays). Batched solves
            (``jaxflow.solve(..., batched=True)``) take a leading batch axis on every leaf.
        args: data passed to ``loss``, ``vector_field`` and ``modes`` (a pytree of arrays: put
            swept values here, so new values never recompile; a leading batch axis when batched).
        loss: ``loss(params, args) -> scalar``: the model's training loss. Gradient flow follows
            ``-grad loss``, gradient descent steps along it.
        vector_field: ``f(y, args) -> dy/dt`` for a problem given by its flow alone (a reduced
            model such as :func:`jaxflow.models.toy.reduced_vector_field`); only gradient flow
            can solve it. Give exactly one of ``loss`` and ``vector_field``.
        modes: ``modes(params, args) -> (M,)``: the values whose learning is tracked (singular
            values, coordinates, ...). ``None``: none (``M = 0``). Pass module-level functions or
            equal-comparing ``eqx.Module`` callables, never fresh lambdas, to reuse programs.
        targets: ``(M,)`` the modes' targets; a mode has learned fraction ``f`` once
            ``modes / targets >= f``. ``None``: zeros (never learned). A leading batch axis
            when batched.
        time_scale: ``c > 0``: the problem's time axis is ``c`` times its flow's own time
            (descent: ``t = c * learning_rate * step``). If the flow of ``loss`` runs a
            reference flow at speed ``c``, this puts both methods on the reference axis, e.g.
            ``toy.factor_time_scale(N) = 1/N`` for the factor-level toy model.
        clock: the flow's default clock for this problem (``"arclength"``, ``"relative"``,
            ``"plain"`` or a callable speed, :mod:`jaxflow.engine.clock`): a reduced model may
            supply its own (e.g. :func:`jaxflow.models.toy.reduced_speed`). ``None``: the
            method's default. Descent ignores it.

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxflow
        >>> from jaxflow.models import toy
        >>> args = toy.ToyArgs(depth=3.0, targets=jnp.array([2.0, 1.0]))
        >>> reduced = jaxflow.Problem(vector_field=toy.reduced_vector_field,
        ...                           params0=toy.reduced_init(1e-6, 2), args=args,
        ...                           modes=toy.reduced_modes, targets=args.targets,
        ...                           clock=toy.reduced_speed)
        >>> reduced.has_loss, reduced.num_modes()
        (False, 2)
    """

    params0: PyTree
    args: Any = None
    loss: Callable | None = None
    vector_field: Callable | None = None
    modes: Callable | None = None
    targets: Float[ArrayLike, " M"] | None = None
    time_scale: Float[ArrayLike, ""] = 1.0
    clock: Speed | None = None

    def __check_init__(self):
        if (self.loss is None) == (self.vector_field is None):
            got = "neither" if self.loss is None else "both"
            raise ValueError(
                f"Problem needs a loss(params, args) or a vector_field(y, args); got {got}"
            )
        for name in ("loss", "vector_field", "modes"):
            fn = getattr(self, name)
            if fn is not None and not callable(fn):
                raise ValueError(f"Problem's {name} must be callable, got {fn!r}")
        if self.targets is not None and self.modes is None:
            raise ValueError("Problem got targets without modes: pass modes(params, args) too")
        if self.clock is not None:
            check_speed(self.clock)
        scale = self.time_scale
        if not isinstance(scale, jax.core.Tracer):
            try:
                value = float(scale) if np.ndim(scale) == 0 else np.nan
            except (TypeError, ValueError):
                value = np.nan
            if not 0 < value < np.inf:
                raise ValueError(f"time_scale must be a number in (0, inf), got {scale!r}")

    @property
    def has_loss(self) -> bool:
        """Whether the problem is given by a loss (descent needs one)."""
        return self.loss is not None

    @property
    def modes_fn(self) -> Callable:
        """``modes``, or :func:`no_modes` when none are tracked."""
        return no_modes if self.modes is None else self.modes

    def num_modes(self, batched: bool = False) -> int:
        """``M``, the number of tracked modes (from shapes only: nothing is computed)."""
        params0, args = self.params0, self.args
        if batched:
            first = lambda leaf: leaf[0] if hasattr(leaf, "shape") and np.ndim(leaf) else leaf
            params0, args = jax.tree.map(first, params0), jax.tree.map(first, args)
        shape = jax.eval_shape(self.modes_fn, params0, args).shape
        return int(shape[0]) if shape else 1

    def targets_or_zeros(self, num_modes: int, dtype) -> Array:
        """``targets`` as an array of ``dtype``, or zeros (nothing ever learned)."""
        if self.targets is None:
            return jnp.zeros((num_modes,), dtype)
        return jnp.asarray(self.targets, dtype=dtype)
