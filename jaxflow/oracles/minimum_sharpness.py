"""Closed forms for the sharpness of the toy product model's minima (docs/science/edge-of-stability.md).

The factor-level toy model (:mod:`jaxflow.models.toy`, unsigned) has the loss
``L(w) = 1/(2 N^2) sum_i (s_i - P_i)^2`` with ``P_i = prod_j w_ij`` over ``N`` factors. Its
Hessian is block diagonal over the coordinates ``i``; on coordinate ``i`` it is

    H_i = (1/N^2) [ g g^T + (P_i - s_i) d^2 P_i ],    g_j = dP_i/dw_ij = P_i / w_ij.

At a minimum (``P_i = s_i``) the second term vanishes and ``H_i`` has rank one, so its one
nonzero eigenvalue is ``|g|^2 / N^2 = (s_i^2 / N^2) sum_j 1 / w_ij^2``, and the sharpness of the
whole model is the largest over the coordinates.

* **Balanced minimum** (every ``w_ij^2 = |s_i|^(2/N)``): ``lambda = |s_i|^(2 - 2/N) / N``. By the
  AM-GM inequality it is the flattest of all minima of coordinate ``i`` (``sum_j 1/w_j^2`` at a
  fixed product ``prod_j w_j^2 = s^2`` is smallest when the factors are equal), so gradient descent
  with ``eta > 2 / lambda`` has no linearly stable minimum to converge to.
* **Gradient-flow solution reached from a point** ``w``: the flow conserves every difference
  ``w_j^2 - w_k^2`` (``d w_j^2 / dt = 2 (s - P) P / N^2``, the same for every ``j``), so it ends at
  ``w_j^2 = a_j + x`` with ``a_j = w_j^2 - min_k w_k^2`` and the one ``x >= 0`` at which
  ``prod_j (a_j + x) = s^2``; its sharpness is ``(s^2 / N^2) sum_j 1 / (a_j + x)``. Where the
  product's sign differs from the target's, the flow stops at a saddle (``P = 0``) instead, and
  the answer is NaN.

Everything here is a closed form (plus a monotone Newton iteration for ``x``), independent of the
engine; everything is traced and vmaps over lanes.

Example (depth 3, target 8: balanced factors 2, sharpness ``8^(4/3) / 3 = 16 / 3``):
    >>> import jax
    >>> jax.config.update("jax_enable_x64", True)
    >>> import jax.numpy as jnp
    >>> from jaxflow.oracles import minimum_sharpness as ms
    >>> round(float(ms.balanced_minimum_sharpness(3, jnp.array([8.0]))), 12)
    5.333333333333
    >>> params = {"plus": jnp.full((1, 3), 1e-2)}           # balanced start: reaches (2, 2, 2)
    >>> round(float(ms.flow_solution_sharpness(params, jnp.array([8.0]))), 10)
    5.3333333333
"""

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, ArrayLike, Float

__all__ = ["balanced_minimum_sharpness", "flow_solution", "flow_solution_sharpness"]

_NEWTON_STEPS = 60  # Newton from above on a convex increasing function: monotone, quadratic


def balanced_minimum_sharpness(depth, targets: Float[ArrayLike, " d"]) -> Float[Array, ""]:
    """The sharpness ``max_i |s_i|^(2 - 2/N) / N`` of the balanced minimum (the flattest one).

    >>> import jax.numpy as jnp
    >>> from jaxflow.oracles.minimum_sharpness import balanced_minimum_sharpness
    >>> float(balanced_minimum_sharpness(2, jnp.array([2.0, 1.0])))    # depth 2: s / 2
    1.0
    """
    depth = jnp.asarray(depth, dtype=float)
    targets = jnp.abs(jnp.asarray(targets, dtype=float))
    return jnp.max(targets ** (2.0 - 2.0 / depth) / depth)


def _check_unsigned(params) -> Array:
    if set(params) != {"plus"}:
        raise ValueError("the closed forms cover the unsigned toy model only: params must be "
                         f"{{'plus': (d, N)}}, got keys {sorted(params)}")
    return jnp.asarray(params["plus"])


