"""Toy-model throughput: 65,536 trajectories of depth 6 against a scipy loop.

Each lane integrates the reduced toy flow d sigma/dt = sigma^(5/3) (1 - sigma) from sigma0
(log-spaced in [1e-12, 1e-1]) until sigma = 0.99, recording the learning time at 0.99 with
jaxflow.solve and jaxflow.Flow (float64). The simulation uses only the vector field: no closed form and no
precomputed time, not even for its grid; jaxflow.oracles.theory is only the reference it is checked
against. scipy.integrate.solve_ivp (RK45, same rtol, atol 1e-20 in sigma, an event at 0.99) runs
on a 256-lane subsample in a Python loop, and the table reports the per-trajectory speed ratio.
Then, on one device, the same problem as one batched ``jaxflow.solve`` by each engine on the same
clock: the default (``jax.vmap``, in lockstep) and the ensemble engine (a work queue), float64.

    python benchmarks/toy_throughput.py            # full size
    python benchmarks/toy_throughput.py --lanes 4096 --scipy-lanes 64   # quick

Writes benchmarks/results/toy_throughput.json.
"""

import argparse
import json
import os
import platform
import sys
import time

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxflow  # noqa: E402
from jaxflow import _devices, sweep
from jaxflow.models import toy  # noqa: E402
from jaxflow.oracles import theory  # noqa: E402

# A script sets JAX's precision itself (importing jaxflow never does): float64, unless
# --dtype float32 asks for the whole benchmark in JAX's float32 default.
FLOAT32 = "--dtype" in sys.argv[:-1] and sys.argv[sys.argv.index("--dtype") + 1] == "float32"
jax.config.update("jax_enable_x64", not FLOAT32)
_devices.use_cpu_cores()  # one CPU device per core, as the jaxflow command (JAXFLOW_CPU_DEVICES)

DEPTH = 6.0
TARGET_FRACTION = 0.99


def jaxflow_run(lanes: int, rtol: float, chunk: int, batch: int):
    """The sweep engine's own path: fixed-size chunks, lax.map over fixed vmap batches per device."""
    scales = np.geomspace(1e-12, 1e-1, lanes)

    method = jaxflow.Flow(rtol=rtol, atol=rtol)
    request = jaxflow.Request(fractions=(TARGET_FRACTION,))  # each lane stops at its learning time

    def one(point):
        args = toy.ToyArgs(depth=point["depth"], targets=jnp.ones(1))
        problem = jaxflow.Problem(vector_field=toy.reduced_vector_field, args=args,
                                  params0=jnp.log(point["scale"])[None], modes=toy.reduced_modes,
                                  targets=args.targets, clock=toy.reduced_speed)
        traj = jaxflow.solve(problem, method, request)
        return {"time": traj.learning_times[0, 0], "steps": traj.steps + traj.rejected, "status": traj.status}

    runner = sweep.Runner(one, chunk_size=chunk, batch=batch)
    points = {"depth": np.full(lanes, DEPTH), "scale": scales}
    first = {k: v[: runner.call_size] for k, v in points.items()}
    t0 = time.perf_counter()
    share = runner.call_size // len(runner.devices)
    lowered = runner._call.lower({k: jax.ShapeDtypeStruct((share,), jnp.result_type(float)) for k in first})
    t1 = time.perf_counter()
    lowered.compile()
    t2 = time.perf_counter()
    runner(first)  # warm-up (compiles through the cache of the jitted call)
    runs = []
    for _ in range(3):
        t = time.perf_counter()
        out = runner(points)
        runs.append(time.perf_counter() - t)
    times, steps, codes = out["time"], out["steps"], out["status"]
    with jax.enable_x64(True):  # the reference in float64, whatever the run's dtype
        exact = np.asarray(theory.learning_time(DEPTH, 1.0, scales, TARGET_FRACTION))
    return dict(
        scales=np.asarray(scales),
        times=times,
        steps=steps,
        status=codes,
        exact=exact,
        trace_lower_s=t1 - t0,
        xla_compile_s=t2 - t1,
        run_s=min(runs),
    )


MIXED_DEPTHS = (2.0, 2.5, 3.0, 4.0, 6.0, 10.0, np.inf)


def _toy_batch(lanes: int, mixed: bool = False):
    """The benchmark's problem as one batch: ``lanes`` scales, depth 6 (or, ``mixed``, the
    depths 2..inf of MIXED_DEPTHS in turn), target 1."""
    scales = np.geomspace(1e-12, 1e-1, lanes)
    depths = np.resize(MIXED_DEPTHS, lanes) if mixed else np.full(lanes, DEPTH)
    args = toy.ToyArgs(depth=jnp.asarray(depths), targets=jnp.ones((lanes, 1)),
                       time_scale=jnp.ones(lanes), log_time_unit=jnp.zeros(lanes))
    problem = jaxflow.Problem(vector_field=toy.reduced_vector_field, args=args,
                              params0=jnp.log(jnp.asarray(scales))[:, None],
                              modes=toy.reduced_modes, targets=args.targets)
    with jax.enable_x64(True):
        exact = np.asarray(theory.learning_time(depths, 1.0, scales, TARGET_FRACTION))
    return problem, exact


