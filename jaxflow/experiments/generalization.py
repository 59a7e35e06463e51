"""Generalization phase diagram of deep matrix sensing: depth x init scale x seed.

For every (depth, scale, seed) gradient descent trains ``W = W_1 ... W_N`` on an underdetermined
Gaussian sensing problem (docs/science/experiments.md, E1 at reduced size) *until it is
stationary*, and records the reconstruction error ``||W - W*||_F^2 / ||W*||_F^2``, the effective
rank of W, the training loss, the steps and flow time it took, and the status.
The claim: deeper factorizations stay low-rank (and generalize) up to larger initializations.

**Stationary, not a fixed time.** A run at a fixed flow time shows whatever is still on its
plateau (depth 4 from 1e-6, seed 0, is stationary only at t = 165: at t = 40 it shows error 0.3
and rank 1.3 where the converged model has error 5e-12 and rank 4). So every lane runs until it
is stationary, by the one rule of every method (:mod:`jaxflow.engine.stationarity`: it contracts
towards a fixed point with less than ``stationary_tol * max(1, max|factors|)`` left to travel,
estimated as ``|g|^3 / (g.Hg)``; on a plateau the flow expands and the lane goes on), checked
every ``check_every`` steps, within a budget of ``num_steps`` steps; a lane that spends the
budget first has status ``max_steps`` and :func:`report` lists it.

Depth is data here: every lane carries ``max(depths)`` stacked factors and the ones past its
depth act as the identity (``models.matrix_sensing`` with ``pad_to``), so the whole grid is one
compiled program run by :mod:`jaxflow.sweep` (vmapped, chunked, over all devices).

The module reads config (:class:`GeneralizationConfig`) -> :func:`run` -> :func:`report` ->
:func:`figures`, as every experiment does (see :mod:`jaxflow.experiments`).

Example:
    ```python
    from jaxflow.experiments import generalization as g
    cfg = g.GeneralizationConfig(depths=(1.0, 3.0), scales=(1e-3,), seeds=(0.0,), d=8, m=40,
                                 num_steps=1500)
    ds = g.run(cfg, quiet=True)
    ds["effective_rank"].sel(depth=3.0).item() <= ds["effective_rank"].sel(depth=1.0).item()  # -> True
    ```
"""

import dataclasses
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
from jaxflow.experiments.config import ConfigError, ExperimentConfig, check_positive_int, option
from jaxflow.models import _gaussian
from jaxflow.models import matrix_sensing as ms

__all__ = ["GeneralizationConfig", "effective_rank", "figures", "point_function", "report", "run"]


