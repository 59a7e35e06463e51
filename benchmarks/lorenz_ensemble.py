"""The GPU ODE-ensemble benchmark's problem (DiffEqGPU.jl, Utkarsh et al., CMAME 2024), side by
side: jaxflow's ensemble engine, diffrax ``vmap(diffeqsolve)`` and a scipy loop.

Lorenz with sigma = 10, beta = 8/3, rho = linspace(0, 21, n), y0 = (1, 0, 0), t in [0, 1],
Tsit5; once with a fixed step dt = 0.001 (1000 steps), once adaptive at rtol = atol = 1e-8
(first step 0.001, as the published diffrax script). Only the state at t = 1 is saved.

* jaxflow: ``jaxflow.solve(problem, jaxflow.Flow(solver=jaxflow.Ensemble(...)), request,
  batched=True)``, the vector field written for one trajectory, on every device (one CPU device
  per core, as the ``jaxflow`` command: ``JAXFLOW_CPU_DEVICES``), and again on one device
  (``jaxflow_one_device``: the same engine on one core);
* diffrax: ``jax.jit(jax.vmap(diffeqsolve))`` with ``SaveAt(t1=True)``, one device, as the
  published script runs it. That program uses both cores all the same: XLA's thread pool
  splits its loops over 16,384 lanes (CPU time / wall time 1.7, measured; so does the FMA
  microbenchmark below on one device), while jaxflow's 256-lane slots are too small to split,
  so jaxflow takes one device per core (one device: one core);
* scipy: ``solve_ivp`` (RK45; fixed mode: ``first_step = max_step = dt`` and loose tolerances,
  so it takes the same 1000 steps) in a Python loop over a subsample of rhos.

Times exclude compilation and are the best of ``--repeats`` runs; the ratios come from one run
of one process, side by side. Every result is checked against DOP853 at rtol = atol = 1e-13 on
a subsample of rhos (max absolute deviation of the state at t = 1). The floating-point
operations of one lane-step come from ``compiled.cost_analysis()`` of one fused step, and the
achieved rate is set against an FMA microbenchmark (multiply-add chains on a cache-resident
block, no memory traffic) run in the same process: the fraction of the rate XLA's fused code
reaches here.

    python benchmarks/lorenz_ensemble.py --n 16384                 # one size (diffrax's runs
                                                                    # dominate: a few minutes)
    python benchmarks/lorenz_ensemble.py --n 1024,4096,16384        # the CPU table
    python benchmarks/lorenz_ensemble.py --dtype float32 --n 1048576 --scipy-lanes 8   # GPU

Writes benchmarks/results/lorenz_ensemble.json (``--out``): for each (mode, dtype, n) the
microseconds per trajectory of ``jaxflow``, ``diffrax_vmap`` and ``scipy``, and the ratios.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
SIGMA, BETA, T1, DT, TOL = 10.0, 8.0 / 3.0, 1.0, 1e-3, 1e-8
MODES = ("fixed", "adaptive")


def lorenz(y, rho):
    """One trajectory's Lorenz field (jaxflow's ``vector_field(y, args)``)."""
    import jax.numpy as jnp

    x, v, z = y[0], y[1], y[2]
    return jnp.stack([SIGMA * (v - x), x * (rho - z) - v, x * v - BETA * z])


def lorenz_t(t, y, rho):
    return lorenz(y, rho)


def reference(rhos: np.ndarray) -> np.ndarray:
    """The state at t = 1 by DOP853 at rtol = atol = 1e-13, float64."""
    from scipy.integrate import solve_ivp

    rows = []
    for rho in rhos:
        sol = solve_ivp(lambda t, y, r=rho: [SIGMA * (y[1] - y[0]), y[0] * (r - y[2]) - y[1],
                                             y[0] * y[1] - BETA * y[2]],
                        (0.0, T1), [1.0, 0.0, 0.0], method="DOP853", rtol=1e-13, atol=1e-13)
        rows.append(sol.y[:, -1])
    return np.array(rows)


def best_of(fn, repeats: int):
    """(seconds of the fastest of ``repeats`` runs after a warm-up, seconds of the warm-up
    (compile included), the last output)."""
    import jax

    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return min(times), first, out


def jaxflow_fn(mode, y0, rho, slots, devices):
    import jax.numpy as jnp

    import jaxflow

    problem = jaxflow.Problem(vector_field=lorenz, params0=y0, args=rho)
    request = jaxflow.Request(save_times=jnp.array([T1]), fractions=(), max_steps=100_000)
    if mode == "fixed":
        flow = jaxflow.Flow(solver=jaxflow.Ensemble(dt=DT, slots=slots, devices=devices))
    else:
        flow = jaxflow.Flow(solver=jaxflow.Ensemble(slots=slots, devices=devices), rtol=TOL,
                            atol=TOL, dt0=DT)
    return lambda: jaxflow.solve(problem, flow, request, batched=True)


def diffrax_fn(mode, y0, rho):
    import diffrax
    import jax

    controller = (diffrax.ConstantStepSize() if mode == "fixed"
                  else diffrax.PIDController(rtol=TOL, atol=TOL))

    def one(y, r):
        sol = diffrax.diffeqsolve(diffrax.ODETerm(lorenz_t), diffrax.Tsit5(), 0.0, T1, DT, y, r,
                                  stepsize_controller=controller, saveat=diffrax.SaveAt(t1=True),
                                  max_steps=100_000)
        return sol.ys[0], sol.stats["num_steps"]

    run = jax.jit(jax.vmap(one))
    return lambda: run(y0, rho)


def scipy_run(mode, rhos):
    from scipy.integrate import solve_ivp

    kwargs = (dict(first_step=DT, max_step=DT, rtol=1e3, atol=1e3) if mode == "fixed"
              else dict(rtol=TOL, atol=TOL, first_step=DT))
    start = time.perf_counter()
    finals = []
    for rho in rhos:
        sol = solve_ivp(lambda t, y, r=rho: [SIGMA * (y[1] - y[0]), y[0] * (r - y[2]) - y[1],
                                             y[0] * y[1] - BETA * y[2]],
                        (0.0, T1), [1.0, 0.0, 0.0], method="RK45", **kwargs)
        finals.append(sol.y[:, -1])
    return (time.perf_counter() - start) / len(rhos), np.array(finals)


def flops_per_lane_step(mode, dtype, slots=4096):
    """XLA's count for one fused step of ``slots`` lanes (fixed: no error estimate), per lane."""
    import jax
    import jax.numpy as jnp

    from jaxflow.engine import _tsit5_lanes

    field = jax.vmap(lorenz_t, in_axes=(0, -1, -1), out_axes=-1)

    def one_step(y, rho, h):
        t = jnp.zeros_like(h)
        y1, error, f1 = _tsit5_lanes.step(field, t, y, field(t, y, rho), h, rho)
        return (y1, f1) if mode == "fixed" else (y1, f1, error)

    y, rho, h = jnp.ones((3, slots), dtype), jnp.ones(slots, dtype), jnp.ones(slots, dtype)
    cost = jax.jit(one_step).lower(y, rho, h).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    # one_step also evaluates the first stage (a step reuses the last one): take it off
    first = jax.jit(field).lower(jnp.zeros(slots, dtype), y, rho).compile().cost_analysis()
    first = first[0] if isinstance(first, list) else first
    return (float(cost["flops"]) - float(first["flops"])) / slots


