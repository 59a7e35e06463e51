"""The sharpness of a loss: its top Hessian eigenvalue, by Hessian-vector products (Lanczos).

Gradient descent with step ``eta`` on a quadratic is stable only while the top Hessian eigenvalue
stays at or below ``2 / eta``; past it, descent leaves gradient flow (the edge of stability,
docs/science/edge-of-stability.md). This module measures that eigenvalue on any loss whose
parameters are a pytree, from Hessian-vector products only (one forward-over-reverse pass each,
about two gradients), so the Hessian is never formed.

The estimate is the largest Ritz value of ``k`` steps of Lanczos with full reorthogonalization
(the ``k`` vectors are kept: ``k`` times the parameters' size). Lanczos rather than power
iteration: power iteration converges to the eigenvalue of largest *magnitude*, which near a saddle
is a negative one, and at a rate set by the gap between the two largest; the largest Ritz value
of ``k`` Lanczos steps is never above the top eigenvalue and converges much faster. With
``k >= `` the number of parameters (the toy models: ``d x N``) it is exact to rounding.

Warm start: :func:`top_eigenpair` returns the Ritz vector too; passing it back as ``start``
at the next estimate (along a trajectory) makes a few iterations enough where the top direction
moves slowly. Everything is traced (``jax.vmap`` over lanes works, the iteration count is static).

Example (a quadratic with Hessian ``diag(3, 1, -5)``: the top eigenvalue is 3, not the -5 that
power iteration would find):
    >>> import jax
    >>> jax.config.update("jax_enable_x64", True)
    >>> import jax.numpy as jnp
    >>> from jaxflow.engine import sharpness
    >>> loss = lambda p, args: 0.5 * jnp.sum(jnp.array([3.0, 1.0, -5.0]) * p["w"] ** 2)
    >>> value, vector = sharpness.top_eigenpair(loss, {"w": jnp.ones(3)}, None, iterations=3)
    >>> round(float(value), 12), [round(float(v), 6) for v in jnp.abs(vector)]
    (3.0, [1.0, 0.0, 0.0])
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, PyTree

__all__ = ["hvp", "sharpness", "top_eigenpair"]

# A Lanczos residual below this fraction of the largest |alpha| seen means the Krylov space is
# invariant (exhausted): the remaining steps are masked out rather than divided by ~0.
_BREAKDOWN = 1e-13


def hvp(loss: Callable[[PyTree, Any], Array], params: PyTree, args: Any, vector: PyTree) -> PyTree:
    """The Hessian-vector product ``H(params) @ vector`` of ``loss(params, args)`` (forward over
    reverse: about two gradients' cost).

    >>> import jax.numpy as jnp
    >>> from jaxflow.engine.sharpness import hvp
    >>> loss = lambda w, args: w[0] ** 2 * w[1]
    >>> [float(v) for v in hvp(loss, jnp.array([1.0, 2.0]), None, jnp.array([1.0, 0.0]))]
    [4.0, 2.0]
    """
    gradient = lambda p: jax.grad(loss)(p, args)
    return jax.jvp(gradient, (params,), (vector,))[1]


def _start_vector(flat_params: Array, start: Array | None) -> Array:
    """The first Lanczos vector: ``start`` if given and nonzero, else the all-ones direction
    (deterministic: the same lane gives the same estimate on every device)."""
    ones = jnp.ones_like(flat_params)
    if start is None:
        return ones / jnp.linalg.norm(ones)
    norm = jnp.linalg.norm(start)
    good = jnp.isfinite(norm) & (norm > 0)
    return jnp.where(good, start / jnp.where(good, norm, 1.0), ones / jnp.linalg.norm(ones))


def _lanczos(matvec: Callable[[Array], Array], q0: Array, iterations: int):
    """``iterations`` Lanczos steps with full reorthogonalization: the basis ``(k, n)``, the
    tridiagonal's diagonal ``alpha (k,)`` and off-diagonal ``beta (k - 1,)``, and how many
    steps were valid before the Krylov space was exhausted."""
    n = q0.shape[0]
    basis0 = jnp.zeros((iterations, n), q0.dtype).at[0].set(q0)

    def body(j, state):
        basis, alpha, beta, valid, scale = state
        q = basis[j]
        w = matvec(q)
        a = jnp.dot(q, w)
        # Two passes of Gram-Schmidt against every stored vector (zeros beyond j do nothing).
        w = w - basis.T @ (basis @ w)
        w = w - basis.T @ (basis @ w)
        b = jnp.linalg.norm(w)
        scale = jnp.maximum(scale, jnp.abs(a))
        alive = valid & (j < iterations)
        alpha = alpha.at[j].set(jnp.where(alive, a, alpha[0]))
        go_on = alive & (b > _BREAKDOWN * jnp.maximum(scale, jnp.finfo(q0.dtype).tiny))
        nxt = jnp.where(go_on, w / jnp.where(go_on, b, 1.0), 0.0)
        basis = jnp.where(j + 1 < iterations, basis.at[jnp.minimum(j + 1, iterations - 1)].set(nxt),
                          basis)
        beta = beta.at[jnp.minimum(j, iterations - 2)].set(
            jnp.where(go_on & (j + 1 < iterations), b, beta[jnp.minimum(j, iterations - 2)]))
        return basis, alpha, beta, go_on, scale

    alpha0 = jnp.zeros((iterations,), q0.dtype)
    beta0 = jnp.zeros((max(iterations - 1, 1),), q0.dtype)
    state = (basis0, alpha0, beta0, jnp.asarray(True), jnp.asarray(0.0, q0.dtype))
    basis, alpha, beta, _, _ = lax.fori_loop(0, iterations, body, state)
    return basis, alpha, beta[: iterations - 1]


def top_eigenpair(
    loss: Callable[[PyTree, Any], Array], params: PyTree, args: Any, *, iterations: int = 20,
    start: Float[Array, " n"] | None = None,
) -> tuple[Float[Array, ""], Float[Array, " n"]]:
    """The top Hessian eigenvalue of ``loss`` at ``params`` and its (flattened, unit) vector.

    Args:
        loss: ``loss(params, args) -> scalar``, twice differentiable.
        params: the point (any pytree of float arrays).
        args: the loss's data.
        iterations: Lanczos steps ``k >= 1`` (static; capped at the number of parameters, where
            the estimate is exact to rounding). Each costs one Hessian-vector product.
        start: the first Lanczos vector (flattened like ``jax.flatten_util.ravel_pytree``):
            the previous estimate's vector along a trajectory (warm start); None: all ones.

    Returns:
        ``(lambda_max, vector)``: the largest Ritz value (a lower bound on the top eigenvalue,
        equal to it when converged) and its Ritz vector, flattened.

    Raises:
        ValueError: ``iterations`` not an integer >= 1.
    """
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be an integer >= 1, got {iterations!r}")
    flat, unravel = ravel_pytree(params)
    k = min(iterations, flat.shape[0])
    matvec = lambda v: ravel_pytree(hvp(loss, params, args, unravel(v)))[0]  # noqa: E731
    basis, alpha, beta = _lanczos(matvec, _start_vector(flat, start), k)
    tridiagonal = jnp.diag(alpha) + jnp.diag(beta, 1) + jnp.diag(beta, -1)
    values, vectors = jnp.linalg.eigh(tridiagonal)
    vector = basis.T @ vectors[:, -1]
    norm = jnp.linalg.norm(vector)
    # A top Ritz vector lying only on masked (exhausted) steps is the start vector's own value.
    vector = jnp.where(norm > 0, vector / jnp.where(norm > 0, norm, 1.0), basis[0])
    return values[-1], vector


def sharpness(loss: Callable[[PyTree, Any], Array], params: PyTree, args: Any, *,
              iterations: int = 20) -> Float[Array, ""]:
    """The top Hessian eigenvalue of ``loss`` at ``params`` (:func:`top_eigenpair`, cold start).

    Example (the depth-2 toy model at its balanced minimum ``w = (1, 1)``, loss
    ``(1 - w1 w2)^2 / 8``: Hessian ``[[1, 1], [1, 1]] / 4``, sharpness 1/2):
        >>> import jax.numpy as jnp
        >>> from jaxflow.engine.sharpness import sharpness
        >>> from jaxflow.models import toy
        >>> params = {"plus": jnp.ones((1, 2))}
        >>> round(float(sharpness(toy.factor_loss, params, jnp.array([1.0]))), 12)
        0.5
    """
    return top_eigenpair(loss, params, args, iterations=iterations)[0]
