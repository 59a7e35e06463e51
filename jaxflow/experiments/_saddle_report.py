"""The report of the saddle-to-saddle experiment: its jumps matched to the oracle's, per jump.

Split from :mod:`jaxflow.experiments.saddle_to_saddle` (which re-exports :func:`report`,
:func:`convergence` and :func:`scaling_exponent`). Every number here reads the dataset's
matching (:mod:`jaxflow.oracles.jump_matching`): an error, a rate or a fitted exponent is
computed on *matched* jumps only; a merged or missed jump is named as such, never scored.
"""

import numpy as np
import xarray as xr

from jaxflow._table import table
from jaxflow.engine import status
from jaxflow.oracles import jump_matching as jm

__all__ = ["convergence", "depth_two_exponents", "report", "scaling_exponent"]

_SMALL = 1e-30  # depth 2 is fitted over alpha <= this: its jumps are resolved there


def convergence(ds: xr.Dataset, backend: str = "flow", depth: int = 2) -> xr.Dataset:
    """Errors of the matched rescaled jump times against the oracle, per scale and jump (NaN
    where the jump was not matched), with ``error * ln(1/alpha)`` and ``error /
    alpha^(1-2/N)`` (the two convergence rates).

    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"jump_time": (("backend", "depth", "scale", "jump"), [[[[1.1], [1.01]]]]),
    ...                  "oracle_jump_time": (("jump",), [1.0])},
    ...                 coords={"backend": ["flow"], "depth": [2], "scale": [1e-2, 1e-20],
    ...                         "jump": [1]})
    >>> np.round(convergence(ds)["error"].values.ravel(), 6).tolist()
    [0.1, 0.01]
    """
    times = ds["jump_time"].sel(backend=backend, depth=depth)
    error = times - ds["oracle_jump_time"]
    log_inverse = -np.log(ds["scale"])
    return xr.Dataset(
        {
            "error": error,
            "error_times_log": error * log_inverse,
            "error_over_power": error / ds["scale"] ** (1.0 - 2.0 / depth),
        }
    )


def scaling_exponent(ds: xr.Dataset, depth: int, jump: int = 1) -> float:
    """Fitted ``p`` in ``t_jump ~ alpha^-p`` (flow time, flow back-end, matched jumps) over the
    scales run.

    The jump process predicts ``p = 1 - 2/N`` at depth ``N >= 3`` (and ``t ~ ln(1/alpha)``,
    ``p -> 0``, at depth 2).
    """
    times = ds["jump_flow_time"].sel(backend="flow", depth=depth, jump=jump).values
    return _slope(1.0 / ds["scale"].values, times)


def depth_two_exponents(ds: xr.Dataset) -> np.ndarray:
    """Per oracle jump, the fitted exponent of ``|error|`` against ``ln(1/alpha)`` for the
    depth-2 flow over ``alpha <= 1e-30``, matched scales only (theory: -1; NaN: fewer than two
    matched scales)."""
    conv = convergence(ds, "flow", 2)
    small = ds["scale"].values <= _SMALL
    log_inverse = -np.log(ds["scale"].values[small])
    error = np.abs(conv["error"].values[small])
    return np.array([_slope(log_inverse, error[:, k]) for k in range(error.shape[1])])


def _slope(x, y):
    keep = np.isfinite(x) & np.isfinite(y) & (y > 0)
    if keep.sum() < 2:
        return np.nan
    return float(np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)[0])


def _cell(run, k: int) -> str:
    """One backend's answer for oracle jump ``k`` (0-based) in one run."""
    if not bool(run["ran"]):
        return "--"
    code = int(run["jump_code"].values[k])
    if code == jm.MATCHED:
        time, error = float(run["jump_time"][k]), float(run["jump_error"][k])
        return f"{time:.4f} ({error:+.1e})"
    if code == jm.MERGED:
        found = run["detected_time"].values[run["detected_jump"].values == k + 1]
        return "merged" + (f" ({found[0]:.3f})" if found.size else "")
    return jm.name(code)


def _jump_table(ds: xr.Dataset) -> str:
    oracle = ds["oracle_jump_time"].values
    gap = np.append(np.diff(oracle), np.nan)
    rows = []
    for n in ds["depth"].values:
        for a in ds["scale"].values:
            point = ds.sel(depth=n, scale=a)
            if not point["ran"].values.any():
                continue
            runs = [point.sel(backend=b) for b in ds["backend"].values]
            for k in range(oracle.size):
                rows.append([int(n), f"{a:.0e}", k + 1, f"{oracle[k]:.3f}",
                             f"{float(point['jump_width'][k]):.2g}",
                             f"{gap[k]:.3f}" if np.isfinite(gap[k]) else "--",
                             f"{float(point['resolution'][k]):.3f}"
                             if np.isfinite(point["resolution"][k]) else "--",
                             *(_cell(r, k) for r in runs)])
            for r, b in zip(runs, ds["backend"].values):
                extra = r["detected_time"].values[r["detected_jump"].values == 0]
                if extra.size:
                    rows.append([int(n), f"{a:.0e}", "extra", "", "", "", "",
                                 *(", ".join(f"{t:.3f}" for t in extra) if c == b else ""
                                   for c in ds["backend"].values)])
    header = ["depth", "scale", "jump", "oracle t", "width", "gap", "resolution",
              *ds["backend"].values.tolist()]
    return table(header, rows, legend=[
        "one row per oracle jump: detected time (error) when matched; merged = closer to the "
        "next or previous oracle jump than the resolution (one merged jump, the time of the "
        "detection in brackets, no error); missed = no detected jump in its window; extra = "
        "detected jumps assigned to no oracle jump; -- = run not made",
        "width = time the entering coordinate takes from 12% to 88% of its move; resolution = "
        "(width_k + width_k+1) / 2 + time step; all in rescaled time"])


