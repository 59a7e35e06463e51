"""Figures of the toy model's phase diagram: the incremental region per depth
(:func:`phase_diagram`) and the headline, thresholds against the ratio (:func:`thresholds`).

Both take the dataset of :func:`jaxflow.experiments.phase_diagram.run` (dims depth, ratio,
log_scale), or the same file reloaded.
"""

import functools
import math

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.patches import Patch

from jaxflow.engine import status
from jaxflow.oracles import theory
from jaxflow.plot import style

__all__ = ["phase_diagram", "thresholds"]


def _log_edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges of log-spaced centres (geometric midpoints), for pcolormesh on log axes."""
    logs = np.log(np.sort(np.asarray(centres, dtype=float)))
    if logs.size == 1:
        return np.exp(logs + np.array([-0.5, 0.5]))
    mid = 0.5 * (logs[1:] + logs[:-1])
    # an outer edge beyond float range becomes inf (figures of such grids are skipped by the
    # caller, which names them): no overflow warning for it
    with np.errstate(over="ignore"):
        return np.exp(np.concatenate([[2 * logs[0] - mid[0]], mid, [2 * logs[-1] - mid[-1]]]))


def _theory_log_thresholds(depths, excess, start, finish):
    return np.asarray(theory.incremental_threshold(
        np.asarray(depths, dtype=float)[:, None], 1.0 + np.asarray(excess)[None, :],
        start=start, finish=finish, log=True))


# The exact threshold costs a series per lane, evaluated in blocks of 256, 1024, ... lanes
# (theory's _dispatch): 12 depths x 200 points took 1.6 s on one core, 12 x 80 0.35 s. A phase
# diagram's dataset holds the theory at its own ratios already (``log_threshold_theory``); on
# the default grid (32 ratios, 8 a decade) those points draw the curves as smooth as any finer
# grid on log-log axes, at no cost. Coarser grids get 80 points of their own.
_STORED_CURVE_MIN = 16
_CURVE_POINTS = 80


@functools.lru_cache(maxsize=4)
def _threshold_curves(depths: tuple, lo: float, hi: float, start: float, finish: float):
    """``(excess, -ln sigma0_th)`` on ``_CURVE_POINTS`` log-spaced excesses, per depth; cached,
    so that the phase diagram and the thresholds figure of one dataset share one evaluation."""
    excess = np.geomspace(lo, hi, _CURVE_POINTS)
    curves = -_theory_log_thresholds(depths, excess, start, finish)
    excess.flags.writeable = curves.flags.writeable = False
    return excess, curves


def _measured(ds: xr.Dataset, depth: float) -> np.ndarray:
    """``ln(1/sigma0_th)`` measured at ``depth``, NaN where the threshold is not ``ok`` (an
    uncertain or unfinished one is no point to draw against theory)."""
    meas = -ds["log_threshold_measured"].sel(depth=depth).values
    if "threshold_status" in ds:
        meas = np.where(ds["threshold_status"].sel(depth=depth).values == status.OK, meas, np.nan)
    return meas


def _dataset_curves(ds: xr.Dataset):
    """``(excess, -ln sigma0_th)`` per depth, the theory curves of a phase-diagram dataset: its
    stored theory where it has ``_STORED_CURVE_MIN`` ratios or more, else computed."""
    excess = ds["ratio"].values - 1
    if "log_threshold_theory" in ds and excess.size >= _STORED_CURVE_MIN:
        order = np.argsort(excess)
        stored = ds["log_threshold_theory"].transpose("depth", "ratio").values
        return excess[order], -stored[:, order]
    return _threshold_curves(tuple(float(d) for d in ds["depth"].values), float(excess.min()),
                             float(excess.max()), float(ds.attrs["start"]),
                             float(ds.attrs["finish"]))


@style.styled
def phase_diagram(ds: xr.Dataset, ncols: int = 4) -> plt.Figure:
    r"""Per depth, the incremental region over ($\ln(1/\sigma_0)$, $r - 1$), theory boundary
    on top, measured thresholds as circles; ``ncols`` panels a row, across the page.

    Both axes are logarithmic, the x axis in $\ln(1/\sigma_0)$: depth 2's boundary ($\sigma_0$
    down to $e^{-4400}$) and depth 20's (near $10^{-5}$) share one readable scale.

    Example (a dataset of the phase-diagram layout, here filled from the exact theory; normally
    the output of :func:`jaxflow.experiments.phase_diagram.run` or a reloaded ``.nc`` file):
        >>> from jaxflow import plot
        >>> fig = plot.phase_diagram(plot.example_dataset("phase_diagram"), ncols=2)
        >>> len(fig.axes), fig.axes[0].get_xscale()
        (2, 'log')
    """
    from matplotlib.colors import ListedColormap

    depths = [float(d) for d in ds["depth"].values]
    ncols = max(1, min(ncols, len(depths)))
    nrows = math.ceil(len(depths) / ncols)
    legend_band, title_band, panel = 0.45, 0.45, 1.45  # inches
    height = nrows * panel + legend_band + title_band
    fig, axes = plt.subplots(nrows, ncols, figsize=(style.PAGE_WIDTH, height), sharex=True,
                             sharey=True, squeeze=False)
    depth_x = -ds["log_scale"].values  # ln(1/sigma0) > 0
    order = np.argsort(depth_x)
    ratios = ds["ratio"].values
    cmap = ListedColormap([style.NOT_INCREMENTAL_COLOUR, style.INCREMENTAL_COLOUR])
    fine, boundary = _dataset_curves(ds)
    for k, (ax, depth) in enumerate(zip(axes.flat, depths)):
        inc = ds["incremental"].sel(depth=depth).values.astype(float)[:, order]
        ax.pcolormesh(_log_edges(depth_x[order]), _log_edges(ratios - 1), inc, cmap=cmap,
                      vmin=0, vmax=1, shading="flat", rasterized=True)
        ok = np.isfinite(boundary[k])
        ax.plot(boundary[k][ok], fine[ok], color="black", lw=1.1)
        meas = _measured(ds, depth)
        okm = np.isfinite(meas)
        ax.plot(meas[okm], ratios[okm] - 1, "o", ms=2.0, mfc="white", mec="black", mew=0.5)
        ax.set_xscale("log")
        ax.set_yscale("log")
        # Twelve panels of log axes make ~1300 tick artists with the minor ticks (seconds of
        # drawing); the major decades alone read as well.
        ax.minorticks_off()
        style.decade_ticks(ax)
        low, high = depth_x.min(), depth_x.max()
        if low == high:  # one scale: a decade around it instead of a singular axis
            low, high = low / 10**0.5, high * 10**0.5
        ax.set_xlim(low, high)
        # A title at a given height skips matplotlib's search for one clear of the tick labels
        # (their bounding boxes, ~a quarter of the drawing time); none sits above these axes.
        ax.set_title(style.depth_label(depth), y=1.0, pad=2)
    for ax in axes.flat[len(depths):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel(r"$\ln(\sigma^*_j/\sigma_0)$")
    for ax in axes[:, 0]:
        ax.set_ylabel(r"$r - 1$")
    handles = [
        Patch(color=style.INCREMENTAL_COLOUR, label="incremental (simulated)"),
        Patch(color=style.NOT_INCREMENTAL_COLOUR, label="not incremental"),
        plt.Line2D([], [], color="black", lw=1.1, label="theory threshold"),
        plt.Line2D([], [], ls="", marker="o", mfc="white", mec="black", label="measured threshold"),
    ]
    # The legend sits in a band of its own below the panels (no axis is there to cover).
    fig.legend(handles=handles, loc="lower center", ncol=4, frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(f"Incremental learning of a pair: larger target learned to {ds.attrs['finish']:g}"
                 f" before the smaller reaches {ds.attrs['start']:g}", y=1 - 0.08 / height,
                 va="top")
    fig.subplots_adjust(left=0.08, right=0.99, bottom=(legend_band + 0.3) / height,
                        top=1 - title_band / height, wspace=0.08, hspace=0.35)
    return fig


@style.styled
def thresholds(ds: xr.Dataset) -> plt.Figure:
    r"""The headline: $\ln(1/\sigma_0^{th})$ against $r - 1$, log-log, every depth.

    On these axes depth 2 is a straight line of slope -1 ($\ln(1/\sigma_0^{th}) \sim
    C/(r - 1)$: an exponentially small threshold), while every depth above 2 bends to
    logarithmic growth ($\sigma_0^{th} \sim (r - 1)^{N/(N-2)}$: polynomially small). Markers:
    thresholds measured from simulations; lines: exact theory; dashed: depth 2's leading-order
    law $C/(r - 1)$. Depths without any threshold (N = 1) are listed in the legend as "never
    incremental". Each depth has its colour of :func:`jaxflow.plot.style.depth_colour`; the
    legend stands right of the axes.

    Example (see :func:`phase_diagram` for the dataset):
        >>> from jaxflow import plot
        >>> fig = plot.thresholds(plot.example_dataset("phase_diagram"))
        >>> [fig.axes[0].get_xscale(), fig.axes[0].get_yscale()]
        ['log', 'log']
    """
    start, finish = ds.attrs["start"], ds.attrs["finish"]
    excess = ds["ratio"].values - 1
    depths = [float(d) for d in ds["depth"].values]
    fig, ax = plt.subplots(figsize=(style.PAGE_WIDTH, 3.6))
    fine, exact = _dataset_curves(ds)
    never = []
    for k, depth in enumerate(depths):
        meas = _measured(ds, depth)
        ok, okm = np.isfinite(exact[k]) & (exact[k] > 0), np.isfinite(meas) & (meas > 0)
        if not ok.any() and not okm.any():
            never.append(style.depth_label(depth))
            continue
        c = style.depth_colour(depth)
        ax.plot(fine[ok], exact[k][ok], color=c, lw=1.2, label=style.depth_label(depth))
        ax.plot(excess[okm], meas[okm], "o", ms=3.0, color=c, mec="black", mew=0.3)
    if 2.0 in depths:
        logit = lambda u: math.log(u / (1 - u))  # noqa: E731
        c2 = logit(finish) - logit(start)
        ax.plot(fine, c2 / fine, color=style.depth_colour(2.0), lw=0.9, ls="--",
                label=rf"$C/(r-1)$, $C = {c2:.3f}$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    style.decade_ticks(ax)
    ax.set_xlabel(r"ratio $-\,1$  ($r = \sigma^*_i/\sigma^*_j$)")
    ax.set_ylabel(r"$\ln(\sigma^*_j/\sigma_0^{th})$: how small the start must be")
    ax.grid(True, which="major", alpha=0.3)
    ax.plot([], [], "o", color="grey", mec="black", mew=0.3, label="simulated")
    ax.plot([], [], color="grey", label="exact theory")
    if never:
        ax.plot([], [], ls="", label="never incremental:\n" + ", ".join(never))
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(0.70, 0.5),
               ncol=2 if len(labels) > 10 else 1, frameon=False, columnspacing=1.0)
    ax.set_title("Depth 2 needs an exponentially small start (slope $-1$);\n"
                 "deeper models a polynomially small one (logarithmic growth)",
                 y=1.0)  # at a given height: no search for one clear of the tick labels
    fig.subplots_adjust(left=0.09, right=0.68, bottom=0.13, top=0.87)
    return fig
