"""Deep matrix sensing (docs/science/experiments.md, experiment E1): W = W_1 W_2 ... W_N.

A linear measurement operator observes a low-rank target W* through ``y_k = <A_k, W*>``
(Gaussian sensing, or matrix completion: observed entries). The model is a product of ``N``
factor matrices and is trained on the mean-squared error

    L(W) = mean_k (<A_k, W> - y_k)^2          (no 1/2, as in the authors' scripts).

**Time scale against the toy model's convention.** For Gaussian sensing ``E L = ||W - W*||_F^2``, whose gradient
is ``2 (W - W*)``: twice that of ``1/2 ||W - W*||^2``. With ``N`` balanced factors and
commuting (aligned) measurements each singular value then follows the toy flow with ``c = 2N``
(``c = N`` for the ``1/2`` loss, docs/science/toy-model.md); see :func:`time_scale`.

Depth is data when ``pad_to`` is given: the factors are stacked ``(pad_to, d, d)`` and those past
the lane's depth are replaced by the identity in the product (hence out of the gradient), so one
compiled program serves every depth. Otherwise the factors are a tuple of ``N`` matrices
(rectangular allowed) and each depth compiles its own program.

**Domain.** :func:`init` needs an integer depth ``>= 1``, ``0 < scale < inf`` (not checked
when traced), square shapes for identity/orthogonal starts and ``pad_to >= depth``; a
``ValueError`` names the argument. ``W*``: any real matrix, signed, of any rank (the modes
are singular values); an all-zero ``W*`` is accepted but makes :func:`reconstruction_error`
NaN (0/0). ``m >= 1`` measurements; completion needs ``m <= d1 d2``.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxflow.models import matrix_sensing as ms
    >>> problem = ms.gaussian_problem(jax.random.key(0), ms.diagonal_target(6, (3.0, 1.0)), 40)
    >>> params = ms.init(jax.random.key(1), 1e-3, depth=3, shape=(6, 6), kind="identity")
    >>> [round(float(v), 6) for v in ms.modes(params, problem, k=2)]
    [0.001, 0.001]
"""

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from jaxflow._integers import check_integer
from jaxflow.models import _gaussian

__all__ = [
    "Init", "Problem", "completion_problem", "diagonal_target", "effective_rank",
    "gaussian_problem", "init", "loss", "modes", "product", "reconstruction_error",
    "singular_values", "targets", "time_scale",
]


Init = Literal["gaussian", "identity", "orthogonal"]


class Problem(eqx.Module):
    """A sensing problem: the operator, the observations, the target.

    Attributes:
        operator: ``(m, d1 * d2)`` dense Gaussian sensing matrix (row-major ``vec``), or the
            ``(m,)`` flat indices of the observed entries for matrix completion.
        observations: ``y``, shape ``(m,)``.
        target: ``W*``, shape ``(d1, d2)``.
        completion: whether ``operator`` holds indices (static).

    Example:
        >>> import jax
        >>> from jaxflow.models import matrix_sensing as ms
        >>> target = ms.diagonal_target(4, (2.0, 1.0))
        >>> problem = ms.gaussian_problem(jax.random.key(0), target, m=10)
        >>> problem.operator.shape, problem.observations.shape, problem.target.shape
        ((10, 16), (10,), (4, 4))
    """

    operator: Array
    observations: Float[Array, " m"]
    target: Float[Array, "d1 d2"]
    completion: bool = eqx.field(static=True, default=False)

    def measure(self, w: Float[Array, "d1 d2"]) -> Float[Array, " m"]:
        """The measurements ``<A_k, w>`` (or the observed entries) of a matrix ``w``.

        >>> import jax
        >>> from jaxflow.models import matrix_sensing as ms
        >>> target = ms.diagonal_target(3, (2.0, 1.0))
        >>> problem = ms.completion_problem(jax.random.key(0), target, m=9)   # every entry
        >>> sorted(problem.measure(target).tolist())[-2:]
        [1.0, 2.0]
        """
        flat = w.reshape(-1)
        if self.completion:
            return flat[self.operator]
        return self.operator @ flat


def diagonal_target(d: int, values=(12.0, 6.0, 4.0, 3.0)) -> Float[Array, "d d"]:
    """``W* = diag(values, 0, ..., 0)`` of size ``d x d`` (E1: d = 50, values 12, 6, 4, 3).

    >>> from jaxflow.models import matrix_sensing as ms
    >>> ms.diagonal_target(3, (2.0, 1.0)).diagonal().tolist()
    [2.0, 1.0, 0.0]
    """
    values = np.asarray(values, dtype=float)
    if values.size > d:
        raise ValueError(f"values: {values.size} values do not fit a {d} x {d} target")
    diag = np.zeros(d)
    diag[: values.size] = values
    return jnp.asarray(np.diag(diag))


