"""Incremental learning under large steps: the phase diagram's threshold, measured by descent.

The phase diagram's threshold ``sigma0_th(N, r)`` is the largest initialization at which the toy
pair (targets ``sigma*_i = r`` and ``sigma*_j = 1``, a common balanced start ``sigma0``) is still
incremental, ``T_j(start) >= T_i(finish)`` (:func:`jaxflow.oracles.incremental.margin`), for
gradient *flow*. Here the same question is asked of gradient *descent* with step ``eta``, given as
``eta lambda / 2`` where ``lambda = r^(2 - 2/N) / N`` is the sharpness of the balanced minimum of
the larger target (:func:`jaxflow.oracles.minimum_sharpness.balanced_minimum_sharpness`): above
1, descent has no stable minimum for that mode. Learning times are read on the flow's clock
``t = eta x step`` (:class:`jaxflow.Descent`), so the two thresholds answer the same question.

Per (depth, ratio, eta factor) one lane searches ``ln sigma0`` in ``[ln min_scale, ln start]``
from the flow's threshold outward, then by bisection to ``tolerance`` relative in the log
(:mod:`jaxflow.experiments._step_threshold_search`), every lane in one compiled program. The
flow's threshold is the theory's (:func:`jaxflow.oracles.theory.incremental_threshold`), which
the phase diagram measures on the same flow to 1e-7 relative in the log. The dataset:

* ``log_threshold`` (NaN where not answered) and ``threshold_ratio`` ``= sigma_th(eta) /
  sigma_th(flow)``; ``log_lo``/``log_hi``, the bracket found (incremental / not), which bounds
  the threshold even where the search stopped early;
* ``log_threshold_flow``, ``eta``, ``lambda_larger``; ``status`` (``ok``, ``not_found``: no sign
  change in the range, or a descent run's code where one left the answer open, e.g.
  ``max_steps``: the learning time ``~ sigma0^-(1 - 2/N)`` outgrew the step budget;
  ``uncertain``: re-asked on ``check_points`` starts around it, the answer flipped more than
  once, so the threshold found is a sign change but maybe not the largest incremental start:
  ``log_largest_incremental`` then says the largest seen),
  ``rounds`` and ``descent_steps``.

Example:
    ```python
    from jaxflow.experiments import large_step_thresholds as lst
    ds = lst.run(lst.LargeStepThresholdsConfig.smoke(), quiet=True)
    print(lst.report(ds))
    ```
"""

import dataclasses
import math
import os
from typing import ClassVar

import jax.numpy as jnp
import numpy as np
import xarray as xr

from jaxflow import _x64, sweep
from jaxflow._table import table
from jaxflow.engine import status
from jaxflow.experiments import _layout
from jaxflow.experiments._step_threshold_search import search
from jaxflow.experiments.config import (
    ConfigError,
    ExperimentConfig,
    check_depths,
    check_finite_positive,
    check_fractions,
    check_positive_int,
    option,
)
from jaxflow.oracles import minimum_sharpness, theory

__all__ = ["LargeStepThresholdsConfig", "figures", "point_function", "report", "run", "verdicts"]


