"""Time ``jaxflow phase-diagram`` on its defaults and record its accuracy, as JSON.

Runs the command once with an empty XLA cache (cold) and twice more with the cache that run
filled (warm: the best of the two), reads the dataset it wrote and stores the
wall times, the number of trajectories, the share of the work queues' slot iterations that
advanced no lane, the worst threshold error, the fitted slopes against
N/(N-2) and depth 2's constant in ``benchmarks/results/phase_diagram.json``, where
``benchmarks/fill_numbers.py`` reads them for README.md and the docs.

    python benchmarks/phase_diagram.py [--out results/phase_diagram]
"""

import argparse
import json
import math
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import xarray as xr

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "results" / "phase_diagram"))
    parser.add_argument("--json",
                        default=str(ROOT / "benchmarks" / "results" / "phase_diagram.json"))
    args = parser.parse_args(argv)

    from jaxflow import provenance
    from jaxflow.experiments import phase_diagram as pd

    load = list(os.getloadavg())  # before the run: what else was using the cores
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, JAXFLOW_CACHE_DIR=os.path.join(tmp, "cache"))
        walls = []
        for run in range(3):  # cold, then warm twice; each run a new store (no --resume)
            out = os.path.join(tmp, f"run{run}")
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "jaxflow.cli", "phase-diagram", "--out", out,
                            "--quiet"], check=True, env=env)
            walls.append(time.perf_counter() - start)
        shutil.copytree(out, args.out, dirs_exist_ok=True)  # the last run's files
    ds = xr.load_dataset(pathlib.Path(args.out) / "phase_diagram.nc")
    slopes = pd.fitted_slopes(ds)
    deviations = [abs(s / pd.theory_slope(d) - 1) for d, s in slopes.items()
                  if d > 2 and not math.isinf(d) and np.isfinite(s)]
    fitted, exact = pd.depth2_constant(ds)
    result = {
        **provenance.benchmark_record(
            "phase_diagram", "jaxflow phase-diagram (defaults; cold: empty XLA cache, warm: "
            "filled)", load),
        "wall_s": walls[0],
        "warm_wall_s": min(walls[1:]),
        "wasted_share": pd.wasted_share(ds),
        "trajectories": int(ds["incremental"].size),
        "depths": ds.sizes["depth"],
        "ratios": ds.sizes["ratio"],
        "scales": ds.sizes["log_scale"],
        "max_log_threshold_error": float(ds.attrs["max_log_threshold_error"]),
        "rtol": float(ds.attrs["rtol"]),
        "max_slope_deviation": max(deviations),
        "depth2_constant_fitted": fitted,
        "depth2_constant_exact": exact,
    }
    pathlib.Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
