"""Diagonal linear networks in log coordinates: any initialization scale, even e^-1000.

The network ``beta = w_+^N - w_-^N`` of :mod:`jaxflow.models.diagonal`, started at
``w_+ = w_- = scale^(1/N)``, has positive weights for all time under gradient flow (each
weight's velocity is proportional to a power of itself, so it never crosses 0). Its state can
therefore be carried as ``a = ln w_+``, ``b = ln w_-``, where the same flow reads

    da/dt = -N e^((N-2) a) g,     db/dt = +N e^((N-2) b) g,     g = grad_beta L(beta),

with ``g`` from ``jax.grad``. At depth 2 the right-hand side does not depend on the state at
all on a plateau (``a`` moves on a straight line), so the initialization scale only enters
through ``a(0) = ln(scale) / 2``: scales far below the float64 range (``ln scale = -2000``) cost
nothing more than ``1e-2`` does. ``beta = e^(N a) - e^(N b)`` underflows to exactly 0 while a
weight is tiny, which is the right value to working precision.

The loss is a quadratic in ``beta``, ``L = 1/2 beta^T H beta - b^T beta + c``
(:class:`Problem`; :func:`least_squares` builds it from regression data, equal to
:func:`jaxflow.models.diagonal.loss` with ``loss="squared"``), the setting of the jump process in
:mod:`jaxflow.oracles.jump_process`.

**Conserved quantity** (:func:`invariant`): ``a + b`` at depth 2 (``w_+ w_-``), and
``e^((2-N)(a - a0)) + e^((2-N)(b - a0))`` at depth ``N > 2`` (``w_+^(2-N) + w_-^(2-N)``, scaled
by its initial value ``w_0^(2-N)``): both are exact invariants of the flow, so their drift
measures the solver's error.

**Domain.** Depth ``2 <= N < inf`` (below 2 a weight reaches 0 in finite time, where ``ln w``
is undefined) and a finite ``log_scale``, any sign: :class:`Problem` and :func:`init` raise a
``ValueError`` naming the argument (traced values are not checked). The loss is not checked:
``H`` should be symmetric positive semi-definite (as :func:`least_squares` builds it), shapes
``(d, d)``, ``(d,)``; the minimizer's coordinates may have any sign or be 0 (signed targets).

Example:
    >>> import jax.numpy as jnp
    >>> from jaxflow.models import log_diagonal as ld
    >>> problem = ld.Problem(jnp.eye(2), jnp.array([1.0, -0.5]), depth=2.0)
    >>> state = ld.init(-1000.0, 2.0, 2)                # scale = e^-1000
    >>> ld.beta(state, problem).tolist(), ld.vector_field(state, problem)["a"].tolist()
    ([0.0, 0.0], [2.0, -1.0])
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

__all__ = ["Problem", "beta", "init", "invariant", "least_squares", "loss", "modes", "vector_field"]

_MAX_EXPONENT = 600.0  # keeps exp() finite for every trial state of an explicit solver


class Problem(eqx.Module):
    """A quadratic loss ``1/2 beta^T H beta - b^T beta + c`` and the depth (all arrays).

    Attributes:
        hessian: ``H``, ``(d, d)``.
        linear: ``b``, ``(d,)``.
        offset: ``c``.
        depth: ``N >= 2`` (data: new depths reuse the compiled program).
    """

    hessian: Float[Array, "d d"]
    linear: Float[Array, " d"]
    offset: Float[Array, ""]
    depth: Float[Array, ""]

    def __init__(self, hessian, linear, offset=0.0, depth=2.0):
        # Below depth 2 a weight can reach 0 in finite time, where ln w is undefined; a traced
        # depth (under vmap) cannot be checked here.
        if not isinstance(depth, jax.core.Tracer):
            values = np.asarray(depth, dtype=float)
            if not np.all((values >= 2.0) & (values < np.inf)):
                raise ValueError(f"depth must be >= 2 and finite, got {depth}")
        self.hessian = jnp.asarray(hessian, dtype=float)
        self.linear = jnp.asarray(linear, dtype=float)
        self.offset = jnp.asarray(offset, dtype=float)
        self.depth = jnp.asarray(depth, dtype=float)


def least_squares(inputs: Float[ArrayLike, "m d"], labels: Float[ArrayLike, " m"], depth=2.0):
    """The :class:`Problem` of ``mean_k (<beta, x_k> - y_k)^2`` (no 1/2, as in ``diagonal``).

    >>> import jax.numpy as jnp
    >>> p = least_squares(jnp.eye(2), jnp.array([1.0, 2.0]))
    >>> p.hessian.tolist(), p.linear.tolist(), float(p.offset)
    ([[1.0, 0.0], [0.0, 1.0]], [1.0, 2.0], 2.5)
    """
    x = jnp.asarray(inputs, dtype=float)
    y = jnp.asarray(labels, dtype=float)
    m = x.shape[0]
    return Problem(2.0 * x.T @ x / m, 2.0 * x.T @ y / m, jnp.mean(y**2), depth)


def init(log_scale: Float[ArrayLike, ""], depth: float, d: int) -> dict[str, Array]:
    """``a = b = ln(scale) / N`` (``w_+ = w_- = scale^(1/N)``, ``beta(0) = 0``).

    >>> [float(v) for v in init(-10.0, 2.0, 2)["a"]]
    [-5.0, -5.0]
    """
    if not isinstance(log_scale, jax.core.Tracer) and not np.all(np.isfinite(log_scale)):
        raise ValueError(f"log_scale (ln of the init scale) must be finite, got {log_scale}")
    a = jnp.full((int(d),), jnp.asarray(log_scale, dtype=float) / depth)
    return {"a": a, "b": a}


def _power(x, exponent):
    return jnp.exp(jnp.minimum(exponent * x, _MAX_EXPONENT))


def beta(state, problem: Problem) -> Float[Array, " d"]:
    """``beta = e^(N a) - e^(N b)``."""
    return _power(state["a"], problem.depth) - _power(state["b"], problem.depth)


def loss_of_beta(b: Float[Array, " d"], problem: Problem) -> Float[Array, ""]:
    """``1/2 beta^T H beta - b^T beta + c``."""
    return 0.5 * b @ problem.hessian @ b - problem.linear @ b + problem.offset


def loss(state, problem: Problem) -> Float[Array, ""]:
    """The loss of the network in log coordinates."""
    return loss_of_beta(beta(state, problem), problem)


def vector_field(state, problem: Problem) -> dict[str, Array]:
    """The gradient flow of ``(w_+, w_-)`` written for ``(a, b) = (ln w_+, ln w_-)``.

    >>> import jax.numpy as jnp
    >>> problem = Problem(jnp.eye(1), jnp.array([1.0]), depth=3.0)
    >>> round(float(vector_field(init(jnp.log(1e-6), 3.0, 1), problem)["a"][0]), 6)  # 3 w0
    0.03
    """
    n = problem.depth
    g = jax.grad(loss_of_beta)(beta(state, problem), problem)
    return {"a": -n * _power(state["a"], n - 2.0) * g, "b": n * _power(state["b"], n - 2.0) * g}


def modes(state, problem: Problem) -> Float[Array, " d"]:
    """The signed coordinates ``beta_i`` (a coordinate can enter, leave, change sign)."""
    return beta(state, problem)


def invariant(state, problem: Problem, log_scale: Float[ArrayLike, ""]) -> Float[Array, " d"]:
    """The conserved quantity per coordinate (module docstring): ``a + b - 2 a0`` at depth 2,
    ``e^((2-N)(a - a0)) + e^((2-N)(b - a0)) - 2`` at depth ``N > 2``; 0 at the start.

    >>> import jax.numpy as jnp
    >>> problem = Problem(jnp.eye(1), jnp.array([1.0]), depth=3.0)
    >>> abs(float(invariant(init(-6.0, 3.0, 1), problem, -6.0)[0]))
    0.0
    """
    n = problem.depth
    a0 = jnp.asarray(log_scale, dtype=float) / n
    da, db = state["a"] - a0, state["b"] - a0
    k = 2.0 - n
    return jnp.where(k == 0, da + db, jnp.expm1(k * da) + jnp.expm1(k * db))
