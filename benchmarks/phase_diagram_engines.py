"""The phase diagram's two runners side by side on its default grid: work queues against lockstep.

Runs every point of the default grid (12 depths x 32 ratios x 128 scales, in the sweep's order:
shuffled, grouped by depth) through ``phase_diagram.ToyQueueRunner`` (the default: each chunk
one work queue of the ensemble engine) and ``phase_diagram.ToyRunner`` (``jax.vmap``, in
lockstep), both in chunks of the default size on every CPU device, float64, compile excluded
(best of 3). Reports
the seconds, the solver attempts per point, the queues' idle share, whether both give every
point the same status and the same incremental verdict, and each runner's margin error against
the closed form (``jaxflow.oracles.theory``, on the points whose time unit stays below e^600).
Writes ``benchmarks/results/phase_diagram_engines.json``.

    python benchmarks/phase_diagram_engines.py
"""

import argparse
import json
import os
import time

import jax
import numpy as np

from jaxflow import _devices, provenance, sweep

jax.config.update("jax_enable_x64", True)
_devices.use_cpu_cores()  # one CPU device per core, as the jaxflow command

from jaxflow.experiments import phase_diagram as pd  # noqa: E402
from jaxflow.models import toy  # noqa: E402
from jaxflow.oracles import theory  # noqa: E402


def grid_points(config) -> dict:
    """Every point of the config's grid in the order the phase diagram's sweep runs them
    (shuffled with its seed, grouped by depth: ``jaxflow.sweep.grid.shuffled_points``)."""
    axes = {name: np.asarray(values, dtype=np.float64) for name, values in
            (("depth", config.depths), ("ratio", config.ratios), ("log_scale", config.log_scales))}
    size = int(np.prod([v.size for v in axes.values()]))
    _, points = sweep.grid.shuffled_points(axes, config.seed, size, group_by=("depth",))
    return points


def timed(runner, points) -> tuple[float, dict]:
    """Best of 3 after a first call (which compiles)."""
    out = runner(points)
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        out = runner(points)
        best = min(best, time.perf_counter() - start)
    return best, out


def margin_errors(config, points, margin) -> np.ndarray:
    """``|margin - exact| / max(1, |exact|)`` in the plateau's unit, where the unit < e^600.
    The exact margin is made of two ``theory.learning_time(..., log=True)``:
    ``theory.incremental_margin`` takes sigma0 itself, which underflows on this grid."""
    unit = np.asarray(toy.log_time_unit(points["depth"], points["log_scale"]))
    keep = unit < 600
    d, r, s = (points[k][keep] for k in ("depth", "ratio", "log_scale"))
    larger = np.asarray(theory.learning_time(d, r, s, config.finish * r, log=True))
    smaller = np.asarray(theory.learning_time(d, np.ones_like(r), s,
                                              np.full_like(r, config.start), log=True))
    exact = (smaller - larger) / np.exp(unit[keep])
    return np.abs(margin[keep] - exact) / np.maximum(1.0, np.abs(exact))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "results",
                                                       "phase_diagram_engines.json"))
    args = parser.parse_args(argv)
    config = pd.PhaseDiagramConfig()
    points = grid_points(config)
    load = list(os.getloadavg())
    runs = {}
    for name, runner in (("queues", pd.ToyQueueRunner(config)), ("lockstep", pd.ToyRunner(config))):
        seconds, out = timed(runner, points)
        errors = margin_errors(config, points, np.asarray(out["margin_in_unit"]))
        runs[name] = {"seconds": seconds, "out": out, "result": {
            "seconds": seconds,
            "us_per_point": seconds / points["depth"].size * 1e6,
            "attempts_per_point": float(np.mean(out["steps"])),
            "max_margin_error": float(errors.max()),
            "median_margin_error": float(np.median(errors)),
        }}
    queues, lockstep = runs["queues"]["out"], runs["lockstep"]["out"]
    runs["queues"]["result"]["idle_share"] = pd.wasted_share(queues)
    result = {
        **provenance.benchmark_record("phase_diagram_engines",
                                      "python benchmarks/phase_diagram_engines.py", load,
                                      devices=len(jax.devices())),
        "points": int(points["depth"].size),
        "chunk_size": config.chunk_size,
        "queues": runs["queues"]["result"],
        "lockstep": runs["lockstep"]["result"],
        "speedup": runs["lockstep"]["seconds"] / runs["queues"]["seconds"],
        "same_status": bool(np.array_equal(queues["status"], lockstep["status"])),
        "same_verdict": bool(np.array_equal(np.asarray(queues["margin_in_unit"]) >= 0,
                                            np.asarray(lockstep["margin_in_unit"]) >= 0)),
    }
    with open(args.json, "w") as fh:
        fh.write(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
