"""The saddle-to-saddle jump process of diagonal linear networks: an exact NumPy oracle.

A diagonal linear network ``beta = w_+^N - w_-^N`` started at ``w_+ = w_- = scale^(1/N)``
follows the gradient flow ``dw/dt = -dL/dw`` of a quadratic loss of ``beta``,

    L(beta) = 1/2 beta^T H beta - b^T beta + c,      grad L(beta) = H beta - b.

(Least squares ``mean_k (<beta, x_k> - y_k)^2`` is ``H = 2 X^T X / m``, ``b = 2 X^T y / m``.)
As ``scale -> 0`` the flow spends almost all its time near saddles and jumps between them; with
time measured in units of ``time_scale(depth, ln scale)`` the limit is the following process
(Pesme & Flammarion 2023 for depth 2; a LARS-like homotopy):

* an accumulated negative gradient ``s(t) = -int_0^t grad L(beta(u)) du`` starts at 0;
* while ``|s_i| < 1``, coordinate ``i`` is inactive (``beta_i = 0``); on a plateau ``beta`` is
  constant, so ``s`` moves on a straight line; the plateau ends when an inactive ``|s_i|``
  reaches 1;
* then ``beta`` jumps to the minimizer of ``L`` over ``{beta: beta_i = 0 where |s_i| < 1,
  s_i beta_i >= 0 where |s_i| = 1}``. Active coordinates have zero gradient, so their ``s_i``
  stays at +-1; a coordinate the minimizer sets to 0 with a gradient pointing inwards leaves
  the active set (its ``s_i`` moves back into (-1, 1)) and may later come back, with either sign.

**Normalization** (derived here; checked by simulation in tests/test_jump_process.py at depth
2 and tests/test_saddle_to_saddle.py at depth 3). For depth 2, ``dw_+/dt = -2 w_+ g`` gives
``w_+ = w_0 exp(2 int -g)`` and ``beta_i`` is of order 1 once
``|int -g_i| = ln(1/w_0) / 2 = ln(1/scale) / 4``: one unit of rescaled time is
``ln(1/scale) / 4``. For depth ``N >= 3``, ``w^(2-N)`` moves linearly,
``d w_+^(2-N)/dt = N (N-2) g``, and reaches 0 (``beta`` of order 1) once
``|int -g_i| = scale^(-(1-2/N)) / (N (N-2))``: the same process, with that unit of time. The
depth-2 statement is Pesme & Flammarion's theorem; the depth-N one is this derivation (no
published theorem; the simulations agree with it, see :mod:`jaxflow.experiments.saddle_to_saddle`).
The simulated jump times converge like ``1/ln(1/scale)`` at depth 2 (every O(1) transient of the
flow is an O(1/ln(1/scale)) fraction of a rescaled unit) and like ``scale^(1-2/N)`` at depth N.

The constrained minimizers are computed by an active-set method (Lawson-Hanson for a convex
quadratic), in float64 NumPy, independent of the simulator.

Reference: S. Pesme, N. Flammarion, "Saddle-to-saddle dynamics in diagonal linear networks",
NeurIPS 2023 (arXiv 2304.00488).

Example (orthogonal design: coordinate i jumps at 1/|b_i|, largest first):
    >>> import numpy as np
    >>> from jaxflow.oracles import jump_process
    >>> jp = jump_process.jump_process(np.eye(3), np.array([2.0, -0.5, 1.0]))
    >>> jp.times.tolist()
    [0.0, 0.5, 1.0, 2.0]
    >>> jp.betas[-1].tolist(), jp.active[2].tolist()
    ([2.0, -0.5, 1.0], [True, False, True])
    >>> jp.speeds.tolist()  # |ds_i/dt| of the entering coordinate before each jump: |b_i|
    [nan, 2.0, 1.0, 0.5]
"""

from typing import NamedTuple

import numpy as np

__all__ = ["JumpProcess", "constrained_minimizer", "jump_process", "time_scale"]

_TOL = 1e-12  # relative: a coordinate within this of the threshold is on it
_ZERO = 1e-9  # relative to the plateau's largest |beta_i|: below it, a coordinate is rounding


