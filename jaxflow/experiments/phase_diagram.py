"""The main job: the phase diagram of incremental learning over depth x ratio x scale.

For every grid point (depth N, ratio r, scale sigma0) jaxflow simulates the toy model's pair of
coordinates, targets ``sigma*_i = r`` and ``sigma*_j = 1``, from the common start sigma0, with
:func:`jaxflow.flow.solve` on the reduced vector field only (never a closed form, not even to
choose a time grid). It records the (start, finish) margin ``T_j(start) - T_i(finish)``
(PAPER.md section 3): the pair is incremental iff the margin is >= 0.

Per (depth, ratio) the **measured threshold** is then found from simulations alone: the grid
bracket where the sign flips (extended beyond the grid when the flip lies outside it), refined by
vmapped regula falsi in ``ln sigma0`` on fresh simulations. ``threshold_theory`` comes from
:func:`jaxflow.theory.incremental_threshold`, and the two are compared in logs.

The module reads as every experiment does (see :mod:`jaxflow.experiments`): the config
(:class:`PhaseDiagramConfig`), :func:`run`, :func:`report`, :func:`figures`.

Example (a tiny grid):
    >>> from jaxflow.experiments import phase_diagram as pd
    >>> cfg = pd.PhaseDiagramConfig(depths=(2.0, 3.0), ratios=(2.0,),
    ...                             scales=tuple(10.0 ** k for k in range(-12, -1)))
    >>> ds = pd.run(cfg, quiet=True)
    >>> err = pd.threshold_log_error(ds)
    >>> bool((err <= 1e-5).all())
    True
"""

import dataclasses
import math
import os
from collections.abc import Sequence
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from jaxflow import flow, incremental, status, sweep, theory
from jaxflow.experiments.config import (
    ConfigError,
    ExperimentConfig,
    check_fractions,
    check_positive_int,
    check_seed,
)
from jaxflow.experiments._solvers import SOLVERS, check_solver
from jaxflow.models import toy

__all__ = [
    "Float32Runner",
    "PhaseDiagramConfig",
    "figures",
    "fitted_slopes",
    "measured_thresholds",
    "needs_float64",
    "point_function",
    "report",
    "run",
    "summary_table",
    "theory_thresholds",
    "threshold_log_error",
    "threshold_log_error_arrays",
]


DEFAULT_DEPTHS = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, math.inf)
DEFAULT_RATIOS = tuple(float(r) for r in np.geomspace(1.02, 10.0, 32))
DEFAULT_SCALES = tuple(float(s) for s in np.geomspace(1e-120, 1e-1, 128))
DTYPES = ("float64", "float32")
# Smallest sigma0 the bracket search tries: exp(-700) ~ 1e-304 is still a normal float64. A
# threshold below it (only 1 < N < 2 close to where thresholds vanish) is reported as 0.
LOG_SCALE_FLOOR = -700.0


