"""Experiment E5: the order in which a deep diagonal network learns coordinates against OMP.

Sparse regression (docs/science/experiments.md): ``d = 1000``, ``m = 80``, unit-norm Gaussian columns,
a 5-sparse positive ``w*`` (entries ``Exponential(target_scale = 10) + 1`` on a random
support), ``y = X w*``; the depth-5 network ``beta = w_+^5 - w_-^5``
(:mod:`jaxflow.models.diagonal`, squared loss) from ``scale = 1e-4`` by gradient flow (to
``horizon``) and gradient descent (rate 1e-3, ``num_steps``), vmapped over ``num_seeds``
seeds.

**Stiffness.** Once the large entries of ``w*`` are learned, their curvature (about
``N^2 |beta|^(2-2/N) * 2/m``, ~1e2) bounds every explicit step while the smallest entries still
sit on their plateaus (their picks come at t of several hundred). The flow therefore runs with
the Runge-Kutta-Chebyshev solver (:class:`jaxflow.engine.rkc.RKC`, plain time), whose cost per step
grows like the square root of the stiffness: measured on seed 0 at full size, t = 100 took 3439
evaluations against Tsit5's 19825, and t = 2000 (all five picks) 10980. The descent needs
``t / lr`` steps whatever the stiffness (2e6 for t = 2000, 20 seeds: hours on a CPU), so it runs to
t = 100 by default, where it covers the first picks; the flow runs to t = 2000.

A coordinate is *picked* when ``|beta_i|`` first exceeds ``threshold = 0.1``; its
pick order is compared with the selection order of Orthogonal Matching Pursuit
(:mod:`jaxflow.baselines.omp`, as many steps as the support), by the concurrence
``|S_OMP & S_GD| / min(|S_OMP|, |S_GD|)`` over the first ``k`` picks (``k`` = support size;
:func:`jaxflow.oracles.incremental.pick_order`, :func:`jaxflow.oracles.incremental.concurrence`).

    dims: backend, seed, rank (pick position), time, mode (the support, largest w* first)
    order(backend, seed, rank), pick_time(backend, seed, rank)   -1 / inf where fewer picks
    num_picks(backend, seed), horizon(backend)                   picks made by the horizon
    omp_order(seed, rank)
    concurrence(backend, seed), prefix_agreement(backend, seed)  (same pick at each rank);
        NaN for a seed without picks, which the summary leaves out and counts
    modes(backend, seed, time, mode), targets(seed, mode)   NaN past a back-end's horizon
    status(backend, seed)
    attrs: concurrence_mean_<backend>, concurrence_std_<backend> (over the seeds with picks),
        seeds_with_picks_<backend>

What it shows (full defaults, 20 seeds, measured): the flow (t = 2000) made five picks on every
seed (the fifth at t = 225 median, 733 at most); its concurrence with OMP is 0.98 ± 0.06: 1.0
on 18 seeds, 0.8 on seeds 10 and 17, where its fourth or fifth pick is an off-support
coordinate (766, 675) while OMP recovered the support exactly. Its pick order equals OMP's on
13 of 20 seeds. The descent (t = 100) made 2-5 picks per seed, all among OMP's
(concurrence 1.0 ± 0.0 over its picks). The full run takes a few minutes on two cores;
``--num-seeds`` trades seeds for time.

The module reads config (:class:`OMPConfig`) -> :func:`run` -> :func:`report` ->
:func:`figures`, as every experiment does (see :mod:`jaxflow.experiments`).

Example (smoke size):
    ```python
    from jaxflow.experiments import omp as e5
    ds = e5.run(e5.OMPConfig.smoke())
    float(ds["concurrence"].sel(backend="flow").mean()) > 0.5  # -> True
    ```
"""

import dataclasses
import functools
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

