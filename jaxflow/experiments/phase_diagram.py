"""The main job: the phase diagram of incremental learning over depth x ratio x scale.

For every grid point (depth N, ratio r, scale sigma0) jaxflow simulates the toy model's pair of
coordinates, targets ``sigma*_i = r`` and ``sigma*_j = 1``, from the common start sigma0, with
:func:`jaxflow.engine.flow.solve` on the reduced vector field only (never a closed form, not even to
choose a time grid). It records the (start, finish) margin ``T_j(start) - T_i(finish)``
(docs/science/incremental-learning.md): the pair is incremental iff the margin is >= 0.

Per (depth, ratio) the **measured threshold** is then found from simulations alone: the grid
bracket where the sign flips (extended beyond the grid when the flip lies outside it), refined by
vmapped regula falsi in ``ln sigma0`` on fresh simulations. ``threshold_theory`` comes from
:func:`jaxflow.oracles.theory.incremental_threshold`, and the two are compared in logs.

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

import concurrent.futures
import dataclasses
import math
import os
from collections.abc import Sequence
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from jaxflow import _x64, sweep
from jaxflow._table import table
from jaxflow.engine import flow, regula_falsi, status
from jaxflow.experiments import _layout
from jaxflow.experiments._solvers import SOLVERS, check_solver
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
from jaxflow.models import toy
from jaxflow.oracles import incremental, theory

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
    "depth2_constant",
    "theory_slope",
    "theory_thresholds",
    "threshold_log_error",
    "threshold_log_error_arrays",
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
# Smallest ln sigma0 the bracket search tries. The state is ln sigma and the clock runs in the
# plateau's own unit, so nothing underflows there; a threshold below it (only 1 < N < 2, close
# to where thresholds vanish, and N = 1, which never learns incrementally) is "not found".
LOG_SCALE_FLOOR = -1e5


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
    chunk_size: int = option(2048,
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


def point_function(config: PhaseDiagramConfig, *, with_time: bool = False):
    """The per-point function of the sweep: simulate one (depth, ratio, scale) pair.

    Returns ``margin_in_unit = (T_j(start) - T_i(finish)) / U`` (:func:`jaxflow.oracles.incremental.margin`)
    and ``log_time_unit = ln U``, the worse status of the two coordinates and their total solver
    steps (accepted + rejected); with ``with_time``, also ``time = max(|T_j(start)|,
    |T_i(finish)|) / U``, the size the margin's rounding scales with.

    The toy model's coordinates are independent, so the pair is one
    :class:`jaxflow.engine.coordinatewise.Coordinatewise` flow: two scalar flows side by side, each on
    its own clock, each stopping as soon as it has the learning time the margin needs. The start
    is ``ln sigma0`` (no underflow at e^-10000) and the flow runs in the plateau's own time unit
    ``U = sigma0^-(1 - 2/N)`` (:func:`jaxflow.models.toy.log_time_unit`), so margins stay finite
    and keep their sign where the real times (up to e^3333) overflow float64.

    Example (the function :func:`run` hands to :mod:`jaxflow.sweep`, which vmaps and compiles
    it; here called once, eagerly: at depth 3, ratio 2, sigma0 = 1e-3 the pair is incremental,
    as its theory threshold 0.0145 says):
        >>> import jax.numpy as jnp
        >>> from jaxflow.experiments import phase_diagram as pd
        >>> point = pd.point_function(pd.PhaseDiagramConfig())
        >>> out = point({"depth": jnp.array(3.0), "ratio": jnp.array(2.0),
        ...              "log_scale": jnp.log(1e-3)})
        >>> bool(out["margin_in_unit"] > 0), int(out["status"])
        (True, 0)
    """
    solver = SOLVERS[config.solver]()
    # Coordinate i (target ratio) needs its finish time, coordinate j (target 1) its start time.
    required = jnp.array([[False, True], [True, False]])

    def point(p):
        targets = jnp.stack([p["ratio"], jnp.ones_like(p["ratio"])])
        unit = toy.log_time_unit(p["depth"], p["log_scale"])
        args = toy.ToyArgs(depth=p["depth"], targets=targets, log_time_unit=unit)
        traj = flow.solve(
            toy.reduced_vector_field,
            toy.reduced_init(p["log_scale"], 2, log=True),
            args,
            modes=toy.reduced_modes,
            targets=targets,
            fractions=(config.start, config.finish),
            required=required,
            solver=solver,
            rtol=config.rtol,
            atol=config.atol,
            max_steps=config.max_steps,
            time=toy.reduced_speed,
        )
        times = traj.learning_times
        out = {
            "margin_in_unit": incremental.margin(times[0, 1], times[1, 0]),
            "log_time_unit": unit,
            "status": traj.status,
            "steps": traj.steps + traj.rejected,
        }
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
        >>> pts = {"log_scale": np.log([1e-3, 1e-60, 1e-3]), "ratio": np.array([2.0, 2.0, 2.0])}
        >>> fast = {"margin_in_unit": np.array([5.0, 5.0, 1e-5]), "time": np.full(3, 10.0),
        ...         "status": np.zeros(3, dtype=np.int8)}
        >>> needs_float64(pts, fast).tolist()
        [False, True, True]
    """
    log_scale, ratio = np.asarray(points["log_scale"]), np.asarray(points["ratio"])
    margin = np.asarray(fast["margin_in_unit"], dtype=float)
    time = np.asarray(fast["time"], dtype=float)
    with np.errstate(invalid="ignore"):
        resolved = np.abs(margin) > FLOAT32_RESOLUTION * time  # False for NaN
    return (
        (log_scale < math.log(np.finfo(np.float32).tiny))
        | (np.exp(log_scale).astype(np.float32) >= 1)
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
        example = {k: jax.ShapeDtypeStruct((), jnp.float64) for k in ("depth", "ratio", "log_scale")}
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


def _bracket(incremental_row: np.ndarray):
    """Grid indices ``(k, k + 1)`` around the threshold of one (depth, ratio) row.

    ``incremental_row`` is ordered by ascending ``ln sigma0``. Returns ``(k, k + 1, "inside")``
    with ``k`` the largest incremental index whose neighbour above is not; ``(None, 0,
    "below")`` when no grid point is incremental (search under the grid); ``(n - 1, None,
    "above")`` when all are (search over it).

    >>> from jaxflow.experiments.phase_diagram import _bracket
    >>> _bracket(np.array([True, True, False])), _bracket(np.array([False])), _bracket(np.array([True]))
    ((1, 2, 'inside'), (None, 0, 'below'), (0, None, 'above'))
    """
    inc = np.asarray(incremental_row, dtype=bool)
    if not inc.any():
        return None, 0, "below"
    if inc.all():
        return inc.size - 1, None, "above"
    k = np.flatnonzero(inc[:-1] & ~inc[1:])
    k = int(k[-1]) if k.size else int(np.flatnonzero(inc)[-1])
    return k, k + 1, "inside"


def measured_thresholds(
    config: PhaseDiagramConfig,
    margins: np.ndarray,
    runner: sweep.AbstractRunner,
) -> tuple[np.ndarray, np.ndarray]:
    """Thresholds from simulations: grid bracket, extension beyond the grid, regula falsi.

    The margin of a pair falls as ``ln sigma0`` grows (a larger start learns less
    incrementally); its sign change is bracketed on the grid (or, outside it, by steps that
    double, down to ``LOG_SCALE_FLOOR`` and up to ``ln start``), then located by Illinois regula
    falsi (:mod:`jaxflow.engine.regula_falsi`) in ``ln sigma0``, every pair at once, one runner call per
    iteration, until the estimate stops moving (1e-11 relative).

    Args:
        margins: ``(depth, ratio, log_scale)`` simulated margins (any positive multiple per
            point works, e.g. in the plateau's unit) on the grid.
        runner: the sweep's compiled runner (the refinement reuses its program).

    Returns:
        ``(log_threshold, status)`` per (depth, ratio). Where no sign change exists above
        ``LOG_SCALE_FLOOR`` the threshold is NaN and the status
        :data:`jaxflow.engine.status.NOT_FOUND`; otherwise the worst status of the refinement's lanes,
        and :data:`jaxflow.engine.status.MAX_STEPS` where the estimate still moved when the
        ``refine_iterations`` ran out (its value is then not to be trusted).

    Example (with a stand-in margin that changes sign at sigma0 = 0.01; :func:`run` passes the
    simulation's runner):
        >>> import jax.numpy as jnp, numpy as np
        >>> from jaxflow import sweep
        >>> from jaxflow.experiments import phase_diagram as pd
        >>> cfg = pd.PhaseDiagramConfig(depths=(3.0,), ratios=(2.0,), scales=(1e-4, 1e-3, 1e-1))
        >>> def stand_in(p):
        ...     return {"margin_in_unit": jnp.log(0.01) - p["log_scale"],
        ...             "status": jnp.zeros((), jnp.int8)}
        >>> runner = sweep.Runner(stand_in, chunk_size=8, batch=8)
        >>> margins = (np.log(0.01) - np.array(cfg.log_scales))[None, None]
        >>> log_threshold, worst = pd.measured_thresholds(cfg, margins, runner)
        >>> np.exp(log_threshold).round(12).tolist(), worst.tolist()
        ([[0.01]], [[0]])
    """
    depths = np.asarray(config.depths)
    ratios = np.asarray(config.ratios)
    log_scales = np.asarray(config.log_scales, dtype=float)
    order = np.argsort(log_scales)
    log_scales, margins = log_scales[order], margins[..., order]
    spacing = float(np.max(np.diff(log_scales))) if log_scales.size > 1 else 1.0
    top = math.log(config.start)  # margin <= 0 there: the smaller value already sits at start
    # Above ln(start) the margin is <= 0, and exactly 0 (which reads as incremental) where
    # sigma0 >= finish * r puts both times at 0: such grid points never end a bracket.
    keep = log_scales <= top
    log_scales, margins = log_scales[keep], margins[..., keep]

    pairs = [(i, j) for i in range(depths.size) for j in range(ratios.size)]
    # g = -margin is increasing in ln sigma0: lo is the incremental end (g <= 0), hi the other.
    lo, hi, g_lo, g_hi = (np.full(len(pairs), np.nan) for _ in range(4))
    worst = np.zeros(len(pairs), dtype=np.int8)
    pending = {}

    def simulate(index, x):
        idx = np.asarray(index, dtype=int)
        pts = {
            "depth": depths[[pairs[n][0] for n in idx]],
            "ratio": ratios[[pairs[n][1] for n in idx]],
            "log_scale": np.asarray(x, dtype=float),
        }
        out = runner(pts)
        worst[idx] = np.maximum(worst[idx], out["status"])
        return -np.asarray(out["margin_in_unit"], dtype=float)

    if log_scales.size == 0:  # the whole grid above ln(start): search down from ln(start)
        log_scales = np.array([top])
        g_top = simulate(np.arange(len(pairs)), np.full(len(pairs), top))
        margins = -g_top.reshape(depths.size, ratios.size, 1)
    for n, (i, j) in enumerate(pairs):
        row = margins[i, j]
        a, b, kind = _bracket(row >= 0)
        if a is not None:
            lo[n], g_lo[n] = log_scales[a], -row[a]
        if b is not None:
            hi[n], g_hi[n] = log_scales[b], -row[b]
        if kind != "inside":
            pending[n] = kind

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
        g = simulate(idx, x)
        for n, xn, gn, is_below in zip(idx, x, g, below):
            if is_below and gn <= 0:
                lo[n], g_lo[n] = xn, gn
                del pending[n]
            elif is_below:
                hi[n], g_hi[n] = xn, gn
                if xn <= LOG_SCALE_FLOOR:
                    del pending[n]  # no threshold above the floor: not found
            elif gn > 0 or xn >= top:
                hi[n], g_hi[n] = xn, max(gn, 0.0)
                del pending[n]
            else:
                lo[n], g_lo[n] = xn, gn
        step *= 2

    found = np.isfinite(lo) & np.isfinite(hi)
    active = np.flatnonzero(found)
    side = np.zeros(len(pairs), dtype=int)
    previous = np.full(len(pairs), np.inf)
    # A bracket with one end's |g| far below the other's (a grid from e^-5000 to e^-3: g ~ -1e-3
    # at one end, +0.7 at the other) makes regula falsi creep along the small end while the
    # Illinois halvings catch up (60 iterations for r = 1.001, depth inf). So a step that fails
    # to halve the bracket is followed by a bisection (Dekker's safeguard).
    width = np.abs(hi - lo)
    bisect = np.zeros(len(pairs), dtype=bool)
    for _ in range(config.refine_iterations):
        if active.size == 0:
            break
        a, b, ga, gb, sd = lo[active], hi[active], g_lo[active], g_hi[active], side[active]
        x = np.asarray(regula_falsi.secant_point(a, b, ga, gb))
        x = np.where(bisect[active], 0.5 * (a + b), x)
        g = simulate(active, x)
        a, b, ga, gb, sd = (np.asarray(v) for v in regula_falsi.illinois_step(a, b, ga, gb, sd, x, g))
        lo[active], hi[active], g_lo[active], g_hi[active], side[active] = a, b, ga, gb, sd
        bisect[active] = (np.abs(b - a) > 0.5 * width[active]) & (np.abs(b - a) > 1.0)
        width[active] = np.abs(b - a)
        moved = np.abs(x - previous[active])
        previous[active] = x
        active = active[moved > 1e-11 * np.maximum(1.0, np.abs(x))]

    root = np.asarray(regula_falsi.secant_point(lo, hi, g_lo, g_hi))
    root = np.where(found, root, np.nan)
    # An estimate still moving when the iterations run out is not a threshold: say so.
    worst[active] = np.maximum(worst[active], status.MAX_STEPS)
    worst = np.where(found, worst, np.int8(status.NOT_FOUND)).astype(np.int8)
    return root.reshape(depths.size, ratios.size), worst.reshape(depths.size, ratios.size)


def theory_thresholds(config: PhaseDiagramConfig) -> np.ndarray:
    """``ln sigma0_th`` of :func:`jaxflow.oracles.theory.incremental_threshold` on the (depth, ratio) grid.

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


# Outputs per point (margin_in_unit, log_time_unit: float64; status, steps: 4 bytes at most),
# the variables derived from them (margin, incremental, the grid copies of the labelling), and
# per (depth, ratio) row the exact threshold's and the refinement's working arrays.
BYTES_PER_POINT = 24
DERIVED_BYTES_PER_POINT = 40
BYTES_PER_ROW = 4096
SECONDS_PER_POINT = 2e-5  # measured: 12-20 us per trajectory per CPU device


def request_estimate(counts, *, chunk_size: int, store: bool):
    """The cost of a phase diagram of ``counts = (depths, ratios, scales)`` values, from the
    counts alone (:func:`jaxflow.sweep.estimate.request`; nothing is built).

    >>> from jaxflow.experiments import phase_diagram as pd
    >>> e = pd.request_estimate((1000, 1000, 1000), chunk_size=2048, store=True)
    >>> e.points, e.memory > 10**11
    (1000000000, True)
    """
    from jaxflow.sweep import estimate

    n_depths, n_ratios, _ = (int(c) for c in counts)
    e = estimate.request(counts, bytes_per_point=BYTES_PER_POINT, chunk_size=chunk_size,
                         store=store, extra_per_point=DERIVED_BYTES_PER_POINT,
                         seconds_per_point=SECONDS_PER_POINT)
    return dataclasses.replace(e, memory=e.memory + n_depths * n_ratios * BYTES_PER_ROW)


def check_size(config: PhaseDiagramConfig, store=None):
    """The :class:`~jaxflow.sweep.estimate.Estimate` of ``config``'s grid (memory, disk, time),
    from its axis counts alone; a one-line SweepError when it does not fit the machine (the
    disk is the store's, a new ``store`` counted in). ``run`` and ``jaxflow phase-diagram``
    call it before any runner, thread, folder or file exists.

    >>> from jaxflow.experiments import phase_diagram as pd
    >>> pd.check_size(pd.PhaseDiagramConfig.smoke()).points
    52
    """
    from jaxflow.sweep import resources

    counts = (len(config.depths), len(config.ratios), len(config.log_scales))
    new_store = store is not None and not os.path.exists(store)
    e = request_estimate(counts, chunk_size=config.chunk_size, store=new_store)
    try:
        resources.check(memory=e.memory, disk=e.disk, where=store)
    except resources.SizeError as err:
        raise sweep.SweepError(f"{e.points} points ({counts[0]} depths x {counts[1]} ratios x "
                               f"{counts[2]} scales) in chunks of {config.chunk_size}: "
                               f"{err}") from None
    return e


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
        margin in the plateau's unit, always finite), ``incremental``, ``status``, ``steps``;
        per (depth, ratio) ``log_threshold_measured`` (NaN where not found),
        ``log_threshold_theory`` (-inf where none), ``threshold_status`` and their plain values
        ``threshold_measured``/``threshold_theory``; attributes ``start, finish, solver, rtol,
        atol, dtype``, versions, ``config`` (TOML) and ``created``. With ``config.dtype ==
        "float32"`` also ``recomputed(depth, ratio, scale)``: the lanes computed again in
        float64 because float32 could not resolve them (see :class:`Float32Runner`).

    Example: see the module docstring (a tiny grid, checked against theory). Reload a saved
    result with ``xarray.open_dataset("phase_diagram.nc")``; ``notebooks/02_phase_diagram.ipynb``
    re-slices and replots one.
    """
    config = config or PhaseDiagramConfig()
    if size_check:  # before any runner, thread or file exists
        check_size(config, store)
    if config.dtype == "float32":
        runner = Float32Runner(config, devices=devices)
    else:
        runner = sweep.Runner(point_function(config), chunk_size=config.chunk_size, devices=devices)
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
        **sweep_options,
    )
    log_measured, threshold_status = measured_thresholds(config, ds["margin_in_unit"].values, runner)
    log_theory = theory_future.result()
    return _label(ds, config, log_measured, threshold_status, log_theory)


def _label(ds, config, log_measured, threshold_status, log_theory) -> xr.Dataset:
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
    ds["threshold_status"] = (dims, threshold_status.astype(np.int8))
    with np.errstate(over="ignore"):
        ds["threshold_measured"] = (dims, np.exp(log_measured))
        ds["threshold_theory"] = (dims, np.exp(log_theory))
    labels = {
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
        "threshold_measured": ("sigma0_th from simulations", "1"),
        "threshold_theory": ("sigma0_th of jaxflow.oracles.theory", "1"),
        "status": ("status of the pair's flow (jaxflow.engine.status code)", None),
        "threshold_status": ("status of the threshold search (jaxflow.engine.status code)", None),
        "recomputed": ("recomputed in float64 (float32 could not resolve it)", "1"),
    }
    _layout.label(ds, config, labels)
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
    )
    ds.attrs["max_log_threshold_error"] = float(
        np.max(threshold_log_error_arrays(log_measured, log_theory), initial=0.0)
    )
    return ds


