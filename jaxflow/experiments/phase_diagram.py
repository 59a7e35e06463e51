"""The main job: the phase diagram of incremental learning over depth x ratio x scale.

For every grid point (depth N, ratio r, scale sigma0) jaxflow simulates the toy model's pair of
coordinates, targets ``sigma*_i = r`` and ``sigma*_j = 1``, from the common start sigma0, with
:func:`jaxflow.solve` (:class:`jaxflow.Flow`) on the reduced vector field only (never a closed
form, not even to choose a time grid). Each chunk of the grid is one work queue of the ensemble
engine (``_toy_queue``: no lockstep; the share of slot iterations it idled is in the report).
It records the (start, finish) margin ``T_j(start) - T_i(finish)``
(docs/science/incremental-learning.md): the pair is incremental iff the margin is >= 0.

Per (depth, ratio) the **measured threshold** is then found from simulations alone: the grid
bracket where the sign flips (extended beyond the grid when the flip lies outside it), refined by
vmapped regula falsi in ``ln sigma0`` on fresh simulations, and checked by solving again 1e-3 x
tighter (``_threshold_check``: ``uncertain`` where the estimated error exceeds 1e-5 relative in
the log). ``threshold_theory`` comes from
:func:`jaxflow.oracles.theory.incremental_threshold`, and the two are compared in logs.

The module reads as every experiment does (see :mod:`jaxflow.experiments`): the config
(:class:`PhaseDiagramConfig`), :func:`run`, :func:`report`, :func:`figures`. Its parts of one
concept each live in modules of their own, their public names importable from here: the
work-queue runner (``_toy_queue``), the per-point function of the lockstep runners and the
float32 runner (``_toy_runner``), the threshold search
(``_threshold_search``), the asymptotic fits (``_asymptotic_fits``) and the printed table
(``_phase_table``).

Example (a tiny grid):
    ```python
    from jaxflow.experiments import phase_diagram as pd
    cfg = pd.PhaseDiagramConfig(depths=(2.0, 3.0), ratios=(2.0,),
                                scales=tuple(10.0 ** k for k in range(-12, -1)))
    ds = pd.run(cfg, quiet=True)
    err = pd.threshold_log_error(ds)
    bool((err <= 1e-5).all())  # -> True
    ```
"""

import concurrent.futures
import dataclasses
import math
import os
from typing import ClassVar

import jax
import numpy as np
import xarray as xr

from jaxflow import _x64, sweep
from jaxflow.engine import status
from jaxflow.experiments import _layout
from jaxflow.experiments._asymptotic_fits import (  # noqa: F401 -- public here
    SLOPE_EXCESS,
    depth2_constant,
    fitted_slopes,
    theory_slope,
)
from jaxflow.experiments._phase_size import (  # noqa: F401 -- public here
    BYTES_PER_POINT,
    BYTES_PER_ROW,
    DERIVED_BYTES_PER_POINT,
    SECONDS_PER_POINT,
    check_counts,
    request_estimate,
)
from jaxflow.experiments._phase_table import TABLE_EXCESSES, summary_table  # noqa: F401
from jaxflow.experiments._solvers import check_solver
from jaxflow.experiments._threshold_check import (  # noqa: F401 -- public here
    CHECK_TOLERANCE_SCALE,
    THRESHOLD_TOLERANCE,
    check_thresholds,
)
from jaxflow.experiments._threshold_search import (  # noqa: F401 -- public here
    LOG_SCALE_FLOOR,
    _bracket,
    measured_thresholds,
    theory_thresholds,
    threshold_log_error,
    threshold_log_error_arrays,
)
from jaxflow.experiments._toy_queue import ToyQueueRunner, wasted_share  # noqa: F401
from jaxflow.experiments._toy_runner import (  # noqa: F401 -- public here
    FLOAT32_RESOLUTION,
    FLOAT32_RTOL,
    Float32Runner,
    ToyRunner,
    float64_runner,
    needs_float64,
    outside_float32,
    point_function,
    shared_runner,
)
from jaxflow.experiments.config import (
    ConfigError,
    ExperimentConfig,
    as_axis,
    check_fractions,
    check_positive_int,
    check_seed,
    check_type,
    option,
)

