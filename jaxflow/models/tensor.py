"""CP tensor factorization of order N: components learned one at a time from small init.

An order-``N`` tensor with ``d`` entries per axis is fitted by ``R`` rank-one components,

    X = sum_r  a_(1,r) (x) a_(2,r) (x) ... (x) a_(N,r),        L = 1/2 || X - T ||^2,

with the factors stored as one array ``params[n, r, :]`` of shape ``(N, R, d)`` (:func:`init`).
Gradients come from ``jax.grad`` (checked against finite differences in tests/test_tensor.py).
The modes are the components' norms ``prod_n ||a_(n,r)||``, largest first (:func:`modes`):
sorting makes them the tensor analogue of singular values, so a new component growing is a
rank increment whatever its index.

From a small initialization each component's norm ``sigma_r`` obeys
``d sigma_r/dt = N sigma_r^(2-2/N) <-grad L, unit component>`` when its factors are balanced
(Razin et al. 2021): a component first aligns with the residual, then escapes its plateau like
the depth-``N`` toy model, and the others wait: incremental rank learning.

**Conserved quantities** (:func:`invariants`): for every component ``r`` and factor ``n``,
``||a_(n,r)||^2 - ||a_(1,r)||^2`` is constant under gradient flow (every factor of a component
sees the same ``d/dt ||a_(n,r)||^2 = -2 <grad_X L, component r>``).

Reference: N. Razin, A. Maman, N. Cohen, "Implicit regularization in tensor factorization",
ICML 2021 (arXiv 2102.09972).

**Domain.** :func:`init` needs an integer order ``>= 2``, rank and ``d >= 1`` and
``0 < scale < inf`` (a ``ValueError`` names the argument). The target is any real tensor of
shape ``(d,) * N``, not checked (a wrong shape broadcasts or fails in :func:`loss`);
:func:`orthogonal_target`'s weights may be signed (a sign flip: component norm ``|w_r|``).

Example:
    >>> import jax
    >>> from jaxflow.models import tensor
    >>> target = tensor.orthogonal_target(jax.random.key(0), 3, (2.0, 1.0), order=3)
    >>> params = tensor.init(jax.random.key(1), 1e-3, order=3, rank=4, d=3)
    >>> tensor.reconstruct(params).shape, tensor.modes(params, target).shape
    ((3, 3, 3), (4,))
    >>> round(float(tensor.loss(params, target)), 6)          # ~ 1/2 (2^2 + 1^2)
    2.5
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from jaxflow.models import _gaussian

__all__ = ["init", "invariants", "loss", "modes", "orthogonal_target", "reconstruct"]


def _check(name, value, minimum):
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def components(params: Float[Array, "N R d"]) -> Float[Array, "R ..."]:
    """Each rank-one component ``a_(1,r) (x) ... (x) a_(N,r)``, shape ``(R, d, ..., d)``.

    >>> components(jnp.array([[[1.0, 2.0]], [[3.0, 0.0]]])).tolist()
    [[[3.0, 0.0], [6.0, 0.0]]]
    """
    out = params[0]
    for factor in params[1:]:
        out = out[..., None] * factor.reshape(factor.shape[:1] + (1,) * (out.ndim - 1) + (-1,))
    return out


def reconstruct(params: Float[Array, "N R d"]) -> Float[Array, "..."]:
    """``X = sum_r`` of the components, shape ``(d,) * N``."""
    return jnp.sum(components(params), axis=0)


def loss(params: Float[Array, "N R d"], target: Float[ArrayLike, "..."]) -> Float[Array, ""]:
    """``1/2 || X - T ||^2``."""
    return 0.5 * jnp.sum((reconstruct(params) - jnp.asarray(target)) ** 2)


def modes(params: Float[Array, "N R d"], target=None) -> Float[Array, " R"]:
    """Component norms ``prod_n ||a_(n,r)||``, largest first.

    >>> modes(jnp.array([[[1.0, 0.0], [0.0, 3.0]], [[2.0, 0.0], [0.0, 1.0]]])).tolist()
    [3.0, 2.0]
    """
    del target
    norms = jnp.prod(jnp.linalg.norm(params, axis=-1), axis=0)
    return -jnp.sort(-norms)


def invariants(params: Float[Array, "N R d"]) -> Float[Array, "N-1 R"]:
    """``||a_(n,r)||^2 - ||a_(1,r)||^2`` for ``n = 2..N`` (conserved by gradient flow).

    >>> invariants(jnp.array([[[1.0, 0.0]], [[2.0, 0.0]]])).tolist()
    [[3.0]]
    """
    squared = jnp.sum(params**2, axis=-1)
    return squared[1:] - squared[:1]


def init(key: jax.Array, scale: float, *, order: int, rank: int, d: int) -> Float[Array, "N R d"]:
    """Gaussian factors with standard deviation ``scale`` (unbalanced: norms differ by factor).

    >>> init(jax.random.key(0), 1e-2, order=3, rank=2, d=4).shape
    (3, 2, 4)
    """
    order, rank, d = _check("order", order, 2), _check("rank", rank, 1), _check("d", d, 1)
    if not 0.0 < float(scale) < float("inf"):
        raise ValueError(f"scale (init) must be > 0 and finite, got {scale}")
    return scale * _gaussian.normal(key, (order, rank, d))


def orthogonal_target(key: jax.Array, d: int, weights, *, order: int) -> Float[Array, "..."]:
    """``T = sum_r w_r q_(1,r) (x) ... (x) q_(N,r)`` with orthonormal ``q_(n,r)`` over ``r``
    (random orthogonal matrices, one per axis): a rank-``len(weights)`` tensor whose CP
    decomposition is unique, with component norms ``w_r``.

    >>> t = orthogonal_target(jax.random.key(0), 3, (2.0, 1.0), order=3)
    >>> round(float(jnp.sum(t**2)), 12)
    5.0
    """
    d, order = _check("d", d, 1), _check("order", order, 2)
    weights = jnp.asarray(weights, dtype=float)
    if weights.ndim != 1 or not 1 <= weights.size <= d:
        raise ValueError(f"weights: {weights.size} components do not fit d = {d}")
    keys = jax.random.split(key, order)
    factors = jnp.stack(
        [jnp.linalg.qr(_gaussian.normal(k, (d, d)))[0].T[: weights.size] for k in keys]
    )
    return reconstruct(factors.at[0].multiply(weights[:, None]))
