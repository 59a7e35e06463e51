"""Quadratic networks (docs/science/experiments.md, experiment E2): f(x) = x^T W^T W x + b.

A one-hidden-layer network with square activations, ``f(x) = sum_i ((W x)_i)^2 + b``, is the
quadratic form of the positive semi-definite matrix ``P = W^T W`` plus an optional bias ``b``.
It learns a target ``y = x^T M* x`` (``M* = W*^T W*``) from ``m`` Gaussian inputs
``x ~ N(0, I_d)`` on the mean-squared error

    L(W, b) = mean_k (f(x_k) - y_k)^2          (no 1/2, as in the authors' scripts).

The tracked modes are the top-``k`` eigenvalues of ``P``; from ``P(0) = init * I`` they are
learned one at a time, largest target first.

**Time scale against the toy model's convention.** For symmetric ``D`` and ``x ~ N(0, I)``, Isserlis' theorem gives

    E[(x^T D x + c)^2] = 2 ||D||_F^2 + (tr D + c)^2.

With ``D = P - M*`` the population loss is therefore ``2 ||D||_F^2 + (tr D + b)^2``
(:func:`population_loss`). Its first term has gradient ``8 W D`` in ``W``, so
``dP/dt = -8 (D P + P D)``; when ``P`` commutes with ``M*`` (the identity start does) every
eigenvalue follows the depth-2 toy flow of docs/science/toy-model.md with ``c = 16``:

    d p_i/dt = 16 p_i (sigma*_i - p_i).

* **Without bias** the trace term adds ``4 tr(D) W`` to the gradient, hence

      d p_i/dt = 16 p_i (sigma*_i - p_i) + 8 (tr M* - tr P) p_i,

  a growth rate shared by *every* eigenvalue, zero targets included, as long as
  ``tr P < tr M*``: the trace couples all eigenvalues. Early on (``tr P`` ~ 0) this shared
  rate, ``8 tr M*`` (16.7 for E2), exceeds every eigenvalue's own rate ``16 sigma*_i``, so all
  eigenvalues, the zero-target ones included, rise together with the first learned ones; the
  spurious ones must decay again later, and with few samples some of them never do.
* **With a bias** the trace term becomes ``(tr D + b)^2`` and the shared rate becomes
  ``-8 (tr D + b)``. The bias relaxes towards ``-tr D`` (``db/dt = -2 (tr D + b)``) and starts
  near it (``b(0) = mean(y) ~ tr M*``, ``tr P(0) ~ 0``), so the coupling is removed: on the
  plateaus each eigenvalue follows the decoupled flow above, ``c = 16`` (:func:`time_scale`).
  The bias is slower than a jump (rate 2 against ``16 sigma*``), so while ``tr P`` rises by
  ``Delta``, ``tr D + b`` is transiently positive with integral ``Delta / 2``: every other
  eigenvalue shrinks by a factor ``exp(-4 Delta)``, which delays the later modes (by about
  ``Delta / (4 sigma*_j)``) but never makes them rise early.

With finitely many samples (E2: ``m = 100 < d(d+1)/2 = 210``) the empirical loss is
underdetermined and only approximates this; small initialization picks the low-rank solution.

**Domain.** ``M*`` must be square and symmetric (:class:`Data`, concrete arrays); it should
be positive semi-definite: ``W^T W`` cannot reach a negative eigenvalue, which is accepted but
reported as a target of 0 (:func:`targets`). :func:`init` needs ``0 < scale < inf``,
:func:`gaussian_data` an integer ``m >= 1`` and ``noise >= 0``: a ``ValueError`` names the
argument. Observations may be any real numbers; an all-zero ``M*`` makes
:func:`reconstruction_error` NaN.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxflow.models import quadratic as qn
    >>> data = qn.gaussian_data(jax.random.key(0), qn.diagonal_target(6, (1.0, 0.5)), 40)
    >>> params = qn.init(jax.random.key(1), 1e-3, data, bias=True)
    >>> [round(float(v), 6) for v in qn.modes(params, data, k=3)]
    [0.001, 0.001, 0.001]
    >>> [float(v) for v in qn.targets(data, k=3)]
    [1.0, 0.5, 0.0]
    >>> bool(jnp.isclose(params["bias"], jnp.mean(data.observations)))
    True
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from jaxflow._integers import check_integer
from jaxflow.models import _gaussian

__all__ = [
    "Data", "diagonal_target", "eigenvalues", "gaussian_data", "gram", "init", "loss", "modes",
    "population_loss", "predict", "reconstruction_error", "targets", "time_scale",
]


class Data(eqx.Module):
    """A regression problem for the quadratic network.

    Attributes:
        inputs: ``x_k``, shape ``(m, d)``.
        observations: ``y_k``, shape ``(m,)``.
        target: ``M*``, shape ``(d, d)``, symmetric.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxflow.models import quadratic as qn
        >>> x = jnp.array([[1.0, 0.0], [1.0, 1.0]])
        >>> target = jnp.diag(jnp.array([1.0, 0.0]))
        >>> data = qn.Data(inputs=x, observations=jnp.array([1.0, 1.0]), target=target)
        >>> data.dim
        2
    """

    inputs: Float[Array, "m d"]
    observations: Float[Array, " m"]
    target: Float[Array, "d d"]

    def __check_init__(self):
        m, d = _check_inputs(self.inputs)
        _check_target(self.target)
        if self.target.shape[0] != d:
            raise ValueError(
                f"inputs have dimension d = {d} but the target is {self.target.shape[0]} x "
                f"{self.target.shape[1]}"
            )
        if self.observations.shape != (m,):
            raise ValueError(
                f"observations must have shape (m,) = ({m},), got {self.observations.shape}"
            )

    @property
    def dim(self) -> int:
        return self.target.shape[0]


def _check_inputs(inputs) -> tuple[int, int]:
    if inputs.ndim != 2 or inputs.shape[0] < 1:
        raise ValueError(f"inputs must have shape (m, d) with m >= 1, got {inputs.shape}")
    return inputs.shape


def _check_target(target) -> None:
    if target.ndim != 2 or target.shape[0] != target.shape[1]:
        raise ValueError(f"target M* must be a square (d, d) matrix, got shape {target.shape}")
    if not isinstance(target, jax.core.Tracer):
        t = np.asarray(target)
        if not np.allclose(t, t.T, rtol=1e-12, atol=1e-12 * max(1.0, float(np.abs(t).max()))):
            raise ValueError("target M* must be symmetric (M* = W*^T W*)")


def _check_k(k: int, d: int) -> int:
    check_integer("k (number of modes)", k, high=d)
    return int(k)


def diagonal_target(d: int, values=(1.0, 1.0 / 2.0, 1.0 / 3.0, 1.0 / 4.0)) -> Float[Array, "d d"]:
    """``M* = diag(values, 0, ..., 0)`` of size ``d x d`` (E2: d = 20, values 1, 1/2, 1/3, 1/4).

    >>> diagonal_target(3, (2.0,)).tolist()
    [[2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or values.size > d:
        raise ValueError(f"values: {values.size} values do not fit a {d} x {d} target")
    diag = np.zeros(d)
    diag[: values.size] = values
    return jnp.asarray(np.diag(diag))


def gaussian_data(
    key: jax.Array, target: Float[ArrayLike, "d d"], m: int, noise: float = 0.0
) -> Data:
    """``m`` samples ``x ~ N(0, I_d)``, ``y = x^T M* x + noise * N(0, 1)`` (seeded).

    Args:
        key: PRNG key.
        target: symmetric ``M*``, shape ``(d, d)``.
        m: number of samples (>= 1).
        noise: standard deviation of additive Gaussian label noise (>= 0).

    Returns:
        A :class:`Data`.

    Raises:
        ValueError: ``M*`` not square or not symmetric, ``m < 1``, ``noise < 0``.

    >>> import jax
    >>> data = gaussian_data(jax.random.key(0), jnp.eye(3), 5)
    >>> data.inputs.shape, data.observations.shape
    ((5, 3), (5,))
    >>> bool(jnp.allclose(data.observations, jnp.sum(data.inputs**2, axis=1)))
    True
    """
    target = jnp.asarray(target, dtype=float)
    _check_target(target)
    check_integer("m (number of samples)", m)
    if not float(noise) >= 0.0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    key_x, key_noise = jax.random.split(key)
    inputs = _gaussian.normal(key_x, (int(m), target.shape[0]))
    observations = jnp.einsum("ki,ij,kj->k", inputs, target, inputs)
    if noise:
        observations = observations + noise * _gaussian.normal(key_noise, (int(m),))
    return Data(inputs, observations, target)


def init(key: jax.Array, scale: float, data: Data, *, bias: bool = False) -> dict[str, Array]:
    """Initial parameters with ``W^T W(0) = scale * I``.

    Args:
        key: PRNG key of the random orthogonal ``Q``.
        scale: ``init > 0``; ``W(0) = sqrt(scale) Q``.
        data: the problem (gives ``d``, and ``mean(y)`` for the bias).
        bias: add a scalar bias, initialized to ``mean(y)``.

    Returns:
        ``{"w": (d, d)}``, plus ``"bias": ()`` with ``bias=True``.

    >>> import jax
    >>> data = gaussian_data(jax.random.key(0), jnp.eye(4), 10)
    >>> p = init(jax.random.key(1), 1e-2, data)
    >>> sorted(p), bool(jnp.allclose(p["w"].T @ p["w"], 1e-2 * jnp.eye(4)))
    (['w'], True)
    """
    if not 0.0 < float(scale) < np.inf:
        raise ValueError(f"scale (init) must be > 0 and finite, got {scale}")
    w = jnp.sqrt(jnp.asarray(scale, dtype=float)) * jax.random.orthogonal(key, data.dim)
    params = {"w": w}
    if bias:
        params["bias"] = jnp.mean(data.observations)
    return params


def gram(params) -> Float[Array, "d d"]:
    """``P = W^T W``, the matrix of the network's quadratic form.

    >>> import jax, jax.numpy as jnp
    >>> from jaxflow.models import quadratic as qn
    >>> data = qn.gaussian_data(jax.random.key(0), qn.diagonal_target(3, (1.0, 0.5)), 8)
    >>> params = qn.init(jax.random.key(1), 0.25, data)
    >>> bool(jnp.allclose(qn.gram(params), 0.25 * jnp.eye(3)))
    True
    """
    w = params["w"]
    return w.T @ w


def predict(params, inputs: Float[Array, "m d"]) -> Float[Array, " m"]:
    """``f(x) = sum_i ((W x)_i)^2 (+ b)`` for each row ``x`` of ``inputs``.

    >>> import jax.numpy as jnp
    >>> from jaxflow.models import quadratic as qn
    >>> qn.predict({"w": jnp.eye(3), "bias": jnp.array(0.5)}, jnp.array([[1.0, 2.0, 0.0]])).tolist()
    [5.5]
    """
    w = params["w"]
    if w.ndim != 2 or w.shape[0] != w.shape[1] or inputs.shape[-1] != w.shape[1]:
        raise ValueError(
            f"W must be (d, d) with d = {inputs.shape[-1]} (the input dimension), got {w.shape}"
        )
    out = jnp.sum((inputs @ w.T) ** 2, axis=-1)
    if "bias" in params:
        out = out + params["bias"]
    return out


def loss(params, data: Data) -> Float[Array, ""]:
    """Mean squared error ``mean_k (f(x_k) - y_k)^2`` (no 1/2).

    >>> import jax, jax.numpy as jnp
    >>> from jaxflow.models import quadratic as qn
    >>> data = qn.gaussian_data(jax.random.key(0), qn.diagonal_target(3, (1.0, 0.5)), 8)
    >>> exact = {"w": jnp.diag(jnp.sqrt(jnp.array([1.0, 0.5, 0.0])))}   # W^T W = M*
    >>> float(qn.loss(exact, data)) < 1e-20
    True
    """
    return jnp.mean((predict(params, data.inputs) - data.observations) ** 2)


def population_loss(params, target: Float[ArrayLike, "d d"]) -> Float[Array, ""]:
    """Noise-free ``E_x[(f(x) - x^T M* x)^2] = 2 ||D||_F^2 + (tr D + b)^2``, ``D = W^T W - M*``.

    >>> import jax
    >>> data = gaussian_data(jax.random.key(0), jnp.eye(2), 3)
    >>> float(population_loss(init(jax.random.key(1), 1.0, data), jnp.eye(2))) < 1e-20
    True
    """
    diff = gram(params) - jnp.asarray(target)
    shift = jnp.trace(diff) + params.get("bias", 0.0)
    return 2.0 * jnp.sum(diff**2) + shift**2


def time_scale() -> float:
    """``c = 16``: with the trace term removed (bias), each eigenvalue of ``W^T W`` follows the
    depth-2 toy flow ``c p (sigma* - p)`` under the population MSE (module docstring).

    >>> from jaxflow.models import quadratic as qn
    >>> qn.time_scale()
    16.0
    """
    return 16.0


def eigenvalues(params) -> Float[Array, " d"]:
    """All eigenvalues of ``W^T W``, descending.

    >>> import jax.numpy as jnp
    >>> from jaxflow.models import quadratic as qn
    >>> qn.eigenvalues({"w": jnp.diag(jnp.array([1.0, 3.0]))}).tolist()
    [9.0, 1.0]
    """
    return jnp.linalg.eigvalsh(gram(params))[::-1]


def modes(params, data: Data | None = None, k: int = 5) -> Float[Array, " k"]:
    """Top-``k`` eigenvalues of ``W^T W``, descending (the modes whose learning is tracked).

    >>> import jax.numpy as jnp
    >>> from jaxflow.models import quadratic as qn
    >>> qn.modes({"w": jnp.diag(jnp.array([1.0, 3.0, 0.5]))}, k=2).tolist()
    [9.0, 1.0]
    """
    del data
    k = _check_k(k, params["w"].shape[1])
    return eigenvalues(params)[:k]


def targets(data: Data, k: int = 5) -> Float[Array, " k"]:
    """Top-``k`` eigenvalues of ``M*``, descending; negative ones (which ``W^T W``, being
    positive semi-definite, cannot reach) and round-off are set to 0.

    >>> import jax, jax.numpy as jnp
    >>> from jaxflow.models import quadratic as qn
    >>> data = qn.gaussian_data(jax.random.key(0), qn.diagonal_target(3, (1.0, 0.5)), 8)
    >>> qn.targets(data, k=3).tolist()
    [1.0, 0.5, 0.0]
    """
    k = _check_k(k, data.dim)
    values = np.linalg.eigvalsh(np.asarray(data.target))[::-1][:k]
    floor = 1e-12 * max(float(np.abs(values).max()), 1e-300)
    return jnp.asarray(np.where(values > floor, values, 0.0))


def reconstruction_error(params, data: Data) -> Float[Array, ""]:
    """``||W^T W - M*||_F^2 / ||M*||_F^2``.

    >>> import jax, jax.numpy as jnp
    >>> from jaxflow.models import quadratic as qn
    >>> data = qn.gaussian_data(jax.random.key(0), qn.diagonal_target(3, (1.0, 0.5)), 8)
    >>> float(qn.reconstruction_error({"w": jnp.zeros((3, 3))}, data))
    1.0
    """
    return jnp.sum((gram(params) - data.target) ** 2) / jnp.sum(data.target**2)