@dataclasses.dataclass(frozen=True)
class PhaseDiagramConfig(ExperimentConfig):
    """Every option of ``jaxflow phase-diagram`` (a TOML file may set any of them).

    Attributes:
        depths: depths N >= 1 (``inf`` allowed).
        ratios: target ratios r = sigma*_i / sigma*_j > 1.
        scales: initialization scales sigma0 / sigma*_j in (0, 1).
        start, finish: the (start, finish) fractions of the incremental-learning definition.
        solver: diffrax solver name (Tsit5, Dopri5, Dopri8).
        rtol, atol: step-size controller tolerances.
        max_steps: step budget per trajectory.
        chunk_size: trajectories per compiled call.
        refine_iterations: regula-falsi iterations of the threshold refinement.
        seed: seed of the lane shuffle.
        dtype: ``"float64"`` (default) or ``"float32"`` (fast on GPU/TPU): lanes float32 cannot
            resolve are recomputed in float64 (see :func:`point_function`).

    Example:
        >>> import numpy as np
        >>> from jaxflow.experiments import phase_diagram as pd
        >>> cfg = pd.PhaseDiagramConfig(depths=(2.0, np.inf), scales=np.geomspace(1e-30, 1e-2, 8))
        >>> cfg.depths, len(cfg.ratios), cfg.scales[0]
        ((2.0, inf), 32, 1e-30)
        >>> pd.PhaseDiagramConfig.from_toml(None, depths=[3, 4]).depths   # TOML file + overrides
        (3.0, 4.0)
    """

    AXES: ClassVar[tuple[str, ...]] = ("depths", "ratios", "scales")
    MODEL: ClassVar[str] = "toy"
    # Two depths, two ratios, 13 scales: every row has its threshold inside the grid.
    SMOKE: ClassVar[dict] = dict(depths=(2.0, 3.0), ratios=(1.5, 3.0),
                                 scales=tuple(10.0**k for k in range(-14, -1)), chunk_size=64)

    depths: tuple[float, ...] = DEFAULT_DEPTHS
    ratios: tuple[float, ...] = DEFAULT_RATIOS
    scales: tuple[float, ...] = DEFAULT_SCALES
    start: float = 0.1
    finish: float = 0.9
    solver: str = "Tsit5"
    rtol: float = 1e-8
    atol: float = 1e-8
    max_steps: int = 2048
    chunk_size: int = 2048
    refine_iterations: int = 20
    seed: int = 0
    dtype: str = "float64"

    def check(self):
        if any(d < 1 for d in self.depths):
            raise ConfigError(f"depths must be >= 1 (inf allowed), got {min(self.depths)}")
        if any(not (1 < r < math.inf) for r in self.ratios):
            raise ConfigError("ratios must be finite and > 1")
        if any(not (0 < s < 1) for s in self.scales):
            raise ConfigError("scales (sigma0 / sigma*_j) must lie in (0, 1)")
        check_fractions(self.start, self.finish)
        check_seed(self.seed)
        check_solver(self.solver)
        for name in ("rtol", "atol"):
            if not (0 < getattr(self, name) < 1):
                raise ConfigError(f"{name} must lie in (0, 1), got {getattr(self, name)}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        for name in ("max_steps", "chunk_size", "refine_iterations"):
            object.__setattr__(self, name, check_positive_int(name, getattr(self, name)))


def point_function(config: PhaseDiagramConfig, *, with_time: bool = False):
    """The per-point function of the sweep: simulate one (depth, ratio, scale) pair.

    Returns ``margin = T_j(start) - T_i(finish)`` (:func:`jaxflow.incremental.margin`), the
    worse status of the two coordinates and
    their total solver steps (accepted + rejected); with ``with_time``, also
    ``time = max(|T_j(start)|, |T_i(finish)|)``, the size the margin's rounding scales with.

    The toy model's coordinates are decoupled (PAPER.md section 2), so the pair is solved as two
    scalar flows side by side (a vmap over the coordinate), each on its own log-arclength clock.
    One shared clock would be stiff: once the larger value has converged, its curvature would
    bound every explicit step while the smaller value still crawls along a plateau of up to
    1e80 time units. Each coordinate stops as soon as it has the learning time the margin needs.

    Example (the function :func:`run` hands to :mod:`jaxflow.sweep`, which vmaps and compiles
    it; here called once, eagerly: at depth 3, ratio 2, sigma0 = 1e-3 the pair is incremental,
    as its theory threshold 0.0145 says):
        >>> import jax.numpy as jnp
        >>> from jaxflow.experiments import phase_diagram as pd
        >>> point = pd.point_function(pd.PhaseDiagramConfig())
        >>> out = point({"depth": jnp.array(3.0), "ratio": jnp.array(2.0),
        ...              "scale": jnp.array(1e-3)})
        >>> bool(out["margin"] > 0), int(out["status"])
        (True, 0)
    """
    solver = SOLVERS[config.solver]()
    # Coordinate i (target ratio) needs its finish time, coordinate j (target 1) its start time.
    required = jnp.array([[[False, True]], [[True, False]]])

    def coordinate(depth, target, log_scale, need):
        args = toy.ToyArgs(depth=depth, targets=target[None])
        traj = flow.solve(
            toy.reduced_vector_field,
            log_scale[None],
            args,
            modes=toy.reduced_modes,
            targets=target[None],
            fractions=(config.start, config.finish),
            required=need,
            solver=solver,
            rtol=config.rtol,
            atol=config.atol,
            max_steps=config.max_steps,
            time=toy.reduced_speed,
        )
        return traj.learning_times[0], traj.status, traj.steps + traj.rejected

    def point(p):
        targets = jnp.stack([p["ratio"], jnp.ones_like(p["ratio"])])
        times, codes, steps = jax.vmap(coordinate, in_axes=(None, 0, None, 0))(
            p["depth"], targets, jnp.log(p["scale"]), required
        )
        margin = incremental.margin(times[0, 1], times[1, 0])
        out = {"margin": margin, "status": jnp.max(codes), "steps": jnp.sum(steps)}
        if with_time:
            out["time"] = jnp.maximum(jnp.abs(times[1, 0]), jnp.abs(times[0, 1]))
        return out

    return point


# The float32 path. float32 holds sigma0 only down to its smallest normal number (1.2e-38), and
# its learning times carry a relative error of order FLOAT32_RESOLUTION: eps32 = 1.2e-7 per
# operation, accumulated over ~100 solver steps run at rtol FLOAT32_RTOL (float32 cannot reach
# the float64 default 1e-8). A margin smaller than that fraction of the learning times has an
# unknown sign, so such lanes are recomputed in float64.
FLOAT32_RTOL = 1e-6
FLOAT32_RESOLUTION = 1e-4


def needs_float64(points, fast) -> np.ndarray:
    """Lanes whose float32 answer cannot be trusted, from the inputs and the float32 outputs.

    A lane is recomputed in float64 when sigma0 is below float32's normal range, when a ratio or
    a scale rounds to 1 in float32, when its float32 status is not ok (max_steps, non-finite:
    e.g. a learning time beyond 3.4e38), or when ``|margin| <= FLOAT32_RESOLUTION * time``.

    Example:
        >>> pts = {"scale": np.array([1e-3, 1e-60, 1e-3]), "ratio": np.array([2.0, 2.0, 2.0])}
        >>> fast = {"margin": np.array([5.0, 5.0, 1e-5]), "time": np.array([10.0, 10.0, 10.0]),
        ...         "status": np.zeros(3, dtype=np.int8)}
        >>> needs_float64(pts, fast).tolist()
        [False, True, True]
    """
    scale, ratio = np.asarray(points["scale"]), np.asarray(points["ratio"])
    margin, time = np.asarray(fast["margin"], dtype=float), np.asarray(fast["time"], dtype=float)
    with np.errstate(invalid="ignore"):
        resolved = np.abs(margin) > FLOAT32_RESOLUTION * time  # False for NaN
    return (
        (scale < np.finfo(np.float32).tiny)
        | (scale.astype(np.float32) >= 1)
        | (ratio.astype(np.float32) <= 1)
        | (np.asarray(fast["status"]) != status.OK)
        | ~np.isfinite(time)
        | ~resolved
    )


class Float32Runner(sweep.AbstractRunner):
    """Runs the phase diagram's points in float32 and recomputes in float64 what float32 cannot.

    A :class:`jaxflow.sweep.AbstractRunner` (it defines ``chunk``, ``chunk_size``, ``call_size``
    and ``fn``):
    each chunk runs once in float32 (a ``sweep.Runner(..., float32=True)``: one float32 program,
    fast on GPU and TPU); the lanes :func:`needs_float64` flags run again in float64, and their
    float64 results are stored. The extra output ``recomputed`` says which lanes were, so a stored
    answer is never a silently wrong float32 one.
    """

    def __init__(self, config: PhaseDiagramConfig, devices=None):
        self.exact = sweep.Runner(point_function(config), chunk_size=config.chunk_size, devices=devices)
        fast = dataclasses.replace(
            config, rtol=max(config.rtol, FLOAT32_RTOL), atol=max(config.atol, FLOAT32_RTOL)
        )
        self.fast = sweep.Runner(point_function(fast, with_time=True), chunk_size=self.exact.chunk_size,
                                 devices=devices, float32=True)
        self.chunk_size = self.exact.chunk_size
        self.call_size = self.exact.call_size
        example = {k: jax.ShapeDtypeStruct((), jnp.float64) for k in ("depth", "ratio", "scale")}
        self._dtypes = {k: v.dtype for k, v in jax.eval_shape(self.exact.fn, example).items()}

    @property
    def traces(self) -> int:
        """Traces of the two programs (one each once compiled)."""
        return self.fast.traces + self.exact.traces

    def fn(self, point):
        """The outputs' structure (what the store lays out): float64 results plus ``recomputed``."""
        return {**self.exact.fn(point), "recomputed": jnp.zeros((), dtype=bool)}

    def chunk(self, points):
        fast = self.fast.chunk(points)
        redo = needs_float64(points, fast)
        out = {k: np.asarray(fast[k]).astype(dtype) for k, dtype in self._dtypes.items()}
        if redo.any():
            index = np.flatnonzero(redo)
            exact = self.exact({k: np.asarray(v)[index] for k, v in points.items()})
            for k in out:
                out[k][index] = exact[k]
        out["recomputed"] = redo
        return out


def _bracket(margins_row: np.ndarray, log_scales: np.ndarray):
    """The grid bracket of the threshold in one (depth, ratio) row (ascending scales).

    Returns ``(lo, hi, kind)`` with ``margin(lo) >= 0 > margin(hi)`` when ``kind == "inside"``;
    ``"below"`` when no grid point is incremental (search under the grid), ``"above"`` when all
    are (search over it).
    """
    inc = margins_row >= 0
    if not inc.any():
        return None, log_scales[0], "below"
    if inc.all():
        return log_scales[-1], None, "above"
    # The largest incremental scale whose neighbour above is not: the upper boundary.
    k = np.flatnonzero(inc[:-1] & ~inc[1:])
    k = k[-1] if k.size else int(np.flatnonzero(inc)[-1])
    return log_scales[k], log_scales[k + 1], "inside"


def measured_thresholds(
    config: PhaseDiagramConfig,
    margins: np.ndarray,
    runner: sweep.Runner,
) -> tuple[np.ndarray, np.ndarray]:
    """Thresholds from simulations: grid bracket, extension beyond the grid, regula falsi.

    Args:
        margins: ``(depth, ratio, scale)`` simulated margins on the grid.
        runner: the sweep's compiled runner (the refinement reuses its program).

    Returns:
        ``(log_threshold, status)`` per (depth, ratio): ``-inf`` where no threshold exists above
        ``exp(LOG_SCALE_FLOOR)``; status is the worst status among the refinement's lanes.

    Example (with a stand-in margin that changes sign at sigma0 = 0.01; :func:`run` passes the
    simulation's runner):
        >>> import jax.numpy as jnp, numpy as np
        >>> from jaxflow import sweep
        >>> from jaxflow.experiments import phase_diagram as pd
        >>> cfg = pd.PhaseDiagramConfig(depths=(3.0,), ratios=(2.0,), scales=(1e-4, 1e-3, 1e-1))
        >>> def stand_in(p):
        ...     return {"margin": jnp.log(0.01 / p["scale"]), "status": jnp.zeros((), jnp.int8)}
        >>> runner = sweep.Runner(stand_in, chunk_size=8, batch=8)
        >>> margins = np.log(0.01 / np.array(cfg.scales))[None, None]
        >>> log_threshold, worst = pd.measured_thresholds(cfg, margins, runner)
        >>> np.exp(log_threshold).round(12).tolist(), worst.tolist()
        ([[0.01]], [[0]])
    """
    depths = np.asarray(config.depths)
    ratios = np.asarray(config.ratios)
    log_scales = np.log(np.asarray(config.scales))
    order = np.argsort(log_scales)
    log_scales, margins = log_scales[order], margins[..., order]
    spacing = float(np.max(np.diff(log_scales))) if log_scales.size > 1 else 1.0
    top = math.log(config.start)  # margin <= 0 there: the smaller value already sits at start

    pairs = [(i, j) for i in range(depths.size) for j in range(ratios.size)]
    lo = np.full(len(pairs), np.nan)
    hi = np.full(len(pairs), np.nan)
    m_lo = np.full(len(pairs), np.nan)
    m_hi = np.full(len(pairs), np.nan)
    worst = np.zeros(len(pairs), dtype=np.int8)
    pending = {}
    for n, (i, j) in enumerate(pairs):
        a, b, kind = _bracket(margins[i, j], log_scales)
        if kind == "inside":
            ka = int(np.searchsorted(log_scales, a))
            lo[n], hi[n], m_lo[n], m_hi[n] = a, b, margins[i, j, ka], margins[i, j, ka + 1]
        else:
            pending[n] = kind
            if kind == "below":
                hi[n], m_hi[n] = b, margins[i, j, 0]
            else:
                lo[n], m_lo[n] = a, margins[i, j, -1]

    def simulate(index, x):
        idx = np.asarray(index, dtype=int)
        pts = {
            "depth": depths[[pairs[n][0] for n in idx]],
            "ratio": ratios[[pairs[n][1] for n in idx]],
            "scale": np.exp(x),
        }
        out = runner(pts)
        worst[idx] = np.maximum(worst[idx], out["status"])
        return out["margin"]

    # Extend the bracket beyond the grid, doubling the distance each round.
    step = 1
    while pending:
        idx = np.array(sorted(pending))
        below = np.array([pending[n] == "below" for n in idx])
        x = np.where(
            below,
            np.maximum(log_scales[0] - spacing * step, LOG_SCALE_FLOOR),
            np.minimum(log_scales[-1] + spacing * step, top),
        )
        m = simulate(idx, x)
        for n, xn, mn, is_below in zip(idx, x, m, below):
            if is_below:
                if mn >= 0:
                    lo[n], m_lo[n] = xn, mn
                    del pending[n]
                elif xn <= LOG_SCALE_FLOOR:
                    del pending[n]  # no threshold in the float64 range
                else:
                    hi[n], m_hi[n] = xn, mn
            else:
                if mn < 0:
                    hi[n], m_hi[n] = xn, mn
                    del pending[n]
                elif xn >= top:
                    lo[n], m_lo[n] = top, mn  # cannot happen for a monotone margin; keep safe
                    hi[n], m_hi[n] = top, -0.0
                    del pending[n]
                else:
                    lo[n], m_lo[n] = xn, mn
        step *= 2

    # Regula falsi (Illinois) on every bracketed pair at once; one runner call per iteration.
    # A pair leaves the active set once its estimate stops moving (1e-11 relative in ln sigma0,
    # far below the 1e-5 the phase diagram is held to and below the simulation's own accuracy).
    active = np.flatnonzero(np.isfinite(lo) & np.isfinite(hi))
    side = np.zeros(len(pairs))
    previous = np.full(len(pairs), np.inf)
    for _ in range(config.refine_iterations):
        if active.size == 0:
            break
        a, b, fa, fb = lo[active], hi[active], m_lo[active], m_hi[active]
        denom = fa - fb
        with np.errstate(invalid="ignore", divide="ignore"):
            secant = (a * (-fb) + b * fa) / np.where(denom > 0, denom, 1.0)
        x = np.where((denom > 0) & np.isfinite(secant), secant, 0.5 * (a + b))
        x = np.clip(x, np.minimum(a, b), np.maximum(a, b))
        m = simulate(active, x)
        inc = m >= 0
        s = side[active]
        lo[active] = np.where(inc, x, a)
        m_lo[active] = np.where(inc, m, np.where(s < 0, 0.5 * fa, fa))
        hi[active] = np.where(inc, b, x)
        m_hi[active] = np.where(inc, np.where(s > 0, 0.5 * fb, fb), m)
        side[active] = np.where(inc, 1.0, -1.0)
        moved = np.abs(x - previous[active])
        previous[active] = x
        active = active[moved > 1e-11 * np.maximum(1.0, np.abs(x))]

    denom = m_lo - m_hi
    root = np.where(denom > 0, (lo * (-m_hi) + hi * m_lo) / np.where(denom > 0, denom, 1.0), lo)
    root = np.where(np.isfinite(lo) & np.isfinite(hi), root, -np.inf)
    return root.reshape(depths.size, ratios.size), worst.reshape(depths.size, ratios.size)


def theory_thresholds(config: PhaseDiagramConfig) -> np.ndarray:
    """``ln sigma0_th`` of :func:`jaxflow.theory.incremental_threshold` on the (depth, ratio) grid.

    >>> import numpy as np
    >>> from jaxflow.experiments import phase_diagram as pd
    >>> log_th = pd.theory_thresholds(pd.PhaseDiagramConfig(depths=(1.0, 3.0), ratios=(2.0,)))
    >>> np.exp(log_th).round(6).tolist()   # depth 1: never incremental
    [[0.0], [0.014476]]
    """
    d, r = np.meshgrid(np.asarray(config.depths), np.asarray(config.ratios), indexing="ij")
    return np.asarray(
        theory.incremental_threshold(d, r, start=config.start, finish=config.finish, log=True)
    )


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
        ``xarray.Dataset`` with DESIGN.md's schema: dims ``(depth, ratio, scale)``; variables
        ``margin``, ``incremental``, ``status``, ``steps``, ``threshold_measured(depth, ratio)``,
        ``threshold_theory(depth, ratio)``; attributes ``start, finish, solver, rtol, atol,
        dtype``, versions, ``config`` (TOML) and ``created``. With ``config.dtype ==
        "float32"`` also ``recomputed(depth, ratio, scale)``: the lanes computed again in
        float64 because float32 could not resolve them (see :class:`Float32Runner`).

    Example: see the module docstring (a tiny grid, checked against theory). Reload a saved
    result with ``xarray.open_dataset("phase_diagram.nc")``; ``notebooks/02_phase_diagram.ipynb``
    re-slices and replots one.
    """
    config = config or PhaseDiagramConfig()
    if config.dtype == "float32":
        runner = Float32Runner(config, devices=devices)
    else:
        runner = sweep.Runner(point_function(config), chunk_size=config.chunk_size, devices=devices)
    axes = {"depth": config.depths, "ratio": config.ratios, "scale": config.scales}
    ds = sweep.run(
        None,
        axes,
        runner=runner,
        store=store,
        resume=resume,
        seed=config.seed,
        config=config.to_toml(),
        quiet=quiet,
        desc="phase diagram",
        process_index=process_index,
        process_count=process_count,
        size_check=size_check,
    )
    margins = ds["margin"].values
    log_measured, refine_status = measured_thresholds(config, margins, runner)
    log_theory = theory_thresholds(config)
    ds["incremental"] = (ds["margin"] >= 0) & (ds["status"] == status.OK)
    ds["status"] = ds["status"].astype(np.int8)
    ds["steps"] = ds["steps"].astype(np.int32)
    ds["threshold_measured"] = (("depth", "ratio"), np.exp(log_measured))
    ds["threshold_theory"] = (("depth", "ratio"), np.exp(log_theory))
    ds["threshold_measured"].attrs["refine_status"] = int(refine_status.max())
    ds["margin"].attrs.update(long_name="T_j(start) - T_i(finish)", units="flow time (c = 1)")
    ds["scale"].attrs.update(long_name="sigma0 / sigma*_j")
    ds["ratio"].attrs.update(long_name="sigma*_i / sigma*_j")
    ds.attrs.update(
        start=config.start,
        finish=config.finish,
        solver=config.solver,
        rtol=config.rtol,
        atol=config.atol,
        model="toy",
        experiment="phase-diagram",
        # The dtype actually computed in: float64 asked for with JAXFLOW_ENABLE_X64=0 runs float32.
        dtype=config.dtype if jax.config.read("jax_enable_x64") else "float32",
    )
    if config.dtype == "float32":
        ds["recomputed"].attrs["long_name"] = "recomputed in float64 (float32 could not resolve it)"
    # Log-threshold agreement, also where the plain value underflows (kept for reports).
    ds.attrs["max_log_threshold_error"] = float(np.nanmax(threshold_log_error_arrays(log_measured, log_theory), initial=0.0))
    return ds


def threshold_log_error_arrays(log_measured: np.ndarray, log_theory: np.ndarray) -> np.ndarray:
    """``|ln measured - ln theory| / max(1, |ln theory|)``; 0 where both say "no threshold".

    >>> import numpy as np
    >>> from jaxflow.experiments import phase_diagram as pd
    >>> err = pd.threshold_log_error_arrays(np.log([1e-3, 1e-50]), np.log([1e-3, 1e-51]))
    >>> err.round(4).tolist()
    [0.0, 0.0196]
    >>> pd.threshold_log_error_arrays(np.array([-np.inf]), np.array([-np.inf])).tolist()
    [0.0]
    """
    both_none = np.isneginf(log_measured) & np.isneginf(log_theory)
    with np.errstate(invalid="ignore"):
        err = np.abs(log_measured - log_theory) / np.maximum(1.0, np.abs(log_theory))
    return np.where(both_none, 0.0, np.where(np.isnan(err), np.inf, err))


def threshold_log_error(ds: xr.Dataset) -> xr.DataArray:
    """Relative log error of the measured thresholds against theory, per (depth, ratio).

    Example (a dataset with the phase diagram's threshold variables):
        >>> import numpy as np, xarray as xr
        >>> from jaxflow import theory
        >>> from jaxflow.experiments import phase_diagram as pd
        >>> ratios = np.array([1.01, 1.02, 1.05])
        >>> exact = np.asarray(theory.incremental_threshold(4.0, ratios))[None]
        >>> ds = xr.Dataset({"threshold_measured": (("depth", "ratio"), exact * 1.000001),
        ...                  "threshold_theory": (("depth", "ratio"), exact)},
        ...                 coords={"depth": [4.0], "ratio": ratios})
        >>> bool((pd.threshold_log_error(ds) < 1e-6).all())
        True
    """
    with np.errstate(divide="ignore"):
        lm = np.log(ds["threshold_measured"].values)
        lt = np.log(ds["threshold_theory"].values)
    return xr.DataArray(threshold_log_error_arrays(lm, lt), dims=("depth", "ratio"),
                        coords={"depth": ds["depth"], "ratio": ds["ratio"]})


def fitted_slopes(ds: xr.Dataset, max_excess: float = 0.2) -> dict[float, float]:
    """Log-log slope of the measured threshold against ``ratio - 1`` for ``ratio - 1 <= max_excess``.

    Theory: ``N/(N-2)`` as r -> 1 for N > 2 (polynomial); for N = 2 the threshold is
    exponentially small and the slope grows without bound.

    Example (exact thresholds of depth 4 near r = 1):
        >>> import numpy as np, xarray as xr
        >>> from jaxflow import theory
        >>> from jaxflow.experiments import phase_diagram as pd
        >>> ratios = np.array([1.01, 1.02, 1.05])
        >>> exact = np.asarray(theory.incremental_threshold(4.0, ratios))[None]
        >>> ds = xr.Dataset({"threshold_measured": (("depth", "ratio"), exact * 1.000001),
        ...                  "threshold_theory": (("depth", "ratio"), exact)},
        ...                 coords={"depth": [4.0], "ratio": ratios})
        >>> {depth: round(slope, 2) for depth, slope in pd.fitted_slopes(ds).items()}   # -> 2
        {4.0: 1.97}
    """
    slopes = {}
    excess = ds["ratio"].values - 1.0
    for depth in ds["depth"].values:
        th = ds["threshold_measured"].sel(depth=depth).values
        keep = (excess <= max_excess) & (th > 0)
        if keep.sum() >= 2:
            slopes[float(depth)] = float(np.polyfit(np.log(excess[keep]), np.log(th[keep]), 1)[0])
    return slopes


def summary_table(ds: xr.Dataset, ratios: Sequence[float] | None = None) -> str:
    """A short text table of measured against theory thresholds, and the fitted slopes.

    Example:
    >>> import numpy as np, xarray as xr
    >>> from jaxflow import theory
    >>> from jaxflow.experiments import phase_diagram as pd
    >>> ratios = np.array([1.01, 1.02, 1.05])
    >>> exact = np.asarray(theory.incremental_threshold(4.0, ratios))[None]
    >>> ds = xr.Dataset({"threshold_measured": (("depth", "ratio"), exact * 1.000001),
    ...                  "threshold_theory": (("depth", "ratio"), exact)},
    ...                 coords={"depth": [4.0], "ratio": ratios})
    >>> print(pd.summary_table(ds, ratios=[1.01]))
    depth   ratio     measured      theory        log-err   slope(r->1)  theory-slope
    4       1.01      7.6151e-06    7.6151e-06    8.5e-08        1.966        2.000
    worst log error over all (depth, ratio): 1.16e-07  (tolerance 1e-5)
    """
    r_all = ds["ratio"].values
    if ratios is None:
        picks = np.unique(np.linspace(0, r_all.size - 1, min(4, r_all.size)).round().astype(int))
        ratios = r_all[picks]
    err = threshold_log_error(ds)
    slopes = fitted_slopes(ds)
    lines = ["depth   ratio     measured      theory        log-err   slope(r->1)  theory-slope"]
    for depth in ds["depth"].values:
        for k, r in enumerate(ratios):
            m = ds["threshold_measured"].sel(depth=depth, ratio=r).item()
            t = ds["threshold_theory"].sel(depth=depth, ratio=r).item()
            e = err.sel(depth=depth, ratio=r).item()
            slope = slopes.get(float(depth), float("nan")) if k == 0 else float("nan")
            ts = depth / (depth - 2) if (k == 0 and depth > 2 and np.isfinite(depth)) else (1.0 if (k == 0 and np.isinf(depth)) else float("nan"))
            s_txt = f"{slope:10.3f}" if np.isfinite(slope) else " " * 10
            t_txt = f"{ts:10.3f}" if np.isfinite(ts) else " " * 10
            lines.append(f"{depth:<7g} {r:<9.4g} {m:<13.4e} {t:<13.4e} {e:<9.1e} {s_txt}   {t_txt}")
    lines.append(f"worst log error over all (depth, ratio): {float(err.max()):.2e}  (tolerance 1e-5)")
    return "\n".join(lines)


def report(ds: xr.Dataset) -> str:
    """What ``jaxflow phase-diagram`` prints: :func:`summary_table` and the status counts.

    Example: see :func:`summary_table` (a report adds the line of
    :func:`jaxflow.status.report`).
    """
    return summary_table(ds) + "\n" + status.report(ds["status"])


def figures(ds: xr.Dataset) -> dict:
    """``{"phase_diagram": ..., "thresholds": ...}``: :func:`jaxflow.plot.phase_diagram` and
    :func:`jaxflow.plot.thresholds` of a result of :func:`run`."""
    from jaxflow import plot  # plot sits downstream of the experiments (DESIGN.md layering)

    return {"phase_diagram": plot.phase_diagram(ds), "thresholds": plot.thresholds(ds)}
