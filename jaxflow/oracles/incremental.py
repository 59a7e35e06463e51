"""Incremental-learning metrics: margins, incremental pairs, learning order, picks, concurrence.

Every experiment asks the same question of its learning times ``T_i(f)`` (the first time mode
``i`` reaches the fraction ``f`` of its target, as :func:`jaxflow.solve` records them for every
method): are the modes learned one at a time, largest target first?
(docs/science/incremental-learning.md.)

* :func:`margin`: ``T_j(start) - T_i(finish)`` of a pair whose target ``i`` is the larger; the
  pair is (start, finish)-incremental iff it is >= 0 (the phase diagram's quantity).
* :func:`incremental_pairs`: that test on each consecutive pair of a spectrum (factor diagram).
* :func:`rank_correlation`: Spearman correlation between the order in which modes are learned
  and the target order (1 = strictly largest first).
* :func:`pick_order`, :func:`concurrence`, :func:`prefix_agreement`: the order in which
  coordinates cross a level, compared with another selection order (E5 against OMP).

The first three are JAX functions (jit, vmap safe: the sweeps call them inside compiled
per-point functions); the last three work on NumPy results after a run.

Example (three modes learned largest first, each finishing before the next starts):
    >>> import jax.numpy as jnp
    >>> from jaxflow.oracles import incremental
    >>> times = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])   # (mode, (start, finish))
    >>> incremental.incremental_pairs(times).tolist()
    [True, True]
    >>> float(incremental.rank_correlation(times[:, 1]))
    1.0
"""

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

__all__ = [
    "concurrence",
    "incremental_pairs",
    "margin",
    "pick_order",
    "prefix_agreement",
    "rank_correlation",
]


def margin(larger_finish: Float[ArrayLike, "..."], smaller_start: Float[ArrayLike, "..."]) -> Array:
    """``T_j(start) - T_i(finish)``: how long the smaller target waits after the larger is done.

    Args:
        larger_finish: ``T_i(finish)``, when the mode of the larger target reaches ``finish``.
        smaller_start: ``T_j(start)``, when the mode of the smaller target reaches ``start``.

    Returns:
        The margin; the pair is (start, finish)-incremental iff it is >= 0 (docs/science/incremental-learning.md).

    >>> from jaxflow.oracles import incremental
    >>> float(incremental.margin(2.0, 5.0)), float(incremental.margin(2.0, 1.5))
    (3.0, -0.5)
    """
    return jnp.asarray(smaller_start) - jnp.asarray(larger_finish)


def incremental_pairs(learning_times: Float[ArrayLike, "k 2"]) -> Bool[Array, " k-1"]:
    """Whether each consecutive pair of modes (targets largest first) is incremental.

    Args:
        learning_times: ``(k, 2)``: per mode, ``T(start)`` and ``T(finish)``; row 0 has the
            largest target.

    Returns:
        ``(k - 1,)`` booleans: ``T_larger(finish) <= T_smaller(start)``, and the larger mode did
        finish (an infinite finish time is never incremental).

    >>> import jax.numpy as jnp
    >>> from jaxflow.oracles import incremental
    >>> times = jnp.array([[1.0, 3.0], [2.0, 4.0], [5.0, jnp.inf]])
    >>> incremental.incremental_pairs(times).tolist()   # 3 > 2: the first pair overlaps
    [False, True]
    """
    times = jnp.asarray(learning_times)
    larger_finish = times[:-1, 1]
    return (larger_finish <= times[1:, 0]) & jnp.isfinite(larger_finish)  # margin >= 0


def rank_correlation(times: Float[ArrayLike, " k"]) -> Float[Array, ""]:
    """Spearman correlation of the learning times against the target order (0 = largest).

    1 means the modes are learned strictly largest first, -1 smallest first. Ties (equal to
    1e-9 relative, e.g. at depth 1 where every mode takes the same time, or two modes never
    learned) share their average rank; all tied gives 0, not NaN.

    >>> import jax.numpy as jnp
    >>> from jaxflow.oracles import incremental
    >>> orders = ([1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [1.0, 1.0, 1.0])
    >>> [float(incremental.rank_correlation(jnp.array(t))) for t in orders]
    [1.0, -1.0, 0.0]
    """
    v = jnp.asarray(times)
    both_inf = jnp.isinf(v)[:, None] & jnp.isinf(v)[None, :] & (v[:, None] == v[None, :])
    tol = 1e-9 * jnp.abs(jnp.where(jnp.isfinite(v), v, 0.0))
    with jax.numpy_dtype_promotion("standard"):
        diff = jnp.where(both_inf, 0.0, v[None, :] - v[:, None])  # [i, j] = v_j - v_i
    tied = both_inf | (jnp.abs(diff) <= tol[:, None])
    below = (diff < 0) & ~tied
    count = lambda mask: jnp.sum(mask, axis=1, dtype=v.dtype)  # noqa: E731
    ranks = count(below) + 0.5 * (count(tied) - 1.0)
    index = jnp.arange(v.shape[0], dtype=v.dtype)
    rc, ic = ranks - ranks.mean(), index - index.mean()
    denom = jnp.sqrt(jnp.sum(rc**2) * jnp.sum(ic**2))
    return jnp.where(denom > 0, jnp.sum(rc * ic) / jnp.where(denom > 0, denom, 1.0), 0.0)


def pick_order(crossing_times: Float[ArrayLike, " d"], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``k`` coordinates to cross their level, and when (``-1`` / ``inf`` pads).

    Args:
        crossing_times: ``(d,)`` first time each coordinate crossed (``inf``: never).
        k: how many picks to report.

    Returns:
        ``(order, times)``, each ``(k,)``; ties keep the lower index first.

    >>> import numpy as np
    >>> from jaxflow.oracles import incremental
    >>> order, times = incremental.pick_order(np.array([5.0, np.inf, 1.0, 3.0]), 4)
    >>> order.tolist(), times.tolist()
    ([2, 3, 0, -1], [1.0, 3.0, 5.0, inf])
    """
    times = np.asarray(crossing_times)
    order = np.argsort(times, kind="stable")[:k]
    finite = np.isfinite(times[order])
    return np.where(finite, order, -1), np.where(finite, times[order], np.inf)


def concurrence(first: Int[ArrayLike, " k"], second: Int[ArrayLike, " l"]) -> float:
    """``|S1 & S2| / min(|S1|, |S2|)`` of two selections (entries < 0 are padding); NaN if either
    is empty.

    >>> from jaxflow.oracles import incremental
    >>> incremental.concurrence([3, 1, 4], [1, 3, -1])
    1.0
    >>> incremental.concurrence([3, 1], [2, 1, 5])
    0.5
    """
    a = {int(i) for i in np.asarray(first).ravel() if i >= 0}
    b = {int(i) for i in np.asarray(second).ravel() if i >= 0}
    if not a or not b:
        return float("nan")
    return len(a & b) / min(len(a), len(b))


def prefix_agreement(first: Int[ArrayLike, " k"], second: Int[ArrayLike, " k"]) -> float:
    """The fraction of ranks at which two selection orders pick the same coordinate.

    >>> from jaxflow.oracles import incremental
    >>> incremental.prefix_agreement([3, 1, 4], [3, 4, 1])
    0.3333333333333333
    """
    return float(np.mean(np.asarray(first) == np.asarray(second)))
