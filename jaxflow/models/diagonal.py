"""Diagonal linear networks (docs/science/experiments.md, experiments E3 and E5): beta = w_+^N - w_-^N.

A linear predictor ``f(x) = <beta, x>`` parametrized by two weight vectors raised to the depth,

    beta = w_+^N - w_-^N,      w_+(0) = w_-(0) = init^(1/N)   (so beta(0) = 0),

is trained by full-batch gradient descent or flow on one of three losses (:data:`LOSSES`):

* ``"squared"`` (regression, E5): ``mean_k (<beta, x_k> - y_k)^2`` (no 1/2);
* ``"exponential"`` (classification, E3): ``mean_k exp(-y_k <beta, x_k>)``;
* ``"logistic"`` (classification): ``mean_k ln(1 + exp(-y_k <beta, x_k>))``.

Classification labels must be -1 or +1 (map {0, 1} labels with ``2 y - 1``). Depth is data: it
is a float array inside :class:`Problem`, so every depth shares one compiled program (the
weights have the same shape ``(d,)`` whatever the depth). The modes are ``|beta_i|`` on the
target's coordinates, largest ``|w*_i|`` first (:func:`modes`).

**Separable classification.** On separable data the exponential and logistic losses have no
minimizer: ``||beta||`` grows like ``ln t`` while its direction converges, for depth ``N``, to a
first-order stationary point of ``min ||beta||_(2/N)`` subject to ``y_k <beta, x_k> >= 1``
(Gunasekar et al. 2018; N = 1: the L2 max-margin direction, :mod:`jaxflow.baselines.max_margin`). The
losses are evaluated through ``logsumexp`` so that :func:`log_loss` stays finite after
``exp(-margin)`` underflows; :func:`loss_underflow` reports that state, in which the gradient
is exactly zero and both back-ends stop moving (no NaN).

**Domain.** Depth ``1 <= N < inf`` and init scale ``0 < scale < inf`` (:class:`Problem`,
:func:`init`: a ``ValueError`` naming the argument; a traced depth is not checked). Targets
``w*``: any real vector, signed (``w_+^N - w_-^N`` takes either sign) with zero coordinates
allowed; the data constructors refuse an all-zero one. Labels -1 or +1 for classification
(:func:`check_labels`, concrete arrays only), any real for regression; shapes (m, d), (m,),
(d,) with m >= 1 (:class:`Data`).

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxflow.models import diagonal as dn
    >>> data = dn.classification_data(jax.random.key(0), jnp.array([2.0, 1.0, 0.0]), 50)
    >>> problem = dn.Problem(data, depth=3.0, loss="exponential")
    >>> params = dn.init(1e-2, depth=3, d=3)
    >>> float(dn.loss(params, problem))          # beta(0) = 0: every margin is 0
    1.0
    >>> [round(float(v), 6) for v in dn.modes(params, problem, k=2)]
    [0.0, 0.0]
"""

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from jaxflow._integers import check_integer
from jaxflow.models import _gaussian

__all__ = [
    "Data", "LOSSES", "Loss", "Problem", "TINY_LOSS", "beta", "check_labels",
    "classification_data", "correlation", "cosine", "init", "linear_log_loss", "linear_loss",
    "log_loss", "loss", "loss_underflow", "margins", "modes", "regression_data",
    "sparse_target", "targets",
]

LOSSES = ("squared", "exponential", "logistic")
Loss = Literal["squared", "exponential", "logistic"]
TINY_LOSS = 1e-300
"""A loss below this has (nearly) underflowed: its gradient is zero or denormal in float64."""


class Data(eqx.Module):
    """A linear problem: inputs, labels (or regression observations), the target ``w*``.

    Attributes:
        inputs: ``x_k``, shape ``(m, d)``.
        labels: ``y_k``, shape ``(m,)``; -1 or +1 for classification.
        target: ``w*``, shape ``(d,)``.
    """

    inputs: Float[Array, "m d"]
    labels: Float[Array, " m"]
    target: Float[Array, " d"]

    def __check_init__(self):
        if self.inputs.ndim != 2 or self.inputs.shape[0] < 1:
            raise ValueError(f"inputs must have shape (m, d) with m >= 1, got {self.inputs.shape}")
        m, d = self.inputs.shape
        if self.labels.shape != (m,):
            raise ValueError(f"labels must have shape (m,) = ({m},), got {self.labels.shape}")
        if self.target.shape != (d,):
            raise ValueError(f"target must have shape (d,) = ({d},), got {self.target.shape}")


