"""Large-step gradient descent on scalar product networks: regimes over depth x scale x eta.

One coordinate, ``P = prod_j w_j`` over ``N`` factors, fits the target ``sigma*`` under the toy
model's loss ``(sigma* - P)^2 / (2 N^2)`` (:mod:`jaxflow.models.toy`), trained by plain gradient
descent with step ``eta = f x 2 / lambda_bal``, where ``lambda_bal = sigma*^(2 - 2/N) / N`` is the
sharpness of the balanced minimum, the flattest one (:mod:`jaxflow.oracles.minimum_sharpness`):
``f > 1`` leaves descent no stable minimum. Per (depth, scale, eta factor, init):

* ``regime`` and ``regime_step`` (:mod:`jaxflow.engine.regime`), ``final_loss``, ``peak_loss``;
* traces at every ``stride``-th step (``save``): ``loss_trace``, ``sharpness`` (Lanczos on
  Hessian-vector products, warm-started, :mod:`jaxflow.engine.sharpness`), ``flow_sharpness``
  (the sharpness of the minimum that gradient flow would reach from the iterate, closed form)
  and ``flow_distance``, ``|P_descent - P_flow|`` at the same time ``t = eta x step`` (the flow
  integrated by :class:`jaxflow.Flow`);
* ``two_over_eta`` and ``lambda_balanced``; ``status``: ``ok`` where the regime was decided
  (a diverged lane has its answer), the descent's own status where not (``descent_code``).

Inits: ``0`` balanced (every factor ``scale^(1/N)``, so ``P(0) = scale``), ``1`` random
positive (factor ``j`` is ``scale^(1/N) exp(z_j / 2)``, ``z`` standard normal, seeded per
lane), the unbalanced start that Kreisler et al.'s picture needs. Depth is data: factors past a
lane's depth are held at 1, so all depths share one compiled program.

Example:
    ```python
    from jaxflow.experiments import edge_of_stability as eos
    ds = eos.run(eos.EdgeOfStabilityConfig.smoke(), quiet=True)
    print(eos.report(ds))
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
from jaxflow.engine import regime, status
from jaxflow.experiments import _layout
from jaxflow.experiments.config import (
    ConfigError,
    ExperimentConfig,
    check_depths,
    check_finite_positive,
    check_positive_int,
    option,
)
from jaxflow.models import _gaussian
from jaxflow.oracles import minimum_sharpness

__all__ = ["EdgeOfStabilityConfig", "figures", "kreisler_worst_increase", "point_function",
           "report", "run"]


@dataclasses.dataclass(frozen=True)
class EdgeOfStabilityConfig(ExperimentConfig):
    """Options of ``jaxflow experiment edge-of-stability``.

    Example:
        >>> from jaxflow.experiments.edge_of_stability import EdgeOfStabilityConfig
        >>> cfg = EdgeOfStabilityConfig.smoke()
        >>> cfg.depths, cfg.steps // cfg.stride
        ((2.0, 3.0), 50)
    """

    AXES: ClassVar[tuple[str, ...]] = ("depths", "scales", "eta_factors", "inits")
    MODEL: ClassVar[str] = "factor"
    SMOKE: ClassVar[dict] = dict(depths=(2.0, 3.0), scales=(0.05, 0.5),
                                 eta_factors=(0.5, 0.9, 1.1, 2.5), inits=(0.0, 1.0),
                                 steps=400, stride=8, chunk_size=64)

    depths: tuple[float, ...] = option((2.0, 3.0, 4.0), "integer depths N >= 2")
    scales: tuple[float, ...] = option(tuple(float(s) for s in np.geomspace(1e-3, 8.0, 13)),
        "initial product scale > 0 (balanced: every factor scale^(1/N))")
    eta_factors: tuple[float, ...] = option(
        tuple(float(f) for f in np.round(np.linspace(0.2, 2.0, 19), 6)),
        "eta x lambda_bal / 2: the step in units of the balanced minimum's stability limit")
    inits: tuple[float, ...] = option((0.0, 1.0), "0: balanced factors, 1: random positive")
    target: float = option(1.0, "the target sigma* > 0 of the product")
    steps: int = option(4000, "descent steps per lane (the budget)")
    stride: int = option(10, "steps between saves (loss, sharpness, flow distance)")
    lanczos: int = option(4, "Lanczos steps per sharpness estimate (>= max depth: exact)")
    loss_bound: float = option(1e8, "a loss above this ends a lane as diverged")
    seed: int = option(0, "seed of the random factors")
    chunk_size: int = option(256, "lanes per compiled call (each stored: --resume)")

    def check(self):
        check_depths(self.depths, minimum=2)
        if any(i not in (0.0, 1.0) for i in self.inits):
            raise ConfigError("inits must be 0 (balanced) or 1 (random positive)")
        check_finite_positive(self, "target")
        if not (0 < self.loss_bound <= math.inf):
            raise ConfigError(f"loss_bound must be > 0, got {self.loss_bound}")
        for name in ("steps", "stride", "lanczos", "chunk_size"):
            object.__setattr__(self, name, check_positive_int(name, getattr(self, name)))
        if self.steps % self.stride:
            raise ConfigError(f"steps ({self.steps}) must be a multiple of stride ({self.stride})")

    @property
    def save_steps(self) -> np.ndarray:
        return np.arange(0, self.steps + 1, self.stride)


def _lane_problem(config, depth, scale, init, key):
    """The lane's loss (factors past ``depth`` held at 1), start, mask and balanced sharpness."""
    max_depth = int(max(config.depths))
    mask = jnp.arange(max_depth, dtype=depth.dtype) < depth
    target = jnp.asarray([config.target])
    noise = jnp.where(init > 0.5, _gaussian.normal(key, (1, max_depth)), 0.0)
    w0 = jnp.where(mask, scale ** (1.0 / depth) * jnp.exp(0.5 * noise), 1.0)

    def product(params, _=None):
        return jnp.prod(jnp.where(mask, params["plus"], 1.0), axis=-1)

    def loss(params, args):
        return 0.5 * jnp.sum((args - product(params)) ** 2) / depth**2

    problem = jaxflow.Problem(loss=loss, args=target, modes=product, params0={"plus": w0},
                              targets=target)
    lam = minimum_sharpness.balanced_minimum_sharpness(depth, target)
    return problem, mask, lam


