"""Flow engines side by side on many-mode spectra: one shared clock against one clock a mode.

Each case is the toy model's reduced flow on a k-mode spectrum from a tiny initialization, all
learning times at fractions (0.1, 0.5, 0.9) asked, 64 lanes (sigma0 log-spaced over the case's
range) vmapped in one compiled program. Engines:

* ``shared-tsit5``: the engine before per-coordinate clocks, one clock for the whole state
  (``jaxflow.Flow`` on the raw vector field ``toy.reduced_vector_field.fn``, clock
  ``toy.reduced_speed``, Tsit5);
* ``shared-rkc``: the same clock with the stabilized explicit RKC solver;
* ``shared-kvaerno5``: the same clock with diffrax's L-stable implicit Kvaerno5 (Newton);
* ``per-mode`` (the default for a coordinatewise model): every coordinate its own lane and clock.

A second table: the factor-level model (k = 4 balanced coordinates, 16 lanes with sigma0
log-spaced over 1e-250 .. 1e-2) integrated in the factors (``jaxflow.Flow()`` on the loss,
the default) against the log-factors (``jaxflow.Flow(log_params=True)``): the former's steps grow with
ln(1/sigma0), the latter's stay bounded.

Columns: statuses, steps (accepted + rejected, worst lane), vector-field evaluations (worst
lane; -1 where the solver does not report them), wall time per trajectory (best of 3 after
compilation), worst relative error of the learning times against jaxflow.oracles.theory over the lanes
that finished.

    python benchmarks/flow_engines.py            # writes benchmarks/results/flow_engines.json
"""

import argparse
import json
import math
import os
import platform
import time

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

import jaxflow
from jaxflow.engine import status
from jaxflow.engine.rkc import RKC
from jaxflow.models import toy
from jaxflow.oracles import theory

jax.config.update("jax_enable_x64", True)  # float64; importing jaxflow never sets it

CASES = [  # (depth, targets, sigma0 range) -- the engine issue's table, widened to 64 lanes
    (5.0, (4.0, 3.0, 2.0, 1.0), (1e-8, 1e-4)),
    (3.0, (2.0, 1.0), (1e-32, 1e-28)),
    (10.0, (2.0, 1.0), (1e-14, 1e-10)),
    (3.0, (8.0, 4.0, 2.0, 1.0), (1e-22, 1e-18)),
    (4.0, (3.0, 1.0), (1e-14, 1e-10)),
    (6.0, tuple(2.0**-i for i in range(8)), (1e-40, 1e-20)),
]
ENGINES = {
    "shared-tsit5": (False, diffrax.Tsit5),
    "shared-rkc": (False, RKC),
    "shared-kvaerno5": (False, diffrax.Kvaerno5),
    "per-mode": (True, diffrax.Tsit5),
}
FRACTIONS = (0.1, 0.5, 0.9)


def engine_fn(per_mode: bool, solver_cls, targets, max_steps):
    field = toy.reduced_vector_field if per_mode else toy.reduced_vector_field.fn
    method = jaxflow.Flow(solver=solver_cls(), rtol=1e-8, atol=1e-8)
    request = jaxflow.Request(fractions=FRACTIONS, max_steps=max_steps)

    def one(depth, log_scale):
        args = toy.ToyArgs(depth=depth, targets=targets)
        problem = jaxflow.Problem(vector_field=field, args=args,
                                  params0=toy.reduced_init(log_scale, targets.shape[0], log=True),
                                  modes=toy.reduced_modes, targets=targets, clock=toy.reduced_speed)
        traj = jaxflow.solve(problem, method, request)
        return traj.learning_times, traj.steps + traj.rejected, traj.evaluations, traj.status

    return jax.jit(jax.vmap(one, in_axes=(None, 0)))


def _timed(fn, *args):
    """``fn(*args)`` once to compile, then the best of 3: ``(outputs, compile_s, best_s)``."""
    t0 = time.perf_counter()
    outputs = jax.block_until_ready(fn(*args))
    compile_s = time.perf_counter() - t0
    wall = []
    for _ in range(3):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        wall.append(time.perf_counter() - t0)
    return outputs, compile_s, min(wall)


def _max_rel_error(times, exact, codes):
    """Worst relative error of the learning times over the lanes that finished ok."""
    ok = np.asarray(codes) == status.OK
    return float(np.max(np.abs(np.asarray(times)[ok] / exact[ok] - 1))) if ok.any() else math.nan


def measure(per_mode, solver_cls, depth, targets, scales, lanes, max_steps):
    log_scales = jnp.log(jnp.geomspace(scales[0], scales[1], lanes))
    fn = engine_fn(per_mode, solver_cls, jnp.asarray(targets), max_steps)
    (times, steps, evals, codes), compile_s, best = _timed(fn, jnp.asarray(depth), log_scales)
    tg = np.asarray(targets)[:, None]
    exact = np.stack([
        np.asarray(theory.learning_time(depth, tg, float(x), tg * np.asarray(FRACTIONS), log=True))
        for x in np.asarray(log_scales)
    ])
    return {
        "status": status.summary(np.asarray(codes)),
        "max_steps": int(np.max(steps)),
        "max_evaluations": int(np.max(evals)),
        "us_per_trajectory": 1e6 * best / lanes,
        "compile_s": compile_s,
        "max_rel_error": _max_rel_error(times, exact, codes),
    }


