"""Thresholds that check themselves: every refined threshold is solved again, tighter.

A measured threshold is the root of the simulated margin ``g(ln sigma0)``; its error is the
flow's error in ``g`` divided by the slope of ``g``. Where that slope is flat (next to the
critical ratio of 1 < N < 2, where thresholds vanish) an error of 1e-8 in the margin moves the
root by e^0.5, and nothing in the refinement notices. So each threshold ``x`` is checked a
posteriori: ``g`` is solved again at ``x`` and at ``x -+ h`` (``h`` = :data:`SLOPE_STEP`
relative) with the flow's tolerances times :data:`CHECK_TOLERANCE_SCALE`, and

    estimate = |g_tight(x)| / slope / max(1, |x|),
    slope = (g_tight(x + h) - g_tight(x - h)) / 2h,

the Newton step a tighter solve would take from ``x``, relative in the log like the threshold's
error against theory. The threshold stays ``ok`` when the estimate is at most
:data:`THRESHOLD_TOLERANCE` and becomes ``uncertain`` otherwise (a margin that does not increase
over ``x -+ h`` gives an infinite estimate); its value is kept and the estimate stored beside
it. The tighter solves run the sweep's own compiled program (``tolerance_scale`` is an input of
:class:`~jaxflow.experiments.phase_diagram.ToyRunner`): three lanes per threshold, no
compilation.

Example (a stand-in margin whose root is 0.01, exact at any tolerance; three thresholds
claimed at 0.01, at 0.01 (1 + 1e-5) and at 0.0101, ``ln`` off by 0, 1e-5 and 1e-2 in 4.6):
    >>> import jax.numpy as jnp, numpy as np
    >>> from jaxflow import sweep
    >>> from jaxflow.experiments import phase_diagram as pd
    >>> def stand_in(p):   # g = -margin = ln sigma0 - ln 0.01
    ...     return {"margin_in_unit": jnp.log(0.01) - p["log_scale"],
    ...             "status": jnp.zeros((), jnp.int8)}
    >>> runner = sweep.Runner(stand_in, chunk_size=8)
    >>> cfg = pd.PhaseDiagramConfig(depths=(3.0,), ratios=(2.0, 3.0, 4.0))
    >>> claimed = np.log([[0.01, 0.01 * (1 + 1e-5), 0.0101]])
    >>> estimate, codes = pd.check_thresholds(cfg, claimed, np.zeros((1, 3), np.int8), runner)
    >>> [f"{e:.2g}" for e in estimate[0]], [pd.status.name(c) for c in codes[0]]
    (['0', '2.2e-06', '0.0022'], ['ok', 'ok', 'uncertain'])
"""

import math
from typing import TYPE_CHECKING

import numpy as np

from jaxflow import sweep
from jaxflow.engine import status
from jaxflow.experiments._threshold_search import LOG_SCALE_FLOOR

if TYPE_CHECKING:  # the config's module imports this one
    from jaxflow.experiments.phase_diagram import PhaseDiagramConfig

__all__ = ["CHECK_TOLERANCE_SCALE", "SLOPE_STEP", "THRESHOLD_TOLERANCE", "check_thresholds"]

THRESHOLD_TOLERANCE = 1e-5
"""The tolerance of a threshold: ``|error of ln sigma0_th| / max(1, |ln sigma0_th|)``."""

CHECK_TOLERANCE_SCALE = 1e-3
"""The check solves with ``rtol`` and ``atol`` times this: its own error is then ~1e-3 of the
error it estimates."""

SLOPE_STEP = 1e-3
"""``h / max(1, |x|)``: wide enough that the tight solves' rounding (1e-11 of the margin) is far
below the slope's change of ``g`` over it, narrow enough that ``g`` is straight on it."""


def check_thresholds(
    config: "PhaseDiagramConfig",
    log_threshold: np.ndarray,
    codes: np.ndarray,
    runner: sweep.AbstractRunner,
) -> tuple[np.ndarray, np.ndarray]:
    """Check every ``ok`` threshold by tighter solves; returns ``(estimate, codes)``.

    Args:
        config: the phase diagram's config (``start`` bounds the check from above).
        log_threshold: ``ln sigma0_th`` per (depth, ratio), as the search measured them.
        codes: their status codes; only ``ok`` ones are checked.
        runner: a float64 runner of the margin that takes the input ``tolerance_scale``.

    Returns:
        The error estimate per (depth, ratio) (NaN where none was made: a threshold not found,
        not ok, or whose check lanes did not finish) and the codes: ``ok`` where the estimate is
        at most :data:`THRESHOLD_TOLERANCE`, ``uncertain`` where it is larger, the check
        lanes' worst code where they did not finish, the others as given.
    """
    log_threshold = np.asarray(log_threshold, dtype=float)
    codes = np.array(codes, dtype=np.int8)
    estimate = np.full(log_threshold.shape, np.nan)
    todo = np.argwhere((codes == status.OK) & np.isfinite(log_threshold))
    if todo.size == 0:
        return estimate, codes
    i, j = todo[:, 0], todo[:, 1]
    x = log_threshold[i, j]
    h = SLOPE_STEP * np.maximum(1.0, np.abs(x))
    below = np.maximum(x - h, LOG_SCALE_FLOOR)
    above = np.minimum(x + h, math.log(config.start))
    out = runner({
        "depth": np.tile(np.asarray(config.depths, dtype=float)[i], 3),
        "ratio": np.tile(np.asarray(config.ratios, dtype=float)[j], 3),
        "log_scale": np.concatenate([below, x, above]),
        "tolerance_scale": np.full(3 * x.size, CHECK_TOLERANCE_SCALE),
    })
    g = -np.asarray(out["margin_in_unit"], dtype=float).reshape(3, -1)
    worst = status.worst(np.asarray(out["status"]).reshape(3, -1), axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = (g[2] - g[0]) / (above - below)
        step = np.abs(g[1]) / slope / np.maximum(1.0, np.abs(x))
    step = np.where((slope > 0) & np.isfinite(step), step, np.inf)
    checked = np.where(step <= THRESHOLD_TOLERANCE, status.OK, status.UNCERTAIN)
    codes[i, j] = np.where(worst == status.OK, checked, worst)
    estimate[i, j] = np.where(worst == status.OK, step, np.nan)
    return estimate, codes
