"""Generalization phase diagram of deep matrix sensing: depth x init scale x seed.

For every (depth, scale, seed) gradient descent trains ``W = W_1 ... W_N`` on an underdetermined
Gaussian sensing problem (docs/science/experiments.md, E1 at reduced size) and records the reconstruction error
``||W - W*||_F^2 / ||W*||_F^2``, the effective rank of W, the training loss and the status.
The claim: deeper factorizations stay low-rank (and generalize) up to larger initializations.

Depth is data here: every lane carries ``max(depths)`` stacked factors and the ones past its
depth act as the identity (``models.matrix_sensing`` with ``pad_to``), so the whole grid is one
compiled program run by :mod:`jaxflow.sweep` (vmapped, chunked, over all devices).

The module reads config (:class:`GeneralizationConfig`) -> :func:`run` -> :func:`report` ->
:func:`figures`, as every experiment does (see :mod:`jaxflow.experiments`).

Example:
    >>> from jaxflow.experiments import generalization as g
    >>> cfg = g.GeneralizationConfig(depths=(1.0, 3.0), scales=(1e-3,), seeds=(0.0,), d=8, m=40,
    ...                              num_steps=1500)
    >>> ds = g.run(cfg, quiet=True)
    >>> ds["effective_rank"].sel(depth=3.0).item() <= ds["effective_rank"].sel(depth=1.0).item()
    True
"""

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from jaxflow import descent, status, sweep
from jaxflow._table import table
from jaxflow.experiments import _layout
from jaxflow.experiments.config import ConfigError, ExperimentConfig, check_positive_int
from jaxflow.models import matrix_sensing as ms

__all__ = ["GeneralizationConfig", "figures", "point_function", "report", "run"]


@dataclasses.dataclass(frozen=True)
class GeneralizationConfig(ExperimentConfig):
    """Options of the generalization sweep (reduced E1: d = 20, m = 200 < d^2 = 400).

    The learning rate (5e-3, below the stability limit 2 / (2N sigma*^(2-2/N)) ~ 6e-3 of depth 4)
    and the step count put every depth's smallest init past its plateau (flow time 40).

    Example:
        >>> from jaxflow.experiments import generalization as g
        >>> cfg = g.GeneralizationConfig(depths=(1, 3), scales=(1e-4, 1e-2), seeds=(0,))
        >>> cfg.depths, cfg.d, cfg.m
        ((1.0, 3.0), 20, 200)
    """

    AXES: ClassVar[tuple[str, ...]] = ("depths", "scales", "seeds")
    MODEL: ClassVar[str] = "matrix-sensing-generalization"
    SMOKE: ClassVar[dict] = dict(depths=(1.0, 2.0, 3.0), scales=(1e-4, 1e-2, 1.0),
                                 seeds=(0.0, 1.0), d=10, m=80, num_steps=6000, chunk_size=8)

    depths: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0)
    scales: tuple[float, ...] = tuple(float(s) for s in np.geomspace(1e-6, 1.0, 7))
    seeds: tuple[float, ...] = (0.0, 1.0, 2.0)
    d: int = 20
    m: int = 200
    values: tuple[float, ...] = (12.0, 6.0, 4.0, 3.0)
    learning_rate: float = 5e-3
    num_steps: int = 8000
    problem_seed: int = 0
    chunk_size: int = 32

    def check(self):
        if any(n < 1 or n != int(n) for n in self.depths):
            raise ConfigError("depths must be integers >= 1")
        if any(not (0 < s < np.inf) for s in self.scales):
            raise ConfigError("scales must be positive and finite")
        if any(s < 0 or s != int(s) for s in self.seeds):
            raise ConfigError("seeds must be non-negative integers")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        for name in ("d", "m", "num_steps", "chunk_size"):
            check_positive_int(name, getattr(self, name))
        if self.d < len(self.values):
            raise ConfigError(f"d must be >= {len(self.values)} (the target's rank)")