@dataclasses.dataclass(frozen=True)
class LargeStepThresholdsConfig(ExperimentConfig):
    """Options of ``jaxflow experiment large-step-thresholds``.

    Example:
        >>> from jaxflow.experiments.large_step_thresholds import LargeStepThresholdsConfig
        >>> cfg = LargeStepThresholdsConfig.smoke()
        >>> cfg.depths, cfg.eta_factors
        ((2.0, 3.0), (0.1, 1.5))
    """

    AXES: ClassVar[tuple[str, ...]] = ("depths", "ratios", "eta_factors")
    MODEL: ClassVar[str] = "toy"
    SMOKE: ClassVar[dict] = dict(depths=(2.0, 3.0), ratios=(2.0,), eta_factors=(0.1, 1.5),
                                 max_steps=2000, rounds=16, check_points=8, chunk_size=4)

    depths: tuple[float, ...] = option((2.0, 3.0, 4.0), "integer depths N >= 2")
    ratios: tuple[float, ...] = option((1.5, 2.0, 4.0, 10.0), "target ratios r > 1")
    eta_factors: tuple[float, ...] = option((0.1, 0.5, 0.9, 1.1, 1.5),
        "eta x lambda / 2, lambda the balanced minimum's sharpness of the larger target")
    start: float = option(0.1, "fraction of a target at which a mode starts being learned")
    finish: float = option(0.9, "fraction of a target at which a mode is learned")
    min_scale: float = option(1e-30, "smallest sigma0 searched (0 < min_scale < start)")
    tolerance: float = option(1e-3,
        "bracket width at which the search stops, relative in ln sigma0")
    first_step: float = option(0.05, "first outward step from the flow's threshold, in ln sigma0")
    rounds: int = option(28, "descent runs per lane (fixed: one compiled program)")
    max_steps: int = option(20000, "descent steps per run (the budget)")
    check_points: int = option(64, "starts re-asked around each threshold (one sign change?)")
    check_width: float = option(0.2, "half-width of that check, relative in ln sigma0")
    loss_bound: float = option(1e8, "a loss above this ends a run as diverged")
    seed: int = option(0, "seed of the sweep's shuffle")
    chunk_size: int = option(64, "lanes per compiled call (each stored: --resume)")

    def check(self):
        check_depths(self.depths, minimum=2)
        if any(not (1 < r < math.inf) for r in self.ratios):
            raise ConfigError("ratios must be finite and > 1")
        check_fractions(self.start, self.finish)
        if not (0 < self.min_scale < self.start):
            raise ConfigError(f"min_scale must lie in (0, start = {self.start}), "
                              f"got {self.min_scale}")
        check_finite_positive(self, *("tolerance", "first_step", "loss_bound", "check_width"))
        for name in ("rounds", "max_steps", "chunk_size", "check_points"):
            object.__setattr__(self, name, check_positive_int(name, getattr(self, name)))


def point_function(config: LargeStepThresholdsConfig):
    """Per-lane function ``point(p) -> {log_threshold, ...}`` for :func:`jaxflow.sweep.run`."""

    def point(p):
        depth, ratio = p["depth"], p["ratio"]
        lam = minimum_sharpness.balanced_minimum_sharpness(depth, ratio[None])
        eta = 2.0 * p["eta_factor"] / lam
        log_flow = theory.incremental_threshold(depth, ratio, start=config.start,
                                                finish=config.finish, log=True)
        out = search(config, depth, ratio, eta, log_flow)
        # a threshold with incremental starts above it (or not below) is not the largest one
        flipped = (out["status"] == status.OK) & ~out["monotone"]
        out["status"] = jnp.where(flipped, status.UNCERTAIN, out["status"]).astype(jnp.int8)
        return {**out, "log_threshold_flow": log_flow, "eta": eta, "lambda_larger": lam}

    return point


