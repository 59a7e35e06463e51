"""Deep linear networks on whitened data: Saxe et al.'s sigmoidal mode transitions.

A linear network ``x -> W_N ... W_1 x`` trained on whitened inputs (``E x x^T = I``) with the
squared loss has, up to a constant, the loss

    L(W) = 1/2 || T - W_N ... W_1 ||_F^2,        T = E y x^T (input-output correlation),

so the data enter only through ``T`` (:func:`loss`). Its modes are the singular values of the
product (:func:`modes`). Gradients come from ``jax.grad``.

**Aligned balanced start** (:func:`aligned_init`): with ``T = U S V^T`` and every factor
starting as ``a0^(1/N)`` on the singular directions, the flow stays aligned and each mode
strength ``a_r`` (the product's singular value) obeys ``da/dt = N a^(2-2/N) (s_r - a)``: the
toy model of :mod:`jaxflow.models.toy` with time scale ``N``. At depth 2 this is Saxe et al.'s
logistic (:func:`saxe_strength`), with transition (half-way) time
``ln(s/a0 - 1) / (2 s)`` (:func:`saxe_transition_time`).

**Initializations and the conserved quantity** (:func:`init`). From any start, gradient flow
conserves ``W_(j+1)^T W_(j+1) - W_j W_j^T`` for every pair of consecutive layers
(:func:`balancedness`); a start has ``lambda``-balancedness when this is ``lambda I`` (Kunin et
al. 2024): ``lambda = 0`` is the balanced start, ``|lambda|`` large makes one layer lazy.

References: A. Saxe, J. McClelland, S. Ganguli, "Exact solutions to the nonlinear dynamics of
learning in deep linear neural networks", ICLR 2014 (arXiv 1312.6120); D. Kunin et al., "Get rich
quick: exact solutions reveal how unbalanced initializations promote rapid feature learning",
NeurIPS 2024 (arXiv 2406.06158).

**Domain.** ``T``: any real ``(k, d)`` matrix (signed entries; the modes are its singular
values). :func:`init` needs ``0 < scale < inf`` and at least two positive widths;
:func:`aligned_init` also an integer depth ``>= 2`` and a non-zero ``T``: a ``ValueError``
names the argument. :func:`loss` does not check shapes; the Saxe closed forms need
``0 < a0 < s`` (else NaN).

Example (two layers, aligned start: the flow follows the logistic):
    >>> import jax.numpy as jnp
    >>> import jaxflow
    >>> from jaxflow.models import linear
    >>> target = jnp.diag(jnp.array([3.0, 1.0]))
    >>> params = linear.aligned_init(target, 1e-6, depth=2)
    >>> problem = jaxflow.Problem(loss=linear.loss, params0=params, args=target,
    ...                           modes=linear.modes, targets=jnp.array([3.0, 1.0]))
    >>> traj = jaxflow.solve(problem, jaxflow.Flow(), jaxflow.Request(fractions=(0.5,)))
    >>> exact = linear.saxe_transition_time(jnp.array([3.0, 1.0]), 1e-6)
    >>> bool(jnp.allclose(traj.learning_times[:, 0], exact, rtol=1e-6))
    True
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from jaxflow._integers import check_integer
from jaxflow.models import _gaussian

__all__ = [
    "aligned_init",
    "balancedness",
    "init",
    "loss",
    "modes",
    "product",
    "saxe_strength",
    "saxe_transition_time",
]


def _check_scale(scale) -> None:
    if not 0.0 < float(scale) < np.inf:
        raise ValueError(f"scale (init) must be > 0 and finite, got {scale}")


def product(params: Sequence[Array]) -> Float[Array, "k d"]:
    """``W_N ... W_1`` (``params`` lists ``W_1`` first).

    >>> product([jnp.ones((2, 3)), 2.0 * jnp.ones((1, 2))]).tolist()
    [[4.0, 4.0, 4.0]]
    """
    out = params[0]
    for w in params[1:]:
        out = w @ out
    return out


def loss(params: Sequence[Array], target: Float[ArrayLike, "k d"]) -> Float[Array, ""]:
    """``1/2 || T - W_N ... W_1 ||_F^2``."""
    return 0.5 * jnp.sum((jnp.asarray(target) - product(params)) ** 2)


def modes(params: Sequence[Array], target=None) -> Float[Array, " r"]:
    """Singular values of the product, largest first (``r = min`` of its shape)."""
    del target
    return jnp.linalg.svd(product(params), compute_uv=False)


def balancedness(params: Sequence[Array]) -> list[Array]:
    """``W_(j+1)^T W_(j+1) - W_j W_j^T`` for each pair of consecutive layers (conserved).

    >>> [q.tolist() for q in balancedness([jnp.array([[1.0, 0.0]]), jnp.array([[2.0]])])]
    [[[3.0]]]
    """
    return [nxt.T @ nxt - w @ w.T for w, nxt in zip(params[:-1], params[1:])]


def init(
    key: jax.Array,
    scale: float,
    widths: Sequence[int],
    *,
    balance: float | None = None,
) -> list[Array]:
    """A random small start for layers of ``widths = (d, h_1, ..., k)``.

    Args:
        key: PRNG key.
        scale: standard deviation of the Gaussian entries (of ``W_1`` when ``balance`` is set).
        widths: input, hidden and output widths.
        balance: ``None``: every layer i.i.d. Gaussian (unbalanced). A number ``lambda`` (two
            layers, ``k >= h``): ``W_2 = O (lambda I + W_1 W_1^T)^(1/2)`` with ``O`` having
            orthonormal columns, so that ``W_2^T W_2 - W_1 W_1^T = lambda I`` (needs
            ``lambda I + W_1 W_1^T`` positive semi-definite).

    >>> import jax
    >>> p = init(jax.random.key(0), 1e-2, (3, 2, 4), balance=0.5)
    >>> bool(jnp.allclose(balancedness(p)[0], 0.5 * jnp.eye(2), atol=1e-12))
    True
    """
    widths = [int(w) for w in widths]
    if len(widths) < 2 or min(widths) < 1:
        raise ValueError(f"widths must list at least two positive widths, got {widths}")
    _check_scale(scale)
    keys = jax.random.split(key, len(widths))
    layers = [
        scale * _gaussian.normal(k, (w_out, w_in))
        for k, w_in, w_out in zip(keys, widths[:-1], widths[1:])
    ]
    if balance is None:
        return layers
    if len(layers) != 2 or widths[2] < widths[1]:
        raise ValueError(
            f"balance needs two layers with output width >= hidden width, got widths {widths}"
        )
    w1 = layers[0]
    gram = balance * jnp.eye(widths[1]) + w1 @ w1.T
    values, vectors = jnp.linalg.eigh(gram)
    if float(values.min()) < -1e-12 * max(1.0, float(jnp.abs(values).max())):
        raise ValueError(f"balance = {balance} makes lambda I + W1 W1^T indefinite")
    root = (vectors * jnp.sqrt(jnp.maximum(values, 0.0))) @ vectors.T
    orthonormal, _ = jnp.linalg.qr(_gaussian.normal(keys[-1], (widths[2], widths[1])))
    return [w1, orthonormal @ root]


def aligned_init(target: Float[ArrayLike, "k d"], scale: float, depth: int) -> list[Array]:
    """The aligned balanced start: the product is ``U diag(scale) V^T`` on ``T``'s singular
    directions, every factor ``scale^(1/N)`` there (hidden width = ``rank T``).

    >>> p = aligned_init(jnp.diag(jnp.array([2.0, 1.0])), 1e-4, depth=3)
    >>> [round(float(v), 12) for v in modes(p)]
    [0.0001, 0.0001]
    """
    target = np.asarray(target, dtype=float)
    _check_scale(scale)
    # Depth 1 has no hidden layer: the first and last factors below would be two layers.
    depth = check_integer("depth (aligned_init)", depth, low=2)
    if target.ndim != 2 or not np.any(target):
        raise ValueError(f"target T must be a non-zero (k, d) matrix, got shape {target.shape}")
    u, s, vt = np.linalg.svd(target, full_matrices=False)
    r = int(np.sum(s > 1e-12 * s.max()))
    factor = float(scale) ** (1.0 / depth)
    middle = [factor * jnp.eye(r) for _ in range(depth - 2)]
    return [factor * jnp.asarray(vt[:r]), *middle, factor * jnp.asarray(u[:, :r])]


def saxe_strength(s: Float[ArrayLike, "..."], a0, t) -> Float[Array, "..."]:
    """Saxe et al.'s closed form ``a(t) = s / (1 + (s/a0 - 1) e^(-2 s t))`` (depth 2).

    >>> [round(float(saxe_strength(2.0, a0, t)), 12) for a0, t in ((1.0, 0.0), (1e-9, 50.0))]
    [1.0, 2.0]
    """
    s, a0, t = (jnp.asarray(v, dtype=float) for v in (s, a0, t))
    return s / (1.0 + (s / a0 - 1.0) * jnp.exp(-2.0 * s * t))


def saxe_transition_time(s: Float[ArrayLike, "..."], a0) -> Float[Array, "..."]:
    """Time at which a mode reaches half its strength: ``ln(s/a0 - 1) / (2 s)``.

    >>> round(float(saxe_transition_time(1.0, 1e-6)), 6)
    6.907755
    """
    s, a0 = jnp.asarray(s, dtype=float), jnp.asarray(a0, dtype=float)
    return jnp.log(s / a0 - 1.0) / (2.0 * s)