def threshold_log_error_arrays(log_measured: np.ndarray, log_theory: np.ndarray) -> np.ndarray:
    """``|ln measured - ln theory| / max(1, |ln theory|)``.

    0 where both say "no threshold" (measured NaN, not found; theory -inf, none); ``inf`` where
    only one does, so a threshold that was not found never passes for a match.

    >>> import numpy as np
    >>> from jaxflow.experiments import phase_diagram as pd
    >>> err = pd.threshold_log_error_arrays(np.log([1e-3, 1e-50]), np.log([1e-3, 1e-51]))
    >>> err.round(4).tolist()
    [0.0, 0.0196]
    >>> pd.threshold_log_error_arrays(np.array([np.nan, np.nan]), np.array([-np.inf, -5.0])).tolist()
    [0.0, inf]
    """
    log_measured = np.asarray(log_measured, dtype=float)
    log_theory = np.asarray(log_theory, dtype=float)
    both_none = np.isnan(log_measured) & np.isneginf(log_theory)
    with np.errstate(invalid="ignore"):
        err = np.abs(log_measured - log_theory) / np.maximum(1.0, np.abs(log_theory))
    return np.where(both_none, 0.0, np.where(np.isfinite(err), err, np.inf))


def threshold_log_error(ds: xr.Dataset) -> xr.DataArray:
    """Relative log error of the measured thresholds against theory, per (depth, ratio).

    Example (a dataset with the phase diagram's threshold variables):
        >>> import numpy as np, xarray as xr
        >>> from jaxflow.oracles import theory
        >>> from jaxflow.experiments import phase_diagram as pd
        >>> ratios = np.array([1.01, 1.02, 1.05])
        >>> exact = np.asarray(theory.incremental_threshold(4.0, ratios, log=True))[None]
        >>> ds = xr.Dataset({"log_threshold_measured": (("depth", "ratio"), exact + 1e-6),
        ...                  "log_threshold_theory": (("depth", "ratio"), exact)},
        ...                 coords={"depth": [4.0], "ratio": ratios})
        >>> bool((pd.threshold_log_error(ds) < 1e-6).all())
        True
    """
    err = threshold_log_error_arrays(ds["log_threshold_measured"].values,
                                     ds["log_threshold_theory"].values)
    return xr.DataArray(err, dims=("depth", "ratio"),
                        coords={"depth": ds["depth"], "ratio": ds["ratio"]})


