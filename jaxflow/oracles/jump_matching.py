"""Detected jumps matched to the jump process's by time, within windows derived from the widths.

A simulated trajectory at a finite scale ``alpha`` does not jump: the coordinate that enters
at jump ``k`` of :func:`jaxflow.oracles.jump_process.jump_process` escapes its saddle at a
finite rate and takes a finite time to move. This module says how wide each jump is, how close
two jumps may be before no detector can tell them apart (the *resolution*), and pairs detected
jumps with the oracle's by an optimal assignment in time. Every oracle jump gets a code:

* ``matched``: one detected jump within its window; its error is reported;
* ``missed``: no detected jump within its window;
* ``merged``: it lies closer to a neighbour than the resolution, and a detected jump was found
  for the pair (or chain): one merged jump, not an error, and no error is reported;

and every detected jump assigned to none is ``extra``.

**Width** (derived; rescaled time). While coordinate ``i`` is inactive its depth-2 factors grow
like ``alpha^(1 - s_i)``: past its threshold it escapes at rate ``v ln(1/alpha)`` in rescaled
time, ``v = |ds_i/dt|`` its speed (:attr:`JumpProcess.speeds`). For a single coordinate
(``dbeta/dt = N^2 beta^(2 - 2/N) (v - beta)`` at depth ``N``), the time to go from 12% to 88%
of its move (logit -2 to 2, exactly ``4 / rate`` for the logistic of depth 2) is

    w = I_N / (N^2 v^(2 - 2/N)) / time_scale(N, alpha),   I_N = int dx / (x^(2 - 2/N) (1 - x)),

the integral over ``x`` in ``[1/(1 + e^2), 1/(1 + e^-2)]``; at depth 2 ``I_2 = 4`` and
``w = 4 / (v ln(1/alpha))``. A slow jump (small ``v``) is wide.

**Resolution** of jumps ``k`` and ``k + 1``: ``(w_k + w_(k+1)) / 2 + h`` (``h`` the time grid's
step): closer than that, the two transitions overlap by more than their half widths and the
grid, and their times are not separately measurable. Such oracle jumps form one *group*.

**Window** of jump ``k`` (how far a detected jump may sit from it). Its own transient delays
it by at most about ``w_k``; it also inherits the lag of every earlier jump: jump ``j``
happening ``e_j`` late keeps the entering coordinate's ``s`` moving at its old velocity for
``e_j`` longer, which moves its threshold crossing by ``e_j |Delta_j g| / v_k``. So

    W_k = w_k + h + sum_(j < k) W_j |g_(j-1) - g_j| / v_k

(``g_j`` the entering coordinate's velocity on plateau ``j``): later jumps, which inherit
more, get wider windows, derived rather than fixed per index. A group's members also accept a
detected jump anywhere within the group's span.

**Detected jumps** (:func:`events`). :func:`jaxflow.oracles.saddles.detect` finds plateaus;
between two plateaus it reports one jump, which may hold several transitions when no plateau
was visible in between. Each coordinate that becomes active there (or changes sign) is its own
event, at its midpoint crossing; a detected jump in which none does is one event, at the
crossing of the mode that moved most.

Example (two oracle jumps 0.05 apart, closer than their resolution, then one far away):
    >>> import numpy as np
    >>> from jaxflow.oracles import jump_matching as jm
    >>> oracle = np.array([1.0, 1.05, 3.0])
    >>> w = np.array([0.05, 0.05, 0.1])
    >>> res = jm.resolution(w, 0.01)
    >>> res.round(3).tolist()[:2]
    [0.06, 0.085]
    >>> m = jm.match(oracle, np.array([1.03, 3.02, 5.0]), np.array([0.1, 0.1, 0.2]), res)
    >>> [jm.name(c) for c in m.codes], m.errors.round(3).tolist(), m.assigned.tolist()
    (['merged', 'merged', 'matched'], [nan, nan, 0.02], [1, 2, -1])
"""

import functools
from typing import NamedTuple

import numpy as np

from jaxflow.oracles.jump_process import JumpProcess, time_scale

__all__ = [
    "EXTRA", "MATCHED", "MERGED", "MISSED", "NAMES", "Matching", "events", "flag_attributes",
    "groups", "match", "name", "resolution", "widths", "windows",
]