def point_function(config: EdgeOfStabilityConfig):
    """Per-lane function ``point(p) -> {regime, ..., traces}`` for :func:`jaxflow.sweep.run`."""
    save_steps = jnp.asarray(config.save_steps, float)

    def point(p):
        depth, init = p["depth"], p["init"]
        # one random start per (depth, scale), shared by every step size: eta is what varies
        key = jax.random.fold_in(jax.random.fold_in(jax.random.key(config.seed),
                                                    jnp.round(depth).astype(jnp.int32)),
                                 jnp.round(1e3 * jnp.log(p["scale"])).astype(jnp.int32))
        problem, mask, lam = _lane_problem(config, depth, p["scale"], init, key)
        eta = p["eta_factor"] * 2.0 / lam
        observe = lambda params, args: jnp.atleast_1d(  # noqa: E731
            minimum_sharpness.flow_solution_sharpness(params, args, mask, depth))
        method = jaxflow.Descent(learning_rate=eta, sharpness=config.lanczos, observe=observe,
                                 loss_bound=config.loss_bound)
        request = jaxflow.Request(save_times=save_steps * eta, fractions=(), stationary_tol=None)
        gd = jaxflow.solve(problem, method, request)
        gf = jaxflow.solve(problem, jaxflow.Flow(rtol=1e-9, atol=1e-12),
                           jaxflow.Request(save_times=save_steps * eta, fractions=(),
                                           stationary_tol=1e-10))
        code, decided = regime.classify(gd, eta)
        decided_ok = (code == regime.DIVERGED) | (gd.status == status.OK)
        return {
            "regime": code, "regime_step": decided,
            "status": jnp.where(decided_ok, status.OK, gd.status).astype(jnp.int8),
            "descent_code": gd.status, "flow_status": gf.status,
            "final_loss": jnp.where(code == regime.DIVERGED, jnp.inf, regime._final(gd.loss)),
            "peak_loss": gd.peak_loss, "stable_at_end": regime.stable_at_end(gd, eta),
            "loss_trace": gd.loss, "sharpness": gd.sharpness, "flow_sharpness": gd.observed[:, 0],
            "flow_distance": jnp.abs(gd.modes[:, 0] - gf.modes[:, 0]),
            "two_over_eta": 2.0 / eta, "lambda_balanced": lam,
            "initial_flow_sharpness": gd.observed[0, 0],
        }

    return point