SLOPE_EXCESS = 1e-2  # fits use r - 1 <= 1e-2, where the asymptotic laws hold to about 1%


def fitted_slopes(ds: xr.Dataset, max_excess: float = SLOPE_EXCESS) -> dict[float, float]:
    """Log-log slope of the measured ``sigma0_th`` against ``r - 1`` over ``r - 1 <= max_excess``.

    Theory: ``N/(N-2)`` as r -> 1 for N > 2 (polynomially small thresholds), 1 for N = inf.
    Only depths > 2 are fitted: for N = 2 the threshold is exponentially small and the slope
    grows without bound (see :func:`depth2_constant`).

    Example (exact thresholds of depth 4 near r = 1):
        >>> import numpy as np, xarray as xr
        >>> from jaxflow.oracles import theory
        >>> from jaxflow.experiments import phase_diagram as pd
        >>> ratios = 1 + np.geomspace(1e-3, 1e-2, 4)
        >>> exact = np.asarray(theory.incremental_threshold(4.0, ratios, log=True))[None]
        >>> ds = xr.Dataset({"log_threshold_measured": (("depth", "ratio"), exact)},
        ...                 coords={"depth": [4.0], "ratio": ratios})
        >>> {depth: round(slope, 3) for depth, slope in pd.fitted_slopes(ds).items()}   # -> 2
        {4.0: 1.995}
    """
    slopes = {}
    for depth in ds["depth"].values:
        if not depth > 2:
            continue
        excess, log_th = _near_one(ds, depth, max_excess)
        if excess.size >= 2:
            slopes[float(depth)] = float(np.polyfit(np.log(excess), log_th, 1)[0])
    return slopes


