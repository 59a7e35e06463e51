"""Depth as data (identity-padded factors) against one compiled program per depth, for E1.

``jaxflow.models.matrix_sensing`` can hold the factors as a tuple of ``N`` matrices (each depth
compiles its own program) or stacked ``(pad_to, d, d)`` with the factors past the lane's depth
replaced by the identity (one program for every depth). This script times both on the E1 problem
(d = 50, m = 1000, depths 1-4, gradient descent at lr 1e-3 with the top-5 singular values
tracked) in three ways, side by side in one run:

* ``per-depth``: four programs, each compiled and run once;
* ``padded, sequential``: one program (pad_to = 4), run once per depth;
* ``padded, vmapped``: one program run on all four depths at once (``jax.vmap`` over the stack),
  which turns the measurement products of the four runs into one matrix-matrix product.

It prints compile time, run time and the total, and writes benchmarks/results/depth_padding.json.

    python benchmarks/depth_padding.py [--steps 2000]
"""

import argparse
import dataclasses
import json
import os
import sys
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)  # float64; importing jaxflow never sets it

import jaxflow  # noqa: E402
from jaxflow.experiments import matrix_sensing as e1  # noqa: E402
from jaxflow.models import matrix_sensing as ms  # noqa: E402

DEPTHS = (1, 2, 3, 4)


def modes5(params, args):
    return ms.modes(params, args, k=5)


def _timed(fn, *args):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--init", type=float, default=1e-4)
    parser.add_argument("--out", default=os.path.join(_ROOT, "benchmarks", "results",
                                                      "depth_padding.json"))
    args = parser.parse_args()
    config = dataclasses.replace(e1.MatrixSensingConfig(), scale=args.init)
    problem = e1.problem(config)
    key = jax.random.fold_in(jax.random.key(config.seed), 1)
    targets = ms.targets(problem, 5)
    lr, steps = config.learning_rate, args.steps

    # Exactly `steps` steps, a save every 100 (no stationarity stop: the runs are timed).
    method = jaxflow.Descent(learning_rate=lr)
    request = jaxflow.Request(save_times=lr * 100 * np.arange(steps // 100 + 1),
                              horizon=lr * steps, stationary_tol=None, max_steps=steps)

    def run(params, prob):
        problem = jaxflow.Problem(loss=ms.loss, params0=params, args=prob, modes=modes5,
                                  targets=targets)
        traj = jaxflow.solve(problem, method, request)
        return traj.modes[-1], traj.loss[-1]

    rows, finals = {}, {}
    # (a) one program per depth: compile and run each (a fresh jit per depth, as the shapes differ)
    compile_s = run_s = 0.0
    per_depth = []
    for depth in DEPTHS:
        p0 = ms.init(key, args.init, depth, (config.d, config.d))
        fn = jax.jit(run)
        start = time.perf_counter()
        compiled = fn.lower(p0, problem).compile()
        compile_s += time.perf_counter() - start
        out, dt = _timed(compiled, p0, problem)
        run_s += dt
        per_depth.append(np.asarray(out[0]))
    rows["per-depth"] = dict(programs=len(DEPTHS), compile_s=compile_s, run_s=run_s)
    finals["per-depth"] = np.stack(per_depth)

    # (b) one padded program, run once per depth
    padded = [ms.init(key, args.init, depth, (config.d, config.d), pad_to=max(DEPTHS))
              for depth in DEPTHS]
    fn = jax.jit(run)
    start = time.perf_counter()
    compiled = fn.lower(padded[0], problem).compile()
    compile_s = time.perf_counter() - start
    run_s, outs = 0.0, []
    for p0 in padded:
        out, dt = _timed(compiled, p0, problem)
        run_s += dt
        outs.append(np.asarray(out[0]))
    rows["padded, sequential"] = dict(programs=1, compile_s=compile_s, run_s=run_s)
    finals["padded, sequential"] = np.stack(outs)

    # (c) the padded program vmapped over the four depths
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *padded)
    fn = jax.jit(jax.vmap(run, in_axes=(0, None)))
    start = time.perf_counter()
    compiled = fn.lower(stacked, problem).compile()
    compile_s = time.perf_counter() - start
    out, run_s = _timed(compiled, stacked, problem)
    rows["padded, vmapped"] = dict(programs=1, compile_s=compile_s, run_s=run_s)
    finals["padded, vmapped"] = np.asarray(out[0])

    reference = finals["per-depth"]
    for name, row in rows.items():
        row["total_s"] = row["compile_s"] + row["run_s"]
        row["max_rel_diff_vs_per_depth"] = float(np.max(np.abs(finals[name] - reference)
                                                        / np.abs(reference)))
    print(f"E1 (d = {config.d}, m = {config.m}), depths {DEPTHS}, {steps} GD steps each, "
          f"top-5 singular values tracked; load average {os.getloadavg()[0]:.1f}")
    header = f"{'':22s}{'programs':>9s}{'compile s':>11s}{'run s':>9s}{'total s':>9s}{'max rel diff':>14s}"
    print(header)
    print("-" * len(header))
    for name, row in rows.items():
        print(f"{name:22s}{row['programs']:>9d}{row['compile_s']:>11.2f}{row['run_s']:>9.2f}"
              f"{row['total_s']:>9.2f}{row['max_rel_diff_vs_per_depth']:>14.1e}")
    result = dict(date=time.strftime("%Y-%m-%d %H:%M:%S"), steps=steps, init=args.init,
                  depths=DEPTHS, rows=rows, load_average=os.getloadavg(),
                  jax=jax.__version__, device=str(jax.devices()[0]))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