__all__ = [
    "Float32Runner",
    "PhaseDiagramConfig",
    "ToyQueueRunner",
    "ToyRunner",
    "check_size",
    "check_thresholds",
    "depth2_constant",
    "figures",
    "fitted_slopes",
    "float64_runner",
    "measured_thresholds",
    "needs_float64",
    "outside_float32",
    "point_function",
    "report",
    "request_estimate",
    "run",
    "shared_runner",
    "summary_table",
    "theory_slope",
    "theory_thresholds",
    "threshold_log_error",
    "threshold_log_error_arrays",
    "wasted_share",
]


DEFAULT_DEPTHS = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, math.inf)
# r - 1 log-spaced over [1e-3, 10]: close enough to r = 1 that every depth > 2 shows its power
# law N/(N-2), and depth 2 its exponential: ln sigma0_th ~ -4400 at r = 1.001.
DEFAULT_RATIOS = tuple(float(1.0 + x) for x in np.geomspace(1e-3, 10.0, 32))
# ln sigma0, log-spaced in ln(1/sigma0) over [ln 10, 1e4] (ascending): both regimes in one grid.
DEFAULT_LOG_SCALES = tuple(float(-x) for x in np.geomspace(math.log(10.0), 1e4, 128)[::-1])
DTYPES = ("float64", "float32")
DTYPE_HINT = ('write dtype = "float64" (exact, the default) or dtype = "float32" (fast on GPU/TPU; '
              "lanes it cannot resolve are recomputed in float64) in the config, or pass --dtype")


@dataclasses.dataclass(frozen=True)
class PhaseDiagramConfig(ExperimentConfig):
    """Every option of ``jaxflow phase-diagram``, short for ``jaxflow experiment phase-diagram``
    (a TOML file may set any of them).

    Each field's help (:func:`~jaxflow.experiments.config.option`) is the sentence its flag
    shows in ``--help``.

    Example:
        >>> import numpy as np
        >>> from jaxflow.experiments import phase_diagram as pd
        >>> cfg = pd.PhaseDiagramConfig(depths=(2.0, np.inf), scales=np.geomspace(1e-30, 1e-2, 8))
        >>> cfg.depths, len(cfg.ratios), round(cfg.log_scales[0], 4)
        ((2.0, inf), 32, -69.0776)
        >>> pd.PhaseDiagramConfig.from_toml(None, depths=[3, 4]).depths   # TOML file + overrides
        (3.0, 4.0)
    """

    AXES: ClassVar[tuple[str, ...]] = ("depths", "ratios", "log_scales")
    MODEL: ClassVar[str] = "toy"
    HINTS: ClassVar[dict] = {"dtype": DTYPE_HINT}
    # Two depths, two ratios, 13 scales: every row has its threshold inside the grid.
    SMOKE: ClassVar[dict] = dict(depths=(2.0, 3.0), ratios=(1.5, 3.0),
                                 log_scales=tuple(k * math.log(10.0) for k in range(-14, -1)),
                                 chunk_size=64)

    depths: tuple[float, ...] = option(DEFAULT_DEPTHS,
        "depths N >= 1 (inf allowed), e.g. '1,2,3,inf'")
    ratios: tuple[float, ...] = option(DEFAULT_RATIOS,
        "target ratios r = sigma*_i / sigma*_j > 1, e.g. '1.1,2,4' or '1.02:10:32' (log-spaced)")
    # e^-10000 is a valid start; the dataset's scale = exp(log_scale) may then underflow to 0.
    log_scales: tuple[float, ...] = option(DEFAULT_LOG_SCALES,
        "initialization scales as ln(sigma0 / sigma*_j) < 0, of any size, e.g. '-1e4:-2.3:128' "
        "(log-spaced in ln(1/sigma0)) or '-5000,-100'")
    scales: tuple[float, ...] | None = option(None,
        "the scales sigma0 / sigma*_j themselves, in (0, 1), e.g. '1e-120:1e-1:128' "
        "(log-spaced); given, they set log_scales")
    start: float = option(0.1,
        "fraction of a target at which a mode starts being learned (0 < start < finish)")
    finish: float = option(0.9,
        "fraction of a target at which a mode is learned (start < finish < 1)")
    solver: str = option("Tsit5", "diffrax solver of the flow: Tsit5, Dopri5 or Dopri8")
    rtol: float = option(1e-8, "relative tolerance of the flow's step-size controller")
    atol: float = option(1e-8, "absolute tolerance of the flow's step-size controller")
    max_steps: int = option(2048, "step budget of the flow per trajectory")
    # 4096: on the default grid each chunk's work queue idles 2.9% of its slot iterations in
    # its tail (5.6% with chunks of 2048), and the command runs ~7% faster; a chunk is still
    # ~0.05 s of solving on 2 cores, the most a --resume loses
    chunk_size: int = option(4096,
        "trajectories per compiled call; each finished chunk is stored, so --resume loses at "
        "most one")
    refine_iterations: int = option(20, "regula-falsi iterations of the threshold refinement")
    seed: int = option(0, "seed of the shuffle that spreads costly lanes over the chunks")
    # float32 lanes it cannot resolve are recomputed in float64: see point_function.
    dtype: str = option("float64",
        "float64 (exact) or float32 (fast on GPU/TPU; lanes float32 cannot resolve are "
        "recomputed in float64)")

    def check(self):
        if any(d < 1 for d in self.depths):
            raise ConfigError(f"depths must be >= 1 (inf allowed), got {min(self.depths)}")
        if any(not (1 < r < math.inf) for r in self.ratios):
            raise ConfigError("ratios must be finite and > 1")
        if self.scales is not None:
            scales = check_type("scales", self.scales, tuple[float, ...])
            if not scales or any(not (0 < s < 1) for s in scales):
                raise ConfigError("scales (sigma0 / sigma*_j) must lie in (0, 1)")
            object.__setattr__(self, "scales", scales)
            log_scales = [math.log(s) for s in scales]
            if len(set(log_scales)) != len(log_scales):  # neighbours near 1e-300 share a log
                raise ConfigError("scales must differ in ln(scale), the grid's axis: "
                                  "two of them round to the same log_scale")
            object.__setattr__(self, "log_scales", as_axis("log_scales", log_scales))
        if any(not (-math.inf < x < 0) for x in self.log_scales):
            raise ConfigError("log_scales (ln sigma0 / sigma*_j) must be finite and < 0")
        check_fractions(self.start, self.finish)
        check_seed(self.seed)
        check_solver(self.solver)
        for name in ("rtol", "atol"):
            if not (0 < getattr(self, name) < 1):
                raise ConfigError(f"{name} must lie in (0, 1), got {getattr(self, name)}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}; "
                              f"{DTYPE_HINT}")
        for name in ("max_steps", "chunk_size", "refine_iterations"):
            object.__setattr__(self, name, check_positive_int(name, getattr(self, name)))


