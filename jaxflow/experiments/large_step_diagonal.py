"""Large steps on diagonal networks (Even et al., 2023): which sparse interpolator descent finds.

Underdetermined sparse regression, ``d = 40`` features and ``m = 15`` samples (unit-norm Gaussian
columns, a ``sparsity``-sparse ``w*`` with entries of random sign and size in [0.5, 1.5] on a
random support, ``y = X w*``): infinitely many ``beta`` interpolate the data, and the
initialization and the step choose among them. The network ``beta = w_+^N - w_-^N``
(:mod:`jaxflow.models.diagonal`, squared loss) starts at ``scale``; gradient flow
(:class:`jaxflow.Flow`) reaches one interpolator, whose sharpness ``lambda_flow`` (top
eigenvalue of the dense Hessian there) sets the step unit: descent runs at ``eta = f x 2 /
lambda_flow`` for each ``f`` of ``eta_factors``, so ``f > 1`` cannot end at the flow's solution.
Per (depth, seed, eta factor):

* ``l1`` (``||beta||_1``), ``support`` (entries above ``support_level x max|beta|``),
  ``distance`` (``||beta - beta_flow|| / ||beta_flow||``), ``recovery_error``
  (``||beta - w*|| / ||w*||``), ``final_loss``, ``final_sharpness`` (against ``2 / eta``);
* ``status``: the descent's (``ok``: stationary to ``stationary_tol`` or at the horizon;
  ``diverged``; ``max_steps``: the budget ran out first), and ``converged``: ``ok`` with a
  final loss at most :data:`jaxflow.engine.regime.LOSS_TOL` (a run that oscillates at the edge
  of stability until the horizon is ``ok`` but not converged); the flow's ``l1_flow``,
  ``support_flow``, ``lambda_flow`` and ``flow_status`` per (depth, seed).

Example:
    ```python
    from jaxflow.experiments import large_step_diagonal as lsd
    ds = lsd.run(lsd.LargeStepDiagonalConfig.smoke(), quiet=True)
    print(lsd.report(ds))
    ```
"""

import dataclasses
import os
from typing import ClassVar

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import xarray as xr

import jaxflow
from jaxflow import _x64, sweep
from jaxflow._table import table
from jaxflow.engine import regime, status
from jaxflow.experiments import _layout
from jaxflow.experiments.config import (
    ConfigError,
    ExperimentConfig,
    check_depths,
    check_finite_positive,
    check_positive_int,
    check_seed,
    option,
)
from jaxflow.models import _gaussian
from jaxflow.models import diagonal as dn

__all__ = ["LargeStepDiagonalConfig", "figures", "point_function", "report", "run"]


@dataclasses.dataclass(frozen=True)
class LargeStepDiagonalConfig(ExperimentConfig):
    """Options of ``jaxflow experiment large-step-diagonal``.

    Example:
        >>> from jaxflow.experiments.large_step_diagonal import LargeStepDiagonalConfig
        >>> cfg = LargeStepDiagonalConfig.smoke()
        >>> cfg.d, cfg.m, cfg.depths
        (40, 15, (2.0,))
    """

    AXES: ClassVar[tuple[str, ...]] = ("depths", "seeds")
    MODEL: ClassVar[str] = "diagonal"
    SMOKE: ClassVar[dict] = dict(depths=(2.0,), seeds=(0.0,), eta_factors=(0.25, 0.5, 1.5),
                                 max_steps=16000, chunk_size=1)

    depths: tuple[float, ...] = option((2.0, 3.0, 4.0), "integer depths N >= 2")
    seeds: tuple[float, ...] = option(tuple(float(s) for s in range(4)), "data seeds")
    eta_factors: tuple[float, ...] = option((0.25, 0.5, 0.75, 0.9, 1.05, 1.2, 1.5),
        "eta x lambda_flow / 2 (lambda_flow: sharpness of the flow's solution)")
    d: int = option(40, "features (d > m: underdetermined)")
    m: int = option(15, "samples")
    sparsity: int = option(3, "nonzero entries of w*")
    scale: float = option(3e-3, "initialization scale (each w^N)")
    horizon: float = option(1e5, "flow time at which a run stops if not stationary before")
    stationary_tol: float = option(1e-9, "a run stops when stationary to this tolerance")
    max_steps: int = option(200_000, "descent steps per run (the budget)")
    support_level: float = option(1e-2, "an entry counts in the support above this x max|beta|")
    loss_bound: float = option(1e6, "a loss above this ends a descent run as diverged")
    chunk_size: int = option(8, "lanes per compiled call (each stored: --resume)")

    def check(self):
        check_depths(self.depths, minimum=2)
        for s in self.seeds:
            check_seed(s)
        for name in ("d", "m", "sparsity", "max_steps", "chunk_size"):
            object.__setattr__(self, name, check_positive_int(name, getattr(self, name)))
        if not self.sparsity <= self.m < self.d:
            raise ConfigError(f"need sparsity <= m < d (underdetermined), got sparsity = "
                              f"{self.sparsity}, m = {self.m}, d = {self.d}")
        check_finite_positive(self, *("scale", "horizon", "stationary_tol", "support_level", "loss_bound"))


