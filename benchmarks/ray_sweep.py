"""The same phase-diagram sweep in one process, and on 1 and 2 local Ray workers, side by side.

One grid (depths x ratios x scales of the phase diagram's point function, in chunks of
``--chunk-size`` points) runs three ways, each after a warm-up that compiles its programs (so
the timings exclude compilation):

* ``single``: ``sweep.run`` in this process, one CPU device;
* ``ray1``, ``ray2``: ``sweep.run(..., executor=RayExecutor())`` on a local Ray cluster of 1 and
  2 workers (one CPU device each); this process only hands out chunks and collects them.

For each: wall time, trajectories per second, and whether the dataset is bitwise the
single-process one. The scheduling overhead per chunk is measured twice: ``(ray1 - single) /
chunks`` (what a chunk costs on one Ray worker beyond its compute) and the round trip of a task
that does nothing (``--noop`` of them through the same executor).

Usage:
    python benchmarks/ray_sweep.py                   # 4 x 4 x 512 = 8192 points, chunks of 256
    python benchmarks/ray_sweep.py --scales 64 --chunk-size 32 --repeats 1

Writes benchmarks/results/ray_sweep.json (or --out). Two workers cannot beat one by more than
the machine's free cores: the JSON records the core count and the load average.
"""

import argparse
import json
import os
import platform
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # this checkout's jaxflow, installed or not
DEFAULT_OUT = os.path.join(HERE, "results", "ray_sweep.json")


def _noop():
    return None


def grid(n_scales: int) -> dict:
    import numpy as np

    return {"depth": [2.0, 3.0, 5.0, 10.0], "ratio": [1.2, 2.0, 4.0, 8.0],
            "log_scale": [float(x) for x in np.log(np.geomspace(1e-30, 1e-2, n_scales))]}


def _pause(seconds: float):
    time.sleep(seconds)


def timed_sweep(runner, axes, executor=None, repeats: int = 1) -> tuple[float, object]:
    """The fastest of ``repeats`` runs of the sweep (seconds) and its dataset."""
    from jaxflow import sweep

    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        ds = sweep.run(None, axes, runner=runner, quiet=True, executor=executor,
                       size_check=False)
        best = min(best, time.perf_counter() - start)
    return best, ds


def _warm(ex, workers: int, runner, warm_axes) -> None:
    """Every worker started (JAX imported) and the runner compiled on each."""
    from jaxflow.sweep import executor as _executor

    for _ in range(5):
        # Tasks that hold a worker each, so that every worker is started and leased ...
        list(ex.imap([_executor.Task(i, 1.0, _pause, (1.0,)) for i in range(workers)]))
        start = len(ex.records)
        # ... then one chunk per worker, handed out together: each compiles the runner.
        timed_sweep(runner, warm_axes, ex)
        if len({r.pid for r in ex.records[start:]}) == workers:
            return
    raise RuntimeError(f"could not warm {workers} workers")


def on_ray(workers: int, runner, axes, warm_axes, n_noop: int, repeats: int) -> dict:
    """The sweep on a fresh local cluster of ``workers`` workers, warm; the no-op round trip."""
    import ray

    from jaxflow.sweep import executor as _executor
    from jaxflow.sweep import ray_executor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # fork after JAX's threads started
        ray_executor.start_local(workers, log_to_driver=False)
    try:
        ex = ray_executor.RayExecutor("auto")
        _warm(ex, workers, runner, warm_axes)
        seconds, ds = timed_sweep(runner, axes, ex, repeats)
        records = ex.records[-len(ex.attempts):]
        busy = sum(r.end - r.start for r in records) / (
            workers * (max(r.end for r in records) - min(r.start for r in records)))
        start = time.perf_counter()
        list(ex.imap([_executor.Task(i, 1.0, _noop, ()) for i in range(n_noop)]))
        noop = (time.perf_counter() - start) / n_noop
    finally:
        ray.shutdown()
    return {"seconds": seconds, "busy_fraction_last_run": busy, "noop_round_trip_s": noop}, ds


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scales", type=int, default=512, help="scales in the grid (x 16 points)")
    p.add_argument("--chunk-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3, help="runs timed; the fastest is kept")
    p.add_argument("--noop", type=int, default=200, help="no-op tasks timed for the overhead")
    p.add_argument("--out", default=DEFAULT_OUT)
    args = p.parse_args(argv)

    os.environ.setdefault("JAX_NUM_CPU_DEVICES", "1")
    import jax

    jax.config.update("jax_enable_x64", True)
    from jaxflow.experiments import phase_diagram as pd
    from jaxflow.provenance import git_commit

    config = pd.PhaseDiagramConfig(chunk_size=args.chunk_size)
    runner = pd.ToyRunner(config)
    axes = grid(args.scales)
    # One chunk per worker (2), to compile the runner everywhere before the clock starts.
    warm_axes = {**axes, "log_scale": axes["log_scale"][:-(-2 * args.chunk_size // 16)]}
    n = 16 * args.scales
    chunks = -(-n // args.chunk_size)

    timed_sweep(runner, warm_axes)
    single, reference = timed_sweep(runner, axes, repeats=args.repeats)
    rows = {"single": {"seconds": single}}
    for workers in (1, 2):
        row, ds = on_ray(workers, runner, axes, warm_axes, args.noop, args.repeats)
        row["bitwise_identical"] = all(
            ds[k].values.tobytes() == reference[k].values.tobytes() for k in reference.data_vars)
        rows[f"ray{workers}"] = row
    for row in rows.values():
        row["trajectories_per_s"] = n / row["seconds"]
    result = {
        "benchmark": "ray_sweep",
        "what": "phase-diagram sweep, one process vs 1 and 2 local Ray workers (warm; "
                "fastest of --repeats runs)",
        "repeats": args.repeats,
        "points": n, "chunk_size": args.chunk_size, "chunks": chunks,
        "runs": rows,
        "speedup_ray2_over_ray1": rows["ray1"]["seconds"] / rows["ray2"]["seconds"],
        "overhead_per_chunk_s": (rows["ray1"]["seconds"] - single) / chunks,
        "noop_round_trip_s": rows["ray1"]["noop_round_trip_s"],
        "machine": {"cores": os.cpu_count(), "load_average": os.getloadavg(),
                    "platform": platform.platform(), "python": platform.python_version()},
        "git_commit": git_commit(),
        "command": "python benchmarks/ray_sweep.py " + " ".join(argv or sys.argv[1:]),
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1)
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