def check_labels(labels: ArrayLike) -> None:
    """Raise ``ValueError`` unless every label is -1 or +1 (concrete arrays only).

    >>> check_labels(jnp.array([1.0, -1.0]))
    >>> check_labels(jnp.array([0.0, 1.0]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: labels must be -1 or +1 for classification, got values [0.0, 1.0] (map {0, 1} ...
    """
    if isinstance(labels, jax.core.Tracer):
        return
    values = np.unique(np.asarray(labels))
    if not np.all(np.isin(values, (-1.0, 1.0))):
        shown = [float(v) for v in values[:6]]
        raise ValueError(
            f"labels must be -1 or +1 for classification, got values {shown} "
            "(map {0, 1} labels with 2 y - 1)"
        )


class Problem(eqx.Module):
    """What the loss of a diagonal network needs: the data, the depth, the loss kind.

    Attributes:
        data: a :class:`Data`.
        depth: ``N >= 1``, a float array (data: new depths reuse the compiled program).
        loss: one of :data:`LOSSES` (static); classification losses check the labels.
    """

    data: Data
    depth: Float[Array, ""]
    loss: str = eqx.field(static=True, default="exponential")

    def __init__(self, data: Data, depth: float | ArrayLike = 1.0, loss: Loss = "exponential"):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if loss != "squared":
            check_labels(data.labels)
        if not isinstance(depth, jax.core.Tracer) and not 1.0 <= float(np.asarray(depth)) < np.inf:
            raise ValueError(f"depth must be >= 1 and finite, got {depth}")
        self.data = data
        self.depth = jnp.asarray(depth, dtype=float)
        self.loss = loss


def _check_target(target) -> Float[Array, " d"]:
    target = jnp.asarray(target, dtype=float)
    if target.ndim != 1 or target.size < 1 or not bool(jnp.any(target != 0)):
        raise ValueError(
            f"target w* must be a non-zero vector of shape (d,), got shape {target.shape}"
        )
    return target