def gaussian_problem(key: jax.Array, target: Float[ArrayLike, "d1 d2"], m: int) -> Problem:
    """``m`` Gaussian measurements ``y_k = <A_k, W*>`` with i.i.d. N(0, 1) entries (seeded).

    Example:
        >>> import jax
        >>> from jaxflow.models import matrix_sensing as ms
        >>> target = ms.diagonal_target(4, (2.0, 1.0))
        >>> problem = ms.gaussian_problem(jax.random.key(0), target, m=10)
        >>> bool(abs(problem.measure(target) - problem.observations).max() < 1e-12)
        True
    """
    target = jnp.asarray(target, dtype=float)
    if target.ndim != 2:
        raise ValueError(f"target must be a matrix, got shape {target.shape}")
    if m < 1:
        raise ValueError(f"m (number of measurements) must be >= 1, got {m}")
    operator = _gaussian.normal(key, (m, target.size))
    return Problem(operator, operator @ target.reshape(-1), target)


def completion_problem(key: jax.Array, target: Float[ArrayLike, "d1 d2"], m: int) -> Problem:
    """Matrix completion: ``m`` distinct entries of ``W*`` observed, chosen uniformly (seeded).

    Example:
        >>> import jax
        >>> from jaxflow.models import matrix_sensing as ms
        >>> target = ms.diagonal_target(4, (2.0, 1.0))
        >>> problem = ms.completion_problem(jax.random.key(0), target, m=5)
        >>> problem.operator.shape, problem.completion
        ((5,), True)
    """
    target = jnp.asarray(target, dtype=float)
    if not 1 <= m <= target.size:
        raise ValueError(f"m (observed entries) must be in [1, {target.size}], got {m}")
    index = jax.random.choice(key, target.size, (m,), replace=False)
    return Problem(index, target.reshape(-1)[index], target, completion=True)


def time_scale(depth: float) -> float:
    """``c = 2N``: singular values follow the toy flow ``c sigma^(2-2/N)(sigma* - sigma)`` in
    the aligned, commuting case under the mean-squared-error loss (module docstring).

    >>> from jaxflow.models import matrix_sensing as ms
    >>> ms.time_scale(3)
    6.0
    """
    return 2.0 * depth


def init(
    key: jax.Array | None,
    scale: float,
    depth: int,
    shape: tuple[int, int],
    *,
    kind: Init = "gaussian",
    pad_to: int | None = None,
):
    """Initial factors.

    Args:
        key: PRNG key (gaussian and orthogonal inits).
        scale: ``init``: gaussian factors have std ``scale^(1/N)/sqrt(d)`` (RMS singular value of
            W(0) about ``scale``); identity: ``scale^(1/N) I``; orthogonal: balanced
            ``scale^(1/N) Q_j`` with random orthogonal ``Q_j``.
        depth: ``N``.
        shape: ``(d1, d2)`` of W; identity and orthogonal inits and ``pad_to`` need it square.
        kind: "gaussian", "identity" or "orthogonal".
        pad_to: stack ``pad_to >= depth`` factors (depth as data; see :func:`product`).

    Returns:
        A tuple of ``N`` factors, or with ``pad_to`` a dict ``{"factors": (pad_to, d, d),
        "depth": depth}``.

    Example:
        >>> import jax
        >>> from jaxflow.models import matrix_sensing as ms
        >>> [w.shape for w in ms.init(jax.random.key(0), 1e-4, depth=3, shape=(5, 5))]
        [(5, 5), (5, 5), (5, 5)]
        >>> ms.init(jax.random.key(0), 1e-4, depth=2, shape=(5, 5), pad_to=4)["factors"].shape
        (4, 5, 5)
    """
    d1, d2 = shape
    depth = check_integer("depth", depth)
    # A traced scale (scale as data under vmap) cannot be checked here.
    if not isinstance(scale, jax.core.Tracer) and not 0.0 < float(scale) < np.inf:
        raise ValueError(f"scale (init) must be > 0 and finite, got {scale}")
    if kind not in ("gaussian", "identity", "orthogonal"):
        raise ValueError(f"kind must be 'gaussian', 'identity' or 'orthogonal', got {kind!r}")
    if (kind != "gaussian" or pad_to is not None) and d1 != d2:
        raise ValueError(f"shape must be square for kind={kind!r} or pad_to, got {shape}")
    if pad_to is not None and pad_to < depth:
        raise ValueError(f"pad_to must be >= depth ({depth}), got {pad_to}")
    count = pad_to or depth
    factor = jnp.asarray(scale, dtype=float) ** (1.0 / depth)
    dims = [d1] + [d1] * (count - 1) + [d2]  # hidden width d1 (square when d1 == d2)
    if kind == "identity":
        mats = [factor * jnp.eye(d1) for _ in range(count)]
    else:
        if key is None:
            raise ValueError(f"key is required for kind={kind!r}")
        keys = jax.random.split(key, count)
        if kind == "gaussian":
            mats = [
                factor / jnp.sqrt(d1) * _gaussian.normal(k, (dims[j], dims[j + 1]))
                for j, k in enumerate(keys)
            ]
        else:
            mats = [factor * jax.random.orthogonal(k, d1) for k in keys]
    if pad_to is None:
        return tuple(mats)
    return {"factors": jnp.stack(mats), "depth": jnp.asarray(float(depth))}