FACTOR_CASES = [(2, (8.0, 4.0, 2.0, 1.0)), (3, (8.0, 4.0, 2.0, 1.0)), (4, (8.0, 4.0, 2.0, 1.0))]
FACTOR_ENGINES = {"factors": False, "log-factors": True}


def measure_factors(log_params, depth, targets, lanes):
    """One row of the factor-level table: balanced start, sigma0 over 1e-250 .. 1e-2."""
    targets = jnp.asarray(targets)
    scales = np.geomspace(1e-250, 1e-2, lanes)
    tolerances = dict(rtol=1e-8, atol=1e-8) if log_params else dict(rtol=1e-8, atol=1e-300)
    method = jaxflow.Flow(log_params=log_params, **tolerances)
    request = jaxflow.Request(fractions=FRACTIONS, max_steps=16384)

    def one(scale):
        params = toy.factor_init(None, scale, depth=depth, num_coords=targets.shape[0])
        problem = jaxflow.Problem(loss=toy.factor_loss, params0=params, args=targets,
                                  modes=toy.factor_values, targets=targets)
        traj = jaxflow.solve(problem, method, request)
        return traj.learning_times, traj.steps + traj.rejected, traj.status

    fn = jax.jit(jax.vmap(one))
    (times, steps, codes), compile_s, best = _timed(fn, jnp.asarray(scales))
    tg = np.asarray(targets)[:, None]
    exact = np.stack([
        np.asarray(theory.learning_time(float(depth), tg, math.log(x), tg * np.asarray(FRACTIONS), log=True))
        for x in scales
    ]) / toy.factor_time_scale(depth)
    steps = np.asarray(steps)
    return {
        "status": status.summary(np.asarray(codes)),
        "max_steps_per_mode": int(np.max(steps)) / targets.shape[0],
        "steps_per_mode_at_1e-2": int(steps[-1]) / targets.shape[0],
        "steps_per_mode_at_1e-250": int(steps[0]) / targets.shape[0],
        "us_per_trajectory": 1e6 * best / lanes,
        "compile_s": compile_s,
        "max_rel_error": _max_rel_error(times, exact, codes),
    }


def factor_table(lanes):
    rows = []
    header = (f"{'depth':>5} {'engine':<12} {'status':<16} {'steps/mode 1e-2':>16} "
              f"{'1e-250':>7} {'us/traj':>9} {'max err':>8}")
    print("\nfactor-level model, k = 4, sigma0 = 1e-250 .. 1e-2")
    print(header)
    print("-" * len(header))
    for depth, targets in FACTOR_CASES:
        for name, log_params in FACTOR_ENGINES.items():
            r = measure_factors(log_params, depth, targets, lanes)
            r.update(depth=depth, targets=list(targets), engine=name)
            rows.append(r)
            st = ", ".join(f"{k} {v}" for k, v in r["status"].items())
            print(f"{depth:5d} {name:<12} {st:<16} {r['steps_per_mode_at_1e-2']:16.0f} "
                  f"{r['steps_per_mode_at_1e-250']:7.0f} {r['us_per_trajectory']:9.1f} "
                  f"{r['max_rel_error']:8.1e}", flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--lanes", type=int, default=64)
    parser.add_argument("--max-steps", type=int, default=4096)
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--factor-lanes", type=int, default=16)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "flow_engines.json"))
    opts = parser.parse_args()
    rows = []
    header = f"{'depth':>5} {'k':>2} {'engine':<16} {'status':<26} {'steps':>6} {'evals':>7} {'us/traj':>9} {'max err':>8}"
    print(header)
    print("-" * len(header))
    for depth, targets, scales in CASES:
        for name in opts.engines.split(","):
            per_mode, solver_cls = ENGINES[name]
            r = measure(per_mode, solver_cls, depth, targets, scales, opts.lanes, opts.max_steps)
            r.update(depth=depth, targets=list(targets), scales=list(scales), engine=name)
            rows.append(r)
            st = ", ".join(f"{k} {v}" for k, v in r["status"].items())
            print(f"{depth:5g} {len(targets):2d} {name:<16} {st:<26} {r['max_steps']:6d} "
                  f"{r['max_evaluations']:7d} {r['us_per_trajectory']:9.1f} {r['max_rel_error']:8.1e}",
                  flush=True)
    factor_rows = factor_table(opts.factor_lanes)
    meta = {
        "jaxflow": jaxflow.__version__, "jax": jax.__version__, "diffrax": diffrax.__version__,
        "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "lanes": opts.lanes, "max_steps": opts.max_steps, "rtol": 1e-8, "fractions": FRACTIONS,
    }
    os.makedirs(os.path.dirname(opts.out), exist_ok=True)
    with open(opts.out, "w") as fh:
        json.dump({"meta": meta, "rows": rows, "factor_rows": factor_rows}, fh, indent=1)
    print(f"wrote {opts.out}")


if __name__ == "__main__":
    main()