MATCHED = 0
"""One detected jump within the oracle jump's window: its time and error are reported."""
MISSED = 1
"""No detected jump within the oracle jump's window."""
MERGED = 2
"""The oracle jump is closer to a neighbour than the resolution and a detected jump was found
for the group: reported as one merged jump, without an error."""
EXTRA = 3
"""A detected jump assigned to no oracle jump."""

NAMES = {MATCHED: "matched", MISSED: "missed", MERGED: "merged", EXTRA: "extra"}

_LOGIT = 2.0  # a jump runs from logit -2 to logit 2 of its move: 12% to 88%


def name(code: int) -> str:
    """The readable name of a jump code.

    >>> name(MERGED)
    'merged'
    """
    return NAMES[int(code)]


def flag_attributes() -> dict:
    """CF attributes naming the codes of a stored jump-code variable (int8).

    >>> flag_attributes()["flag_meanings"]
    'matched missed merged extra'
    """
    codes = sorted(NAMES)
    return {"flag_values": np.array(codes, dtype=np.int8),
            "flag_meanings": " ".join(NAMES[c] for c in codes)}


@functools.cache
def _rise_integral(depth: float) -> float:
    """``I_N``: flow time x ``N^2 v^(2-2/N)`` for one coordinate to cross from logit -2 to 2."""
    if depth == 2.0:
        return 2.0 * _LOGIT  # int dx / (x (1 - x)) = [logit x]
    from scipy.integrate import quad

    power = 2.0 - 2.0 / depth
    lo, hi = 1.0 / (1.0 + np.exp(_LOGIT)), 1.0 / (1.0 + np.exp(-_LOGIT))
    return float(quad(lambda x: x ** -power / (1.0 - x), lo, hi, epsabs=0, epsrel=1e-12)[0])


def widths(speeds, depth: float, log_scale: float) -> np.ndarray:
    """Rescaled width of each jump at ``alpha = exp(log_scale)`` (module docstring).

    Args:
        speeds: ``(J,)`` the speed of each jump's entering coordinate
            (``JumpProcess.speeds[1:]``).
        depth: ``N >= 2``.
        log_scale: ``ln alpha < 0``.

    >>> widths(np.array([1.0, 0.5]), 2, -100.0).tolist()   # 4 / (v ln(1/alpha))
    [0.04, 0.08]
    """
    speeds = np.asarray(speeds, dtype=float)
    depth = float(depth)
    flow = _rise_integral(depth) / (depth**2 * speeds ** (2.0 - 2.0 / depth))
    return flow / time_scale(depth, log_scale)


def resolution(widths_, step: float) -> np.ndarray:
    """Smallest gap between jumps ``k`` and ``k + 1`` that is measurable:
    ``(w_k + w_(k+1)) / 2 + step``; ``(J,)``, NaN for the last jump.

    >>> resolution(np.array([0.1, 0.3, 0.2]), 0.01).round(6).tolist()
    [0.21, 0.26, nan]
    """
    w = np.asarray(widths_, dtype=float)
    out = np.full(w.shape, np.nan)
    out[:-1] = 0.5 * (w[:-1] + w[1:]) + step
    return out


def windows(jp: JumpProcess, widths_, step: float) -> np.ndarray:
    """Half-width of the window of each of the ``J`` jumps of ``jp`` (module docstring).

    >>> from jaxflow.oracles.jump_process import jump_process
    >>> jp = jump_process(np.eye(2), np.array([2.0, 1.0]))   # independent: nothing inherited
    >>> windows(jp, np.array([0.1, 0.2]), 0.01).round(6).tolist()
    [0.11, 0.21]
    """
    w = np.asarray(widths_, dtype=float)
    out = np.zeros(w.shape)
    for k in range(w.size):
        i = jp.entering[k + 1]
        change = np.abs(np.diff(jp.velocities[: k + 1, i]))  # at jumps 1..k-1
        out[k] = w[k] + step + np.sum(out[:k] * change) / jp.speeds[k + 1]
    return out


def groups(times, resolution_) -> np.ndarray:
    """Label of each oracle jump's group: jumps closer than the resolution share one.

    >>> groups(np.array([1.0, 1.05, 1.1, 3.0]), np.array([0.1, 0.1, 0.5, np.nan])).tolist()
    [0, 0, 0, 1]
    """
    times = np.asarray(times, dtype=float)
    apart = ~(np.diff(times) < np.asarray(resolution_, dtype=float)[:-1])
    return np.concatenate([[0], np.cumsum(apart)])[: times.size].astype(int)