import jaxflow
from jaxflow import _x64
from jaxflow._table import table
from jaxflow.baselines import omp
from jaxflow.engine import status
from jaxflow.engine.rkc import RKC
from jaxflow.experiments import _layout
from jaxflow.experiments.config import (
    ConfigError,
    ExperimentConfig,
    check_positive,
    check_positive_int,
    check_steps,
    option,
)
from jaxflow.models import _gaussian
from jaxflow.models import diagonal as dn
from jaxflow.oracles import incremental
from jaxflow.sweep import cells as _cells

__all__ = ["OMPConfig", "cells", "figures", "problem", "report", "run"]


@dataclasses.dataclass(frozen=True)
class OMPConfig(ExperimentConfig):
    """Options of ``jaxflow experiment omp`` (defaults: the paper's E5, t = 100).

    The descent's ``num_steps * learning_rate`` (t = 100) covers the picks of the largest
    coordinates; the smallest entries (~1 + Exp(10)) are picked at t of several hundred, which
    the flow's ``horizon`` (2000, RKC) covers. A back-end with fewer picks is compared on the
    picks it made (the ``min`` of the concurrence). The save grid is spaced
    ``learning_rate * save_every`` and runs to ``horizon`` (a multiple of that spacing, at
    least the descent's horizon).

    Each field's help (:func:`~jaxflow.experiments.config.option`) is the sentence its flag
    shows in ``--help``.

    >>> from jaxflow.experiments import omp as e5
    >>> e5.OMPConfig.smoke().num_seeds
    4
    >>> e5.OMPConfig(horizon=50.0)
    Traceback (most recent call last):
    ...
    jaxflow.experiments.config.ConfigError: horizon must be a multiple of learning_rate * save_every = 10 and >= learning_rate * num_steps = 100, got 50.0
    """

    # Reduced sizes (d = 100, m = 40, 3-sparse, 4 seeds, descent t = 40, flow t = 400).
    RENAMED: ClassVar[dict] = {"flow_time": "horizon", "flow_rtol": "rtol"}
    SMOKE: ClassVar[dict] = dict(d=100, m=40, sparsity=3, num_seeds=4, num_steps=40_000,
                                 save_every=4000, horizon=400.0)

    d: int = option(1000, "dimension of w*")
    m: int = option(80, "number of samples")
    sparsity: int = option(5, "support size of w* (and OMP's number of steps)")
    target_scale: float = option(10.0,
        "scale of the exponential entries of w* (each is 1 + target_scale x Exp(1))")
    depth: int = option(5, "depth N of the diagonal network")
    scale: float = option(1e-4, "w_+-(0) = scale^(1/N) (sigma0)")
    learning_rate: float = option(1e-3, "gradient-descent rate")
    num_steps: int = option(100_000, "gradient-descent steps")
    save_every: int = option(10_000,
        "descent steps between saved points; the save grid is spaced learning_rate x save_every")
    threshold: float = option(0.1, "a coordinate is picked when |beta_i| first exceeds it")
    num_seeds: int = option(20, "seeds 0 .. num_seeds - 1, each its own problem (vmapped)")
    horizon: float = option(2000.0,
        "flow time at which the flow stops (a multiple of learning_rate x save_every, at least "
        "learning_rate x num_steps)")
    rtol: float = option(1e-6, "relative tolerance of the flow (RKC)")

    def check(self):
        for name in ("d", "m", "sparsity", "depth", "num_seeds"):
            check_positive_int(name, getattr(self, name))
        check_steps(self)
        if self.sparsity > min(self.d, self.m):
            raise ConfigError(f"sparsity must be <= min(d, m) = {min(self.d, self.m)}")
        check_positive(self, "target_scale", "scale", "learning_rate", "threshold")
        spacing = self.learning_rate * self.save_every
        ratio = self.horizon / spacing
        if not (
            self.horizon >= self.learning_rate * self.num_steps
            and abs(ratio - round(ratio)) < 1e-9 * ratio
        ):
            raise ConfigError(
                f"horizon must be a multiple of learning_rate * save_every = {spacing:g} and "
                f">= learning_rate * num_steps = {self.learning_rate * self.num_steps:g}, "
                f"got {self.horizon!r}"
            )
        if not 0 < self.rtol < 1:
            raise ConfigError(f"rtol must be in (0, 1), got {self.rtol!r}")


