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
    if code == status.NOT_FOUND:
        return f"not found (below e^{floor:g})"
    if np.isnan(log_value):
        return f"no answer ({status.name(code)})"
    if np.isneginf(log_value):
        return "none"
    return f"e^{log_value:.6g}"


def _error_text(error: float, code: int, theory_none: bool) -> str:
    """The log error cell: a number only for an answer; "match" only for an answered "none"."""
    if code == status.NOT_FOUND:
        return "match (no threshold)" if theory_none else "inf"
    if code in (status.OK, status.UNCERTAIN):
        return f"{error:.1e}"
    return "-"


def _estimate_text(estimate: float) -> str:
    return "-" if np.isnan(estimate) else f"{estimate:.1e}"


def summary_table(ds: xr.Dataset, excesses: Sequence[float] | None = None) -> str:
    """Measured against theory ``ln sigma0_th``, the fitted slopes and depth 2's constant.

    Rows: every depth at the grid ratios nearest to ``r - 1`` in ``excesses`` (default
    1e-3, 1e-2, 1e-1, 1, 10). Thresholds print as ``e^x`` (x = ln sigma0_th); "none" where
    theory has no threshold; "not found (below e^X)" where the search found none with every
    lane finished; "no answer (CODE)" where lanes that did not finish left it open. Beside each:
    its log error against theory (a mismatch is ``inf``, never a match; "-" where nothing was
    answered), the check's error estimate (``log_threshold_error_estimate``) and its status.

    Example:
    >>> import numpy as np, xarray as xr
    >>> from jaxflow.oracles import theory
    >>> from jaxflow.experiments import phase_diagram as pd
    >>> ratios = 1 + np.geomspace(1e-3, 1e-2, 3)
    >>> exact = np.asarray(theory.incremental_threshold(4.0, ratios, log=True))[None]
    >>> dims = ("depth", "ratio")
    >>> ds = xr.Dataset({"log_threshold_measured": (dims, exact + 1e-7),
    ...                  "log_threshold_theory": (dims, exact),
    ...                  "log_threshold_error_estimate": (dims, np.full((1, 3), 6e-9)),
    ...                  "threshold_status": (dims, np.zeros((1, 3), np.int8))},
    ...                 coords={"depth": [4.0], "ratio": ratios})
    >>> print(pd.summary_table(ds, excesses=[1e-3]))
    depth  r - 1  measured ln sigma0_th  theory ln sigma0_th  log error  estimate  status
        4  0.001  e^-16.3783             e^-16.3783             6.1e-09   6.0e-09  ok
    legend: none = theory has no threshold; not found = the search found none above its floor,
            every lane finished; no answer = lanes that did not finish left it open; log error
            inf = measured and theory disagree; estimate = the check's error estimate (ok: <=
            1e-5); - = none
    <BLANKLINE>
    slope of ln sigma0_th against ln(r - 1) for r - 1 <= 0.01 (theory: N/(N-2) as r -> 1)
    depth  fitted  N/(N-2)  rel. diff
        4   1.995    2.000    2.7e-03
    <BLANKLINE>
    worst log error of the ok thresholds: 8.49e-09, worst estimate 6.00e-09 (tolerance 1e-5)
    thresholds: ok 3
    """
    excess_all = ds["ratio"].values - 1.0
    if excesses is None:
        excesses = TABLE_EXCESSES
    picks = sorted({int(np.argmin(np.abs(np.log(excess_all / x)))) for x in excesses})
    err = threshold_log_error(ds).values
    floor = ds.attrs.get("log_scale_floor", LOG_SCALE_FLOOR)
    codes = ds["threshold_status"].values
    theory_none = np.isneginf(ds["log_threshold_theory"].values)
    estimate = (ds["log_threshold_error_estimate"].values if "log_threshold_error_estimate" in ds
                else np.full(codes.shape, np.nan))  # a dataset written before the check
    rows = []
    for i, depth in enumerate(ds["depth"].values):
        for k in picks:
            rows.append([f"{depth:g}", f"{excess_all[k]:.4g}",
                         _threshold_text(ds["log_threshold_measured"].values[i, k], codes[i, k],
                                         floor),
                         _threshold_text(ds["log_threshold_theory"].values[i, k], status.OK,
                                         floor),
                         _error_text(err[i, k], codes[i, k], theory_none[i, k]),
                         _estimate_text(estimate[i, k]), status.name(codes[i, k])])
    lines = [table(["depth", "r - 1", "measured ln sigma0_th", "theory ln sigma0_th", "log error",
                    "estimate", "status"],
                   rows, legend=["none = theory has no threshold",
                                 "not found = the search found none above its floor, every "
                                 "lane finished",
                                 "no answer = lanes that did not finish left it open",
                                 "log error inf = measured and theory disagree",
                                 "estimate = the check's error estimate (ok: <= 1e-5)",
                                 "- = none"])]
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
    lines += ["", _worst_line(err, estimate, codes, theory_none)]
    return "\n".join(lines)


def _worst_line(err, estimate, codes, theory_none) -> str:
    """The worst errors of the ok thresholds, and the count of every threshold status."""
    ok = codes == status.OK
    worst = f"{float(err[ok].max()):.2e}" if ok.any() else "-"
    estimates = estimate[ok & np.isfinite(estimate)]
    line = f"worst log error of the ok thresholds: {worst}"
    if estimates.size:
        line += f", worst estimate {float(estimates.max()):.2e}"
    line += " (tolerance 1e-5)\nthresholds: " + ", ".join(
        f"{k} {v}" for k, v in status.summary(codes).items())
    missed = int(np.sum((codes == status.NOT_FOUND) & ~theory_none))
    if missed:
        line += f"; not found where theory has one: {missed}"
    return line
