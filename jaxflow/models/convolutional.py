"""Circular-convolutional linear networks (docs/science/experiments.md, experiment E4).

``N - 1`` full-width circular convolution layers (kernel length ``d``, one channel, no
nonlinearity) followed by a dense ``d -> 1`` layer:

    f(x) = <v, k_{N-1} * ... * k_1 * x>,     (k * h)_j = sum_l k_l h_{(j + l) mod d},

each layer a circular cross-correlation, as deep-learning "convolution" layers are. The network
is linear, ``f(x) = <beta, x>``, and in the Fourier domain it is a diagonal network: with
``hat`` the real FFT (``rfft``),

    hat(beta) = hat(v) * hat(k_1) * ... * hat(k_{N-1})          (elementwise),

the **canonical model** (:func:`canonical`, ``d // 2 + 1`` complex bins); its magnitudes are the
tracked modes ("Fourier amplitudes"). Everything is computed through FFTs; :func:`forward`
applies the layers one by one (also through FFTs) and equals ``inputs @ beta``. Depth 1 is the
dense layer alone: a plain linear model. The losses are those of
:mod:`jaxflow.models.diagonal` (the same :class:`~jaxflow.models.diagonal.Problem`; its
``depth`` field is not used: here depth is the number of layers, a shape).

Initialization: Gaussian kernels and dense layer with standard deviation ``init^(1/N) /
sqrt(d)``, so every layer's Fourier amplitudes have RMS ``init^(1/N)`` and those of the canonical
model RMS about ``init``.

**Domain.** :func:`init` needs an integer depth ``>= 1`` (the number of layers), ``d >= 1``
and ``0 < scale < inf`` (a ``ValueError`` names the argument). Targets and labels are those
of :mod:`~jaxflow.models.diagonal`: any non-zero real ``w*`` (its Fourier amplitudes are the
mode targets; a negative amplitude in :func:`fourier_target` is a phase of pi), labels -1 or
+1 for classification; ``k`` at most ``d // 2 + 1`` bins.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxflow.models import convolutional as cn
    >>> params = cn.init(jax.random.key(0), 1e-2, depth=3, d=8)
    >>> params["kernels"].shape, params["dense"].shape, cn.canonical(params).shape
    ((2, 8), (8,), (5,))
    >>> x = jax.random.normal(jax.random.key(1), (4, 8))
    >>> bool(jnp.allclose(cn.forward(params, x), x @ cn.beta(params), atol=1e-15))
    True
"""

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Complex, Float

from jaxflow._integers import check_integer
from jaxflow.models import _gaussian
from jaxflow.models import diagonal as dn

__all__ = [
    "amplitude_correlation", "beta", "bins", "canonical", "correlation", "forward",
    "fourier_target", "init", "layer_spectra", "log_loss", "loss", "loss_underflow", "modes",
    "targets",
]


def init(key: jax.Array, scale: float, depth: int, d: int) -> dict[str, Array]:
    """Gaussian layers of std ``scale^(1/N)/sqrt(d)``: ``{"kernels": (N-1, d), "dense": (d,)}``
    (depth 1: ``{"dense": (d,)}`` alone).

    >>> sorted(init(jax.random.key(0), 1e-2, depth=1, d=4))
    ['dense']
    """
    if not 0.0 < float(scale) < np.inf:
        raise ValueError(f"scale (init) must be > 0 and finite, got {scale}")
    check_integer("depth (the number of layers)", depth)
    check_integer("d", d)
    depth, d = int(depth), int(d)
    std = float(scale) ** (1.0 / depth) / np.sqrt(d)
    key_k, key_v = jax.random.split(key)
    params = {"dense": std * _gaussian.normal(key_v, (d,))}
    if depth > 1:
        params["kernels"] = std * _gaussian.normal(key_k, (depth - 1, d))
    return params


def _kernels(params):
    return params.get("kernels", jnp.zeros((0, params["dense"].shape[-1])))


def _check(params) -> int:
    kernels, dense = _kernels(params), params["dense"]
    if dense.ndim != 1 or kernels.ndim != 2 or kernels.shape[1] != dense.shape[0]:
        raise ValueError(
            f"params must hold kernels (N-1, d) and dense (d,) of one length d, got "
            f"{kernels.shape} and {dense.shape}"
        )
    return dense.shape[0]


def canonical(params) -> Complex[Array, " f"]:
    """``rfft(v) * prod_l rfft(k_l)``: the canonical model (``rfft`` of ``beta``), ``d//2 + 1``
    bins."""
    _check(params)
    return jnp.fft.rfft(params["dense"]) * jnp.prod(jnp.fft.rfft(_kernels(params), axis=-1), axis=0)


def layer_spectra(params) -> Complex[Array, "N f"]:
    """The layers' ``rfft`` values, dense layer first then the kernels: ``(N, d//2 + 1)``; their
    product over the first axis is :func:`canonical`.

    >>> p = init(jax.random.key(0), 1e-2, depth=3, d=8)
    >>> bool(jnp.allclose(jnp.prod(layer_spectra(p), axis=0), canonical(p), rtol=1e-14))
    True
    """
    _check(params)
    return jnp.fft.rfft(jnp.concatenate([params["dense"][None, :], _kernels(params)]), axis=-1)