def _best_of_3(problem, flow, lanes):
    """``(seconds per trajectory, the last trajectory)``: best of 3 after a warm-up."""
    request = jaxflow.Request(fractions=(TARGET_FRACTION,))
    traj = jax.block_until_ready(jaxflow.solve(problem, flow, request, batched=True))
    runs = []
    for _ in range(3):
        t = time.perf_counter()
        traj = jax.block_until_ready(jaxflow.solve(problem, flow, request, batched=True))
        runs.append(time.perf_counter() - t)
    return min(runs) / lanes, traj


def _measured(seconds, traj, exact):
    """What one engine's run of a batch gave, against the closed form."""
    attempts = np.asarray(traj.steps + traj.rejected)
    return {
        "us_per_trajectory": seconds * 1e6,
        "attempts_mean_max": [float(attempts.mean()), int(attempts.max())],
        "max_rel_learning_time_error": float(np.max(np.abs(
            np.asarray(traj.learning_times[:, 0, 0]) / exact - 1))),
        "lanes_ok": int(np.sum(np.asarray(traj.status) == 0)),
        # lockstep: every lane pays the longest lane's attempts; the queue: its own
        "wasted_share": float(getattr(traj, "wasted", 1 - attempts.mean() / attempts.max())),
    }


def _two_engines(lanes: int, rtol: float, mixed: bool):
    """One batch, on one device, by each engine on the same clock: the default (``jax.vmap``
    of the single solve, in lockstep) and the ensemble engine (a work queue)."""
    problem, exact = _toy_batch(lanes, mixed)
    engines = {
        "vmap": jaxflow.Flow(rtol=rtol, atol=rtol, clock=toy.reduced_speed),
        "ensemble": jaxflow.Flow(solver=jaxflow.Ensemble(), rtol=rtol, atol=rtol,
                                 clock=toy.reduced_speed),
    }
    with jax.default_device(jax.devices()[0]):
        out = {name: _measured(*_best_of_3(problem, flow, lanes), exact)
               for name, flow in engines.items()}
    out["ensemble_speedup"] = (out["vmap"]["us_per_trajectory"]
                               / out["ensemble"]["us_per_trajectory"])
    return out


def engines_run(lanes: int, rtol: float, all_lanes: int):
    """The problem as one ``jaxflow.solve(..., batched=True)`` by each engine on one device
    (:func:`_two_engines`), the same on a batch mixing depths 2..inf, and the ensemble engine
    on every device over ``all_lanes`` (the main run's size). Best of 3, compile excluded."""
    out = {**_two_engines(lanes, rtol, mixed=False), "lanes": lanes,
           "mixed_depths": {**_two_engines(lanes, rtol, mixed=True),
                            "depths": [float(d) for d in MIXED_DEPTHS]}}
    problem, exact = _toy_batch(all_lanes)
    flow = jaxflow.Flow(solver=jaxflow.Ensemble(devices=jax.devices()), rtol=rtol, atol=rtol,
                        clock=toy.reduced_speed)
    out["ensemble_all_devices"] = {
        **_measured(*_best_of_3(problem, flow, all_lanes), exact),
        "lanes": all_lanes, "devices": len(jax.devices())}
    return out


