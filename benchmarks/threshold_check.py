"""How well the phase diagram's thresholds check themselves, as a table and as JSON.

Two runs, in one process:

* the default phase diagram: the count of each threshold status, the worst error against theory
  of the ok thresholds, the worst estimate, the estimate's ratio to the true error, and the
  time the check took;
* next to the critical ratio r_c of 1 < N < 2 (where the margin as sigma0 -> 0 vanishes and
  thresholds drop to -inf): depths 1.5, 1.75, 1.9 at r = r_c (1 + e), e = 1e-8 .. 1, where a
  flat margin turns the flow's 1e-8 tolerance into errors of 1e-4 and more. Every threshold
  must be within 1e-5 of theory or ``uncertain``.

Writes ``benchmarks/results/threshold_check.json``.

    python benchmarks/threshold_check.py [--json PATH]
"""

import argparse
import json
import math
import os
import pathlib
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

from jaxflow import provenance  # noqa: E402
from jaxflow.engine import status  # noqa: E402
from jaxflow.experiments import phase_diagram as pd  # noqa: E402
from jaxflow.oracles import theory  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
NEAR_DEPTHS = (1.5, 1.75, 1.9)
NEAR_EXCESSES = tuple(float(e) for e in np.geomspace(1e-8, 1.0, 17))


def critical_ratio(depth: float) -> float:
    """The smallest ratio with a threshold at ``depth`` (1 < N < 2), by bisection on theory."""
    lo, hi = 1.0 + 1e-9, 1e3
    for _ in range(80):
        mid = math.sqrt(lo * hi)
        if np.isfinite(float(theory.incremental_threshold(depth, mid, log=True))):
            hi = mid
        else:
            lo = mid
    return hi


def measure(config) -> dict:
    """Run ``config``; the threshold statuses, errors and estimates, and the check's time."""
    spent = []
    check = pd.check_thresholds

    def timed(*args):
        start = time.perf_counter()
        out = check(*args)
        spent.append(time.perf_counter() - start)
        return out

    pd.check_thresholds = timed
    try:
        start = time.perf_counter()
        ds = pd.run(config, quiet=True)
        wall = time.perf_counter() - start
    finally:
        pd.check_thresholds = check
    codes = ds["threshold_status"].values
    err = pd.threshold_log_error(ds).values
    estimate = ds["log_threshold_error_estimate"].values
    ok = codes == status.OK
    checked = np.isfinite(estimate) & (err > 0)
    ratio = estimate[checked] / err[checked]
    return {
        "thresholds": int(codes.size),
        "status": status.summary(codes),
        "worst_error_ok": float(err[ok].max()) if ok.any() else None,
        "worst_error_answered": float(np.max(err[np.isfinite(estimate)], initial=0.0)),
        "worst_estimate_ok": float(np.max(estimate[ok], initial=0.0)),
        "estimate_over_error": [float(ratio.min()), float(np.median(ratio)), float(ratio.max())]
        if ratio.size else None,
        "wrong_but_ok": int(np.sum(ok & ~(err <= 1e-5))),
        "uncertain_with_r_minus_1_ge_1e-2": int(np.sum(
            (codes == status.UNCERTAIN) & (ds["ratio"].values[None] - 1 >= 1e-2))),
        "wall_s": wall,
        "check_s": float(sum(spent)),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json",
                        default=str(ROOT / "benchmarks" / "results" / "threshold_check.json"))
    args = parser.parse_args(argv)
    load = list(os.getloadavg())
    default = measure(pd.PhaseDiagramConfig())
    near = {}
    for depth in NEAR_DEPTHS:
        rc = critical_ratio(depth)
        config = pd.PhaseDiagramConfig(depths=(depth,),
                                       ratios=tuple(rc * (1 + e) for e in NEAR_EXCESSES))
        near[f"{depth:g}"] = {"critical_ratio": rc, **measure(config)}
    result = {
        **provenance.benchmark_record("threshold_check", "python benchmarks/threshold_check.py",
                                      load),
        "tolerance": pd.THRESHOLD_TOLERANCE,
        "check_tolerance_scale": pd.CHECK_TOLERANCE_SCALE,
        "default": default,
        "near_critical": {"excesses": list(NEAR_EXCESSES), "depths": near},
    }
    pathlib.Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    rows = [("default", default)] + [(f"N = {d}, r_c (1 + 1e-8 .. 1)", v) for d, v in near.items()]
    print(f"{'run':32s} {'ok':>4s} {'not_found':>9s} {'uncertain':>9s} {'worst ok':>9s} "
          f"{'worst answered':>14s} {'est/err':>17s} {'wrong ok':>8s} {'check s':>7s}")
    for name, v in rows:
        s, ratio = v["status"], v["estimate_over_error"] or [math.nan] * 3
        worst_ok = v["worst_error_ok"] if v["worst_error_ok"] is not None else math.nan
        print(f"{name:32s} {s.get('ok', 0):4d} {s.get('not_found', 0):9d} "
              f"{s.get('uncertain', 0):9d} {worst_ok:9.2e} {v['worst_error_answered']:14.2e} "
              f"{ratio[0]:5.2f}..{ratio[2]:<10.2f} {v['wrong_but_ok']:8d} {v['check_s']:7.2f}")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