def point_function(config: GeneralizationConfig):
    """Per-point function: GD from a Gaussian init of one (depth, scale, seed).

    Returns ``point(p) -> {reconstruction_error, effective_rank, train_loss, status}`` for
    :func:`jaxflow.sweep.run` (every depth padded to the largest, so one program serves all).

    Example (one point, called eagerly: depth 3 from scale 1e-2 recovers the rank-4 target of
    the smoke problem, with an effective rank of 4):
        >>> import jax.numpy as jnp
        >>> from jaxflow.experiments import generalization as g
        >>> point = g.point_function(g.GeneralizationConfig.smoke())
        >>> out = point({"depth": jnp.array(3.0), "scale": jnp.array(1e-2), "seed": jnp.array(0.0)})
        >>> int(out["effective_rank"]), bool(out["reconstruction_error"] < 1e-2), int(out["status"])
        (4, True, 0)
    """
    problem = ms.gaussian_problem(
        jax.random.key(config.problem_seed), ms.diagonal_target(config.d, config.values), config.m
    )
    max_depth = int(max(config.depths))
    k = len(config.values) + 1

    def loss(factors, args):
        depth, prob = args
        return ms.loss({"factors": factors, "depth": depth}, prob)

    def modes(factors, args):
        return ms.modes({"factors": factors, "depth": args[0]}, k=k)

    def point(p):
        depth = p["depth"]
        key = jax.random.key(p["seed"].astype(jnp.uint32))
        std = p["scale"] ** (1.0 / depth) / jnp.sqrt(float(config.d))
        factors = std * jax.random.normal(key, (max_depth, config.d, config.d))
        traj = descent.gradient_descent(
            loss, factors, (depth, problem), learning_rate=config.learning_rate,
            num_steps=config.num_steps, save_every=config.num_steps, modes=modes,
            targets=ms.targets(problem, k=k),
        )
        final = {"factors": traj.final_state, "depth": depth}
        return {
            "reconstruction_error": ms.reconstruction_error(final, problem),
            "effective_rank": ms.effective_rank(final),
            "train_loss": traj.loss[-1],
            "status": traj.status,
        }

    return point


def run(config: GeneralizationConfig | None = None, *, store=None, resume=False, quiet=False,
        devices=None) -> xr.Dataset:
    """The sweep; dims ``(depth, scale, seed)``.

    Args:
        config: the options (default: :class:`GeneralizationConfig`'s defaults).
        store, resume, quiet, devices: as for :func:`jaxflow.sweep.run`.

    Returns:
        ``xarray.Dataset`` with ``reconstruction_error``, ``effective_rank``, ``train_loss`` and
        ``status``; attrs add ``d``, ``m``, ``target_rank``, the rate, the steps and
        ``ok_fraction``.

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
        quiet=quiet,
        desc="generalization",
        devices=devices,
    )
    ds["status"] = ds["status"].astype(np.int8)
    ds = _layout.integer_coords(ds, "depth", "seed")
    ds.attrs.update(experiment="matrix-sensing-generalization", d=config.d, m=config.m,
                    target_rank=len(config.values),
                    learning_rate=config.learning_rate, num_steps=config.num_steps,
                    ok_fraction=float((ds["status"] == status.OK).mean()))
    return _layout.label(ds, config, {
        "scale": ("initialization scale sigma0 of the product (each factor's std "
                  "sigma0^(1/N) / sqrt(d))", "1"),
        "seed": ("seed of the random initialization", "1"),
    })


def report(ds: xr.Dataset) -> str:
    """What ``jaxflow experiment matrix-sensing-generalization`` prints: per (depth, scale) the
    reconstruction error and effective rank, means over seeds.

    Example (made-up numbers in the layout of :func:`run`):
        >>> import numpy as np, xarray as xr
        >>> from jaxflow.experiments import generalization as g
        >>> dims = ("depth", "scale", "seed")
        >>> ds = xr.Dataset({"reconstruction_error": (dims, np.full((1, 1, 2), 1e-3)),
        ...                  "effective_rank": (dims, np.full((1, 1, 2), 4.0))},
        ...                 coords={"depth": [3.0], "scale": [1e-2], "seed": [0.0, 1.0]})
        >>> print(g.report(ds))
        depth  scale  reconstruction_error  effective_rank
            3   0.01             1.000e-03            4.00
        legend: means over seeds; nan = a run did not finish (see status)
    """
    means = ds[["reconstruction_error", "effective_rank"]].mean("seed")
    rows = [[f"{d:g}", f"{sc:.3g}", f"{row['reconstruction_error'].item():.3e}",
             f"{row['effective_rank'].item():.2f}"]
            for d in ds["depth"].values for sc in ds["scale"].values
            for row in [means.sel(depth=d, scale=sc)]]
    return table(["depth", "scale", "reconstruction_error", "effective_rank"], rows,
                 legend=["means over seeds", "nan = a run did not finish (see status)"])


def figures(ds: xr.Dataset) -> dict:
    """``{"matrix-sensing-generalization": ...}``: :func:`jaxflow.plot.generalization`."""
    from jaxflow import plot  # plot sits downstream of the experiments (DESIGN.md layering)

    return {"matrix-sensing-generalization": plot.generalization(ds)}