@dataclasses.dataclass(frozen=True)
class GeneralizationConfig(ExperimentConfig):
    """Options of the generalization sweep (reduced E1: d = 20, m = 200 < d^2 = 400).

    The learning rate is 5e-3, below the stability limit 2 / (2N sigma*^(2-2/N)) ~ 6e-3 of
    depth 4. Every lane runs until stationary (``stationary_tol``, checked every
    ``check_every`` steps) or until it has spent ``num_steps`` steps (then: ``max_steps``). The
    tolerance: at 3e-4 and 1e-3 depth 4 from 1e-4 (smoke size) stops early, on the slow tail of
    its last mode, with error 2e-4; at 1e-4 it goes on to error 5e-10 (measured).

    Each field's help (:func:`~jaxflow.experiments.config.option`) is the sentence its flag
    shows in ``--help``.

    Example:
        >>> from jaxflow.experiments import generalization as g
        >>> cfg = g.GeneralizationConfig(depths=(1, 3), scales=(1e-4, 1e-2), seeds=(0,))
        >>> cfg.depths, cfg.d, cfg.m
        ((1.0, 3.0), 20, 200)
    """

    AXES: ClassVar[tuple[str, ...]] = ("depths", "scales", "seeds")
    MODEL: ClassVar[str] = "matrix-sensing-generalization"
    RENAMED: ClassVar[dict] = {"values": "targets"}
    # Smoke: lanes measured to become stationary within 40,000 steps at d = 10, m = 80 (depth 1:
    # 34,000, its slowest eigen-direction sets the remaining travel; depth 3: 7,500; depth 4:
    # 13,000-15,000), so none spends its budget.
    SMOKE: ClassVar[dict] = dict(depths=(1.0, 3.0, 4.0), scales=(1e-4,), seeds=(0.0, 1.0), d=10,
                                 m=80, num_steps=40_000, chunk_size=8)

    depths: tuple[float, ...] = option((1.0, 2.0, 3.0, 4.0), "depths N (integers >= 1)")
    scales: tuple[float, ...] = option(tuple(float(s) for s in np.geomspace(1e-6, 1.0, 7)),
        "initialization scales sigma0 (RMS singular value of W(0))")
    seeds: tuple[float, ...] = option((0.0, 1.0, 2.0), "seeds of W(0) (one axis value per seed)")
    d: int = option(20, "W is d x d")
    m: int = option(200, "number of measurements")
    targets: tuple[float, ...] = option((12.0, 6.0, 4.0, 3.0),
        "the non-zero singular values of the target W* = diag(targets, 0, ...)")
    learning_rate: float = option(5e-3,
        "gradient-descent rate (below the stability limit of the deepest network)")
    num_steps: int = option(200_000,
        "step budget of each lane: a lane not stationary by then ends max_steps")
    stationary_tol: float = option(1e-4,
        "a lane stops once less than stationary_tol x max(1, max|factors|) is left to travel")
    check_every: int = option(500, "steps between two stationarity checks (a divisor of num_steps)")
    problem_seed: int = option(0, "seed of the sensing problem, shared by every lane")
    chunk_size: int = option(32,
        "lanes per compiled call; each finished chunk is stored, so --resume loses at most one")

    def check(self):
        if any(n < 1 or n != int(n) for n in self.depths):
            raise ConfigError("depths must be integers >= 1")
        if any(not (0 < s < np.inf) for s in self.scales):
            raise ConfigError("scales must be positive and finite")
        if any(s < 0 or s != int(s) for s in self.seeds):
            raise ConfigError("seeds must be non-negative integers")
        for name in ("learning_rate", "stationary_tol"):
            if not 0 < getattr(self, name) < np.inf:
                raise ConfigError(f"{name} must be > 0 and finite, got {getattr(self, name)}")
        for name in ("d", "m", "num_steps", "check_every", "chunk_size"):
            check_positive_int(name, getattr(self, name))
        if self.num_steps % self.check_every:
            raise ConfigError(f"num_steps ({self.num_steps}) must be a multiple of check_every "
                              f"({self.check_every})")
        if self.d < len(self.targets):
            raise ConfigError(f"d must be >= {len(self.targets)} (the target's rank)")