@_x64.needs_x64
def run(config: EdgeOfStabilityConfig | None = None, *, store: str | os.PathLike | None = None,
        resume: bool = False, quiet: bool = False, devices=None,
        process_index: int | None = None, process_count: int | None = None,
        size_check: bool = True) -> xr.Dataset:
    """The map; dims ``(depth, scale, eta_factor, init)``, traces along ``save``.

    Args:
        config: the options (default: :class:`EdgeOfStabilityConfig`'s defaults).
        store, resume, quiet, devices, process_index, process_count, size_check: as for
            :func:`jaxflow.sweep.run` (a store makes the run resumable chunk by chunk).
    """
    config = config or EdgeOfStabilityConfig()
    axes = {"depth": config.depths, "scale": config.scales, "eta_factor": config.eta_factors,
            "init": config.inits}
    traces = ("loss_trace", "sharpness", "flow_sharpness", "flow_distance")
    ds = sweep.run(point_function(config), axes, chunk_size=config.chunk_size, store=store,
                   resume=resume, seed=config.seed, config=config.to_toml(), program=__name__,
                   output_dims={name: ("save",) for name in traces}, quiet=quiet,
                   desc="edge of stability", devices=devices, process_index=process_index,
                   process_count=process_count, size_check=size_check)
    ds = _layout.integer_coords(ds, "depth", "init")
    ds = ds.assign_coords(save=config.save_steps)
    for name in ("status", "descent_code", "flow_status", "regime"):
        ds[name] = ds[name].astype(np.int8)
    ds["regime_step"] = ds["regime_step"].astype(np.int32)
    ds["stable_at_end"] = ds["stable_at_end"].astype(bool)
    ds["time"] = ds["save"] * 2.0 / ds["lambda_balanced"] * ds["eta_factor"]
    ds.attrs.update(
        model="factor", experiment="edge-of-stability", target=config.target,
        regime_names=" ".join(regime.NAMES), loss_tol=regime.LOSS_TOL,
        catapult_rise=regime.CATAPULT_RISE,
        kreisler_worst_increase=kreisler_worst_increase(ds),
    )
    return _layout.label(ds, config, {
        "scale": ("initial product scale (balanced: every factor scale^(1/N))", "1"),
        "eta_factor": ("step size eta in units of 2 / lambda_bal", "1"),
        "init": ("initialization: 0 balanced, 1 random positive factors", "1"),
        "save": ("descent step of the save", "1"),
        "regime": (f"regime code ({', '.join(f'{i} {n}' for i, n in enumerate(regime.NAMES))}; "
                   "jaxflow.engine.regime)", "1"),
        "regime_step": ("step at which the regime was decided", "1"),
        "descent_code": ("how the descent run ended (jaxflow.engine.status code; diverged is a regime here, not a missing answer)", "1"),
        "flow_status": ("status of the reference gradient flow (jaxflow.engine.status code)",
                        None),
        "final_loss": ("loss at the last step (inf: diverged)", "1"),
        "peak_loss": ("largest loss over the run", "1"),
        "stable_at_end": ("final sharpness <= 2 / eta (checked)", "1"),
        "loss_trace": ("loss at each save", "1"),
        "sharpness": ("top Hessian eigenvalue at each save (Lanczos)", "1 / learning rate"),
        "flow_sharpness": ("sharpness of the gradient-flow solution reached from the iterate "
                           "(closed form)", "1 / learning rate"),
        "flow_distance": ("|P_descent - P_flow| at the same flow time t = eta x step", "1"),
        "two_over_eta": ("2 / eta, the stability limit of the sharpness", "1 / learning rate"),
        "lambda_balanced": ("sharpness of the balanced minimum, sigma*^(2-2/N) / N",
                            "1 / learning rate"),
        "initial_flow_sharpness": ("flow_sharpness at step 0", "1 / learning rate"),
        "time": ("flow time t = eta x step of each save", _layout.FLOW_TIME),
    })