def _offset(squares: Float[Array, " N"], target, mask) -> Float[Array, ""]:
    """The ``x >= 0`` with ``prod_j (a_j + x) = target^2``, ``a_j = squares_j - min squares``.

    Newton on ``h(y) = sum_j log(a_j + e^y) - 2 log|target|`` in ``y = ln x``: ``h`` is increasing
    and convex, so Newton started at a point above the root (``y0 = 2 log|target| / N``, where
    ``h >= 0`` since every ``a_j >= 0``) decreases monotonically to it."""
    a = jnp.where(mask, squares - jnp.min(jnp.where(mask, squares, jnp.inf)), 1.0)
    goal = 2.0 * jnp.log(jnp.abs(target))

    def newton(_, y):
        e = jnp.exp(y)
        h = jnp.sum(jnp.where(mask, jnp.log(a + e), 0.0)) - goal
        slope = jnp.sum(jnp.where(mask, e / (a + e), 0.0))
        return y - h / slope

    y = lax.fori_loop(0, _NEWTON_STEPS, newton, goal / jnp.sum(mask).astype(goal.dtype))
    return jnp.exp(y)


def flow_solution(params: dict, targets: Float[ArrayLike, " d"], mask=None) -> dict:
    """The minimum that gradient flow reaches from ``params`` (unsigned toy model): factors
    ``sign(w_ij) sqrt(a_ij + x_i)`` (module docstring); NaN on coordinates whose product has
    the wrong sign (the flow ends at a saddle there) or whose target is 0. ``mask`` ((N,) or
    (d, N) bools, default all): the factors that take part (the others are held at 1, as
    where one array carries several depths); masked factors come back as 1.

    >>> import jax.numpy as jnp
    >>> from jaxflow.oracles.minimum_sharpness import flow_solution
    >>> w = flow_solution({"plus": jnp.array([[3.0, 1.0]])}, jnp.array([12.0]))["plus"]
    >>> [round(float(v), 12) for v in w[0]]          # w1^2 - w2^2 = 8 kept, w1 w2 = 12
    [4.080332172835, 2.940937034463]
    """
    w = _check_unsigned(params)
    targets = jnp.asarray(targets, dtype=w.dtype)
    mask = jnp.broadcast_to(jnp.ones(w.shape, bool) if mask is None else mask, w.shape)
    w = jnp.where(mask, w, 1.0)
    squares = w**2
    offsets = jax.vmap(_offset)(squares, targets, mask)
    smallest = jnp.min(jnp.where(mask, squares, jnp.inf), axis=-1, keepdims=True)
    ends = jnp.sign(w) * jnp.sqrt(squares - smallest + offsets[:, None])
    reachable = (jnp.sign(jnp.prod(w, axis=-1)) == jnp.sign(targets)) & (targets != 0)
    return {"plus": jnp.where(mask, jnp.where(reachable[:, None], ends, jnp.nan), 1.0)}


def flow_solution_sharpness(params: dict, targets: Float[ArrayLike, " d"], mask=None,
                            depth=None) -> Float[Array, ""]:
    """The sharpness of the gradient-flow solution reached from ``params``:
    ``max_i (s_i^2 / N^2) sum_j 1 / w_ij(inf)^2`` (NaN where the flow ends at a saddle).
    ``mask`` as in :func:`flow_solution`; ``depth``: the ``N`` of the loss's ``1/N^2`` (default:
    the number of factors).

    >>> import jax.numpy as jnp
    >>> from jaxflow.oracles.minimum_sharpness import flow_solution_sharpness
    >>> round(float(flow_solution_sharpness({"plus": jnp.array([[3.0, 1.0]])}, jnp.array([12.0]))), 12)
    6.324555320337
    """
    ends = flow_solution(params, targets, mask)["plus"]
    depth = ends.shape[-1] if depth is None else depth
    active = jnp.ones(ends.shape, bool) if mask is None else jnp.broadcast_to(mask, ends.shape)
    targets = jnp.asarray(targets, dtype=ends.dtype)
    per_coordinate = targets**2 / depth**2 * jnp.sum(jnp.where(active, 1.0 / ends**2, 0.0), axis=-1)
    return jnp.max(per_coordinate)