def _code_counts(ds: xr.Dataset) -> str:
    parts = []
    for b in ds["backend"].values:
        ran = ds["ran"].sel(backend=b).values
        codes = ds["jump_code"].sel(backend=b).values[ran]
        counts = ", ".join(f"{jm.name(c)} {int(np.sum(codes == c))}"
                           for c in (jm.MATCHED, jm.MERGED, jm.MISSED))
        extra = int(ds["num_extra"].sel(backend=b).values[ran].sum())
        parts.append(f"{b}: {counts}, extra {extra}")
    return "oracle jumps over every run: " + "; ".join(parts)


def _depth_two(ds: xr.Dataset) -> list[str]:
    conv = convergence(ds, "flow", 2)
    oracle = ds["oracle_jump_time"].values
    small = [a for a in ds["scale"].values if a <= _SMALL]
    if not small:
        return [f"depth 2 (flow): no scale <= {_SMALL:.0e}, no rate fitted"]
    slopes = depth_two_exponents(ds)
    lines = [
        "depth 2 (flow): fitted exponent of |error| against ln(1/alpha), matched jumps at "
        "alpha <= 1e-30 (theory -1): " + ", ".join(f"{s:.2f}" for s in slopes)
        + ("; nan: fewer than two matched scales" if np.isnan(slopes).any() else ""),
        "  error * ln(1/alpha) per jump at alpha = "
        + ", ".join(f"{a:.0e}" for a in small) + " (a constant: the 1/ln(1/alpha) rate):",
    ]
    codes = ds["jump_code"].sel(backend="flow", depth=2)
    for k in range(oracle.size):
        cells = [f"{float(conv['error_times_log'].sel(scale=a)[k]):.2f}"
                 if int(codes.sel(scale=a)[k]) == jm.MATCHED
                 else jm.name(int(codes.sel(scale=a)[k])) for a in small]
        lines.append(f"    jump {k + 1} (t = {oracle[k]:.3f}): " + ", ".join(cells))
    merged = []
    for a in ds["scale"].values:
        run = ds.sel(backend="flow", depth=2, scale=a)
        for k in np.flatnonzero(run["jump_code"].values[:-1] == jm.MERGED):
            if run["jump_code"].values[k + 1] == jm.MERGED:
                merged.append(f"jumps {k + 1}-{k + 2} (gap {oracle[k + 1] - oracle[k]:.3f}) at "
                              f"alpha = {a:.0e} (resolution {float(run['resolution'][k]):.3f})")
    if merged:
        lines.append("  merged, closer than the resolution: " + "; ".join(merged))
    return lines


def report(ds: xr.Dataset) -> str:
    """The detected jumps matched to the oracle's, the convergence rates and the depth scaling.

    Lines: the oracle's jumps; one table row per oracle jump and run (matched with its error,
    merged, or missed; extra detections); the counts of the codes; for depth 2, the fitted
    exponent of ``|error|`` against ``ln(1/alpha)`` on matched jumps (the theory: -1) and
    ``error * ln(1/alpha)``; for depth >= 3, the fitted exponent of the first raw jump time
    against ``1/alpha`` (the derivation: ``1 - 2/N``); the status of every run.
    """
    oracle = ds["oracle_jump_time"].values
    before, after = ds["oracle_active"].values[:-1], ds["oracle_active"].values[1:]
    entering = [int(np.flatnonzero(after[k] & ~before[k])[0]) if (after[k] & ~before[k]).any()
                else -1 for k in range(oracle.size)]
    lines = [
        f"saddle-to-saddle: d = {ds.attrs['d']}, m = {ds.attrs['m']}, oracle jumps at rescaled "
        f"t = {', '.join(f'{t:.3f}' for t in oracle)}",
        f"  coordinates entering at each jump: {entering} (-1: none enters), at speeds "
        + ", ".join(f"{v:.3f}" for v in ds["oracle_jump_speed"].values)
        + "; oracle plateau losses "
        + ", ".join(f"{v:.3f}" for v in ds["oracle_plateau_loss"].values[: oracle.size + 1]),
        _jump_table(ds),
        _code_counts(ds),
    ]
    if 2 in ds["depth"].values:
        lines += _depth_two(ds)
    for n in ds["depth"].values:
        if n <= 2:
            continue
        error = np.abs(ds["jump_error"].sel(backend="flow", depth=n).values)
        ran = ds["ran"].sel(backend="flow", depth=n).values
        smallest = int(np.flatnonzero(ran)[-1]) if ran.any() else 0
        worst = np.nanmax(error[smallest]) if np.isfinite(error[smallest]).any() else np.nan
        lines.append(
            f"depth {int(n)} (flow): first jump time ~ alpha^-{scaling_exponent(ds, int(n)):.3f} "
            f"(derived 1 - 2/N = {1 - 2 / n:.3f}); max |error| of the matched jumps at alpha = "
            f"{ds['scale'].values[smallest]:.0e}: {worst:.1e}"
        )
    drift = ds["invariant_drift"].values[np.isfinite(ds["invariant_drift"].values)]
    if drift.size:
        lines.append(f"conserved quantity (flow): max drift {drift.max():.1e} over every run")
    lines.append(_status_line(ds))
    return "\n".join(lines)


def _status_line(ds: xr.Dataset) -> str:
    codes = ds["status"].values[ds["ran"].values]
    return "trajectory status of the runs made: " + ", ".join(
        f"{k} {v}" for k, v in status.summary(codes).items())
