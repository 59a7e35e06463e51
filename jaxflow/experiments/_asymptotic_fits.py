"""The phase diagram's asymptotic fits: how the measured thresholds vanish as r -> 1.

For depth N > 2 the threshold falls like ``(r - 1)^(N/(N-2))`` (:func:`fitted_slopes` against
:func:`theory_slope`); at depth 2 exponentially, ``ln(1/sigma0_th) ~ C / (r - 1)``
(:func:`depth2_constant`). Fits use the window ``r - 1 <= SLOPE_EXCESS``. The public names are
those of :mod:`jaxflow.experiments.phase_diagram`.
"""

import math

import numpy as np
import xarray as xr

from jaxflow.engine import status

__all__ = ["SLOPE_EXCESS", "depth2_constant", "fitted_slopes", "theory_slope"]


SLOPE_EXCESS = 1e-2  # fits use r - 1 <= 1e-2, where the asymptotic laws hold to about 1%


def fitted_slopes(ds: xr.Dataset, max_excess: float = SLOPE_EXCESS) -> dict[float, float]:
    """Log-log slope of the measured ``sigma0_th`` against ``r - 1`` over ``r - 1 <= max_excess``.

    Theory: ``N/(N-2)`` as r -> 1 for N > 2 (polynomially small thresholds), 1 for N = inf.
    Only depths > 2 are fitted: for N = 2 the threshold is exponentially small and the slope
    grows without bound (see :func:`depth2_constant`).

    Example (exact thresholds of depth 4 near r = 1):
        >>> import numpy as np, xarray as xr
        >>> from jaxflow.oracles import theory
        >>> from jaxflow.experiments import phase_diagram as pd
        >>> ratios = 1 + np.geomspace(1e-3, 1e-2, 4)
        >>> exact = np.asarray(theory.incremental_threshold(4.0, ratios, log=True))[None]
        >>> ds = xr.Dataset({"log_threshold_measured": (("depth", "ratio"), exact)},
        ...                 coords={"depth": [4.0], "ratio": ratios})
        >>> {depth: round(slope, 3) for depth, slope in pd.fitted_slopes(ds).items()}   # -> 2
        {4.0: 1.995}
    """
    slopes = {}
    for depth in ds["depth"].values:
        if not depth > 2:
            continue
        excess, log_th = _near_one(ds, depth, max_excess)
        if excess.size >= 2:
            slopes[float(depth)] = float(np.polyfit(np.log(excess), log_th, 1)[0])
    return slopes


def _near_one(ds: xr.Dataset, depth: float, max_excess: float) -> tuple[np.ndarray, np.ndarray]:
    """``(r - 1, ln sigma0_th)`` of ``depth``'s measured thresholds with ``r - 1 <= max_excess``
    (grid ratios up to rounding), where one was found and is ``ok`` (where the dataset has a
    ``threshold_status``): the window the asymptotic fits use. An uncertain or unfinished
    threshold never enters a fit."""
    excess = ds["ratio"].values - 1.0
    log_th = ds["log_threshold_measured"].sel(depth=depth).values
    keep = (excess <= max_excess * (1 + 1e-9)) & np.isfinite(log_th)
    if "threshold_status" in ds:
        keep &= ds["threshold_status"].sel(depth=depth).values == status.OK
    return excess[keep], log_th[keep]


def theory_slope(depth: float) -> float:
    """``N / (N - 2)``, the limiting log-log slope of the threshold (1 for N = inf).

    >>> from jaxflow.experiments.phase_diagram import theory_slope
    >>> theory_slope(3.0), theory_slope(float("inf"))
    (3.0, 1.0)
    """
    return 1.0 if math.isinf(depth) else depth / (depth - 2.0)


def depth2_constant(ds: xr.Dataset, max_excess: float = SLOPE_EXCESS) -> tuple[float, float]:
    """Depth 2: the fitted ``C`` of ``ln(1/sigma0_th) ~ C / (r - 1) + D`` and its exact limit.

    As r -> 1, ``(r - 1) ln sigma0_th -> logit(start) - logit(finish)``, so ``C = logit(finish)
    - logit(start)`` (4.394 for start 0.1, finish 0.9): the threshold is exponentially small
    in ``1/(r - 1)``. Fitted by least squares in ``1/(r - 1)`` over ``r - 1 <= max_excess``;
    ``(nan, C)`` when depth 2 is not in the dataset or has fewer than two thresholds there.

    Example (exact thresholds):
        >>> import numpy as np, xarray as xr
        >>> from jaxflow.oracles import theory
        >>> from jaxflow.experiments import phase_diagram as pd
        >>> ratios = 1 + np.geomspace(1e-3, 1e-2, 6)
        >>> exact = np.asarray(theory.incremental_threshold(2.0, ratios, log=True))[None]
        >>> ds = xr.Dataset({"log_threshold_measured": (("depth", "ratio"), exact)},
        ...                 coords={"depth": [2.0], "ratio": ratios}, attrs={"start": 0.1, "finish": 0.9})
        >>> [round(c, 3) for c in pd.depth2_constant(ds)]
        [4.394, 4.394]
    """
    start, finish = ds.attrs.get("start", 0.1), ds.attrs.get("finish", 0.9)
    logit = lambda u: math.log(u / (1.0 - u))
    exact = logit(finish) - logit(start)
    if 2.0 not in ds["depth"].values or "log_threshold_measured" not in ds:
        return math.nan, exact
    excess, log_th = _near_one(ds, 2.0, max_excess)
    if excess.size < 2:
        return math.nan, exact
    c, _ = np.polyfit(1.0 / excess, -log_th, 1)
    return float(c), exact
