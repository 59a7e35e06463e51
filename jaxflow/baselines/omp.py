"""Orthogonal Matching Pursuit, the greedy baseline of experiment E5 (docs/science/experiments.md).

OMP is an algorithm, not a model (it has no parameters that a flow or descent moves), so it
lives with the other baselines (:mod:`jaxflow.baselines.max_margin`) rather than in
``models/``; the comparison of its order with a learning order is
:func:`jaxflow.oracles.incremental.concurrence`.

Starting from the residual ``r = y``, each step selects the column most correlated with the
residual, ``argmax_i |<x_i, r>| / ||x_i||`` over the columns not yet selected, refits ``y`` by
least squares on every selected column, and updates ``r``. The selection order is what E5
compares with the order in which gradient descent on a deep diagonal network learns coordinates.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxflow.baselines import omp
    >>> x = jnp.array([[1.0, 0.0, 0.6], [0.0, 1.0, 0.8], [0.0, 0.0, 0.0]])
    >>> result = omp.omp(x, jnp.array([3.0, 1.0, 0.0]), num_atoms=2)
    >>> result.order.tolist(), [round(float(c), 6) for c in result.coefficients]
    ([0, 1], [3.0, 1.0, 0.0])
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from jaxflow._integers import check_integer

__all__ = ["OMPResult", "omp"]


class OMPResult(NamedTuple):
    """What :func:`omp` returns.

    Attributes:
        order: ``(num_atoms,)`` selected column indices in selection order; -1 after an early stop.
        coefficients: ``(d,)`` least-squares coefficients on the selected columns, 0 elsewhere.
        residual_norms: ``(num_atoms,)`` ``||y - X c||`` after each step (0 after an early stop).
    """

    order: Int[Array, " k"]
    coefficients: Float[Array, " d"]
    residual_norms: Float[Array, " k"]


def omp(
    inputs: Float[ArrayLike, "m d"],
    observations: Float[ArrayLike, " m"],
    num_atoms: int,
    *,
    tol: float = 1e-10,
) -> OMPResult:
    """Orthogonal Matching Pursuit: ``num_atoms`` greedy selections (module docstring).

    Args:
        inputs: the dictionary ``X``, shape ``(m, d)``, non-zero columns.
        observations: ``y``, shape ``(m,)``.
        num_atoms: number of selections, an integer in ``[1, min(m, d)]`` (static).
        tol: stop early once ``||r|| <= tol * ||y||``.

    Returns:
        An :class:`OMPResult`.

    Raises:
        ValueError: shapes, a zero column, or ``num_atoms`` out of range.

    >>> omp(jnp.eye(2), jnp.ones(3), 1)
    Traceback (most recent call last):
    ...
    ValueError: observations must have shape (m,) = (2,), got (3,)
    """
    inputs = jnp.asarray(inputs, dtype=float)
    observations = jnp.asarray(observations, dtype=float)
    if inputs.ndim != 2:
        raise ValueError(f"inputs must have shape (m, d), got {inputs.shape}")
    m, d = inputs.shape
    if observations.shape != (m,):
        raise ValueError(f"observations must have shape (m,) = ({m},), got {observations.shape}")
    num_atoms = check_integer("num_atoms", num_atoms, high=min(m, d))
    if not isinstance(inputs, jax.core.Tracer) and np.any(
        np.linalg.norm(np.asarray(inputs), axis=0) == 0
    ):
        raise ValueError("inputs must not have a zero column")
    return _omp(inputs, observations, num_atoms, jnp.asarray(float(tol)))


@jax.jit(static_argnums=2)
def _omp(inputs, observations, num_atoms, tol):
    m, d = inputs.shape
    norms = jnp.linalg.norm(inputs, axis=0)
    stop = tol * jnp.linalg.norm(observations)

    def step(carry, j):
        order, selected, coefficients, residual, done = carry
        score = jnp.where(selected, -1.0, jnp.abs(inputs.T @ residual) / norms)
        pick = jnp.argmax(score)
        done = done | (jnp.linalg.norm(residual) <= stop)
        selected = jnp.where(done, selected, selected.at[pick].set(True))
        order = order.at[j].set(jnp.where(done, -1, pick))
        # Least squares on the selected columns: zero the others (min-norm solution keeps them 0).
        masked = jnp.where(selected[None, :], inputs, 0.0)
        fit, *_ = jnp.linalg.lstsq(masked, observations)
        fit = jnp.where(selected, fit, 0.0)
        coefficients = jnp.where(done, coefficients, fit)
        residual = observations - inputs @ coefficients
        return (order, selected, coefficients, residual, done), jnp.linalg.norm(residual)

    carry0 = (
        jnp.full((num_atoms,), -1),
        jnp.zeros((d,), bool),
        jnp.zeros((d,)),
        observations,
        jnp.asarray(False),
    )
    (order, _, coefficients, _, _), norms_out = jax.lax.scan(step, carry0, jnp.arange(num_atoms))
    return OMPResult(order, coefficients, norms_out)