class JumpProcess(NamedTuple):
    """The limiting staircase: plateau ``k`` holds ``betas[k]`` on ``[times[k], times[k+1])``.

    Attributes:
        times: ``(J + 1,)`` start of each plateau in rescaled time (``times[0] = 0``; jump ``k``
            happens at ``times[k]``, ``k >= 1``).
        betas: ``(J + 1, d)`` the saddle of each plateau.
        signs: ``(J + 1, d)`` ``s_i`` on the threshold (+-1) or inside it (0), on each plateau.
        active: ``(J + 1, d)`` ``beta_i != 0``.
        losses: ``(J + 1,)`` the loss on each plateau.
        entering: ``(J + 1,)`` the coordinate whose threshold crossing started plateau ``k``
            (-1 for the first plateau).
        velocities: ``(J + 1, d)`` ``ds/dt = -grad L(betas[k])`` on each plateau.
        speeds: ``(J + 1,)`` the speed ``|ds_i/dt|`` at which the entering coordinate ``i``
            reached its threshold on the plateau before jump ``k`` (NaN for ``k = 0``): the rate
            at which it escapes the saddle, which sets how wide the simulated jump is
            (:func:`jaxflow.oracles.jump_matching.widths`).
    """

    times: np.ndarray
    betas: np.ndarray
    signs: np.ndarray
    active: np.ndarray
    losses: np.ndarray
    entering: np.ndarray
    velocities: np.ndarray
    speeds: np.ndarray


def time_scale(depth: float, log_scale: float) -> float:
    """Flow time per unit of the jump process's time, for ``w_+- (0) = scale^(1/N)``.

    ``ln(1/scale) / 4`` at depth 2, ``scale^(-(1-2/N)) / (N (N-2))`` at depth ``N > 2``
    (module docstring); ``log_scale = ln scale`` so that scales below 1e-308 work.

    >>> round(time_scale(2, -100.0), 12), round(time_scale(4, np.log(1e-4)), 9)
    (25.0, 12.5)
    """
    depth, log_scale = float(depth), float(log_scale)
    if not log_scale < 0:
        raise ValueError(f"log_scale (ln scale) must be < 0, got {log_scale}")
    if depth == 2.0:
        return -log_scale / 4.0
    if not depth > 2.0:
        raise ValueError(f"depth must be >= 2, got {depth}")
    exponent = 1.0 - 2.0 / depth
    return float(np.exp(-exponent * log_scale) / (depth * (depth - 2.0)))