def sparse_target(
    d: int, values=(8.0, 4.0, 2.0, 1.0), normalize: bool = True
) -> Float[Array, " d"]:
    """``w* = (values, 0, ..., 0)`` of length ``d``, unit norm by default (E3: /sqrt(85)).

    >>> [round(float(v), 4) for v in sparse_target(5, (3.0, 4.0))]
    [0.6, 0.8, 0.0, 0.0, 0.0]
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or not 1 <= values.size <= d:
        raise ValueError(f"values: {values.size} values do not fit d = {d} coordinates")
    target = np.zeros(d)
    target[: values.size] = values
    if normalize:
        target /= np.linalg.norm(target)
    return _check_target(target)


def classification_data(key: jax.Array, target: Float[ArrayLike, " d"], m: int) -> Data:
    """``m`` Gaussian inputs ``x ~ N(0, I_d)`` labelled ``y = sign(<w*, x>)`` (E3; seeded).

    The data are separable by ``w*`` (a zero margin, probability 0, is labelled +1).

    >>> import jax
    >>> data = classification_data(jax.random.key(0), jnp.array([1.0, 0.0]), 4)
    >>> bool(jnp.all(data.labels == jnp.where(data.inputs[:, 0] >= 0, 1.0, -1.0)))
    True
    """
    target = _check_target(target)
    check_integer("m (number of samples)", m)
    inputs = _gaussian.normal(key, (int(m), target.size))
    labels = jnp.where(inputs @ target >= 0, 1.0, -1.0)
    return Data(inputs, labels, target)


def regression_data(
    key: jax.Array, target: Float[ArrayLike, " d"], m: int, *, unit_columns: bool = True
) -> Data:
    """``y = X w*`` with Gaussian ``X`` (``m x d``), columns scaled to unit norm (E5; seeded).

    >>> import jax
    >>> data = regression_data(jax.random.key(0), jnp.array([1.0, 0.0, 2.0]), 5)
    >>> [round(float(v), 12) for v in jnp.linalg.norm(data.inputs, axis=0)]
    [1.0, 1.0, 1.0]
    >>> bool(jnp.allclose(data.labels, data.inputs @ data.target))
    True
    """
    target = _check_target(target)
    check_integer("m (number of samples)", m)
    inputs = _gaussian.normal(key, (int(m), target.size))
    if unit_columns:
        inputs = inputs / jnp.linalg.norm(inputs, axis=0, keepdims=True)
    return Data(inputs, inputs @ target, target)


def init(scale: float, depth: float, d: int) -> dict[str, Array]:
    """``w_+ = w_- = scale^(1/N)`` (``beta(0) = 0``; each factor product ``w^N`` equals ``scale``).

    >>> p = init(1e-2, depth=2, d=3)
    >>> [round(float(v), 12) for v in p["w_plus"]]
    [0.1, 0.1, 0.1]
    """
    if not 0.0 < float(scale) < np.inf:
        raise ValueError(f"scale (init) must be > 0 and finite, got {scale}")
    if not 1.0 <= float(depth) < np.inf:
        raise ValueError(f"depth must be >= 1 and finite, got {depth}")
    check_integer("d", d)
    w = jnp.full((int(d),), float(scale) ** (1.0 / float(depth)))
    return {"w_plus": w, "w_minus": w}


def beta(params, depth: float | ArrayLike) -> Float[Array, " d"]:
    """The linear predictor ``beta = w_+^N - w_-^N``.

    >>> float(beta({"w_plus": jnp.array([2.0]), "w_minus": jnp.array([1.0])}, 3.0)[0])
    7.0
    """
    depth = jnp.asarray(depth, dtype=float)
    return params["w_plus"] ** depth - params["w_minus"] ** depth


def margins(predictor: Float[ArrayLike, " d"], data: Data) -> Float[Array, " m"]:
    """``y_k <beta, x_k>`` for a linear predictor ``beta``.

    >>> data = Data(jnp.eye(2), jnp.array([1.0, -1.0]), jnp.array([1.0, 0.0]))
    >>> margins(jnp.array([2.0, 3.0]), data).tolist()
    [2.0, -3.0]
    """
    predictor = jnp.asarray(predictor)
    if predictor.shape != data.target.shape:
        raise ValueError(f"beta must have shape (d,) = {data.target.shape}, got {predictor.shape}")
    return data.labels * (data.inputs @ predictor)


def linear_log_loss(predictor: Float[ArrayLike, " d"], data: Data, kind: Loss) -> Float[Array, ""]:
    """Natural log of the loss of a linear predictor, finite even where the loss underflows.

    >>> data = Data(jnp.eye(2), jnp.array([1.0, 1.0]), jnp.array([1.0, 0.0]))
    >>> round(float(linear_log_loss(jnp.array([800.0, 900.0]), data, "exponential")), 6)
    -800.693147
    """
    z = margins(predictor, data)
    m = jnp.log(jnp.asarray(z.shape[0], dtype=z.dtype))
    if kind == "exponential":
        return jax.nn.logsumexp(-z) - m
    if kind == "logistic":
        # ln softplus(-z) = ln ln(1 + e^(-z)); for large z, softplus(-z) ~ e^(-z).
        log_terms = jnp.where(z > 30.0, -z, jnp.log(jax.nn.softplus(-jnp.minimum(z, 30.0))))
        return jax.nn.logsumexp(log_terms) - m
    if kind == "squared":
        return jnp.log(jnp.mean((data.inputs @ jnp.asarray(predictor) - data.labels) ** 2))
    raise ValueError(f"kind must be one of {LOSSES}, got {kind!r}")


def linear_loss(predictor: Float[ArrayLike, " d"], data: Data, kind: Loss) -> Float[Array, ""]:
    """Loss of a linear predictor: squared (no 1/2), exponential or logistic (module docstring).

    >>> data = Data(jnp.eye(2), jnp.array([1.0, -1.0]), jnp.array([1.0, 0.0]))
    >>> round(float(linear_loss(jnp.zeros(2), data, "logistic")), 6)   # ln 2
    0.693147
    """
    if kind == "squared":
        return jnp.mean((data.inputs @ jnp.asarray(predictor) - data.labels) ** 2)
    if kind == "exponential":
        return jnp.mean(jnp.exp(-margins(predictor, data)))
    if kind == "logistic":
        return jnp.mean(jax.nn.softplus(-margins(predictor, data)))
    raise ValueError(f"kind must be one of {LOSSES}, got {kind!r}")


def loss(params, problem: Problem) -> Float[Array, ""]:
    """The training loss of the network ``params`` on ``problem`` (its ``loss`` kind)."""
    return linear_loss(beta(params, problem.depth), problem.data, problem.loss)


def log_loss(params, problem: Problem) -> Float[Array, ""]:
    """``ln loss``, finite after the loss underflows (see :func:`linear_log_loss`)."""
    return linear_log_loss(beta(params, problem.depth), problem.data, problem.loss)


def loss_underflow(params, problem: Problem) -> Float[Array, ""]:
    """1.0 where the loss is below :data:`TINY_LOSS` (its gradient has underflowed), else 0.0.

    >>> data = Data(jnp.eye(1), jnp.array([1.0]), jnp.array([1.0]))
    >>> problem = Problem(data, depth=1.0, loss="exponential")
    >>> float(loss_underflow({"w_plus": jnp.array([800.0]), "w_minus": jnp.zeros(1)}, problem))
    1.0
    """
    return (log_loss(params, problem) < jnp.log(TINY_LOSS)).astype(float)


def _order(target: Float[Array, " d"], k: int) -> Array:
    d = target.shape[0]
    check_integer("k (number of modes)", k, high=d)
    return jnp.argsort(-jnp.abs(target), stable=True)[: int(k)]


def modes(params, problem: Problem, k: int = 5) -> Float[Array, " k"]:
    """``|beta_i|`` on the ``k`` coordinates of largest ``|w*_i|`` (in that order, ties by
    index)."""
    return jnp.abs(beta(params, problem.depth))[_order(problem.data.target, k)]


def targets(problem: Problem, k: int = 5) -> Float[Array, " k"]:
    """The mode targets on the coordinates of :func:`modes`: ``|w*_i|`` for regression; for
    classification (``||beta||`` has no finite limit) 1 on the support of ``w*`` and 0 off it,
    so that a learning time at fraction ``f`` is the first time ``|beta_i| >= f`` (a level
    shared by every coordinate, as in E5's "first exceeds 0.1").

    >>> data = Data(jnp.eye(3), jnp.ones(3), jnp.array([0.0, 2.0, 1.0]))
    >>> targets(Problem(data, loss="squared"), k=3).tolist(), targets(Problem(data), k=3).tolist()
    ([2.0, 1.0, 0.0], [1.0, 1.0, 0.0])
    """
    values = jnp.abs(problem.data.target)[_order(problem.data.target, k)]
    if problem.loss == "squared":
        return values
    return jnp.where(values > 0, 1.0, 0.0)


def correlation(params, problem: Problem) -> Float[Array, ""]:
    """Cosine between ``beta`` and ``w*`` (E3's reported correlation ``<w*, beta/||beta||>``)."""
    return cosine(beta(params, problem.depth), problem.data.target)


def cosine(a: Float[ArrayLike, " d"], b: Float[ArrayLike, " d"]) -> Float[Array, ""]:
    """``<a, b> / (||a|| ||b||)``, 0 when either vector is 0.

    >>> c = cosine(jnp.array([1.0, 1.0]), jnp.array([2.0, 0.0]))
    >>> round(float(c), 12) == round(2**-0.5, 12)
    True
    """
    a, b = jnp.asarray(a), jnp.asarray(b)
    norm = jnp.linalg.norm(a) * jnp.linalg.norm(b)
    return jnp.where(norm > 0, jnp.vdot(a, b) / jnp.where(norm > 0, norm, 1.0), 0.0)
