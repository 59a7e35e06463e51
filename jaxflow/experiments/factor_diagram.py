"""A phase diagram where theory is silent: unbalanced random factors, k-mode spectra.

The theory of docs/science/incremental-learning.md assumes a balanced, identical start. Here every coordinate of
a ``k``-mode target spectrum (geometric, ratio ``r`` between consecutive modes, smallest 1) is
the product of ``N`` distinct factors drawn i.i.d. Gaussian with standard deviation
``sigma0^(1/N)`` (seeded), and runs the factor-level gradient flow of
:mod:`jaxflow.models.toy` (``jax.grad`` of the project's loss (docs/science/toy-model.md)). Per (depth, scale, seed):

* ``incremental_fraction``: the fraction of consecutive target pairs (larger, smaller) that are
  (start, finish)-incremental: ``T_larger(finish) <= T_smaller(start)``
  (:func:`jaxflow.oracles.incremental.incremental_pairs`);
* ``rank_correlation``: Spearman correlation between the order in which modes reach ``finish``
  and the target order (1 = learned strictly largest first;
  :func:`jaxflow.oracles.incremental.rank_correlation`);
* ``status``, ``steps``, and every ``learning_time(mode, fraction)``.

Depth is data: every lane carries ``max(depths)`` factors per coordinate, and the factors past
its own depth are masked out of the product (so out of the gradient too), which keeps all
depths in one compiled program. Coordinates are decoupled (the loss is a sum over them), so
each is solved on its own relative-speed clock, as in the main phase diagram.

What it shows (measured on 3 modes of ratio 2, depths 1-3, scales 1e-8, 1e-4, 1e-2, seeds
0-3): depth helps. Depth 1 is never incremental (fraction 0, rank correlation -1 to -0.5);
depth 2 is incremental on 1.0, 0.875, 0.5 of the pairs (mean over seeds) at the three scales,
always learning largest first: incrementality fades as the scale grows, as for balanced
starts. Depth 3 gives 0.75 at every scale: seeds 0 and 3 learn one of the two pairs out of
turn whatever the scale (rank correlation 0.5; the cause, presumably the random unbalanced
start that the balanced theory excludes, is not investigated here).
``tests/test_factor_diagram.py`` checks the claims on depths 1-3.

Example:
    ```python
    from jaxflow.experiments import factor_diagram as fd
    cfg = fd.FactorDiagramConfig(depths=(1.0, 3.0), scales=(1e-6,), seeds=(0.0,), num_modes=3)
    ds = fd.run(cfg, quiet=True)
    float(ds["incremental_fraction"].sel(depth=1.0).item())  # -> 0.0 (depth 1: never incremental)
    ds.attrs["ok_fraction"]  # -> 1.0
    ```
"""

import dataclasses
import math
import os
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

import jaxflow
from jaxflow import _x64, sweep
from jaxflow._table import table
from jaxflow.engine import status
from jaxflow.experiments import _layout
from jaxflow.experiments._solvers import SOLVERS, check_solver
from jaxflow.experiments.config import (
    ConfigError,
    ExperimentConfig,
    check_fractions,
    check_positive_int,
    check_seed,
    option,
)
from jaxflow.models import _gaussian
from jaxflow.oracles import incremental

__all__ = ["FactorDiagramConfig", "figures", "point_function", "report", "run"]