def beta(params) -> Float[Array, " d"]:
    """The linear predictor: ``irfft`` of the canonical model, length ``d``."""
    d = _check(params)
    return jnp.fft.irfft(canonical(params), n=d)


def forward(params, inputs: Float[ArrayLike, "m d"]) -> Float[Array, " m"]:
    """The network applied layer by layer (each circular cross-correlation through FFTs)."""
    d = _check(params)
    h = jnp.asarray(inputs)
    if h.ndim != 2 or h.shape[1] != d:
        raise ValueError(f"inputs must have shape (m, d) with d = {d}, got {h.shape}")
    for kernel in _kernels(params):
        # (k * h)_j = sum_l k_l h_{j+l}:  rfft = conj(rfft(k)) rfft(h).
        h = jnp.fft.irfft(jnp.conj(jnp.fft.rfft(kernel)) * jnp.fft.rfft(h, axis=-1), n=d, axis=-1)
    return h @ params["dense"]


def loss(params, problem: dn.Problem) -> Float[Array, ""]:
    """The loss of :mod:`~jaxflow.models.diagonal` (``problem.loss``) of the predictor ``beta``."""
    return dn.linear_loss(beta(params), problem.data, problem.loss)


def log_loss(params, problem: dn.Problem) -> Float[Array, ""]:
    """``ln loss``, finite after the loss underflows."""
    return dn.linear_log_loss(beta(params), problem.data, problem.loss)


def loss_underflow(params, problem: dn.Problem) -> Float[Array, ""]:
    """1.0 where the loss is below :data:`jaxflow.models.diagonal.TINY_LOSS`, else 0.0."""
    return (log_loss(params, problem) < jnp.log(dn.TINY_LOSS)).astype(float)


def fourier_target(d: int, amplitudes=(3.0, 4.0, 6.0, 12.0)) -> Float[Array, " d"]:
    """``w* = irfft(a)`` with ``rfft`` bins ``0, 1, ...`` set to ``amplitudes``, unit norm (E4).

    >>> w = fourier_target(8, (0.0, 1.0))
    >>> [round(float(v), 4) for v in jnp.abs(jnp.fft.rfft(w))]   # sqrt(d / 2) at bin 1
    [0.0, 2.0, 0.0, 0.0, 0.0]
    """
    amplitudes = np.asarray(amplitudes, dtype=float)
    if amplitudes.ndim != 1 or not 1 <= amplitudes.size <= d // 2 + 1:
        raise ValueError(f"amplitudes: {amplitudes.size} bins do not fit d // 2 + 1 = {d // 2 + 1}")
    spectrum = np.zeros(d // 2 + 1)
    spectrum[: amplitudes.size] = amplitudes
    w = np.fft.irfft(spectrum, n=d)
    if not np.any(w):
        raise ValueError("amplitudes must not all be zero")
    return jnp.asarray(w / np.linalg.norm(w))


def _order(target, k: int):
    amplitude = jnp.abs(jnp.fft.rfft(target))
    check_integer("k (at most d // 2 + 1 bins)", k, high=amplitude.shape[0])
    return jnp.argsort(-jnp.round(amplitude, 12), stable=True)[: int(k)], amplitude


def bins(problem: dn.Problem, k: int = 5):
    """The ``rfft`` bins of :func:`modes`: the ``k`` of largest target amplitude, largest first.

    >>> data = dn.classification_data(jax.random.key(0), fourier_target(8, (1.0, 3.0, 2.0)), 4)
    >>> bins(dn.Problem(data), k=3).tolist()
    [1, 2, 0]
    """
    return _order(problem.data.target, k)[0]


def modes(params, problem: dn.Problem, k: int = 5) -> Float[Array, " k"]:
    """Fourier amplitudes ``|canonical|`` on the ``k`` bins of largest target amplitude."""
    order, _ = _order(problem.data.target, k)
    return jnp.abs(canonical(params))[order]


def targets(problem: dn.Problem, k: int = 5) -> Float[Array, " k"]:
    """Targets of :func:`modes`: the target's amplitudes for regression; 1 on its non-zero bins
    (0 elsewhere) for classification, as in :func:`jaxflow.models.diagonal.targets`."""
    order, amplitude = _order(problem.data.target, k)
    values = amplitude[order]
    if problem.loss == "squared":
        return values
    return jnp.where(values > 1e-12 * jnp.max(amplitude), 1.0, 0.0)


def correlation(params, problem: dn.Problem) -> Float[Array, ""]:
    """Cosine between ``beta`` and ``w*``; by Parseval it equals the cosine of their
    (Hermitian-weighted) Fourier transforms."""
    return dn.cosine(beta(params), problem.data.target)


def amplitude_correlation(params, problem: dn.Problem) -> Float[Array, ""]:
    """Cosine between the amplitude spectra ``|rfft(beta)|`` and ``|rfft(w*)|`` (phase-blind)."""
    return dn.cosine(jnp.abs(canonical(params)), jnp.abs(jnp.fft.rfft(problem.data.target)))