@_x64.needs_x64
def run(config: LargeStepThresholdsConfig | None = None, *,
        store: str | os.PathLike | None = None, resume: bool = False, quiet: bool = False,
        devices=None, process_index: int | None = None, process_count: int | None = None,
        size_check: bool = True) -> xr.Dataset:
    """The thresholds; dims ``(depth, ratio, eta_factor)``.

    Args:
        config: the options (default: :class:`LargeStepThresholdsConfig`'s defaults).
        store, resume, quiet, devices, process_index, process_count, size_check: as for
            :func:`jaxflow.sweep.run` (a store makes the run resumable chunk by chunk).
    """
    config = config or LargeStepThresholdsConfig()
    axes = {"depth": config.depths, "ratio": config.ratios, "eta_factor": config.eta_factors}
    ds = sweep.run(point_function(config), axes, chunk_size=config.chunk_size, store=store,
                   resume=resume, seed=config.seed, config=config.to_toml(), program=__name__,
                   quiet=quiet, desc="large-step thresholds", devices=devices,
                   process_index=process_index, process_count=process_count,
                   size_check=size_check)
    ds = _layout.integer_coords(ds, "depth")
    ds["status"] = ds["status"].astype(np.int8)
    ds["monotone"] = ds["monotone"].astype(bool)
    for name in ("rounds", "descent_steps"):
        ds[name] = ds[name].astype(np.int32)
    ds["threshold_ratio"] = np.exp(ds["log_threshold"] - ds["log_threshold_flow"])
    ds.attrs.update(model="toy", experiment="large-step-thresholds", start=config.start,
                    finish=config.finish, min_scale=config.min_scale)
    log_units = "1 (natural log of sigma0 / sigma*_j)"
    return _layout.label(ds, config, {
        "ratio": ("target ratio r = sigma*_i / sigma*_j", "1"),
        "eta_factor": ("eta x lambda / 2 (lambda: balanced-minimum sharpness of target r)", "1"),
        "log_threshold": ("ln sigma0_th measured by descent (NaN: not answered)", log_units),
        "log_threshold_flow": ("ln sigma0_th of gradient flow (theory)", log_units),
        "threshold_ratio": ("sigma0_th(descent) / sigma0_th(flow)", "1"),
        "log_lo": ("largest ln sigma0 found incremental (-inf: none)", log_units),
        "log_hi": ("smallest ln sigma0 found not incremental (inf: none)", log_units),
        "eta": ("step size eta", "1"),
        "lambda_larger": ("sharpness of the balanced minimum of target r, r^(2-2/N) / N",
                          "1 / learning rate"),
        "rounds": ("descent runs the search used", "1"),
        "monotone": ("one sign change on the check grid around the threshold", "1"),
        "log_largest_incremental": ("largest incremental ln sigma0 on that grid", log_units),
        "descent_steps": ("descent steps over the search's runs", "1"),
    })


def verdicts(ds: xr.Dataset, band: float = 0.05) -> xr.DataArray:
    """Per lane: ``"preserve"`` where the descent's threshold is within ``band`` (relative) of
    the flow's, ``"destroy"`` where it is lower (fewer starts are incremental), ``"create"``
    where higher, ``"-"`` where not answered.

    >>> import numpy as np, xarray as xr
    >>> from jaxflow.experiments.large_step_thresholds import verdicts
    >>> ds = xr.Dataset({"threshold_ratio": ("lane", [1.01, 0.5, 3.0, np.nan])})
    >>> verdicts(ds).values.tolist()
    ['preserve', 'destroy', 'create', '-']
    """
    q = ds["threshold_ratio"]
    words = np.where(~np.isfinite(q), "-", np.where(np.abs(q - 1) <= band, "preserve",
                                                    np.where(q < 1, "destroy", "create")))
    return xr.DataArray(words, dims=q.dims, coords=q.coords)


def report(ds: xr.Dataset) -> str:
    """``sigma_th(eta) / sigma_th(flow)`` per (depth, ratio) and eta factor, then the statuses."""
    factors = ds["eta_factor"].values
    rows = []
    for depth in ds["depth"].values:
        for ratio in ds["ratio"].values:
            sub = ds.sel(depth=depth, ratio=ratio)
            cells = []
            for f in factors:
                lane = sub.sel(eta_factor=f)
                code = int(lane["status"])
                ratio_text = f"{float(lane['threshold_ratio']):.4g}"
                cells.append(ratio_text if code == status.OK else ratio_text + "?"
                             if code == status.UNCERTAIN else status.name(code))
            rows.append([f"{depth:g}", f"{ratio:g}",
                         f"{math.exp(float(sub['log_threshold_flow'].values[0])):.4g}", *cells])
    legend = ["sigma_th(descent) / sigma_th(flow), eta given as eta x lambda / 2; "
              "below 1: large steps destroy incremental learning at starts the flow keeps it; "
              "?: uncertain (the answer flips again near it: log_largest_incremental)"]
    return "\n".join([table(["depth", "ratio", "sigma_th flow", *(f"{f:g}" for f in factors)],
                            rows, legend=legend), status.report(ds["status"])])


def figures(ds: xr.Dataset) -> dict:
    """``{"threshold_ratio": ...}`` (:mod:`jaxflow.plot.edge`)."""
    from jaxflow.plot import edge  # the layer above: imported on use

    return {"threshold_ratio": edge.threshold_ratios(ds)}