@dataclasses.dataclass(frozen=True)
class FactorDiagramConfig(ExperimentConfig):
    """Options of ``jaxflow experiment factor-diagram``.

    Each field's help (:func:`~jaxflow.experiments.config.option`) is the sentence its flag
    shows in ``--help``.

    Example:
        >>> from jaxflow.experiments import factor_diagram as fd
        >>> cfg = fd.FactorDiagramConfig(depths=(2, 3), scales=(1e-6,), seeds=range(4), num_modes=3)
        >>> cfg.targets.tolist(), cfg.seeds
        ([4.0, 2.0, 1.0], (0.0, 1.0, 2.0, 3.0))
    """

    AXES: ClassVar[tuple[str, ...]] = ("depths", "scales", "seeds")
    MODEL: ClassVar[str] = "factor"
    SMOKE: ClassVar[dict] = dict(depths=(1.0, 3.0), scales=(1e-8, 1e-2), seeds=(0.0, 1.0),
                                 num_modes=3, chunk_size=8)

    depths: tuple[float, ...] = option((1.0, 2.0, 3.0, 4.0, 5.0, 6.0),
        "integer depths N >= 1 (numbers of factors)")
    scales: tuple[float, ...] = option(tuple(float(s) for s in np.geomspace(1e-12, 1e-1, 23)),
        "sigma0 in (0, 1), the standard deviation of the product at t = 0 (factors ~ "
        "sigma0^(1/N))")
    seeds: tuple[float, ...] = option(tuple(float(s) for s in range(8)),
        "seeds of the random factors (one axis value per seed)")
    ratio: float = option(2.0,
        "ratio r > 1 between consecutive targets: the targets are r^(k-1), ..., r, 1")
    num_modes: int = option(4, "k, the number of target modes (>= 2)")
    start: float = option(0.1,
        "fraction of a target at which a mode starts being learned (0 < start < finish)")
    finish: float = option(0.9,
        "fraction of a target at which a mode is learned (start < finish < 1)")
    solver: str = option("Tsit5", "diffrax solver of the flow: Tsit5, Dopri5 or Dopri8")
    rtol: float = option(1e-7, "relative tolerance of the flow's step-size controller")
    atol: float = option(1e-7, "absolute tolerance of the flow's step-size controller")
    max_steps: int = option(4096, "step budget of the flow per trajectory")
    chunk_size: int = option(512,
        "trajectories per compiled call; each finished chunk is stored, so --resume loses at "
        "most one")
    seed: int = option(0, "seed of the shuffle that spreads costly lanes over the chunks")

    def check(self):
        if any(not (1 <= d < math.inf) or d != int(d) for d in self.depths):
            raise ConfigError("depths must be integers >= 1 for the factor model")
        if any(not (0 < s < 1) for s in self.scales):
            raise ConfigError("scales must lie in (0, 1)")
        if any(not (0 <= s < math.inf) or s != int(s) for s in self.seeds):
            raise ConfigError("seeds must be non-negative integers")
        if not (1 < self.ratio < math.inf):
            raise ConfigError(f"ratio must be finite and > 1, got {self.ratio}")
        if self.num_modes < 2:
            raise ConfigError(f"num_modes must be an integer >= 2, got {self.num_modes}")
        check_fractions(self.start, self.finish)
        check_seed(self.seed)
        check_solver(self.solver)
        for name in ("max_steps", "chunk_size"):
            object.__setattr__(self, name, check_positive_int(name, getattr(self, name)))

    @property
    def targets(self) -> np.ndarray:
        """The k targets, largest first: r^(k-1), ..., r, 1."""
        return self.ratio ** np.arange(self.num_modes - 1, -1, -1, dtype=float)


def point_function(config: FactorDiagramConfig):
    """Per-point function: random unbalanced factors of one (depth, scale, seed).

    Returns ``point(p) -> {incremental_fraction, rank_correlation, learning_time, status,
    steps}`` for :func:`jaxflow.sweep.run`, which vmaps and compiles it (see :func:`run`).

    Example (one point per depth, called eagerly, seed 0, sigma0 = 1e-8: depth 1 learns every
    mode at the same rate, never incrementally; depth 3 learns one of the two pairs
    incrementally):
        ```python
        import jax.numpy as jnp
        from jaxflow.experiments import factor_diagram as fd
        point = fd.point_function(fd.FactorDiagramConfig(depths=(1, 3), num_modes=3))
        for depth in (1.0, 3.0):
            p = {"depth": jnp.array(depth), "scale": jnp.array(1e-8), "seed": jnp.array(0.0)}
            out = point(p)
            print(depth, float(out["incremental_fraction"]), int(out["status"]))
        # prints: 1.0 0.0 0, then 3.0 0.5 0
        ```
    """
    solver = SOLVERS[config.solver]()
    max_depth = int(max(config.depths))
    method = jaxflow.Flow(solver=solver, rtol=config.rtol, atol=config.atol)
    request = jaxflow.Request(fractions=(config.start, config.finish), max_steps=config.max_steps)
    targets = jnp.asarray(config.targets)

    def coordinate(weights, depth, target):
        mask = jnp.arange(max_depth, dtype=depth.dtype) < depth

        def value(w, _=None):
            # Factors past this lane's depth are masked to 1: out of the product and gradient.
            return jnp.prod(jnp.where(mask, w, 1.0))[None]

        def loss(w, _):
            return 0.5 * (target - value(w)[0]) ** 2 / depth**2

        problem = jaxflow.Problem(loss=loss, params0=weights, modes=value, targets=target[None])
        traj = jaxflow.solve(problem, method, request)
        return traj.learning_times[0], traj.status, traj.steps + traj.rejected

    def point(p):
        depth = p["depth"]
        key = jax.random.key(p["seed"].astype(jnp.uint32))
        factor = p["scale"] ** (1.0 / depth)
        weights = factor * _gaussian.normal(key, (config.num_modes, max_depth))
        times, codes, steps = jax.vmap(coordinate, in_axes=(0, None, 0))(weights, depth, targets)
        pairs = incremental.incremental_pairs(times)
        return {
            "incremental_fraction": jnp.mean(pairs.astype(float)),
            "rank_correlation": incremental.rank_correlation(times[:, 1]),
            "learning_time": times,
            "status": jnp.max(codes),
            "steps": jnp.sum(steps),
        }

    return point


