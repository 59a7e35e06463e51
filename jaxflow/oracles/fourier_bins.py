"""Learning times of one Fourier bin of a convolutional linear network under a constant drive.

In the Fourier domain a circular-convolutional linear network of depth ``N``
(:mod:`jaxflow.models.convolutional`) is a diagonal network with complex entries: bin ``k`` of
the canonical model is ``u = z_1 ... z_N``, the product of the layers' ``rfft`` values there.
Under gradient flow on a loss of ``beta``, with ``G = rfft(grad_beta L)``,

    dz_j/dt = -G_k conj(u / z_j),        so  du/dt = -G_k |u|^2 sum_j 1 / |z_j|^2.

Early in training (small ``beta``) the gradient is its value at ``beta = 0``: ``G = -C`` with
``C = rfft(c)`` the *drive* (exponential loss: ``c = mean_i y_i x_i``, the data's correlation
with the labels; logistic: half of it). Every bin then evolves on its own, like one coordinate
of a (complex, unbalanced) diagonal network driven by a linear objective. Three exact facts
solve it (derived from the equations above):

* ``|z_i|^2 - |z_j|^2`` is conserved: ``|z_j|^2 = r_j^2 + tau`` with one common ``tau(t)``;
* ``u`` moves on a straight line along ``C``: with ``x + i y = u conj(C) / |C|``, ``y`` is
  conserved and ``dx/dt = |C| |u|^2 S``, ``S = sum_j 1 / |z_j|^2``;
* ``|u|^2 = P(tau) := prod_j (r_j^2 + tau) = x^2 + y^2``.

So the time for ``|u|`` to first reach ``a`` is the one-dimensional integral

    T(a) = int_{x_0}^{x_a} dx / (|C| Q(tau(x))),   Q = P S = sum_j prod_{i != j} (r_i^2 + tau),

with ``x_a = sqrt(a^2 - y^2)`` and ``tau(x)`` the root of ``P(tau) = x^2 + y^2`` above
``-min r_j^2``. ``x_0 < 0`` (the initial phase more than 90 degrees from the drive's) is a
detour: ``|u|`` first shrinks to ``|y|`` (to 0 for the real bins 0 and ``d/2``, where one layer
changes sign) before it grows. For aligned, balanced layers it is the closed form
``T = (|u_0|^(-q) - a^(-q)) / (q N |C|)`` with ``q = 1 - 2/N`` (``ln(a/|u_0|) / (2|C|)`` at
``N = 2``): the learning time depends on the drive ``|C|``, on the bin's initial amplitude and,
through ``x_0`` and ``y``, on its phase. This is the prediction against which E4's observed
order is read; later in training the drive changes (the loss's weights move once a bin is
learned), so it is exact only while ``beta`` is small.

The integral is computed by Gauss-Legendre quadrature on panels graded geometrically towards
``x = 0`` and the root ``tau(x)`` by bisection in ``ln(tau + min r_j^2)``: NumPy only, float64,
independent of the engine. ``Q`` has no cancellation (a sum of products of positive numbers),
so the real bins' pass through ``u = 0`` is as accurate as the rest.

Example (one bin, depth 3, balanced and aligned: the closed form above):
    >>> import numpy as np
    >>> from jaxflow.oracles import fourier_bins as fb
    >>> layers = np.full((3, 1), 0.1 + 0j)          # u_0 = 1e-3, drive 2 along the real axis
    >>> t = fb.learning_times(layers, np.array([2.0 + 0j]), [0.5])
    >>> closed = (1e-3 ** (-1 / 3) - 0.5 ** (-1 / 3)) / (1 / 3 * 3 * 2.0)
    >>> bool(abs(t[0, 0] / closed - 1) < 1e-12)
    True
"""

import numpy as np

__all__ = ["learning_times"]

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(20)
_PANELS = np.concatenate([[0.0], np.geomspace(1e-14, 1.0, 80)])