def point_function(config: GeneralizationConfig):
    """Per-point function: GD from a Gaussian init of one (depth, scale, seed) until stationary.

    Returns ``point(p) -> {reconstruction_error, product, train_loss, steps, flow_time,
    status}`` (``product``: the learned ``W``, whose rank :func:`run` counts after the sweep) for :func:`jaxflow.sweep.run` (every depth padded to the largest, so one program
    serves all); ``status`` is ``ok`` (stationary), ``max_steps`` (budget spent first) or
    ``diverged``.

    Example (one point, called eagerly: depth 3 from scale 1e-4 is stationary after 7500 steps
    and has recovered the rank-4 target of the smoke problem):
        ```python
        import jax.numpy as jnp
        from jaxflow.experiments import generalization as g
        from jaxflow.models import matrix_sensing as ms
        point = g.point_function(g.GeneralizationConfig.smoke())
        out = point({"depth": jnp.array(3.0), "scale": jnp.array(1e-4), "seed": jnp.array(0.0)})
        rank = ms.effective_rank((out["product"],))   # what run() counts after the sweep
        int(rank), bool(out["reconstruction_error"] < 1e-6), int(out["status"])  # -> (4, True, 0)
        int(out["steps"]), float(out["flow_time"])  # -> (7500, 37.5)
        ```
    """
    problem = ms.gaussian_problem(
        jax.random.key(config.problem_seed), ms.diagonal_target(config.d, config.targets), config.m
    )
    max_depth = int(max(config.depths))

    def loss(factors, args):
        depth, prob = args
        return ms.loss({"factors": factors, "depth": depth}, prob)

    method = jaxflow.Descent(learning_rate=config.learning_rate, check_every=config.check_every)
    request = jaxflow.Request(fractions=(), stationary_tol=config.stationary_tol,
                              max_steps=config.num_steps)

    def point(p):
        depth = p["depth"]
        key = jax.random.key(p["seed"].astype(jnp.uint32))
        std = p["scale"] ** (1.0 / depth) / jnp.sqrt(float(config.d))
        factors = std * _gaussian.normal(key, (max_depth, config.d, config.d))
        # no tracked modes (an SVD per step would cost more than the step itself), no horizon:
        # the run goes until it is stationary, or spends its step budget (max_steps)
        traj = jaxflow.solve(jaxflow.Problem(loss=loss, params0=factors, args=(depth, problem)),
                             method, request)
        final = {"factors": traj.final_state, "depth": depth}
        return {
            "reconstruction_error": ms.reconstruction_error(final, problem),
            # The rank is counted after the sweep (:func:`effective_rank`): LAPACK's batched
            # SVD inside the sweep's concurrent per-device programs deadlocked XLA's CPU thread
            # pool (measured: twice with 2 CPU devices, never with 1).
            "product": ms.product(final),
            "train_loss": loss(traj.final_state, (depth, problem)),
            "steps": traj.steps,
            "flow_time": config.learning_rate * traj.steps.astype(traj.loss.dtype),
            "status": traj.status,
        }

    return point


def effective_rank(products: xr.DataArray, threshold: float = 0.01) -> xr.DataArray:
    """:func:`jaxflow.models.matrix_sensing.effective_rank` of each learned product ``W``,
    computed after the sweep as one program on one device (see :func:`point_function`).

    >>> import numpy as np, xarray as xr
    >>> from jaxflow.experiments import generalization as g
    >>> w = xr.DataArray(np.diag([12.0, 6.0, 0.1])[None], dims=("depth", "row", "column"))
    >>> g.effective_rank(w).values.tolist()                   # 0.1 < 1% of 12
    [2]
    """
    dims = products.dims[:-2]
    flat = jnp.asarray(products.values).reshape((-1,) + products.shape[-2:])
    rank = jax.vmap(lambda w: ms.effective_rank((w,), threshold))(flat)
    return xr.DataArray(np.asarray(rank).reshape(products.shape[:-2]), dims=dims,
                        coords={k: products.coords[k] for k in dims if k in products.coords})


@_x64.needs_x64
def run(config: GeneralizationConfig | None = None, *, store=None, resume=False, quiet=False,
        devices=None, process_index: int | None = None, process_count: int | None = None,
        size_check: bool = True) -> xr.Dataset:
    """The sweep; dims ``(depth, scale, seed)``.

    Args:
        config: the options (default: :class:`GeneralizationConfig`'s defaults).
        store, resume, quiet, devices, process_index, process_count, size_check: as for
            :func:`jaxflow.sweep.run`. float32 is not offered: each lane draws its start
            inside the sweep, and a float32 draw would be another problem.

    Returns:
        ``xarray.Dataset`` with ``reconstruction_error``, ``effective_rank``, ``train_loss``,
        ``steps`` (taken until stationary), ``flow_time`` (``learning_rate * steps``) and
        ``status``; attrs add ``d``, ``m``, ``target_rank``, the rate, the step budget
        ``num_steps``, ``stationary_tol``, ``ok_fraction`` and ``max_steps`` (the count of
        lanes that spent the budget before they were stationary).

    Example: see the module docstring; :func:`jaxflow.plot.generalization` draws the result.
    """
    config = config or GeneralizationConfig()
    ds = sweep.run(
        point_function(config),
        {"depth": config.depths, "scale": config.scales, "seed": config.seeds},
        chunk_size=config.chunk_size,
        store=store,
        resume=resume,
        config=config.to_toml(),
        program=__name__,
        quiet=quiet,
        desc="generalization",
        devices=devices,
        process_index=process_index,
        process_count=process_count,
        size_check=size_check,
    )
    ds["status"] = ds["status"].astype(np.int8)
    ds["effective_rank"] = effective_rank(ds["product"])
    ds = ds.drop_vars("product")
    ds = _layout.integer_coords(ds, "depth", "seed")
    ds.attrs.update(experiment="matrix-sensing-generalization", d=config.d, m=config.m,
                    target_rank=len(config.targets),
                    learning_rate=config.learning_rate, num_steps=config.num_steps,
                    stationary_tol=config.stationary_tol,
                    ok_fraction=float((ds["status"] == status.OK).mean()),
                    max_steps=int((ds["status"] == status.MAX_STEPS).sum()))
    return _layout.label(ds, config, {
        "scale": ("initialization scale sigma0 of the product (each factor's std "
                  "sigma0^(1/N) / sqrt(d))", "1"),
        "seed": ("seed of the random initialization", "1"),
        "steps": ("gradient-descent steps taken (until stationary, or the whole budget)", "1"),
        "flow_time": ("flow time reached, learning_rate x steps", "flow time of dtheta/dt = -grad L"),
    })


