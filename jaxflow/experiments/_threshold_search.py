"""The phase diagram's threshold search: where a pair's margin changes sign in ``ln sigma0``.

From simulations alone: per (depth, ratio) the grid brackets the sign change of the simulated
margin (:func:`_bracket`); where it lies beyond the grid, the bracket is extended by steps that
double, down to :data:`LOG_SCALE_FLOOR` and up to ``ln start``; then Illinois regula falsi
(:mod:`jaxflow.engine.regula_falsi`) locates it in ``ln sigma0`` on fresh simulations, every
pair at once, one runner call per iteration. :func:`theory_thresholds` gives the theory's
thresholds and :func:`threshold_log_error` the gap. The public names are those of
:mod:`jaxflow.experiments.phase_diagram`.
"""

import dataclasses
import math
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from jaxflow import sweep
from jaxflow.engine import regula_falsi, status
from jaxflow.oracles import theory

if TYPE_CHECKING:  # the config's module imports this one
    from jaxflow.experiments.phase_diagram import PhaseDiagramConfig

__all__ = ["LOG_SCALE_FLOOR", "measured_thresholds", "theory_thresholds", "threshold_log_error",
           "threshold_log_error_arrays"]


# Smallest ln sigma0 the bracket search tries. The state is ln sigma and the clock runs in the
# plateau's own unit, so nothing underflows there; a threshold below it (only 1 < N < 2, close
# to where thresholds vanish, and N = 1, which never learns incrementally) is "not found".
LOG_SCALE_FLOOR = -1e5


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
    config: "PhaseDiagramConfig",
    margins: np.ndarray,
    runner: sweep.AbstractRunner,
    codes: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Thresholds from simulations: grid bracket, extension beyond the grid, regula falsi.

    The margin of a pair falls as ``ln sigma0`` grows (a larger start learns less
    incrementally); its sign change is bracketed on the grid (or, outside it, by steps that
    double, down to ``LOG_SCALE_FLOOR`` and up to ``ln start``), then located by Illinois regula
    falsi (:mod:`jaxflow.engine.regula_falsi`) in ``ln sigma0``, every pair at once, one runner call per
    iteration, until the estimate stops moving (1e-11 relative). Only lanes that finished
    ``ok`` decide a bracket: a margin cut short by the step budget has no sign to trust.

    Args:
        margins: ``(depth, ratio, log_scale)`` simulated margins (any positive multiple per
            point works, e.g. in the plateau's unit) on the grid.
        runner: the sweep's compiled runner (the refinement reuses its program).
        codes: the grid lanes' status codes, like ``margins`` (default: all ok).

    Returns:
        ``(log_threshold, status)`` per (depth, ratio). Where no sign change exists above
        ``LOG_SCALE_FLOOR`` and every lane of the pair (grid and search) finished ok, the
        threshold is NaN and the status :data:`jaxflow.engine.status.NOT_FOUND`; where lanes
        that did not finish leave it open, NaN and their worst code (``max_steps``,
        ``unfinished``, ...). A found threshold has the worst status of its search's lanes
        (a lane that did not finish stops its pair's search there), and
        :data:`jaxflow.engine.status.MAX_STEPS` where the estimate still moved when the
        ``refine_iterations`` ran out (its value is then not to be trusted).

    Example (with a stand-in margin that changes sign at sigma0 = 0.01;
    :func:`~jaxflow.experiments.phase_diagram.run` passes the simulation's runner):
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
    if codes is None:
        codes = np.zeros(np.shape(margins), dtype=np.int8)
    log_scales, margins, codes, spacing, top = _grid_below_start(config, margins, codes)
    search = _Search.start(config, runner)
    if log_scales.size == 0:  # the whole grid above ln(start): search down from ln(start)
        log_scales = np.array([top])
        g_top, ok = search.simulate(np.arange(search.size), np.full(search.size, top))
        shape = (search.depths.size, search.ratios.size, 1)
        margins = -g_top.reshape(shape)
        codes = np.where(ok, status.OK, search.worst).astype(np.int8).reshape(shape)
    pending = search.bracket_on_grid(log_scales, margins, codes)
    search.extend(pending, log_scales, spacing, top)
    return search.refine(config.refine_iterations)


def _grid_below_start(config, margins, codes):
    """The grid in ascending ``ln sigma0`` up to ``ln start``, its margins and status codes,
    the grid's widest spacing (the first step beyond it) and ``ln start``."""
    log_scales = np.asarray(config.log_scales, dtype=float)
    order = np.argsort(log_scales)
    log_scales, margins, codes = log_scales[order], margins[..., order], codes[..., order]
    spacing = float(np.max(np.diff(log_scales))) if log_scales.size > 1 else 1.0
    top = math.log(config.start)  # margin <= 0 there: the smaller value already sits at start
    # Above ln(start) the margin is <= 0, and exactly 0 (which reads as incremental) where
    # sigma0 >= finish * r puts both times at 0: such grid points never end a bracket.
    keep = log_scales <= top
    return log_scales[keep], margins[..., keep], codes[..., keep], spacing, top


@dataclasses.dataclass
class _Search:
    """The brackets of every (depth, ratio) pair, searched together.

    ``g = -margin`` is increasing in ``ln sigma0``: ``lo`` is the incremental end (``g <= 0``),
    ``hi`` the other, ``g_lo``/``g_hi`` the values there (NaN: no end yet); ``worst`` is the
    worst status of the pair's search simulations so far, ``grid_worst`` that of its grid lanes.
    """

    depths: np.ndarray
    ratios: np.ndarray
    runner: sweep.AbstractRunner
    pairs: list
    lo: np.ndarray
    hi: np.ndarray
    g_lo: np.ndarray
    g_hi: np.ndarray
    worst: np.ndarray
    grid_worst: np.ndarray

    @classmethod
    def start(cls, config, runner) -> "_Search":
        depths, ratios = np.asarray(config.depths), np.asarray(config.ratios)
        pairs = [(i, j) for i in range(depths.size) for j in range(ratios.size)]
        lo, hi, g_lo, g_hi = (np.full(len(pairs), np.nan) for _ in range(4))
        return cls(depths, ratios, runner, pairs, lo, hi, g_lo, g_hi,
                   np.zeros(len(pairs), dtype=np.int8), np.zeros(len(pairs), dtype=np.int8))

    @property
    def size(self) -> int:
        return len(self.pairs)

    def simulate(self, index, x) -> tuple[np.ndarray, np.ndarray]:
        """``g`` of the pairs ``index`` at ``ln sigma0 = x`` and whether each lane finished
        ok, one runner call (the codes go into ``worst``)."""
        idx = np.asarray(index, dtype=int)
        pts = {
            "depth": self.depths[[self.pairs[n][0] for n in idx]],
            "ratio": self.ratios[[self.pairs[n][1] for n in idx]],
            "log_scale": np.asarray(x, dtype=float),
        }
        out = self.runner(pts)
        codes = np.asarray(out["status"])
        self.worst[idx] = np.maximum(self.worst[idx], codes)
        return -np.asarray(out["margin_in_unit"], dtype=float), codes == status.OK

    def bracket_on_grid(self, log_scales, margins, codes) -> dict:
        """Each pair's bracket on the grid's ok lanes; returns ``{pair: "below" or "above"}``
        for those whose sign change lies beyond them (a pair without an ok lane: no search)."""
        pending = {}
        for n, (i, j) in enumerate(self.pairs):
            ok = codes[i, j] == status.OK
            self.grid_worst[n] = status.worst(codes[i, j])
            if not ok.any():
                continue
            x, row = log_scales[ok], margins[i, j][ok]
            a, b, kind = _bracket(row >= 0)
            if a is not None:
                self.lo[n], self.g_lo[n] = x[a], -row[a]
            if b is not None:
                self.hi[n], self.g_hi[n] = x[b], -row[b]
            if kind != "inside":
                pending[n] = kind
        return pending

    def extend(self, pending: dict, log_scales, spacing: float, top: float) -> None:
        """Extend the ``pending`` brackets beyond the grid, doubling the distance each round,
        down to ``LOG_SCALE_FLOOR`` (no threshold above it: not found) and up to ``top``."""
        step = 1
        while pending:
            idx = np.array(sorted(pending))
            below = np.array([pending[n] == "below" for n in idx])
            x = np.where(
                below,
                np.maximum(log_scales[0] - spacing * step, LOG_SCALE_FLOOR),
                np.minimum(log_scales[-1] + spacing * step, top),
            )
            g, ok = self.simulate(idx, x)
            for n, xn, gn, is_below, finished in zip(idx, x, g, below, ok):
                if not finished:
                    del pending[n]  # a margin cut short decides nothing: its pair stops here
                elif is_below and gn <= 0:
                    self.lo[n], self.g_lo[n] = xn, gn
                    del pending[n]
                elif is_below:
                    self.hi[n], self.g_hi[n] = xn, gn
                    if xn <= LOG_SCALE_FLOOR:
                        del pending[n]  # no threshold above the floor: not found
                elif gn > 0 or xn >= top:
                    self.hi[n], self.g_hi[n] = xn, max(gn, 0.0)
                    del pending[n]
                else:
                    self.lo[n], self.g_lo[n] = xn, gn
            step *= 2

    def refine(self, iterations: int) -> tuple[np.ndarray, np.ndarray]:
        """Illinois regula falsi in every found bracket, until the estimates stop moving;
        returns ``(log_threshold, status)`` per (depth, ratio) (see :func:`measured_thresholds`).

        A bracket with one end's ``|g|`` far below the other's (a grid from e^-5000 to e^-3:
        g ~ -1e-3 at one end, +0.7 at the other) makes regula falsi creep along the small end
        while the Illinois halvings catch up (60 iterations for r = 1.001, depth inf). So a step
        that fails to halve the bracket is followed by a bisection (Dekker's safeguard).
        """
        found = np.isfinite(self.lo) & np.isfinite(self.hi)
        active = np.flatnonzero(found)
        side = np.zeros(self.size, dtype=int)
        previous = np.full(self.size, np.inf)
        width = np.abs(self.hi - self.lo)
        bisect = np.zeros(self.size, dtype=bool)
        lo, hi, g_lo, g_hi = self.lo, self.hi, self.g_lo, self.g_hi
        for _ in range(iterations):
            if active.size == 0:
                break
            a, b, ga, gb = lo[active], hi[active], g_lo[active], g_hi[active]
            x = np.asarray(regula_falsi.secant_point(a, b, ga, gb))
            x = np.where(bisect[active], 0.5 * (a + b), x)
            g, ok = self.simulate(active, x)
            # A lane that did not finish moves no bracket: its pair stops with its code.
            active, x, g = active[ok], x[ok], g[ok]
            a, b, ga, gb, sd = lo[active], hi[active], g_lo[active], g_hi[active], side[active]
            a, b, ga, gb, sd = (np.asarray(v)
                                for v in regula_falsi.illinois_step(a, b, ga, gb, sd, x, g))
            lo[active], hi[active], g_lo[active], g_hi[active], side[active] = a, b, ga, gb, sd
            bisect[active] = (np.abs(b - a) > 0.5 * width[active]) & (np.abs(b - a) > 1.0)
            width[active] = np.abs(b - a)
            moved = np.abs(x - previous[active])
            previous[active] = x
            active = active[moved > 1e-11 * np.maximum(1.0, np.abs(x))]
        root = np.asarray(regula_falsi.secant_point(lo, hi, g_lo, g_hi))
        root = np.where(found, root, np.nan)
        # An estimate still moving when the iterations run out is not a threshold: say so.
        worst = self.worst
        worst[active] = status.worse(worst[active], status.MAX_STEPS)
        # "Not found" is an answer only where every lane of the pair finished: otherwise the
        # lanes that did not may hide the sign change, and their code says so.
        unfinished = status.worse(worst, self.grid_worst)
        none = np.where(unfinished == status.OK, np.int8(status.NOT_FOUND), unfinished)
        worst = np.where(found, worst, none).astype(np.int8)
        shape = (self.depths.size, self.ratios.size)
        return root.reshape(shape), worst.reshape(shape)


def theory_thresholds(config: "PhaseDiagramConfig") -> np.ndarray:
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