def problem(config: OMPConfig, seed: int) -> dn.Problem:
    """The regression problem of one seed (support, values and ``X`` all seeded): the draws of
    :func:`jaxflow.models.diagonal.regression_data` (unit-norm columns), in one compiled program
    for every seed."""
    target, inputs = _draw(
        jax.random.key(seed), config.d, config.m, config.sparsity,
        jnp.asarray(float(config.target_scale)),
    )
    data = dn.Data(inputs, inputs @ target, target)
    return dn.Problem(data, depth=float(config.depth), loss="squared")


@jax.jit(static_argnums=(1, 2, 3))
def _draw(key, d, m, sparsity, scale):
    k_support, k_values, k_data = jax.random.split(key, 3)
    support = jax.random.choice(k_support, d, (sparsity,), replace=False)
    values = scale * jax.random.exponential(k_values, (sparsity,)) + 1.0
    target = jnp.zeros(d).at[support].set(values)
    inputs = _gaussian.normal(k_data, (m, d))
    return target, inputs / jnp.linalg.norm(inputs, axis=0, keepdims=True)


def _all_coordinates(params, args):
    return jnp.abs(dn.beta(params, args.depth))


BACKENDS = ("flow", "descent")


def _times(config: OMPConfig) -> np.ndarray:
    """The save grid, spaced ``learning_rate * save_every``, to the flow's horizon."""
    spacing = config.learning_rate * config.save_every
    return spacing * np.arange(round(config.horizon / spacing) + 1)


def _methods(config: OMPConfig) -> dict:
    """``{backend: (method, request)}``: one request for both methods, saving on one grid,
    fraction 1 of each level being the pick, run to the horizon (off-support coordinates never
    reach their level). Only the horizon differs: descent costs a gradient per step, so it
    stops at ``learning_rate * num_steps``."""
    times = _times(config)
    flow_request = jaxflow.Request(
        save_times=times, fractions=(0.5, 1.0), max_steps=400_000,
        required=np.zeros((config.d, 2), dtype=bool),
    )
    descent_end = config.learning_rate * config.num_steps
    descent_request = dataclasses.replace(
        flow_request, save_times=times[times <= descent_end * (1 + 1e-12)], horizon=descent_end,
        max_steps=config.num_steps,
    )
    return {
        "flow": (jaxflow.Flow(solver=RKC(), clock="plain", rtol=config.rtol, atol=1e-9,
                              refine=False), flow_request),
        "descent": (jaxflow.Descent(learning_rate=config.learning_rate,
                                    check_every=config.save_every), descent_request),
    }


def _support(prob: dn.Problem, k: int) -> np.ndarray:
    """The ``k`` coordinates of largest ``w*_i``, largest first (the dataset's modes)."""
    return np.argsort(-np.asarray(prob.data.target), kind="stable")[:k]


def _solve_cell(config: OMPConfig, backend: str, seed: int) -> dict:
    """One back-end on one seed: when each coordinate first reaches the threshold, the saved
    ``|beta_i|`` on the support (NaN past the back-end's horizon), the status."""
    prob = problem(config, seed)
    method, request = _methods(config)[backend]
    level = jnp.full((config.d,), config.threshold)  # fraction 1 of this target = threshold
    traj = jaxflow.solve(
        jaxflow.Problem(loss=dn.loss, params0=dn.init(config.scale, config.depth, config.d),
                        args=prob, modes=_all_coordinates, targets=level), method, request)
    saved = np.asarray(traj.modes)[:, _support(prob, config.sparsity)]
    modes = np.full((_times(config).size, config.sparsity), np.nan)
    modes[: saved.shape[0]] = saved
    return {"crossing": np.asarray(traj.learning_times)[:, -1], "modes": modes,
            "status": int(traj.status)}


