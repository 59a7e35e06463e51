"""Max-margin oracles of separable classification (docs/science/experiments.md, E3 and E4).

On linearly separable data, gradient descent on the exponential (or logistic) loss of a depth-N
diagonal network drives ``||beta||`` to infinity like ``ln t`` while its direction converges to a
first-order stationary point of

    min ||beta||_q   subject to   y_k <beta, x_k> >= 1 for all k,       q = 2 / N

(Soudry et al. 2018 for N = 1, Gunasekar et al. 2018 for N > 1). This module gives

* :func:`max_margin`: the exact hard-margin SVM through the origin (the N = 1 limit), as the
  nearest point to 0 of the convex hull of ``{y_k x_k}`` (its norm is the margin), found by an
  accelerated projected-gradient solve on the simplex and then polished to machine precision on
  its support by a linear solve; non-separable data raise ``ValueError``.
* :func:`kkt_residual`: how far a predictor's direction is from such a stationary point.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxflow.baselines import max_margin as mm
    >>> inputs = jnp.array([[2.0, 1.0], [1.0, 3.0], [-1.0, -1.0]])
    >>> labels = jnp.array([1.0, 1.0, -1.0])
    >>> svm = mm.max_margin(inputs, labels)
    >>> [round(float(v), 6) for v in svm.direction], round(float(svm.margin), 6)
    ([0.707107, 0.707107], 1.414214)
    >>> float(mm.kkt_residual(svm.direction, inputs, labels, depth=1)) < 1e-12
    True
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

__all__ = ["MaxMargin", "kkt_residual", "max_margin"]


class MaxMargin(NamedTuple):
    """The hard-margin SVM through the origin.

    Attributes:
        direction: unit ``u`` maximizing ``min_k y_k <u, x_k>``.
        margin: that minimum ``gamma`` (> 0); ``u / gamma`` is the min-norm solution with
            margins >= 1.
        dual: ``(m,)`` non-negative weights on the simplex with ``sum_k dual_k y_k x_k = gamma u``
            (non-zero on the support vectors only).
        kkt_residual: :func:`kkt_residual` of ``direction`` at depth 1.
    """

    direction: Float[Array, " d"]
    margin: Float[Array, ""]
    dual: Float[Array, " m"]
    kkt_residual: Float[Array, ""]


def _check(inputs, labels):
    inputs = jnp.asarray(inputs, dtype=float)
    labels = jnp.asarray(labels, dtype=float)
    if inputs.ndim != 2 or inputs.shape[0] < 1:
        raise ValueError(f"inputs must have shape (m, d) with m >= 1, got {inputs.shape}")
    if labels.shape != (inputs.shape[0],):
        raise ValueError(f"labels must have shape (m,) = ({inputs.shape[0]},), got {labels.shape}")
    values = np.unique(np.asarray(labels))
    if not np.all(np.isin(values, (-1.0, 1.0))):
        raise ValueError(
            f"labels must be -1 or +1, got values {[float(v) for v in values[:6]]} "
            "(map {0, 1} labels with 2 y - 1)"
        )
    return inputs, labels


def _project_simplex(v):
    """Euclidean projection onto {a >= 0, sum a = 1} (sort-based, exact)."""
    u = jnp.sort(v)[::-1]
    css = jnp.cumsum(u) - 1.0
    idx = jnp.arange(1, v.shape[0] + 1, dtype=v.dtype)
    rho = jnp.sum(u - css / idx > 0)
    theta = css[rho - 1] / rho.astype(v.dtype)
    return jnp.maximum(v - theta, 0.0)


@jax.jit
def _nearest_hull_point(z, iterations):
    """argmin_{a in simplex} ||z^T a||^2 by FISTA with adaptive restart."""
    m = z.shape[0]
    gram = z @ z.T
    step = 1.0 / jnp.maximum(jnp.linalg.norm(gram, 2), 1e-300)
    a0 = jnp.full((m,), 1.0 / m)

    def body(_, carry):
        a, y, t = carry
        a_new = _project_simplex(y - step * (gram @ y))
        t_new = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * t * t))
        restart = jnp.vdot(y - a_new, a_new - a) > 0  # gradient-based restart (O'Donoghue-Candes)
        y_new = jnp.where(restart, a_new, a_new + (t - 1.0) / t_new * (a_new - a))
        return a_new, y_new, jnp.where(restart, 1.0, t_new)

    a, _, _ = jax.lax.fori_loop(0, iterations, body, (a0, a0, jnp.asarray(1.0)))
    return a


def max_margin(
    inputs: Float[ArrayLike, "m d"], labels: Float[ArrayLike, " m"], *, iterations: int = 20_000
) -> MaxMargin:
    """The exact hard-margin linear SVM through the origin (no intercept).

    ``gamma u`` is the point of the convex hull of ``z_k = y_k x_k`` nearest to 0 (so ``gamma``
    is the largest achievable minimum margin of a unit vector). An accelerated projected-gradient
    solve on the simplex finds the support vectors; the solution is then made exact on them
    (``w = Z_S^T lam``, ``Z_S w = 1``) and accepted only if it satisfies every KKT condition.

    Args:
        inputs: ``(m, d)``.
        labels: ``(m,)``, -1 or +1.
        iterations: projected-gradient iterations before the polish.

    Returns:
        A :class:`MaxMargin`.

    Raises:
        ValueError: bad shapes or labels, or data not linearly separable through the origin.

    >>> svm = max_margin(jnp.array([[1.0, 0.0], [0.0, 1.0]]), jnp.array([1.0, 1.0]))
    >>> [round(float(v), 6) for v in svm.direction], round(float(svm.margin), 6)
    ([0.707107, 0.707107], 0.707107)
    >>> max_margin(jnp.array([[1.0], [1.0]]), jnp.array([1.0, -1.0]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: data are not linearly separable through the origin (largest minimum margin ...
    """
    inputs, labels = _check(inputs, labels)
    z = np.asarray(labels[:, None] * inputs)
    scale = float(np.max(np.linalg.norm(z, axis=1)))
    if scale == 0.0:
        raise ValueError("inputs must not all be zero")
    a = np.asarray(_nearest_hull_point(jnp.asarray(z / scale), int(iterations)))
    point = z.T @ a
    gamma = float(np.linalg.norm(point))
    best = point / gamma if gamma > 0 else point
    if gamma <= 1e-10 * scale or np.min(z @ best) <= 0.0:
        raise ValueError(
            "data are not linearly separable through the origin (largest minimum margin of a "
            f"unit vector: {max(gamma, 0.0):.3g}); the max-margin direction does not exist"
        )
    # Polish: the exact solution on the support found (KKT: Z_S w = 1, w = Z_S^T lam, lam >= 0).
    support = a > 1e-6 * a.max()
    zs = z[support]
    lam, *_ = np.linalg.lstsq(zs @ zs.T, np.ones(zs.shape[0]), rcond=None)
    w = zs.T @ lam
    margins = z @ w
    if np.all(lam >= -1e-12 * np.abs(lam).max()) and np.min(margins) >= 1.0 - 1e-9:
        gamma = 1.0 / float(np.linalg.norm(w))
        best = w * gamma
        a = np.zeros_like(a)
        a[support] = np.maximum(lam, 0.0) / np.maximum(lam, 0.0).sum()
    direction = jnp.asarray(best)
    return MaxMargin(
        direction,
        jnp.asarray(gamma),
        jnp.asarray(a),
        kkt_residual(direction, inputs, labels, depth=1),
    )


@jax.jit
def _nnls(a, b, iterations=20_000):
    """min ||a x - b|| over x >= 0 by FISTA with restart (small dense problems)."""
    gram, rhs = a.T @ a, a.T @ b
    step = 1.0 / jnp.maximum(jnp.linalg.norm(gram, 2), 1e-300)
    x0 = jnp.zeros(a.shape[1])

    def body(_, carry):
        x, y, t = carry
        x_new = jnp.maximum(y - step * (gram @ y - rhs), 0.0)
        t_new = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * t * t))
        restart = jnp.vdot(y - x_new, x_new - x) > 0
        y_new = jnp.where(restart, x_new, x_new + (t - 1.0) / t_new * (x_new - x))
        return x_new, y_new, jnp.where(restart, 1.0, t_new)

    x, _, _ = jax.lax.fori_loop(0, iterations, body, (x0, x0, jnp.asarray(1.0)))
    return x


def kkt_residual(
    predictor: Float[ArrayLike, " d"],
    inputs: Float[ArrayLike, "m d"],
    labels: Float[ArrayLike, " m"],
    depth: float = 1.0,
    *,
    active_tol: float = 0.05,
    support_tol: float = 1e-2,
) -> Float[Array, ""]:
    """Relative KKT residual of ``beta``'s direction for ``min ||beta||_(2/N)``, margins >= 1.

    ``beta`` is rescaled to minimum margin 1 (primal feasibility, tight). With ``q = 2/N``,
    ``g_i = |b_i|^(q-1) sign(b_i)`` (the gradient of ``||b||_q^q / q``) must equal
    ``z = sum_k lam_k y_k x_k`` for some ``lam >= 0`` carried by the active constraints
    (margin <= 1 + ``active_tol``; complementary slackness) on the support
    (``|b_i| >= support_tol * max |b|``; every coordinate for N = 1). For N = 2 (the L1 norm) the
    off-support coordinates must also satisfy ``|z_i| <= 1``; for N > 2 the objective is not
    differentiable there and imposes nothing. The multipliers come from a non-negative
    least-squares fit, and the residual is ``||g_S - z_S|| / ||g_S||`` (plus the N = 2
    off-support violations): 0 at a stationary point.

    Args:
        predictor: ``beta``, shape ``(d,)``; its minimum margin must be > 0.
        inputs, labels: the data (labels -1 or +1).
        depth: ``N >= 1``.
        active_tol, support_tol: the thresholds above.

    Returns:
        The residual (a float array).

    Raises:
        ValueError: bad shapes or labels, ``depth < 1``, or ``beta`` misclassifies a sample.

    >>> x = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    >>> y = jnp.array([1.0, 1.0])
    >>> float(kkt_residual(jnp.array([1.0, 1.0]), x, y, depth=1))
    0.0
    >>> round(float(kkt_residual(jnp.array([2.0, 1.0]), x, y, depth=1)), 6)   # not the SVM
    0.894427
    """
    inputs, labels = _check(inputs, labels)
    b = np.asarray(predictor, dtype=float)
    if b.shape != (inputs.shape[1],):
        raise ValueError(f"beta must have shape (d,) = ({inputs.shape[1]},), got {b.shape}")
    if not float(depth) >= 1.0:
        raise ValueError(f"depth must be >= 1, got {depth}")
    z = np.asarray(labels[:, None] * inputs)
    margins = z @ b
    if not np.min(margins) > 0.0:
        raise ValueError("beta must classify every sample correctly (all margins > 0)")
    b = b / np.min(margins)
    active = z @ b <= 1.0 + active_tol
    q = 2.0 / float(depth)
    if float(depth) == 1.0:
        support = np.ones(b.shape, dtype=bool)
    else:
        support = np.abs(b) >= support_tol * np.abs(b).max()
    g = np.abs(b[support]) ** (q - 1.0) * np.sign(b[support])
    # Inactive constraints and off-support rows enter as zeros: one (d, m) shape, one compile.
    design = np.where(support[:, None] & active[None, :], z.T, 0.0)
    rhs = np.zeros(b.shape)
    rhs[support] = g
    lam = np.asarray(_nnls(design, rhs))
    zfit = z.T @ lam
    residual = np.sum((g - zfit[support]) ** 2)
    if float(depth) == 2.0:
        residual += np.sum(np.maximum(np.abs(zfit[~support]) - 1.0, 0.0) ** 2)
    return jnp.asarray(np.sqrt(residual) / np.linalg.norm(g))
