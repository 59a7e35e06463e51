"""How the phase-diagram sweep scales with grid size and device count.

For each device count D (default 1, 2, 4) a fresh Python process is started with
``XLA_FLAGS=--xla_force_host_platform_device_count=D`` (the flag must be set before jax is
imported). There, for each grid size n (default 1e3, 1e4, 1e5; 1e6 on request), it times
``sweep.run(None, grid, runner=runner)``, ``runner = sweep.Runner(pd.point_function(config))``,
on a grid of depths x ratios x scales with ~n points. The runner is compiled beforehand by a warm-up sweep of one chunk, so the timings
exclude compilation (and the script checks that no call retraced). It reports wall time,
trajectories per second and, per device count, the log-log slope of time against size (1 means
linear cost).

Usage:
    python benchmarks/sweep_scaling.py                      # sizes 1e3,1e4,1e5; devices 1,2,4
    python benchmarks/sweep_scaling.py --sizes 1e3,1e4,1e5,1e6 --devices 1,4

Writes benchmarks/results/sweep_scaling.json (or --out). Forced CPU "devices" share the
machine's cores: on a 2-core machine more than 2 of them cannot run faster than 2.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "results", "sweep_scaling.json")
N_DEPTHS = 10
N_RATIOS = 10


def grid_axes(size: int) -> dict[str, list[float]]:
    """Depths x ratios x scales with N_DEPTHS * N_RATIOS * ceil(size / 100) points.

    Depths span the interesting range (1.5 ... 20 and inf), ratios 1.05 ... 10 and scales
    1e-40 ... 1e-1 (as ``log_scale = ln sigma0``, the phase diagram's axis), so every chunk mixes
    cheap and expensive trajectories.
    """
    import numpy as np

    n_scales = max(1, -(-int(size) // (N_DEPTHS * N_RATIOS)))
    depths = [1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 8.0, 10.0, 20.0, float("inf")]
    return {
        "depth": depths[:N_DEPTHS],
        "ratio": [float(r) for r in np.geomspace(1.05, 10.0, N_RATIOS)],
        "log_scale": [float(x) for x in np.log(np.geomspace(1e-40, 1e-1, n_scales))],
    }


def worker(sizes: list[int], devices: int, chunk_size: int, dtype: str = "float64") -> dict:
    """Runs inside the subprocess (XLA_FLAGS already set): time every size, return a dict."""
    import jax
    import numpy as np

    from jaxflow import sweep
    from jaxflow.experiments import phase_diagram as pd

    jax.config.update("jax_enable_x64", True)  # jaxflow's runs are float64 (float32: the config)
    if jax.device_count() != devices:
        raise SystemExit(f"asked for {devices} devices, jax sees {jax.device_count()}")
    config = pd.PhaseDiagramConfig(dtype=dtype, chunk_size=chunk_size)
    if dtype == "float32":  # the phase diagram's GPU path: float32, float64 where it must
        runner = pd.Float32Runner(config)
    else:
        runner = sweep.Runner(pd.point_function(config), chunk_size=chunk_size)

    # Warm-up: a sweep of one chunk compiles the program and traces the output shapes (the
    # first sweep.run also pays for jax.eval_shape of the per-point function).
    t0 = time.perf_counter()
    sweep.run(None, grid_axes(runner.chunk_size), runner=runner, quiet=True)
    compile_s = time.perf_counter() - t0

    rows = []
    for size in sizes:
        axes = grid_axes(size)
        points = int(np.prod([len(v) for v in axes.values()]))
        t0 = time.perf_counter()
        ds = sweep.run(None, axes, runner=runner, quiet=True)
        wall = time.perf_counter() - t0
        steps = ds["steps"].values
        rows.append(
            {
                "size": size,
                "points": points,
                "chunks": -(-points // runner.chunk_size),
                "wall_s": wall,
                "traj_per_s": points / wall,
                "mean_steps": float(steps.mean()),
                "status_ok_fraction": float((ds["status"].values == 0).mean()),
                "recomputed_fraction": float(ds["recomputed"].values.mean()) if "recomputed" in ds else 0.0,
            }
        )
    return {
        "devices": devices,
        "dtype": dtype,
        "chunk_size": runner.chunk_size,
        "warmup_compile_s": compile_s,
        "traces": runner.traces,
        "rows": rows,
    }


def loglog_slope(rows: list[dict]) -> float:
    import numpy as np

    if len(rows) < 2:
        return float("nan")
    x = np.log([r["points"] for r in rows])
    y = np.log([r["wall_s"] for r in rows])
    return float(np.polyfit(x, y, 1)[0])


def _numbers(text: str, cast) -> list:
    return [cast(float(v)) for v in text.replace(",", " ").split()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1e3,1e4,1e5", help="grid sizes, e.g. 1e3,1e4,1e5,1e6")
    parser.add_argument("--devices", default="1,2,4", help="forced CPU device counts")
    parser.add_argument("--chunk-size", type=int, default=1000, dest="chunk_size",
                        help="trajectories per compiled call (rounded up to a multiple of D)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="JSON results file")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                        help="float32: pd.Float32Runner (float32, float64 where float32 cannot resolve)")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = sorted(_numbers(args.sizes, int))

    if args.worker is not None:
        print("RESULT " + json.dumps(worker(sizes, args.worker, args.chunk_size, args.dtype)), flush=True)
        return 0

    results = []
    for devices in _numbers(args.devices, int):
        env = dict(os.environ)
        env["XLA_FLAGS"] = (
            env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}"
        ).strip()
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", str(devices),
               "--sizes", ",".join(map(str, sizes)), "--chunk-size", str(args.chunk_size),
               "--dtype", args.dtype]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            print(f"sweep_scaling: worker for {devices} device(s) failed", file=sys.stderr)
            return 1
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
        res = json.loads(line[len("RESULT "):])
        res["process_s"] = time.perf_counter() - t0
        res["slope"] = loglog_slope(res["rows"])
        results.append(res)
        print(f"{devices} device(s): done in {res['process_s']:.1f} s", file=sys.stderr, flush=True)

    import importlib.metadata as md

    header = f"{'devices':>7} {'points':>9} {'chunks':>6} {'wall s':>9} {'traj/s':>10} {'steps':>6}"
    lines = [header, "-" * len(header)]
    for res in results:
        for row in res["rows"]:
            lines.append(
                f"{res['devices']:>7} {row['points']:>9} {row['chunks']:>6} {row['wall_s']:>9.3f} "
                f"{row['traj_per_s']:>10.0f} {row['mean_steps']:>6.1f}"
            )
        lines.append(
            f"{res['devices']:>7} log-log slope of time vs points: {res['slope']:.3f}   "
            f"(warm-up compile {res['warmup_compile_s']:.1f} s, chunk {res['chunk_size']}, "
            f"traces {res['traces']})"
        )
    table = "\n".join(lines)
    print(table)

    summary = {
        "benchmark": "sweep_scaling",
        "description": "toy phase-diagram sweep (pd.point_function, default config) via sweep.run; "
                       "compile excluded by a warm-up chunk",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "python": platform.python_version(), "jax": md.version("jax")},
        "sizes": sizes,
        "results": results,
        "table": table,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(summary, fh, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