def fma_peak(dtype, devices, rows=8, size=4096, depth=64, iterations=200):
    """GFLOP/s of multiply-add chains (``x = 0.999 x + 0.001``, ``depth`` per loop iteration)
    on an L1/L2-resident ``(rows, size)`` block per device, on every device of ``devices`` at
    once: the arithmetic rate this machine reaches through XLA's fused elementwise code, the
    ceiling a fused Tsit5 step on those devices could reach."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    @jax.jit
    def run(x):
        def body(_, x):
            for _ in range(depth):
                x = x * 0.999 + 0.001
            return x
        return jax.lax.fori_loop(0, iterations, body, x)

    mesh = Mesh(np.array(devices), ("device",))
    x = jax.device_put(jnp.ones((rows * len(devices), size), dtype),
                       NamedSharding(mesh, PartitionSpec("device")))
    seconds, _, _ = best_of(lambda: run(x), 5)
    return 2.0 * rows * len(devices) * size * depth * iterations / seconds / 1e9


def measure(args, dtype_name: str) -> list[dict]:
    """Every (mode, n) row of one dtype (this process has the matching x64 setting)."""
    import jax
    import jax.numpy as jnp

    dtype = jnp.float32 if dtype_name == "float32" else jnp.float64
    devices = jax.devices()
    peak = fma_peak(dtype, devices)
    rows = []
    for n in args.n:
        rho = jnp.linspace(0.0, 21.0, n, dtype=dtype)
        y0 = jnp.tile(jnp.array([1.0, 0.0, 0.0], dtype), (n, 1))
        pick = np.unique(np.linspace(0, n - 1, min(n, args.reference_lanes)).round().astype(int))
        exact = reference(np.asarray(rho, np.float64)[pick])
        scipy_pick = pick[np.linspace(0, len(pick) - 1, min(len(pick), args.scipy_lanes))
                          .round().astype(int)]
        for mode in args.modes:
            jf_s, jf_first, traj = best_of(jaxflow_fn(mode, y0, rho, args.slots, devices),
                                           args.repeats)
            one_s, _, _ = best_of(jaxflow_fn(mode, y0, rho, args.slots, devices[:1]),
                                  args.repeats)
            dx_s, dx_first, (dx_y, dx_steps) = best_of(diffrax_fn(mode, y0, rho), args.repeats)
            sp_s, sp_y = scipy_run(mode, np.asarray(rho, np.float64)[scipy_pick])
            jf_y = np.asarray(traj.final_state, np.float64)
            scipy_exact = exact[np.searchsorted(pick, scipy_pick)]
            steps = np.asarray(traj.steps + traj.rejected)
            flops = flops_per_lane_step(mode, dtype)
            achieved = flops * steps.sum() / jf_s / 1e9
            row = {
                "mode": mode, "dtype": dtype_name, "n": n,
                "devices": {"jaxflow": len(devices), "jaxflow_one_device": 1, "diffrax_vmap": 1},
                "us_per_trajectory": {"jaxflow": jf_s / n * 1e6, "diffrax_vmap": dx_s / n * 1e6,
                                      "scipy": sp_s * 1e6, "jaxflow_one_device": one_s / n * 1e6},
                "ratio": {"diffrax_vmap_over_jaxflow": dx_s / jf_s,
                          "scipy_over_jaxflow": sp_s * n / jf_s,
                          "diffrax_vmap_over_jaxflow_one_device": dx_s / one_s},
                "first_call_s": {"jaxflow": jf_first, "diffrax_vmap": dx_first},
                "max_abs_deviation": {
                    "jaxflow": float(np.max(np.abs(jf_y[pick] - exact))),
                    "diffrax_vmap": float(np.max(np.abs(np.asarray(dx_y, np.float64)[pick]
                                                        - exact))),
                    "scipy": float(np.max(np.abs(sp_y - scipy_exact)))},
                "status": {str(k): int(v) for k, v in zip(*np.unique(np.asarray(traj.status),
                                                                     return_counts=True))},
                "steps_min_max": [int(steps.min()), int(steps.max())],
                # the work queue's own account, from the contract's answer
                "slots": traj.slots,
                "wasted_lane_steps": traj.wasted,
                "diffrax_steps_min_max": [int(np.min(dx_steps)), int(np.max(dx_steps))],
                "scipy_lanes": len(scipy_pick),
                "flops_per_lane_step": flops,
                "achieved_gflops": achieved,
                "fma_peak_gflops": peak,
                "fraction_of_peak": achieved / peak,
            }
            rows.append(row)
            print(_line(row), flush=True)
    return rows


def _line(row) -> str:
    us, ratio, dev = row["us_per_trajectory"], row["ratio"], row["max_abs_deviation"]
    return (f"{row['mode']:>8} {row['dtype']} n={row['n']:>7}: jaxflow {us['jaxflow']:8.2f} us "
            f"on {row['devices']['jaxflow']} devices ({us['jaxflow_one_device']:.2f} us on one), "
            f"diffrax {us['diffrax_vmap']:8.2f} us ({ratio['diffrax_vmap_over_jaxflow']:5.1f}x; "
            f"{ratio['diffrax_vmap_over_jaxflow_one_device']:.1f}x one device to one), "
            f"scipy {us['scipy']:8.0f} us ({ratio['scipy_over_jaxflow']:6.0f}x); deviation "
            f"{dev['jaxflow']:.1e} / {dev['diffrax_vmap']:.1e} / {dev['scipy']:.1e}; "
            f"wasted {row['wasted_lane_steps']:.3f}; {row['flops_per_lane_step']:.0f} "
            f"flop/lane-step, {row['achieved_gflops']:.1f} GFLOP/s = "
            f"{100 * row['fraction_of_peak']:.0f}% of {row['fma_peak_gflops']:.1f}")


def _parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=lambda s: [int(float(x)) for x in s.split(",")],
                        default=[1024, 4096, 16384], help="trajectories, comma-separated")
    parser.add_argument("--dtype", choices=("float64", "float32", "both"), default="both")
    parser.add_argument("--modes", type=lambda s: s.split(","), default=list(MODES))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scipy-lanes", type=int, default=16)
    parser.add_argument("--reference-lanes", type=int, default=64)
    parser.add_argument("--slots", type=int, default=None,
                        help="Ensemble slots (default: the engine's)")
    parser.add_argument("--out",
                        default=str(ROOT / "benchmarks" / "results" / "lorenz_ensemble.json"))
    parser.add_argument("--rows-only", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main():
    args = _parse()
    if args.rows_only:  # a child: one dtype, its rows as JSON
        import jax

        from jaxflow import _devices

        jax.config.update("jax_enable_x64", args.dtype == "float64")
        _devices.use_cpu_cores()  # one CPU device per core, as the jaxflow command
        pathlib.Path(args.out).write_text(json.dumps(measure(args, args.dtype)))
        return
    dtypes = ("float64", "float32") if args.dtype == "both" else (args.dtype,)
    rows, start = [], time.perf_counter()
    for dtype in dtypes:  # one process per dtype: x64 is set once, before JAX starts
        with tempfile.TemporaryDirectory() as tmp:
            part = os.path.join(tmp, "rows.json")
            argv = list(sys.argv[1:])
            for flag in ("--dtype", "--out"):
                if flag in argv:
                    i = argv.index(flag)
                    del argv[i:i + 2]
            subprocess.run([sys.executable, __file__, *argv, "--dtype", dtype, "--out", part,
                            "--rows-only"], check=True)
            rows += json.loads(pathlib.Path(part).read_text())
    _write(args, rows, time.perf_counter() - start)


def _write(args, rows, wall_s):
    import platform

    import jax

    from jaxflow import provenance

    result = {
        "date": time.strftime("%Y-%m-%d"),
        "commit": provenance.git_commit(),
        "machine": {"processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "device": jax.devices()[0].device_kind,
                    "load_average": list(os.getloadavg())},
        "versions": {"jax": jax.__version__},
        "problem": {"sigma": SIGMA, "beta": BETA, "rho": "linspace(0, 21, n)", "y0": [1, 0, 0],
                    "t1": T1, "fixed_dt": DT, "adaptive_rtol_atol": TOL, "solver": "Tsit5"},
        "repeats": args.repeats,
        "wall_s": wall_s,
        "rows": rows,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out} ({wall_s:.0f} s)")


if __name__ == "__main__":
    main()
