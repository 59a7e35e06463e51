"""The phase diagram's printed table: measured against theory thresholds, the asymptotic
fits and the worst log error (:func:`summary_table`, the body of ``phase_diagram.report``).
"""

from collections.abc import Sequence

import numpy as np
import xarray as xr

from jaxflow._table import table
from jaxflow.engine import status
from jaxflow.experiments._asymptotic_fits import (
    SLOPE_EXCESS,
    depth2_constant,
    fitted_slopes,
    theory_slope,
)
from jaxflow.experiments._threshold_search import LOG_SCALE_FLOOR, threshold_log_error

__all__ = ["TABLE_EXCESSES", "summary_table"]


# The r - 1 the printed table shows (the nearest grid ratios).
TABLE_EXCESSES = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


def _threshold_text(log_value: float, code: int, floor: float) -> str:
    if code == status.NOT_FOUND or np.isnan(log_value):
        return f"not found (below e^{floor:g})"
    if np.isneginf(log_value):
        return "none"
    return f"e^{log_value:.6g}"


def summary_table(ds: xr.Dataset, excesses: Sequence[float] | None = None) -> str:
    """Measured against theory ``ln sigma0_th``, the fitted slopes and depth 2's constant.

    Rows: every depth at the grid ratios nearest to ``r - 1`` in ``excesses`` (default
    1e-3, 1e-2, 1e-1, 1, 10). Thresholds print as ``e^x`` (x = ln sigma0_th); "none" where
    theory has no threshold; "not found (below e^X)" where the search found none; a
    mismatch is never printed as a match (its log error is ``inf``).

    Example:
    >>> import numpy as np, xarray as xr
    >>> from jaxflow.oracles import theory
    >>> from jaxflow.experiments import phase_diagram as pd
    >>> ratios = 1 + np.geomspace(1e-3, 1e-2, 3)
    >>> exact = np.asarray(theory.incremental_threshold(4.0, ratios, log=True))[None]
    >>> ds = xr.Dataset({"log_threshold_measured": (("depth", "ratio"), exact + 1e-7),
    ...                  "log_threshold_theory": (("depth", "ratio"), exact),
    ...                  "threshold_status": (("depth", "ratio"), np.zeros((1, 3), np.int8))},
    ...                 coords={"depth": [4.0], "ratio": ratios})
    >>> print(pd.summary_table(ds, excesses=[1e-3]))
    depth  r - 1  measured ln sigma0_th  theory ln sigma0_th  log error
        4  0.001  e^-16.3783             e^-16.3783             6.1e-09
    legend: none = theory has no threshold; not found = the search found none above its floor;
            log error inf = measured and theory disagree
    <BLANKLINE>
    slope of ln sigma0_th against ln(r - 1) for r - 1 <= 0.01 (theory: N/(N-2) as r -> 1)
    depth  fitted  N/(N-2)  rel. diff
        4   1.995    2.000    2.7e-03
    <BLANKLINE>
    worst log error over all (depth, ratio): 8.49e-09  (tolerance 1e-5); not found: 0
    """
    excess_all = ds["ratio"].values - 1.0
    if excesses is None:
        excesses = TABLE_EXCESSES
    picks = sorted({int(np.argmin(np.abs(np.log(excess_all / x)))) for x in excesses})
    err = threshold_log_error(ds)
    floor = ds.attrs.get("log_scale_floor", LOG_SCALE_FLOOR)
    codes = ds["threshold_status"].values
    rows = []
    for i, depth in enumerate(ds["depth"].values):
        for k in picks:
            m = _threshold_text(ds["log_threshold_measured"].values[i, k], codes[i, k], floor)
            t = _threshold_text(ds["log_threshold_theory"].values[i, k], status.OK, floor)
            e = err.values[i, k]
            e_txt = "match (no threshold)" if (e == 0 and t == "none") else f"{e:.1e}"
            rows.append([f"{depth:g}", f"{excess_all[k]:.4g}", m, t, e_txt])
    lines = [table(["depth", "r - 1", "measured ln sigma0_th", "theory ln sigma0_th", "log error"],
                   rows, legend=["none = theory has no threshold",
                                 "not found = the search found none above its floor",
                                 "log error inf = measured and theory disagree"])]
    slopes = fitted_slopes(ds)
    if slopes:
        lines += ["", f"slope of ln sigma0_th against ln(r - 1) for r - 1 <= {SLOPE_EXCESS:g} "
                  "(theory: N/(N-2) as r -> 1)"]
        lines.append(table(["depth", "fitted", "N/(N-2)", "rel. diff"], [
            [f"{depth:g}", f"{slope:.3f}", f"{theory_slope(depth):.3f}",
             f"{abs(slope / theory_slope(depth) - 1):.1e}"] for depth, slope in slopes.items()]))
    c_fit, c_exact = depth2_constant(ds)
    if np.isfinite(c_fit):
        lines += ["", f"depth 2: ln(1/sigma0_th) ~ C/(r - 1) for r - 1 <= {SLOPE_EXCESS:g}: fitted "
                  f"C = {c_fit:.4f}, exact limit logit(finish) - logit(start) = {c_exact:.4f} "
                  f"(rel. diff {abs(c_fit / c_exact - 1):.1e})"]
    not_found = int(np.sum((codes == status.NOT_FOUND) & ~np.isneginf(ds["log_threshold_theory"].values)))
    lines += ["", f"worst log error over all (depth, ratio): {float(err.max()):.2e}  "
              f"(tolerance 1e-5); not found: {not_found}"]
    return "\n".join(lines)