def product(params) -> Float[Array, "d1 d2"]:
    """``W = W_1 W_2 ... W_N``; stacked factors past ``depth`` act as the identity.

    >>> from jaxflow.models import matrix_sensing as ms
    >>> params = ms.init(None, 1e-2, depth=2, shape=(3, 3), kind="identity")   # 0.1 I each
    >>> round(float(ms.product(params)[0, 0]), 12)
    0.01
    """
    if isinstance(params, dict):
        factors, depth = params["factors"], params["depth"]
        eye = jnp.eye(factors.shape[-1])

        def step(w, j):
            layer = jnp.where(j < depth, factors[j.astype(int)], eye)
            return w @ layer, None

        w, _ = jax.lax.scan(step, eye, jnp.arange(factors.shape[0], dtype=depth.dtype))
        return w
    w = params[0]
    for layer in params[1:]:
        w = w @ layer
    return w


def loss(params, problem: Problem) -> Float[Array, ""]:
    """Mean squared measurement error ``mean_k (<A_k, W> - y_k)^2``.

    Example:
        >>> import jax
        >>> from jaxflow.models import matrix_sensing as ms
        >>> target = ms.diagonal_target(4, (2.0, 1.0))
        >>> problem = ms.gaussian_problem(jax.random.key(0), target, m=10)
        >>> float(ms.loss((target,), problem))   # a depth-1 "product" equal to W*
        0.0
    """
    residual = problem.measure(product(params)) - problem.observations
    return jnp.mean(residual**2)


def singular_values(params) -> Float[Array, " r"]:
    """All singular values of ``W``, largest first.

    >>> from jaxflow.models import matrix_sensing as ms
    >>> ms.singular_values((ms.diagonal_target(3, (1.0, 2.0)),)).tolist()
    [2.0, 1.0, 0.0]
    """
    return jnp.linalg.svd(product(params), compute_uv=False)


def modes(params, problem: Problem | None = None, k: int = 5) -> Float[Array, " k"]:
    """Top-``k`` singular values of W (the modes whose incremental learning is tracked).

    >>> from jaxflow.models import matrix_sensing as ms
    >>> ms.modes((ms.diagonal_target(4, (3.0, 1.0)),), k=3).tolist()
    [3.0, 1.0, 0.0]
    """
    del problem
    return singular_values(params)[:k]


def targets(problem: Problem, k: int = 5) -> Float[Array, " k"]:
    """Top-``k`` singular values of ``W*``.

    Example:
        >>> import jax
        >>> from jaxflow.models import matrix_sensing as ms
        >>> problem = ms.gaussian_problem(jax.random.key(0), ms.diagonal_target(6), m=20)
        >>> ms.targets(problem).tolist()
        [12.0, 6.0, 4.0, 3.0, 0.0]
    """
    return jnp.linalg.svd(problem.target, compute_uv=False)[:k]


def reconstruction_error(params, problem: Problem) -> Float[Array, ""]:
    """``||W - W*||_F^2 / ||W*||_F^2``.

    Example:
        >>> import jax
        >>> from jaxflow.models import matrix_sensing as ms
        >>> target = ms.diagonal_target(4, (2.0, 1.0))
        >>> problem = ms.gaussian_problem(jax.random.key(0), target, m=10)
        >>> float(ms.reconstruction_error((ms.diagonal_target(4, (2.0,)),), problem))  # no 1
        0.2
    """
    return jnp.sum((product(params) - problem.target) ** 2) / jnp.sum(problem.target**2)


def effective_rank(params, threshold: float = 0.01) -> Int[Array, ""]:
    """Number of singular values above ``threshold`` times the largest.

    >>> from jaxflow.models import matrix_sensing as ms
    >>> int(ms.effective_rank((ms.diagonal_target(5, (12.0, 6.0, 0.1)),)))   # 0.1 < 1% of 12
    2
    """
    s = singular_values(params)
    return jnp.sum(s > threshold * s[0]).astype(jnp.int32)