def check_size(counts, store=None):
    """The :class:`~jaxflow.sweep.estimate.Estimate` of a grid (memory, disk, time) from its
    counts alone, ``{"depths": n, "ratios": n, "log_scales": n, "chunk_size": n}`` (a count of
    ``scales``, which set ``log_scales``, wins); a one-line SweepError when it does not fit the
    machine (the disk is the store's, a new ``store`` counted in). :func:`run` and ``jaxflow
    phase-diagram`` call it before any axis, runner, thread, folder or file exists.

    >>> from jaxflow.experiments import phase_diagram as pd
    >>> pd.check_size({"depths": 2, "ratios": 2, "log_scales": 13}).points
    52
    """
    counts = {"chunk_size": PhaseDiagramConfig.chunk_size, **counts}
    scales = counts.get("scales") or counts["log_scales"]
    return check_counts((counts["depths"], counts["ratios"], scales), counts["chunk_size"], store)


def _counts(config: PhaseDiagramConfig) -> dict[str, int]:
    """The counts :func:`check_size` reads, of a resolved config."""
    return {"depths": len(config.depths), "ratios": len(config.ratios),
            "log_scales": len(config.log_scales), "chunk_size": config.chunk_size}


@_x64.needs_x64
def run(
    config: PhaseDiagramConfig | None = None,
    *,
    store: str | os.PathLike | None = None,
    resume: bool = False,
    quiet: bool = False,
    devices=None,
    process_index: int | None = None,
    process_count: int | None = None,
    size_check: bool = True,
) -> xr.Dataset:
    """Simulate the phase diagram and measure its thresholds.

    Args:
        config: the options (default: the project defaults).
        store: zarr store written chunk by chunk during the sweep (resumable).
        resume: continue an interrupted store.
        quiet: no progress bar.
        devices: devices to run on (default: all local devices).
        process_index, process_count: this process's share of the grid's chunks when several
            processes share ``store`` (default: from ``jax.distributed``; see
            :func:`jaxflow.sweep.run`). Every process returns the same dataset.
        size_check: refuse a grid too big for the machine's memory or disk before starting
            (see :func:`jaxflow.sweep.run`).

    Returns:
        ``xarray.Dataset`` with dims ``(depth, ratio, log_scale)`` (and the derived coordinate
        ``scale = exp(log_scale)``, 0 where it underflows); variables ``margin`` (flow time,
        +-inf where it overflows float64), ``margin_in_unit`` and ``log_time_unit`` (the same
        margin in the plateau's unit, always finite), ``incremental``, ``status``, ``steps``,
        ``slot_iterations`` (float64 on the work queues: :func:`wasted_share`);
        per (depth, ratio) ``log_threshold_measured`` (NaN where not found),
        ``log_threshold_theory`` (-inf where none), ``log_threshold_error_estimate`` (the
        check's estimate of the measured one's error, :func:`check_thresholds`),
        ``threshold_status`` (``ok`` only for a checked threshold whose estimate is at most
        ``threshold_tolerance``, 1e-5; ``uncertain`` above it; ``not_found`` only where every
        lane of the pair finished ok) and the plain values
        ``threshold_measured``/``threshold_theory``; attributes ``start, finish, solver, rtol,
        atol, dtype, threshold_tolerance, check_tolerance_scale``, versions, ``config`` (TOML)
        and ``created``. With ``config.dtype ==
        "float32"`` also ``recomputed(depth, ratio, scale)``: the lanes computed again in
        float64 because float32 could not resolve them (see :class:`Float32Runner`).

    Example: see the module docstring (a tiny grid, checked against theory). Reload a saved
    result with ``xarray.open_dataset("phase_diagram.nc")``; ``notebooks/02_phase_diagram.ipynb``
    re-slices and replots one.
    """
    config = config or PhaseDiagramConfig()
    if size_check:  # before any runner, thread or file exists
        check_size(_counts(config), store)
    runner = shared_runner(config, devices)
    axes = {"depth": config.depths, "ratio": config.ratios, "log_scale": config.log_scales}
    # The exact thresholds need nothing from the sweep: computed in a second thread, their
    # tracing and XLA compile overlap the sweep's (measured: the default run 10.2 -> 10.0 s cold
    # on 2 cores). x64 may be on only in the caller's ``jax.enable_x64`` block, a thread-local
    # setting that a new thread does not inherit: the thread enters it again.
    def exact_thresholds():
        with jax.enable_x64(True):
            return theory_thresholds(config)

    with concurrent.futures.ThreadPoolExecutor(1) as theory_pool:
        theory_future = theory_pool.submit(exact_thresholds)
        return _simulate_and_measure(config, runner, axes, theory_future, store=store,
                                     resume=resume, quiet=quiet, process_index=process_index,
                                     process_count=process_count, size_check=size_check)