def constrained_minimizer(hessian: np.ndarray, linear: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """``argmin 1/2 beta^T H beta - b^T beta`` with ``beta_i = 0`` where ``signs_i = 0`` and
    ``signs_i beta_i >= 0`` elsewhere (Lawson-Hanson active set on ``z = signs * beta >= 0``).

    >>> H = np.array([[1.0, 0.5], [0.5, 0.3]])
    >>> constrained_minimizer(H, np.array([1.0, 0.9]), np.array([1.0, 1.0])).round(12).tolist()
    [0.0, 3.0]
    """
    hessian, linear, signs = (np.asarray(a, dtype=float) for a in (hessian, linear, signs))
    support = np.flatnonzero(signs)
    beta = np.zeros(linear.shape)
    if support.size == 0:
        return beta
    sign = signs[support]
    q = hessian[np.ix_(support, support)] * np.outer(sign, sign)
    c = linear[support] * sign
    scale = max(np.abs(q).max(), np.abs(c).max(), 1e-300)
    z = np.zeros(support.size)
    free = np.zeros(support.size, dtype=bool)
    for _ in range(10 * support.size + 10):
        w = c - q @ z  # minus the gradient: positive means increasing z_j lowers the loss
        candidates = ~free & (w > _TOL * 1e3 * scale)
        if not candidates.any():
            break
        free[np.argmax(np.where(candidates, w, -np.inf))] = True
        for _ in range(support.size + 1):
            trial = np.zeros_like(z)
            trial[free] = np.linalg.lstsq(q[np.ix_(free, free)], c[free], rcond=None)[0]
            if np.all(trial[free] > 0):
                z = trial
                break
            # Walk towards the trial point until a free variable hits 0, and fix it there.
            blocked = free & (trial <= 0)
            step = np.min(z[blocked] / (z[blocked] - trial[blocked]))
            z = z + step * (trial - z)
            free &= z > _TOL * 1e3 * max(1.0, np.abs(z).max())
            z[~free] = 0.0
    beta[support] = sign * z
    return beta


def jump_process(
    hessian: np.ndarray,
    linear: np.ndarray,
    offset: float = 0.0,
    *,
    max_jumps: int | None = None,
) -> JumpProcess:
    """The limiting jump process of ``L(beta) = 1/2 beta^T H beta - b^T beta + offset``.

    Args:
        hessian: ``H``, ``(d, d)`` symmetric positive semi-definite.
        linear: ``b``, ``(d,)`` (``-grad L(0)``).
        offset: ``c``, added to the reported losses.
        max_jumps: stop after this many jumps (default ``4 d``); the process also stops once
            no inactive coordinate is driven to the threshold (the last plateau is a minimizer).

    Returns:
        A :class:`JumpProcess` (times in units of :func:`time_scale`).

    Example (a coordinate that leaves the active set and comes back with the other sign):
        >>> H = np.array([[1.0, 0.5], [0.5, 0.3]])
        >>> jp = jump_process(H, np.array([1.0, 0.9]))
        >>> jp.times.round(12).tolist(), jp.betas.round(12).tolist()
        ([0.0, 1.0, 1.25, 5.25], [[0.0, 0.0], [1.0, 0.0], [0.0, 3.0], [-3.0, 8.0]])
    """
    hessian = np.asarray(hessian, dtype=float)
    linear = np.asarray(linear, dtype=float)
    d = linear.shape[0]
    if hessian.shape != (d, d) or not np.allclose(hessian, hessian.T):
        raise ValueError(f"hessian must be symmetric of shape ({d}, {d}), got {hessian.shape}")
    max_jumps = 4 * d if max_jumps is None else int(max_jumps)
    s = np.zeros(d)
    signs = np.zeros(d)
    beta = np.zeros(d)
    t = 0.0
    record = {"times": [0.0], "betas": [beta], "signs": [signs], "entering": [-1]}
    for _ in range(max_jumps):
        velocity = linear - hessian @ beta  # ds/dt = -grad L
        scale = max(np.abs(velocity).max(), np.abs(linear).max(), 1e-300)
        # Active coordinates (beta_i != 0) sit at zero gradient: their s_i stays on the
        # threshold. Every other coordinate moves towards +-1 in the direction of its velocity.
        moving = (beta == 0) & (np.abs(velocity) > _TOL * scale)
        if not moving.any():
            break
        safe = np.where(moving, velocity, 1.0)
        delta = np.where(moving, (np.sign(safe) - s) / safe, np.inf)
        delta = np.where(delta > 0, delta, np.inf)
        entering = int(np.argmin(delta))
        if not np.isfinite(delta[entering]):
            break
        step = delta[entering]
        t += step
        s = np.where(beta == 0, s + step * velocity, s)
        s[entering] = np.sign(velocity[entering])
        signs = np.where(np.abs(np.abs(s) - 1.0) <= 1e-9, np.sign(s), 0.0)
        s = np.where(signs != 0, signs, s)
        beta = _clean(constrained_minimizer(hessian, linear, signs))
        record["times"].append(t)
        record["betas"].append(beta)
        record["signs"].append(signs)
        record["entering"].append(entering)
    betas = np.array(record["betas"])
    velocities = linear - betas @ hessian
    entering = np.array(record["entering"])
    speeds = np.full(entering.shape, np.nan)
    speeds[1:] = np.abs(velocities[np.arange(entering.size - 1), entering[1:]])
    losses = 0.5 * np.einsum("ki,ij,kj->k", betas, hessian, betas) - betas @ linear + offset
    return JumpProcess(
        times=np.array(record["times"]),
        betas=betas,
        signs=np.array(record["signs"]),
        active=betas != 0,
        losses=losses,
        entering=entering,
        velocities=velocities,
        speeds=speeds,
    )


def _clean(beta: np.ndarray) -> np.ndarray:
    """``beta`` with the coordinates that are rounding of zero (``|beta_i| <= 1e-9 max |beta|``,
    e.g. 1e-13 left by a least-squares solve where the minimizer is 0) set to exactly 0: they
    are inactive, their ``s_i`` moves, and they are not reported active."""
    scale = np.abs(beta).max(initial=0.0)
    return np.where(np.abs(beta) > _ZERO * scale, beta, 0.0)
