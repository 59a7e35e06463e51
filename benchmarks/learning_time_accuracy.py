"""How accurate the flow's learning times are, short ones included, against exact theory.

The toy model's reduced flow on a grid of depths (1.5 .. inf), initial scales sigma0 (1e-1 ..
1e-30) and targets (1 .. 1e6: the larger the target, the shorter its learning times, down to
~1e-7 time units), each learning time at fractions 0.2, 0.5 and 0.9 of its target, solved by
``jaxflow.solve`` with ``jaxflow.Flow()`` at two settings: the flow's defaults (rtol = atol =
1e-10) and the phase diagram's (rtol = atol = 1e-8). Each learning time is compared with
:func:`jaxflow.oracles.theory.learning_time` (exact to ~1e-13); the table prints the worst
relative error per depth and setting, and the worst overall with where it occurred.

Writes ``benchmarks/results/learning_time_accuracy.json``.

    python benchmarks/learning_time_accuracy.py [--json PATH]
"""

import argparse
import json
import math
import os
import pathlib
import platform
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxflow  # noqa: E402
from jaxflow import provenance  # noqa: E402
from jaxflow.models import toy  # noqa: E402
from jaxflow.oracles import theory  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEPTHS = (1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 10.0, math.inf)
SCALES = (1e-1, 1e-3, 1e-10, 1e-30)
TARGETS = (1.0, 1e2, 1e4, 1e6)
FRACTIONS = (0.2, 0.5, 0.9)
SETTINGS = {"default (1e-10)": 1e-10, "phase diagram (1e-8)": 1e-8}


def solve_grid(tol: float):
    """``(learning times (D, S, M, F), steps (D, S), status (D, S))`` of the grid at rtol =
    atol = ``tol``: one compiled program, every (depth, scale) a lane."""
    targets = jnp.asarray(TARGETS)
    method = jaxflow.Flow(rtol=tol, atol=tol)
    request = jaxflow.Request(fractions=FRACTIONS)

    def lane(depth, log_scale):
        args = toy.ToyArgs(depth=depth, targets=targets)
        problem = jaxflow.Problem(
            vector_field=toy.reduced_vector_field, args=args, targets=targets,
            params0=toy.reduced_init(log_scale, len(TARGETS), log=True),
            modes=toy.reduced_modes, clock=toy.reduced_speed,
        )
        traj = jaxflow.solve(problem, method, request)
        return traj.learning_times, traj.steps + traj.rejected, traj.status

    depth, scale = np.meshgrid(DEPTHS, np.log(SCALES), indexing="ij")
    run = jax.jit(jax.vmap(lane))
    out = run(jnp.asarray(depth.ravel()), jnp.asarray(scale.ravel()))
    shape = depth.shape
    return (np.asarray(out[0]).reshape(shape + out[0].shape[1:]),
            np.asarray(out[1]).reshape(shape), np.asarray(out[2]).reshape(shape))


def exact_times():
    """theory's learning times on the grid, (D, S, M, F)."""
    d, s, m, f = np.meshgrid(DEPTHS, SCALES, TARGETS, FRACTIONS, indexing="ij")
    return np.asarray(theory.learning_time(d, m, s, f * m))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results"
                                              / "learning_time_accuracy.json"))
    json_path = parser.parse_args(argv).json
    exact = exact_times()
    results = {}
    print(f"{'setting':22s} {'depth':>6s} {'worst rel err':>14s} {'steps (max)':>12s}")
    for name, tol in SETTINGS.items():
        start = time.perf_counter()
        times, steps, status = solve_grid(tol)
        wall = time.perf_counter() - start
        err = np.abs(times / exact - 1.0)
        for i, depth in enumerate(DEPTHS):
            print(f"{name:22s} {depth:6g} {np.max(err[i]):14.2e} {int(np.max(steps[i])):12d}")
        worst = np.unravel_index(np.argmax(err), err.shape)
        results[name] = {
            "rtol": tol, "atol": tol, "worst_relative_error": float(err[worst]),
            "worst_at": {"depth": DEPTHS[worst[0]], "sigma0": SCALES[worst[1]],
                         "target": TARGETS[worst[2]], "fraction": FRACTIONS[worst[3]],
                         "time": float(exact[worst])},
            "shortest_time": float(np.min(exact)),
            "worst_relative_error_below_0_01": float(np.max(err[exact < 1e-2])),
            "max_steps_per_coordinate": int(np.max(steps)),
            "all_ok": bool(np.all(status == 0)),
            "wall_s": wall,
        }
        w = results[name]["worst_at"]
        print(f"{name}: worst {err[worst]:.2e} at depth {w['depth']}, sigma0 {w['sigma0']:g}, "
              f"target {w['target']:g}, fraction {w['fraction']} (T = {w['time']:.3g}); "
              f"all ok: {results[name]['all_ok']}")
    record = {
        "benchmark": "learning_time_accuracy",
        "command": "python benchmarks/learning_time_accuracy.py",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": provenance.git_commit(),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
        "grid": {"depths": [str(d) for d in DEPTHS], "sigma0": list(SCALES),
                 "targets": list(TARGETS), "fractions": list(FRACTIONS)},
        "settings": results,
    }
    pathlib.Path(json_path).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(json_path).write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {json_path}")


if __name__ == "__main__":
    main()