def _simulate_and_measure(config, runner, axes, theory_future, **sweep_options) -> xr.Dataset:
    """The sweep, then the measured thresholds; labelled with the exact ones (see :func:`run`)."""
    ds = sweep.run(
        None,
        axes,
        runner=runner,
        seed=config.seed,
        config=config.to_toml(),
        desc="phase diagram",
        # a lane's steps vary most with depth (median 89 at depth 2, 233 at 1.5, on the
        # default grid): grouped by it, a vmapped batch of the lockstep runners (float32, other
        # solvers) idles far less (see sweep.run); a work queue does not need it
        group_by=("depth",),
        **sweep_options,
    )
    log_measured, threshold_status = measured_thresholds(
        config, ds["margin_in_unit"].values, runner, ds["status"].values)
    # Checked in float64 whatever the grid's dtype: the float32 runner's exact half.
    estimate, threshold_status = check_thresholds(config, log_measured, threshold_status,
                                                  getattr(runner, "exact", runner))
    log_theory = theory_future.result()
    return _label(ds, config, log_measured, threshold_status, log_theory, estimate)


# ``{name: (long_name, units)}`` of the phase diagram's own variables (see _layout.label).
_LABELS = {
    "depth": ("depth N (real; inf: the N -> infinity limit)", "1"),
    "margin": ("T_j(start) - T_i(finish)", "flow time (c = 1)"),
    "margin_in_unit": ("margin / U, U = sigma0^-(1 - 2/N) (1 for N <= 2)", "1"),
    "log_time_unit": ("ln U, the plateau's time unit", "1"),
    "incremental": ("pair learned incrementally (margin >= 0, status ok)", "1"),
    "steps": ("solver steps, accepted + rejected, both coordinates", "1"),
    "log_scale": ("ln(sigma0 / sigma*_j)", "1"),
    "scale": ("sigma0 / sigma*_j (0 where it underflows)", "1"),
    "ratio": ("sigma*_i / sigma*_j", "1"),
    "log_threshold_measured": ("ln sigma0_th from simulations (NaN: not found)", "1"),
    "log_threshold_theory": ("ln sigma0_th of jaxflow.oracles.theory (-inf: none)", "1"),
    "log_threshold_error_estimate": ("estimated |error of ln sigma0_th| / max(1, |ln "
                                     "sigma0_th|), from solves 1e-3 x tighter (NaN: none made; "
                                     "threshold_tolerance: the most an ok threshold has)", "1"),
    "threshold_measured": ("sigma0_th from simulations", "1"),
    "threshold_theory": ("sigma0_th of jaxflow.oracles.theory", "1"),
    "status": ("status of the pair's flow (jaxflow.engine.status code)", None),
    "threshold_status": ("status of the threshold search (jaxflow.engine.status code)", None),
    "recomputed": ("recomputed in float64 (float32 could not resolve it)", "1"),
    "slot_iterations": ("the point's share of its chunk's work-queue slot iterations", "1"),
}


