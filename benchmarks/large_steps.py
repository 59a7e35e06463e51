"""Large steps on incremental learning and on diagonal networks: the measured findings.

Runs the two experiments at their full default size and writes what the docs quote
(docs/science/edge-of-stability.md, through benchmarks/fill_numbers.py):

* ``jaxflow experiment large-step-thresholds``: sigma_th(eta) / sigma_th(flow) per depth,
  ratio and eta x lambda / 2, with each lane's status;
* ``jaxflow experiment large-step-diagonal``: per depth and eta x lambda_flow / 2, the medians
  over the seeds of ||beta||_1 / ||beta_flow||_1 and ||beta - beta_flow|| / ||beta_flow||.

    python benchmarks/large_steps.py

Writes benchmarks/results/large_steps.json (and the two datasets beside it, for the figures:
results/large_step_thresholds.nc, results/large_step_diagonal.nc, not committed).
"""

import argparse
import json
import os
import pathlib
import time

import jax

jax.config.update("jax_enable_x64", True)
import numpy as np  # noqa: E402

from jaxflow import provenance  # noqa: E402
from jaxflow.engine import status  # noqa: E402
from jaxflow.experiments import large_step_diagonal as lsd  # noqa: E402
from jaxflow.experiments import large_step_thresholds as lst  # noqa: E402


def timed_run(module, config, out_dir: pathlib.Path, summary) -> dict:
    """``module.run(config)`` at its full size, timed, saved as ``out_dir/<module>.nc`` and
    summarized by ``summary(ds, wall)``."""
    start = time.perf_counter()
    ds = module.run(config, quiet=True)
    wall = time.perf_counter() - start
    ds.to_netcdf(out_dir / f"{module.__name__.rsplit('.', 1)[-1]}.nc")
    return summary(ds, wall)


def thresholds_summary(ds, wall: float) -> dict:
    rows = []
    for depth in ds["depth"].values:
        for ratio in ds["ratio"].values:
            lane = ds.sel(depth=depth, ratio=ratio)
            rows.append({"depth": int(depth), "ratio": float(ratio),
                         "sigma_th_flow": float(np.exp(lane["log_threshold_flow"].values[0])),
                         "threshold_ratio": [float(v) for v in lane["threshold_ratio"].values],
                         "status": [status.name(c) for c in lane["status"].values]})
    return {"eta_factors": [float(f) for f in ds["eta_factor"].values], "rows": rows,
            "wall_s": wall, "command": "jaxflow experiment large-step-thresholds"}


def diagonal_summary(ds, wall: float) -> dict:
    rows = []
    for depth in ds["depth"].values:
        sub = ds.sel(depth=depth)
        good = sub["converged"]
        med = lambda v: [float(x) for x in v.where(good).median("seed").values]  # noqa: E731
        rows.append({"depth": float(depth), "l1_ratio": med(sub["l1"] / sub["l1_flow"]),
                     "distance": med(sub["distance"]), "support": med(sub["support"]),
                     "support_flow": float(sub["support_flow"].median()),
                     "recovery_error_flow": float(sub["recovery_error_flow"].median()),
                     "recovery_error": med(sub["recovery_error"]),
                     "converged": [int(v) for v in good.sum("seed").values],
                     "oscillating": [int(v) for v in ((sub["status"] == status.OK)
                                                      & ~good).sum("seed").values],
                     "stable_at_end": bool(((sub["final_sharpness"] <= sub["two_over_eta"]
                                             * (1 + 1e-6)) | ~good).all())})
    return {"eta_factors": [float(f) for f in ds["eta_factor"].values], "rows": rows,
            "seeds": int(ds.sizes["seed"]), "d": int(ds.attrs["d"]), "m": int(ds.attrs["m"]),
            "wall_s": wall, "command": "jaxflow experiment large-step-diagonal"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/large_steps.json")
    args = parser.parse_args()
    out_dir = pathlib.Path("results")
    out_dir.mkdir(exist_ok=True)
    result = {"thresholds": timed_run(lst, lst.LargeStepThresholdsConfig(), out_dir,
                                      thresholds_summary),
              "diagonal": timed_run(lsd, lsd.LargeStepDiagonalConfig(), out_dir,
                                    diagonal_summary),
              "commit": provenance.git_commit(), "cpu_count": os.cpu_count(),
              "load_average": os.getloadavg()[0]}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=1)[:3000])


if __name__ == "__main__":
    main()