@_x64.needs_x64
def run(
    config: FactorDiagramConfig | None = None,
    *,
    store: str | os.PathLike | None = None,
    resume: bool = False,
    quiet: bool = False,
    devices=None,
    process_index: int | None = None,
    process_count: int | None = None,
    size_check: bool = True,
) -> xr.Dataset:
    """Simulate the factor-level phase diagram; dims ``(depth, scale, seed)``.

    Args:
        config: the options (default: :class:`FactorDiagramConfig`'s defaults).
        store, resume, quiet, devices, process_index, process_count, size_check: as for
            :func:`jaxflow.sweep.run`.

    Returns:
        ``xarray.Dataset`` with ``incremental_fraction``, ``rank_correlation``, ``status``,
        ``steps`` over ``(depth, scale, seed)``, ``learning_time(..., mode, fraction)`` and
        ``target(mode)``; attrs add the ratio, fractions, solver settings and ``ok_fraction``.

    Example: see the module docstring; ``notebooks/06_beyond_theory.ipynb`` plots one with
    :func:`jaxflow.plot.factor_diagram`.
    """
    config = config or FactorDiagramConfig()
    axes = {"depth": config.depths, "scale": config.scales, "seed": config.seeds}
    ds = sweep.run(
        point_function(config),
        axes,
        chunk_size=config.chunk_size,
        store=store,
        resume=resume,
        seed=config.seed,
        config=config.to_toml(),
        program=__name__,
        output_dims={"learning_time": ("mode", "fraction")},
        quiet=quiet,
        desc="factor phase diagram",
        devices=devices,
        process_index=process_index,
        process_count=process_count,
        size_check=size_check,
    )
    ds = _layout.integer_coords(ds, "depth", "seed")
    ds = ds.assign_coords(mode=np.arange(config.num_modes), fraction=[config.start, config.finish])
    ds["target"] = ("mode", config.targets)
    ds["status"] = ds["status"].astype(np.int8)
    ds["steps"] = ds["steps"].astype(np.int32)
    ds.attrs.update(
        model="factor",
        experiment="factor-diagram",
        init="unbalanced Gaussian factors, std sigma0^(1/N)",
        ratio=config.ratio,
        num_modes=config.num_modes,
        start=config.start,
        finish=config.finish,
        solver=config.solver,
        rtol=config.rtol,
        atol=config.atol,
        ok_fraction=float((ds["status"] == status.OK).mean()),
    )
    return _layout.label(ds, config, {
        "scale": ("initialization scale sigma0 (each factor ~ sigma0^(1/N) N(0, 1))", "1"),
        "seed": ("seed of the random factors", "1"),
        "fraction": ("fraction of a mode's target (start, finish)", "1"),
        "learning_time": ("time a mode reaches fraction x its target (inf: never)",
                          "flow time (c = 1)"),
        "incremental_fraction": ("fraction of consecutive mode pairs learned incrementally",
                                 "1"),
        "rank_correlation": ("Spearman correlation of finish times with the target order "
                             "(1: largest first)", "1"),
        "steps": ("solver steps, accepted + rejected, all modes", "1"),
        "target": ("target sigma*_k of each mode", "1"),
    })


def report(ds: xr.Dataset) -> str:
    """What ``jaxflow phase-diagram --model factor`` prints: per depth, the incremental fraction
    and the rank correlation (means over scales and seeds), then the status counts.

    Example (made-up numbers in the layout of :func:`run`):
        >>> import numpy as np, xarray as xr
        >>> from jaxflow.experiments import factor_diagram as fd
        >>> dims = ("depth", "scale", "seed")
        >>> ds = xr.Dataset({"incremental_fraction": (dims, np.array([[[0.0]], [[1.0]]])),
        ...                  "rank_correlation": (dims, np.array([[[0.0]], [[0.5]]])),
        ...                  "status": (dims, np.zeros((2, 1, 1), np.int8))},
        ...                 coords={"depth": [1.0, 3.0], "scale": [1e-6], "seed": [0.0]})
        >>> print(fd.report(ds))
        depth  incremental_fraction  rank_correlation
            1                 0.000             0.000
            3                 1.000             0.500
        legend: means over scales and seeds
        trajectory status: ok 2
    """
    summary = ds[["incremental_fraction", "rank_correlation"]].mean(("seed", "scale"))
    rows = [[f"{depth:g}", f"{summary.sel(depth=depth)['incremental_fraction'].item():.3f}",
             f"{summary.sel(depth=depth)['rank_correlation'].item():.3f}"]
            for depth in ds["depth"].values]
    return "\n".join([table(["depth", "incremental_fraction", "rank_correlation"], rows,
                             legend=["means over scales and seeds"]),
                       status.report(ds["status"])])


def figures(ds: xr.Dataset) -> dict:
    """``{"factor_diagram": ...}``: :func:`jaxflow.plot.factor_diagram` of a :func:`run`."""
    from jaxflow import plot  # the layer above: imported on use, as is its matplotlib

    return {"factor_diagram": plot.factor_diagram(ds)}