def kreisler_worst_increase(ds: xr.Dataset) -> float:
    """The largest relative rise of ``flow_sharpness`` between consecutive saves, over the lanes
    and saves inside the hypotheses checked here (docs/science/edge-of-stability.md): random
    positive factors, positive target (a scalar network), not diverged, and the flow solution's
    sharpness above ``2 / eta`` at the earlier save (the edge-of-stability phase). Negative: it
    only fell. NaN: no lane qualified.

    >>> import numpy as np, xarray as xr
    >>> from jaxflow.experiments.edge_of_stability import kreisler_worst_increase
    >>> ds = xr.Dataset({"flow_sharpness": (("lane", "save"), [[4.0, 3.0, 2.5, 2.6]]),
    ...                  "two_over_eta": ("lane", [2.8]), "regime": ("lane", [2]),
    ...                  "init": ("lane", [1])})
    >>> round(kreisler_worst_increase(ds), 6)       # 4 -> 3 (-25%) and 3 -> 2.5; 2.5 < 2.8
    -0.166667
    """
    phi = ds["flow_sharpness"]
    before, after = phi.isel(save=slice(None, -1)), phi.isel(save=slice(1, None))
    rise = (after.values - before.values) / before.values
    inside = ((before.values > ds["two_over_eta"].broadcast_like(before).values)
              & (ds["regime"] != regime.DIVERGED).broadcast_like(before).values
              & (ds["init"] == 1).broadcast_like(before).values
              & np.isfinite(rise))
    return float(np.max(rise[inside])) if inside.any() else float("nan")


def report(ds: xr.Dataset) -> str:
    """Per depth and init, the count of each regime below and above ``eta = 2 / lambda_bal``,
    then the checks (converged lanes stable at the end; Kreisler's monotonicity) and statuses."""
    rows = []
    for depth in ds["depth"].values:
        for init in ds["init"].values:
            sub = ds.sel(depth=depth, init=init)
            for side, sel in (("below", sub["eta_factor"] <= 1.0), ("above", sub["eta_factor"] > 1.0)):
                codes = sub["regime"].where(sel).values
                counts = [int(np.sum(codes == c)) for c in range(len(regime.NAMES))]
                rows.append([f"{depth:g}", ("balanced", "random")[int(init)], side, *map(str, counts)])
    converged = ds["regime"] <= regime.CATAPULT
    unstable = int((converged & ~ds["stable_at_end"]).sum())
    legend = [f"eta below/above 2 / lambda_bal; converged lanes with final sharpness > 2/eta: "
              f"{unstable} of {int(converged.sum())}",
              f"worst rise of the flow solution's sharpness at the edge of stability (random "
              f"inits): {ds.attrs.get('kreisler_worst_increase', float('nan')):.3g}"]
    return "\n".join([table(["depth", "init", "eta", *regime.NAMES], rows, legend=legend),
                      status.report(ds["status"])])


def figures(ds: xr.Dataset) -> dict:
    """``{"regime_map": ..., "sharpness_traces": ...}`` (:mod:`jaxflow.plot.edge`)."""
    from jaxflow.plot import edge  # the layer above: imported on use

    return {"regime_map": edge.regime_map(ds), "sharpness_traces": edge.sharpness_traces(ds)}