def scipy_run(scales: np.ndarray, rtol: float):
    from scipy.integrate import solve_ivp

    p = 2.0 - 2.0 / DEPTH

    def rhs(t, y):
        return [y[0] ** p * (1.0 - y[0])]

    def hit(t, y):
        return y[0] - TARGET_FRACTION

    hit.terminal = True
    hit.direction = 1
    out, nfev = [], []
    t = time.perf_counter()
    for s0 in scales:
        sol = solve_ivp(rhs, (0.0, np.inf), [s0], method="RK45", rtol=rtol, atol=1e-20, events=hit)
        out.append(sol.t_events[0][0])
        nfev.append(sol.nfev)
    elapsed = time.perf_counter() - t
    return np.array(out), np.array(nfev), elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lanes", type=int, default=65536)
    parser.add_argument("--scipy-lanes", type=int, default=256)
    parser.add_argument("--rtol", type=float, default=8e-8)
    parser.add_argument("--chunk", type=int, default=4096, help="lanes per compiled call")
    parser.add_argument("--batch", type=int, default=1024, help="lanes per vmapped batch")
    parser.add_argument("--engine-lanes", type=int, default=16384,
                        help="lanes of the one-device comparison of the two engines")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                        help="float32: the whole jaxflow run in float32 (GPU/TPU speed)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "toy_throughput.json"))
    args = parser.parse_args()

    jf = jaxflow_run(args.lanes, args.rtol, args.chunk, args.batch)
    ok = jf["status"] == 0
    rel_err = np.abs(jf["times"] / jf["exact"] - 1)
    per_traj = jf["run_s"] / args.lanes
    steps = jf["steps"]
    efficiency = steps.sum() / (steps.max() * steps.size)

    engines = None if FLOAT32 else engines_run(args.engine_lanes, args.rtol, args.lanes)

    idx = np.linspace(0, args.lanes - 1, args.scipy_lanes).round().astype(int)
    sp_times, sp_nfev, sp_elapsed = scipy_run(jf["scales"][idx], args.rtol)
    sp_per_traj = sp_elapsed / args.scipy_lanes
    sp_err = np.abs(sp_times / jf["exact"][idx] - 1)

    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {jax.devices()[0].device_kind}",
        "versions": {"jaxflow": jaxflow.__version__, "jax": jax.__version__},
        "lanes": args.lanes,
        "dtype": args.dtype,
        "depth": DEPTH,
        "rtol": args.rtol,
        "chunk": args.chunk,
        "batch": args.batch,
        "time_reparametrization": "toy.reduced_speed",
        "trace_lower_s": jf["trace_lower_s"],
        "xla_compile_s": jf["xla_compile_s"],
        "run_s": jf["run_s"],
        "us_per_trajectory": per_traj * 1e6,
        "steps_min_median_max": [int(steps.min()), float(np.median(steps)), int(steps.max())],
        "lockstep_efficiency": float(efficiency),
        "lanes_ok": int(ok.sum()),
        "max_rel_learning_time_error": float(rel_err.max()),
        "scipy_lanes": args.scipy_lanes,
        "scipy_us_per_trajectory": sp_per_traj * 1e6,
        "scipy_max_rel_error": float(sp_err.max()),
        "scipy_nfev_median": float(np.median(sp_nfev)),
        "speedup_vs_scipy": sp_per_traj / per_traj,
        "one_device_engines": engines,
    }
    rows = [
        ("lanes (depth 6, sigma0 1e-12..1e-1, to 0.99)", f"{args.lanes}"),
        ("trace+lower / XLA compile", f"{result['trace_lower_s']:.2f} s / {result['xla_compile_s']:.2f} s"),
        ("jaxflow run (best of 3)", f"{jf['run_s']:.3f} s"),
        ("jaxflow time per trajectory", f"{per_traj * 1e6:.2f} us"),
        ("steps (accepted+rejected) min/median/max", "{} / {} / {}".format(*result["steps_min_median_max"])),
        ("lockstep efficiency", f"{efficiency:.3f}"),
        ("lanes ok", f"{ok.sum()} / {args.lanes}"),
        ("max rel learning-time error vs theory", f"{rel_err.max():.2e}"),
        (f"scipy RK45 loop ({args.scipy_lanes} lanes) per trajectory", f"{sp_per_traj * 1e6:.0f} us"),
        ("scipy max rel error", f"{sp_err.max():.2e}"),
        ("speed-up per trajectory vs scipy", f"{result['speedup_vs_scipy']:.0f}x"),
    ]
    for name in ("vmap", "ensemble") if engines else ():
        e = engines[name]
        rows.append((f"one device, {engines['lanes']} lanes, {name} engine",
                     f"{e['us_per_trajectory']:.2f} us, attempts mean/max "
                     f"{e['attempts_mean_max'][0]:.1f}/{e['attempts_mean_max'][1]}, wasted "
                     f"{e['wasted_share']:.3f}, "
                     f"max rel error {e['max_rel_learning_time_error']:.1e}"))
    if engines:
        rows.append(("ensemble engine speed-up (one device)",
                     f"{engines['ensemble_speedup']:.2f}x"))
        mixed = engines["mixed_depths"]
        for name in ("vmap", "ensemble"):
            rows.append((f"one device, depths 2..inf mixed, {name} engine",
                         f"{mixed[name]['us_per_trajectory']:.2f} us, wasted "
                         f"{mixed[name]['wasted_share']:.3f}, max rel error "
                         f"{mixed[name]['max_rel_learning_time_error']:.1e}"))
        every = engines["ensemble_all_devices"]
        rows.append((f"ensemble engine, {every['lanes']} lanes on {every['devices']} devices",
                     f"{every['us_per_trajectory']:.2f} us per trajectory, "
                     f"{every['lanes_ok']} ok, max rel error "
                     f"{every['max_rel_learning_time_error']:.1e}, "
                     f"wasted {every['wasted_share']:.3f}"))
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