def _data(config, seed) -> dn.Data:
    """The seed's regression problem (support, signs, sizes and ``X`` all drawn from it)."""
    keys = jax.random.split(jax.random.key(seed.astype(jnp.int32)), 4)
    support = jax.random.permutation(keys[0], config.d)[: config.sparsity]
    sizes = jax.random.uniform(keys[1], (config.sparsity,), minval=0.5, maxval=1.5)
    signs = jnp.where(jax.random.bernoulli(keys[2], 0.5, (config.sparsity,)), 1.0, -1.0)
    target = jnp.zeros(config.d).at[support].set(signs * sizes)
    inputs = _gaussian.normal(keys[3], (config.m, config.d))
    inputs = inputs / jnp.linalg.norm(inputs, axis=0, keepdims=True)
    return dn.Data(inputs, inputs @ target, target)


def _top_eigenvalue(problem, params):
    """The sharpness: top eigenvalue of the dense Hessian (2d x 2d, small here)."""
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    return jnp.linalg.eigvalsh(jax.hessian(lambda v: dn.loss(unravel(v), problem))(flat))[-1]


def _summary(config, beta, target):
    l1 = jnp.sum(jnp.abs(beta))
    support = jnp.sum(jnp.abs(beta) > config.support_level * jnp.max(jnp.abs(beta)))
    error = jnp.linalg.norm(beta - target) / jnp.linalg.norm(target)
    return l1, support.astype(jnp.int32), error


def point_function(config: LargeStepDiagonalConfig):
    """Per-lane function ``point(p)`` for :func:`jaxflow.sweep.run`: the flow once, then descent
    at every eta factor (vmapped), outputs along ``eta_factor``."""
    factors = jnp.asarray(config.eta_factors)
    request = jaxflow.Request(horizon=config.horizon, fractions=(),
                              stationary_tol=config.stationary_tol, max_steps=config.max_steps)

    def point(p):
        problem = dn.Problem(_data(config, p["seed"]), depth=p["depth"], loss="squared")
        w0 = jnp.full(config.d, config.scale ** (1.0 / p["depth"]))  # each w^N = scale
        params0 = {"w_plus": w0, "w_minus": w0}
        base = jaxflow.Problem(loss=dn.loss, params0=params0, args=problem)
        gf = jaxflow.solve(base, jaxflow.Flow(rtol=1e-10, atol=1e-12, refine=False), request)
        beta_flow = dn.beta(gf.final_state, p["depth"])
        lam = _top_eigenvalue(problem, gf.final_state)

        def descend(f):
            eta = 2.0 * f / lam
            method = jaxflow.Descent(learning_rate=eta, loss_bound=config.loss_bound)
            gd = jaxflow.solve(base, method, request)
            beta = dn.beta(gd.final_params, p["depth"])
            l1, support, error = _summary(config, beta, problem.data.target)
            return {"l1": l1, "support": support, "recovery_error": error,
                    "distance": jnp.linalg.norm(beta - beta_flow) / jnp.linalg.norm(beta_flow),
                    "final_loss": dn.loss(gd.final_params, problem),
                    "final_sharpness": _top_eigenvalue(problem, gd.final_params),
                    "two_over_eta": 2.0 / eta, "status": gd.status, "steps": gd.steps}

        l1f, supportf, errorf = _summary(config, beta_flow, problem.data.target)
        return {**jax.vmap(descend)(factors), "l1_flow": l1f, "support_flow": supportf,
                "recovery_error_flow": errorf, "lambda_flow": lam, "flow_status": gf.status,
                "l1_target": jnp.sum(jnp.abs(problem.data.target))}

    return point