def _near_one(ds: xr.Dataset, depth: float, max_excess: float) -> tuple[np.ndarray, np.ndarray]:
    """``(r - 1, ln sigma0_th)`` of ``depth``'s measured thresholds with ``r - 1 <= max_excess``
    (grid ratios up to rounding), where one was found: the window the asymptotic fits use."""
    excess = ds["ratio"].values - 1.0
    log_th = ds["log_threshold_measured"].sel(depth=depth).values
    keep = (excess <= max_excess * (1 + 1e-9)) & np.isfinite(log_th)
    return excess[keep], log_th[keep]


def theory_slope(depth: float) -> float:
    """``N / (N - 2)``, the limiting log-log slope of the threshold (1 for N = inf).

    >>> from jaxflow.experiments.phase_diagram import theory_slope
    >>> theory_slope(3.0), theory_slope(float("inf"))
    (3.0, 1.0)
    """
    return 1.0 if math.isinf(depth) else depth / (depth - 2.0)


def depth2_constant(ds: xr.Dataset, max_excess: float = SLOPE_EXCESS) -> tuple[float, float]:
    """Depth 2: the fitted ``C`` of ``ln(1/sigma0_th) ~ C / (r - 1) + D`` and its exact limit.

    As r -> 1, ``(r - 1) ln sigma0_th -> logit(start) - logit(finish)``, so ``C = logit(finish)
    - logit(start)`` (4.394 for start 0.1, finish 0.9): the threshold is exponentially small
    in ``1/(r - 1)``. Fitted by least squares in ``1/(r - 1)`` over ``r - 1 <= max_excess``;
    ``(nan, C)`` when depth 2 is not in the dataset or has fewer than two thresholds there.

    Example (exact thresholds):
        >>> import numpy as np, xarray as xr
        >>> from jaxflow.oracles import theory
        >>> from jaxflow.experiments import phase_diagram as pd
        >>> ratios = 1 + np.geomspace(1e-3, 1e-2, 6)
        >>> exact = np.asarray(theory.incremental_threshold(2.0, ratios, log=True))[None]
        >>> ds = xr.Dataset({"log_threshold_measured": (("depth", "ratio"), exact)},
        ...                 coords={"depth": [2.0], "ratio": ratios}, attrs={"start": 0.1, "finish": 0.9})
        >>> [round(c, 3) for c in pd.depth2_constant(ds)]
        [4.394, 4.394]
    """
    start, finish = ds.attrs.get("start", 0.1), ds.attrs.get("finish", 0.9)
    logit = lambda u: math.log(u / (1.0 - u))
    exact = logit(finish) - logit(start)
    if 2.0 not in ds["depth"].values or "log_threshold_measured" not in ds:
        return math.nan, exact
    excess, log_th = _near_one(ds, 2.0, max_excess)
    if excess.size < 2:
        return math.nan, exact
    c, _ = np.polyfit(1.0 / excess, -log_th, 1)
    return float(c), exact