def cells(config: OMPConfig) -> list[_cells.Cell]:
    """The run as cells of :func:`jaxflow.sweep.cells.run`: one back-end on one seed each."""
    shapes = {"crossing": ((config.d,), np.dtype(np.float64)),
              "modes": ((_times(config).size, config.sparsity), np.dtype(np.float64)),
              "status": ((), np.dtype(np.int8))}
    return [_cells.Cell(f"{name} seed={seed}", shapes,
                        functools.partial(_solve_cell, config, name, seed))
            for name in BACKENDS for seed in range(config.num_seeds)]


@_x64.needs_x64
def run(config: OMPConfig | None = None, *, quiet: bool = False, store=None,
        resume: bool = False, process_index: int | None = None,
        process_count: int | None = None, size_check: bool = True) -> xr.Dataset:
    """Both back-ends on every seed, OMP, and their concurrence.

    Each (back-end, seed) run is a cell of :func:`jaxflow.sweep.cells.run` (one compiled
    program per back-end, reused by every seed): ``store``, ``resume``, ``process_index``,
    ``process_count`` and ``size_check`` are its options. float32 is not offered: the flow
    starts from ``|beta_i| = 1e-4`` and follows picks to t = 2000 under a stiff RKC step.

    Example: see the module docstring (smoke size).
    """
    config = config or OMPConfig()
    results = _cells.run(cells(config), store=store, resume=resume, config=config.to_toml(),
                         quiet=quiet, desc="back-end x seed", process_index=process_index,
                         process_count=process_count, size_check=size_check)
    problems = [problem(config, s) for s in range(config.num_seeds)]
    k = config.sparsity
    seeds = np.arange(config.num_seeds)
    times = _times(config)
    backends = BACKENDS
    runs = {name: results[b * seeds.size:(b + 1) * seeds.size]
            for b, name in enumerate(backends)}
    order = np.full((2, config.num_seeds, k), -1)
    pick_time = np.full((2, config.num_seeds, k), np.inf)
    omp_order = np.stack(
        [np.asarray(omp.omp(p.data.inputs, p.data.labels, k).order) for p in problems]
    )
    support = np.stack([_support(p, k) for p in problems])
    modes = np.stack([[r["modes"] for r in runs[name]] for name in backends])
    codes = np.stack([[r["status"] for r in runs[name]] for name in backends]).astype(np.int8)
    for b, name in enumerate(backends):
        for s in seeds:  # (d,): first |beta_i| >= threshold
            order[b, s], pick_time[b, s] = incremental.pick_order(runs[name][s]["crossing"], k)
    conc = np.array(
        [
            [incremental.concurrence(omp_order[s], order[b, s]) for s in seeds]
            for b in range(2)
        ]
    )
    agree = np.array(
        [[incremental.prefix_agreement(omp_order[s], order[b, s]) for s in seeds] for b in range(2)]
    )
    targets = np.stack([np.asarray(p.data.target)[support[s]] for s, p in enumerate(problems)])
    horizon = np.array([config.horizon, config.learning_rate * config.num_steps])
    ds = xr.Dataset(
        {
            "order": (("backend", "seed", "rank"), order),
            "pick_time": (("backend", "seed", "rank"), pick_time),
            "omp_order": (("seed", "rank"), omp_order),
            "concurrence": (("backend", "seed"), conc),
            "prefix_agreement": (("backend", "seed"), agree),
            "modes": (("backend", "seed", "time", "mode"), modes),
            "targets": (("seed", "mode"), targets),
            "status": (("backend", "seed"), codes),
            "num_picks": (("backend", "seed"), (order >= 0).sum(axis=-1)),
            "horizon": (("backend",), horizon),
        },
        coords={
            "backend": list(backends),
            "seed": seeds,
            "rank": np.arange(k),
            "time": times,
            "mode": np.arange(k),
        },
    )
    _layout.label(ds, config, {
        "seed": ("seed of the regression problem", "1"),
        "rank": ("pick position (0: first coordinate picked)", "1"),
        "time": ("flow time t (descent: learning_rate x step; NaN modes past a horizon)",
                 _layout.FLOW_TIME),
        "mode": ("mode index: the support of w*, largest w*_i first", "1"),
        "modes": ("|beta_i| on the support of w*", "1"),
        "targets": ("w*_i on the support", "1"),
        "order": ("coordinate picked at each rank (-1: fewer picks)", "1"),
        "pick_time": ("time |beta_i| first exceeds the threshold (inf: fewer picks)",
                      _layout.FLOW_TIME),
        "omp_order": ("coordinate OMP selects at each rank", "1"),
        "concurrence": ("|S_OMP & S_picked| / min(|S_OMP|, |S_picked|) over the first k picks "
                        "(NaN: no picks)", "1"),
        "prefix_agreement": ("fraction of ranks with the same pick as OMP (NaN: no picks)", "1"),
        "num_picks": ("coordinates picked by the horizon", "1"),
        "horizon": ("last time simulated", _layout.FLOW_TIME),
    })
    ds.attrs.update(dataclasses.asdict(config))
    ds.attrs.update(experiment="omp", ok=int((codes == status.OK).all()))
    for b in backends:
        values = ds["concurrence"].sel(backend=b).values
        picked = ds["num_picks"].sel(backend=b).values > 0
        ds.attrs[f"seeds_with_picks_{b}"] = int(picked.sum())
        ds.attrs[f"concurrence_mean_{b}"] = float(values[picked].mean()) if picked.any() else np.nan
        ds.attrs[f"concurrence_std_{b}"] = float(values[picked].std()) if picked.any() else np.nan
    return ds