def events(staircase) -> np.ndarray:
    """The sorted times of the detected jumps of one trajectory (module docstring).

    ``staircase``: a :class:`jaxflow.oracles.saddles.Staircase` of one lane.

    >>> import jax.numpy as jnp
    >>> from jaxflow.oracles import saddles
    >>> t = jnp.linspace(0.0, 10.0, 1001)
    >>> ramp = lambda c: jnp.clip((t - c) / 0.5 + 0.5, 0.0, 1.0)
    >>> both = jnp.stack([2.0 * ramp(3.0), ramp(3.4), ramp(7.0)], axis=1)   # 0 and 1 overlap
    >>> st = saddles.detect(t, both, max_plateaus=4)
    >>> int(st.num_plateaus), events(st).round(6).tolist()
    (3, [3.0, 3.4, 7.0])
    """
    levels = np.asarray(staircase.levels)
    active = np.asarray(staircase.active)
    crossings = np.asarray(staircase.mode_jump_times)
    leading = np.asarray(staircase.jump_times)
    out = []
    for j in range(int(staircase.num_plateaus) - 1):
        entering = active[j + 1] & (~active[j] | (np.sign(levels[j + 1]) != np.sign(levels[j])))
        entering &= np.isfinite(crossings[j])
        if entering.any():
            out.extend(crossings[j][entering])
        elif np.isfinite(leading[j]):
            out.append(leading[j])
    return np.sort(np.asarray(out, dtype=float))


class Matching(NamedTuple):
    """Oracle jumps and detected jumps, paired.

    Attributes:
        codes: ``(J,)`` int8, per oracle jump: ``MATCHED``, ``MISSED`` or ``MERGED``.
        times: ``(J,)`` the detected time assigned to each oracle jump (NaN: missed).
        errors: ``(J,)`` detected minus oracle time, for matched jumps only (NaN otherwise).
        assigned: ``(E,)`` the oracle jump (0-based) each finite detection went to; -1: extra.
    """

    codes: np.ndarray
    times: np.ndarray
    errors: np.ndarray
    assigned: np.ndarray

    @property
    def num_extra(self) -> int:
        """Detected jumps assigned to no oracle jump."""
        return int(np.sum(self.assigned < 0))


def match(oracle, detected, windows_, resolution_) -> Matching:
    """Pair detected with oracle jump times by an optimal assignment (module docstring).

    Among the assignments with the most pairs within their windows, the one with the least
    total ``|detected - oracle|`` (``scipy.optimize.linear_sum_assignment``).

    Args:
        oracle: ``(J,)`` increasing oracle jump times.
        detected: detected jump times (NaN entries are dropped: ``E`` counts the others).
        windows_: ``(J,)`` half-width of each oracle jump's window (:func:`windows`).
        resolution_: ``(J,)`` resolution of each jump and the next (:func:`resolution`).
    """
    from scipy.optimize import linear_sum_assignment  # on use: keeps `import jaxflow` light

    oracle = np.asarray(oracle, dtype=float)
    detected = np.asarray(detected, dtype=float)
    detected = detected[np.isfinite(detected)]
    label = groups(oracle, resolution_)
    span = np.array([np.ptp(oracle[label == g]) for g in label])
    reach = np.asarray(windows_, dtype=float) + span
    found = np.arange(detected.size if oracle.size else 0)  # no oracle jump: all extra
    distance = np.abs(detected[found, None] - oracle[None, :])
    admissible = distance <= reach[None, :]
    # One inadmissible pair costs more than every admissible pair together: the most pairs first.
    penalty = 1.0 + distance[admissible].sum() if admissible.any() else 1.0
    rows, cols = linear_sum_assignment(np.where(admissible, distance, penalty))
    keep = admissible[rows, cols]
    rows, cols = rows[keep], cols[keep]
    times = np.full(oracle.shape, np.nan)
    times[cols] = detected[found[rows]]
    assigned = np.full(detected.shape, -1)
    assigned[found[rows]] = cols
    codes = np.full(oracle.shape, MISSED, dtype=np.int8)
    for g in np.unique(label):
        members = label == g
        if np.isfinite(times[members]).any():
            codes[members] = MATCHED if members.sum() == 1 else MERGED
    errors = np.where(codes == MATCHED, times - oracle, np.nan)
    return Matching(codes=codes, times=times, errors=errors, assigned=assigned)