def _tau(r2: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Root of ``prod_j (r2_j + tau) = level`` (each ``level`` > 0 or 0) above ``-min r2``,
    by bisection in ``ln(tau + min r2)`` (relative accuracy at every scale)."""
    floor = np.min(r2)
    shifted = r2 - floor  # >= 0; tau = sigma - floor
    lo = np.full(level.shape, np.log(1e-300))
    hi = np.full(level.shape, np.log(max(1.0, float(np.max(level))) + 1.0))
    for _ in range(120):
        mid = 0.5 * (lo + hi)
        below = np.prod(shifted[:, None] + np.exp(mid)[None, :], axis=0) < level
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return np.exp(0.5 * (lo + hi)) - floor


def _q(r2: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """``sum_j prod_{i != j} (r2_i + tau)``, with no division (finite where a layer is 0)."""
    factors = r2[:, None] + tau[None, :]
    n = r2.size
    return sum(np.prod(np.delete(factors, j, axis=0), axis=0) for j in range(n)) if n > 1 \
        else np.ones_like(tau)


def _integral(r2, y2, lo: float, hi: float) -> float:
    """``int_lo^hi dx / Q(tau(x))`` for ``0 <= lo < hi``, panels graded towards ``lo``."""
    if hi <= lo:
        return 0.0
    edges = lo + (hi - lo) * _PANELS if lo == 0.0 else np.geomspace(lo, hi, 81)
    a, b = edges[:-1, None], edges[1:, None]
    x = (0.5 * (b - a) * (_NODES[None, :] + 1.0) + a).ravel()
    w = (0.5 * (b - a) * _WEIGHTS[None, :]).ravel()
    return float(np.sum(w / _q(r2, _tau(r2, x**2 + y2))))


def _bin_time(z: np.ndarray, drive: complex, level: float) -> float:
    u0 = np.prod(z)
    if abs(u0) >= level:
        return 0.0
    if drive == 0:
        return np.inf
    r2 = np.abs(z) ** 2
    rotated = u0 * np.conj(drive) / abs(drive)
    x0, y2 = rotated.real, rotated.imag**2
    x_end = np.sqrt(level**2 - y2)  # level > |u0| >= |y|
    # x increases through the whole run: from x0 to 0 (a detour when x0 < 0), then to x_end.
    if x0 >= 0:
        total = _integral(r2, y2, x0, x_end)
    else:
        total = _integral(r2, y2, 0.0, -x0) + _integral(r2, y2, 0.0, x_end)
    return total / abs(drive)


def learning_times(layers, drive, levels) -> np.ndarray:
    """First times at which each bin's amplitude ``|prod_j z_j|`` reaches each level, under the
    constant drive (module docstring).

    Args:
        layers: ``(N, K)`` complex initial ``rfft`` values of the ``N`` trained layers on ``K``
            bins (a layer that is not trained is left out: it only rescales the drive).
        drive: ``(K,)`` complex ``C = -rfft(grad_beta L)`` at ``beta = 0`` on those bins.
        levels: ``(F,)`` amplitudes (> 0) to reach.

    Returns:
        ``(K, F)`` times: 0 where the bin starts at or above the level, ``inf`` where the drive
        is zero.

    Example (depth 1: ``u`` moves in a straight line at speed ``|C|``; starting opposite to
    the drive it first passes through 0):
        >>> import numpy as np
        >>> from jaxflow.oracles import fourier_bins as fb
        >>> fb.learning_times(np.array([[-0.25 + 0j]]), np.array([2.0 + 0j]), [1.0]).round(12)
        array([[0.625]])
    """
    z = np.asarray(layers, dtype=complex)
    c = np.asarray(drive, dtype=complex).reshape(-1)
    levels = np.asarray(levels, dtype=float).reshape(-1)
    if z.ndim != 2 or z.shape[1] != c.size or z.shape[0] < 1:
        raise ValueError(f"layers must have shape (N >= 1, K) with K = drive's size {c.size}, "
                         f"got {z.shape}")
    if not np.all(np.isfinite(z)) or not np.all(np.isfinite(c)):
        raise ValueError("layers and drive must be finite")
    if not np.all(levels > 0) or not np.all(np.isfinite(levels)):
        raise ValueError(f"levels must be finite and > 0, got {levels.tolist()}")
    return np.array([[_bin_time(z[:, k], complex(c[k]), float(a)) for a in levels]
                     for k in range(c.size)]).reshape(c.size, levels.size)