def report(ds: xr.Dataset) -> str:
    """What ``jaxflow experiment omp`` prints: per back-end the concurrence with OMP, the seeds
    with picks, the prefix agreement and the status; then the orders of the first seeds."""
    rows, notes = [], []
    for b in ds["backend"].values:
        row = ds.sel(backend=b)
        picked = row["num_picks"].values > 0
        agree = float(row["prefix_agreement"].values[picked].mean()) if picked.any() else np.nan
        counts = status.summary(row["status"].values)
        rows.append([
            b, f"{float(row['horizon']):g}", f"{ds.attrs[f'concurrence_mean_{b}']:.3f}",
            f"{ds.attrs[f'concurrence_std_{b}']:.3f}",
            f"{ds.attrs[f'seeds_with_picks_{b}']} of {ds.sizes['seed']}",
            f"{float(row['num_picks'].mean()):.2f}", f"{agree:.3f}",
            ", ".join(f"{k} {v}" for k, v in counts.items()),
        ])
        if not picked.all():
            notes.append(
                f"  {b}: no coordinate reached {ds.attrs['threshold']} by t = "
                f"{float(row['horizon']):g} on seeds {ds['seed'].values[~picked].tolist()} "
                "(left out of the concurrence)"
            )
    header = ["backend", "horizon", "concurrence", "std", "seeds_with_picks", "picks",
              "prefix_agreement", "status"]
    lines = [table(header, rows, legend=[
        "concurrence = |picks & OMP's| / min(sizes), mean and std over the seeds with picks",
        "picks = coordinates picked by the horizon, mean over seeds",
        "prefix_agreement = fraction of ranks picking OMP's coordinate; nan = no seed picked"]),
        *notes]
    orders = [
        [int(s), *(",".join(str(i) for i in order.values.tolist())
                   for order in (row["omp_order"], row["order"].sel(backend="flow"),
                                 row["order"].sel(backend="descent")))]
        for s, row in ((s, ds.sel(seed=s)) for s in ds["seed"].values[:5])
    ]
    lines.append(table(["seed", "omp_order", "flow_order", "descent_order"], orders, legend=[
        f"-1 = no coordinate reached {ds.attrs['threshold']} at that rank by the horizon"]))
    return "\n".join(lines)


def figures(ds: xr.Dataset) -> dict:
    """``{"omp": ...}``: :func:`jaxflow.plot.omp_picks` (seed 0's coordinates, concurrences)."""
    from jaxflow import plot  # the layer above: imported on use, as is its matplotlib

    return {"omp": plot.omp_picks(ds)}