def _label(ds, config, log_measured, threshold_status, log_theory, estimate) -> xr.Dataset:
    """Derived variables, thresholds, units and attributes of the swept dataset."""
    in_unit, log_unit = ds["margin_in_unit"], ds["log_time_unit"]
    with np.errstate(over="ignore", invalid="ignore"):
        # Real flow time: +-inf where it exceeds float64 (sigma0 = e^-10000 at depth 3 has
        # T ~ e^3333), with the sign of margin_in_unit, which is what decides.
        ds["margin"] = xr.where(in_unit == 0, 0.0, in_unit * np.exp(log_unit))
    ds["incremental"] = (in_unit >= 0) & (ds["status"] == status.OK)
    ds["status"] = ds["status"].astype(np.int8)
    ds["steps"] = ds["steps"].astype(np.int32)
    ds = ds.assign_coords(scale=("log_scale", np.exp(ds["log_scale"].values)))
    dims = ("depth", "ratio")
    ds["log_threshold_measured"] = (dims, log_measured)
    ds["log_threshold_theory"] = (dims, log_theory)
    ds["log_threshold_error_estimate"] = (dims, np.asarray(estimate, dtype=float))
    ds["threshold_status"] = (dims, threshold_status.astype(np.int8))
    with np.errstate(over="ignore"):
        ds["threshold_measured"] = (dims, np.exp(log_measured))
        ds["threshold_theory"] = (dims, np.exp(log_theory))
    _layout.label(ds, config, _LABELS)
    ds.attrs.update(
        start=config.start,
        finish=config.finish,
        solver=config.solver,
        rtol=config.rtol,
        atol=config.atol,
        model="toy",
        experiment="phase-diagram",
        # run() refuses to start with x64 off, so the config's dtype is the one computed in.
        dtype=config.dtype,
        log_scale_floor=LOG_SCALE_FLOOR,
        threshold_tolerance=THRESHOLD_TOLERANCE,
        check_tolerance_scale=CHECK_TOLERANCE_SCALE,
    )
    ds.attrs["max_log_threshold_error"] = float(
        np.max(threshold_log_error_arrays(log_measured, log_theory), initial=0.0)
    )
    return ds


def report(ds: xr.Dataset) -> str:
    """What ``jaxflow phase-diagram`` prints: :func:`summary_table`, the status counts and
    the share of the work queues' slot iterations that advanced no lane (:func:`wasted_share`).

    Example: see :func:`summary_table` (a report adds the line of
    :func:`jaxflow.engine.status.report`).
    """
    lines = [summary_table(ds), status.report(ds["status"])]
    wasted = wasted_share(ds)
    if not math.isnan(wasted):
        lines.append(f"work queues: {100 * wasted:.1f}% of slot iterations idle")
    return "\n".join(lines)


def figures(ds: xr.Dataset) -> dict:
    """``{"phase_diagram": ..., "thresholds": ...}``: :func:`jaxflow.plot.phase_diagram` and
    :func:`jaxflow.plot.thresholds` of a result of :func:`run`."""
    from jaxflow import plot  # the layer above: imported on use, as is its matplotlib

    return {"phase_diagram": plot.phase_diagram(ds), "thresholds": plot.thresholds(ds)}