@_x64.needs_x64
def run(config: LargeStepDiagonalConfig | None = None, *,
        store: str | os.PathLike | None = None, resume: bool = False, quiet: bool = False,
        devices=None, process_index: int | None = None, process_count: int | None = None,
        size_check: bool = True) -> xr.Dataset:
    """The sweep; dims ``(depth, seed, eta_factor)``.

    Args:
        config: the options (default: :class:`LargeStepDiagonalConfig`'s defaults).
        store, resume, quiet, devices, process_index, process_count, size_check: as for
            :func:`jaxflow.sweep.run` (a store makes the run resumable chunk by chunk).
    """
    config = config or LargeStepDiagonalConfig()
    per_eta = ("l1", "support", "recovery_error", "distance", "final_loss", "final_sharpness",
               "two_over_eta", "status", "steps")
    ds = sweep.run(point_function(config), {"depth": config.depths, "seed": config.seeds},
                   chunk_size=config.chunk_size, store=store, resume=resume,
                   config=config.to_toml(), program=__name__,
                   output_dims={k: ("eta_factor",) for k in per_eta}, quiet=quiet,
                   desc="large-step diagonal", devices=devices,
                   process_index=process_index, process_count=process_count,
                   size_check=size_check)
    ds = ds.assign_coords(eta_factor=np.asarray(config.eta_factors))
    ds = _layout.integer_coords(ds, "depth", "seed")
    for name in ("status", "flow_status"):
        ds[name] = ds[name].astype(np.int8)
    for name in ("support", "support_flow", "steps"):
        ds[name] = ds[name].astype(np.int32)
    ds["converged"] = (ds["status"] == status.OK) & (ds["final_loss"] <= regime.LOSS_TOL)
    ds.attrs.update(model="diagonal", experiment="large-step-diagonal", d=config.d, m=config.m,
                    sparsity=config.sparsity)
    return _layout.label(ds, config, {
        "eta_factor": ("eta x lambda_flow / 2", "1"),
        "l1": ("||beta||_1 of the descent's solution", "1"),
        "support": ("entries of beta above support_level x max|beta| (descent)", "1"),
        "recovery_error": ("||beta - w*|| / ||w*|| (descent)", "1"),
        "distance": ("||beta_descent - beta_flow|| / ||beta_flow||", "1"),
        "final_loss": ("training loss at the descent's end", "1"),
        "final_sharpness": ("top Hessian eigenvalue at the descent's end", "1 / learning rate"),
        "two_over_eta": ("2 / eta, the stability limit of the sharpness", "1 / learning rate"),
        "steps": ("descent steps", "1"),
        "converged": ("descent ok with final loss <= 1e-12 (an interpolator)", "1"),
        "l1_flow": ("||beta||_1 of the flow's solution", "1"),
        "support_flow": ("entries of the flow's beta above support_level x max|beta|", "1"),
        "recovery_error_flow": ("||beta_flow - w*|| / ||w*||", "1"),
        "lambda_flow": ("sharpness of the flow's solution (dense Hessian)", "1 / learning rate"),
        "flow_status": ("status of the gradient flow (jaxflow.engine.status code)", None),
        "l1_target": ("||w*||_1", "1"),
    })


def report(ds: xr.Dataset) -> str:
    """Per depth and eta factor, medians over the seeds whose descent converged (``converged``):
    l1 / l1_flow,
    support size, distance to the flow's solution, recovery error; then the statuses."""
    rows = []
    for depth in ds["depth"].values:
        sub = ds.sel(depth=depth)
        ok = sub["converged"]
        rows.append([f"{depth:g}", "flow", f"{float(sub['l1_flow'].median()):.4g}", "1",
                     f"{float(sub['support_flow'].median()):g}", "0",
                     f"{float(sub['recovery_error_flow'].median()):.3g}",
                     f"{int((sub['flow_status'] == status.OK).sum())}/{sub.sizes['seed']}"])
        for f in sub["eta_factor"].values:
            lane, good = sub.sel(eta_factor=f), ok.sel(eta_factor=f)
            med = lambda v: float(v.where(good).median())  # noqa: E731
            rows.append([f"{depth:g}", f"{f:g}", f"{med(lane['l1']):.4g}",
                         f"{med(lane['l1'] / sub['l1_flow']):.4g}", f"{med(lane['support']):g}",
                         f"{med(lane['distance']):.3g}", f"{med(lane['recovery_error']):.3g}",
                         f"{int(good.sum())}/{sub.sizes['seed']}"])
    legend = ["medians over the seeds whose descent converged (ok, loss <= 1e-12); eta in units of "
              "2 / lambda_flow; support: entries above support_level x max|beta|"]
    return "\n".join([table(["depth", "eta", "l1", "l1/flow", "support", "dist. flow",
                             "error w*", "ok"], rows, legend=legend),
                      status.report(ds["status"])])


def figures(ds: xr.Dataset) -> dict:
    """``{"diagonal_sparsity": ...}`` (:mod:`jaxflow.plot.edge`)."""
    from jaxflow.plot import edge  # the layer above: imported on use

    return {"diagonal_sparsity": edge.diagonal_sparsity(ds)}