def report(ds: xr.Dataset) -> str:
    """What ``jaxflow experiment matrix-sensing-generalization`` prints: per (depth, scale) the
    reconstruction error and effective rank (means over seeds) and the most steps a seed took to
    become stationary; then the count of every status and each lane that did not finish.

    Example (made-up numbers in the layout of :func:`run`; one seed spent its budget):
        >>> import numpy as np, xarray as xr
        >>> from jaxflow.experiments import generalization as g
        >>> dims = ("depth", "scale", "seed")
        >>> ds = xr.Dataset({"reconstruction_error": (dims, np.full((1, 1, 2), 1e-3)),
        ...                  "effective_rank": (dims, np.full((1, 1, 2), 4.0)),
        ...                  "steps": (dims, np.array([[[3000, 8000]]])),
        ...                  "status": (dims, np.array([[[0, 1]]], dtype=np.int8))},
        ...                 coords={"depth": [3.0], "scale": [1e-2], "seed": [0.0, 1.0]},
        ...                 attrs={"num_steps": 8000})
        >>> print(g.report(ds))
        depth  scale  reconstruction_error  effective_rank  steps
            3   0.01             1.000e-03            4.00   8000
        legend: means over seeds; steps: the most any seed took; nan = a run did not finish (see
                status)
        trajectory status: ok 1, max_steps 1; not ok: 1 of 2 (depth=3, scale=0.01, seed=1)
        max_steps (8000 steps spent before stationary): depth=3 scale=0.01 seed=1
    """
    means = ds[["reconstruction_error", "effective_rank"]].mean("seed")
    steps = ds["steps"].max("seed")
    rows = [[f"{d:g}", f"{sc:.3g}", f"{row['reconstruction_error'].item():.3e}",
             f"{row['effective_rank'].item():.2f}", int(steps.sel(depth=d, scale=sc))]
            for d in ds["depth"].values for sc in ds["scale"].values
            for row in [means.sel(depth=d, scale=sc)]]
    lines = [table(["depth", "scale", "reconstruction_error", "effective_rank", "steps"], rows,
                   legend=["means over seeds", "steps: the most any seed took",
                           "nan = a run did not finish (see status)"])]
    lines.append(status.report(ds["status"]))
    # datasets written before the contract call a spent budget "unfinished"
    spent = ds["status"].where(ds["status"].isin([status.MAX_STEPS, status.UNFINISHED]))
    spent = spent.to_series().dropna()
    if len(spent):
        names = spent.index.names
        where = "; ".join(" ".join(f"{dim}={value:g}" for dim, value in zip(names, idx))
                          for idx in spent.index)
        lines.append(f"max_steps ({ds.attrs.get('num_steps')} steps spent before stationary): "
                     f"{where}")
    return "\n".join(lines)


def figures(ds: xr.Dataset) -> dict:
    """``{"matrix-sensing-generalization": ...}``: :func:`jaxflow.plot.generalization`."""
    from jaxflow import plot  # the layer above: imported on use, as is its matplotlib

    return {"matrix-sensing-generalization": plot.generalization(ds)}