# The r - 1 the printed table shows (the nearest grid ratios).
TABLE_EXCESSES = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


def _threshold_text(log_value: float, code: int, floor: float) -> str:
    if code == status.NOT_FOUND or np.isnan(log_value):
        return f"not found (below e^{floor:g})"
    if np.isneginf(log_value):
        return "none"
    return f"e^{log_value:.6g}"


def summary_table(ds: xr.Dataset, excesses: Sequence[float] | None = None) -> str:
    """Measured against theory ``ln sigma0_th``, the fitted slopes and depth 2's constant.

    Rows: every depth at the grid ratios nearest to ``r - 1`` in ``excesses`` (default
    1e-3, 1e-2, 1e-1, 1, 10). Thresholds print as ``e^x`` (x = ln sigma0_th); "none" where
    theory has no threshold; "not found (below e^X)" where the search found none; a
    mismatch is never printed as a match (its log error is ``inf``).

    Example:
    >>> import numpy as np, xarray as xr
    >>> from jaxflow.oracles import theory
    >>> from jaxflow.experiments import phase_diagram as pd
    >>> ratios = 1 + np.geomspace(1e-3, 1e-2, 3)
    >>> exact = np.asarray(theory.incremental_threshold(4.0, ratios, log=True))[None]
    >>> ds = xr.Dataset({"log_threshold_measured": (("depth", "ratio"), exact + 1e-7),
    ...                  "log_threshold_theory": (("depth", "ratio"), exact),
    ...                  "threshold_status": (("depth", "ratio"), np.zeros((1, 3), np.int8))},
    ...                 coords={"depth": [4.0], "ratio": ratios})
    >>> print(pd.summary_table(ds, excesses=[1e-3]))
    depth  r - 1  measured ln sigma0_th  theory ln sigma0_th  log error
        4  0.001  e^-16.3783             e^-16.3783             6.1e-09
    legend: none = theory has no threshold; not found = the search found none above its floor;
            log error inf = measured and theory disagree
    <BLANKLINE>
    slope of ln sigma0_th against ln(r - 1) for r - 1 <= 0.01 (theory: N/(N-2) as r -> 1)
    depth  fitted  N/(N-2)  rel. diff
        4   1.995    2.000    2.7e-03
    <BLANKLINE>
    worst log error over all (depth, ratio): 8.49e-09  (tolerance 1e-5); not found: 0
    """
    excess_all = ds["ratio"].values - 1.0
    if excesses is None:
        excesses = TABLE_EXCESSES
    picks = sorted({int(np.argmin(np.abs(np.log(excess_all / x)))) for x in excesses})
    err = threshold_log_error(ds)
    floor = ds.attrs.get("log_scale_floor", LOG_SCALE_FLOOR)
    codes = ds["threshold_status"].values
    rows = []
    for i, depth in enumerate(ds["depth"].values):
        for k in picks:
            m = _threshold_text(ds["log_threshold_measured"].values[i, k], codes[i, k], floor)
            t = _threshold_text(ds["log_threshold_theory"].values[i, k], status.OK, floor)
            e = err.values[i, k]
            e_txt = "match (no threshold)" if (e == 0 and t == "none") else f"{e:.1e}"
            rows.append([f"{depth:g}", f"{excess_all[k]:.4g}", m, t, e_txt])
    lines = [table(["depth", "r - 1", "measured ln sigma0_th", "theory ln sigma0_th", "log error"],
                   rows, legend=["none = theory has no threshold",
                                 "not found = the search found none above its floor",
                                 "log error inf = measured and theory disagree"])]
    slopes = fitted_slopes(ds)
    if slopes:
        lines += ["", f"slope of ln sigma0_th against ln(r - 1) for r - 1 <= {SLOPE_EXCESS:g} "
                  "(theory: N/(N-2) as r -> 1)"]
        lines.append(table(["depth", "fitted", "N/(N-2)", "rel. diff"], [
            [f"{depth:g}", f"{slope:.3f}", f"{theory_slope(depth):.3f}",
             f"{abs(slope / theory_slope(depth) - 1):.1e}"] for depth, slope in slopes.items()]))
    c_fit, c_exact = depth2_constant(ds)
    if np.isfinite(c_fit):
        lines += ["", f"depth 2: ln(1/sigma0_th) ~ C/(r - 1) for r - 1 <= {SLOPE_EXCESS:g}: fitted "
                  f"C = {c_fit:.4f}, exact limit logit(finish) - logit(start) = {c_exact:.4f} "
                  f"(rel. diff {abs(c_fit / c_exact - 1):.1e})"]
    not_found = int(np.sum((codes == status.NOT_FOUND) & ~np.isneginf(ds["log_threshold_theory"].values)))
    lines += ["", f"worst log error over all (depth, ratio): {float(err.max()):.2e}  "
              f"(tolerance 1e-5); not found: {not_found}"]
    return "\n".join(lines)


def report(ds: xr.Dataset) -> str:
    """What ``jaxflow phase-diagram`` prints: :func:`summary_table` and the status counts.

    Example: see :func:`summary_table` (a report adds the line of
    :func:`jaxflow.engine.status.report`).
    """
    return summary_table(ds) + "\n" + status.report(ds["status"])


def figures(ds: xr.Dataset) -> dict:
    """``{"phase_diagram": ..., "thresholds": ...}``: :func:`jaxflow.plot.phase_diagram` and
    :func:`jaxflow.plot.thresholds` of a result of :func:`run`."""
    from jaxflow import plot  # the layer above: imported on use, as is its matplotlib

    return {"phase_diagram": plot.phase_diagram(ds), "thresholds": plot.thresholds(ds)}
