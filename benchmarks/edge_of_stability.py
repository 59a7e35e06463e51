"""Edge-of-stability throughput: descent lanes per second with and without sharpness tracking.

One grid of depth-3 scalar product networks (random positive factors, target 1, step sizes
eta x lambda_bal / 2 spread over [0.2, 2]) run for a fixed budget of descent steps by
jaxflow.solve with jaxflow.Descent, batched (one compiled program), saving every `stride` steps.
The same grid is timed three ways, side by side: no sharpness; Lanczos sharpness at every save
(`Descent(sharpness=k)`); and the sharpness plus the closed-form sharpness of the gradient-flow
solution (`observe`). Compilation is timed apart (a first call), the throughput on a second.

    python benchmarks/edge_of_stability.py                 # 4096 lanes, 2000 steps
    python benchmarks/edge_of_stability.py --lanes 256 --steps 400   # quick

Writes benchmarks/results/edge_of_stability.json.
"""

import argparse
import json
import os
import platform
import time

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

import jaxflow  # noqa: E402
from jaxflow.models import toy  # noqa: E402
from jaxflow.oracles import minimum_sharpness as ms  # noqa: E402

DEPTH = 3


def _flow_sharpness(params, args):
    return jnp.atleast_1d(ms.flow_solution_sharpness(params, args))


def make_run(lanes, steps, stride, sharpness, observe):
    targets = jnp.ones((lanes, 1))
    lam = float(ms.balanced_minimum_sharpness(DEPTH, jnp.array([1.0])))
    etas = jnp.linspace(0.2, 2.0, lanes) * 2.0 / lam
    noise = jax.random.normal(jax.random.key(0), (lanes, 1, DEPTH))
    params0 = {"plus": 0.1 ** (1.0 / DEPTH) * jnp.exp(0.5 * noise)}
    save_steps = jnp.arange(0.0, steps + 1, stride)

    def one(w0, target, eta):
        problem = jaxflow.Problem(loss=toy.factor_loss, args=target, modes=toy.factor_values,
                                  params0=w0, targets=target)
        method = jaxflow.Descent(learning_rate=eta, sharpness=sharpness, loss_bound=1e8,
                                 observe=_flow_sharpness if observe else None)
        request = jaxflow.Request(save_times=save_steps * eta, fractions=(), stationary_tol=None)
        return jaxflow.solve(problem, method, request).loss

    run = jax.jit(jax.vmap(one))
    return lambda: jax.block_until_ready(run(params0, targets, etas))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lanes", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--stride", type=int, default=10)
    parser.add_argument("--lanczos", type=int, default=DEPTH)
    parser.add_argument("--out", default="benchmarks/results/edge_of_stability.json")
    args = parser.parse_args()
    rows = {}
    for label, k, observe in (("no sharpness", 0, False), ("sharpness", args.lanczos, False),
                              ("sharpness + flow solution", args.lanczos, True)):
        run = make_run(args.lanes, args.steps, args.stride, k, observe)
        t0 = time.perf_counter()
        run()
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        run()
        run_s = time.perf_counter() - t0
        rows[label] = dict(compile_and_first_s=compile_s, run_s=run_s,
                           lanes_per_s=args.lanes / run_s)
        print(f"{label:28s} {args.lanes / run_s:10.1f} lanes/s  ({run_s:.2f} s; first call "
              f"{compile_s:.2f} s)")
    result = dict(lanes=args.lanes, steps=args.steps, stride=args.stride, lanczos=args.lanczos,
                  depth=DEPTH, results=rows, machine=platform.processor() or platform.machine(),
                  cpu_count=os.cpu_count(), devices=[str(d) for d in jax.devices()],
                  jax_version=jax.__version__)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
