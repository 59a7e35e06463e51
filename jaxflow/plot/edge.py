"""Large-step figures: the regime map and the sharpness traces (the dataset of
:func:`jaxflow.experiments.edge_of_stability.run`: dims depth, scale, eta_factor, init; traces
along save), and the incremental thresholds under large steps
(:func:`jaxflow.experiments.large_step_thresholds.run`), and the interpolator that descent
finds on diagonal networks (:func:`jaxflow.experiments.large_step_diagonal.run`).
"""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullLocator
import xarray as xr

from jaxflow.engine import status
from jaxflow.plot import style

__all__ = ["MAX_TRACES", "diagonal_sparsity", "regime_map", "sharpness_traces",
           "threshold_ratios"]

_NAMES = ("converged", "catapult", "oscillating", "diverged")
_COLOURS = (style.OKABE_ITO[2], style.OKABE_ITO[4], style.OKABE_ITO[1], style.OKABE_ITO[5])
_INITS = ("balanced", "random")
# step sizes drawn by sharpness_traces
MAX_TRACES = 5


@style.styled
def regime_map(ds: xr.Dataset) -> plt.Figure:
    r"""Regimes in the (eta, scale) plane: one panel per (init, depth), the stability limit of
    the balanced minimum, $\eta = 2 / \lambda_{bal}$, drawn from theory as a dashed line."""
    depths, inits = ds["depth"].values, ds["init"].values
    fig, axes = plt.subplots(len(inits), len(depths), squeeze=False, sharey=True,
                             figsize=(style.PAGE_WIDTH, 1.0 + 1.8 * len(inits)),
                             layout="constrained")
    for row, init in enumerate(inits):
        for col, depth in enumerate(depths):
            ax = axes[row, col]
            sub = ds.sel(depth=depth, init=init)
            dims = sub["regime"].dims
            codes = sub["regime"].values
            etas = (sub["eta_factor"] * 2.0 / sub["lambda_balanced"]).broadcast_like(
                sub["regime"]).transpose(*dims).values
            scales = sub["scale"].broadcast_like(sub["regime"]).transpose(*dims).values
            for code, (name, colour) in enumerate(zip(_NAMES, _COLOURS)):
                here = codes == code
                ax.scatter(etas[here], scales[here], s=14, marker="s", color=colour,
                           label=name if (row, col) == (0, 0) else None)
            limit = float(2.0 / sub["lambda_balanced"].max())
            ax.axvline(limit, color="k", ls="--", lw=0.8)
            ax.set_xscale("log")
            ax.set_yscale("log")
            # decades only: the default minor labels (2x10^0, 3x10^0, ...) overlap on a panel
            style.decade_ticks(ax)
            ax.set_title(f"{style.depth_label(float(depth))}, {_INITS[int(init)]}", fontsize=8)
            if row == len(inits) - 1:
                ax.set_xlabel(r"step size $\eta$ (dashed: $2/\lambda_{bal}$)")
            if col == 0:
                ax.set_ylabel("initial scale")
    fig.legend(loc="outside upper center", ncol=4, fontsize=7)
    return fig


@style.styled
def sharpness_traces(ds: xr.Dataset) -> plt.Figure:
    r"""Sharpness over the step's own stability limit, $\eta\,S/2$, against the step, for the
    deepest depth, random init, at the scale with the most lanes that did not diverge: one
    colour per step size (at most :data:`MAX_TRACES`, spread over the grid from the smallest to
    the largest), descent as dots, the flow solution's sharpness on the same scale as a thin
    line, and the edge of stability, $S = 2/\eta$, as one dashed line at 1 for every step size.

    Dots, not lines: at the edge the iterates alternate between two states whose sharpness
    differs by orders of magnitude, and saves of alternating parity drawn as a line fill the
    band between them; dots show the two branches. Step sizes are ordered values: their colours
    run along a sequential map (cividis), smaller steps darker."""
    init = ds["init"].values[-1]
    deepest = ds.sel(depth=ds["depth"].values[-1], init=init)
    # the scale with the most lanes measured to the end (diverged lanes stop early)
    measured = np.isfinite(deepest["sharpness"].isel(save=-1)).sum("eta_factor").values
    sub = deepest.isel(scale=int(np.argmax(measured)))
    fig, ax = plt.subplots(figsize=(style.COLUMN_WIDTH, 2.6), layout="constrained")
    factors = sub["eta_factor"].values
    # a few step sizes read at a glance; the default grid's 19 overlapping traces do not
    shown = np.unique(np.round(np.linspace(0, factors.size - 1,
                                           min(factors.size, MAX_TRACES))).astype(int))
    shades = plt.get_cmap("cividis")(np.linspace(0.0, 0.9, shown.size))
    for factor, colour in zip(factors[shown], shades):
        lane = sub.sel(eta_factor=factor)
        steps = lane["save"].values
        half_eta = 1.0 / float(lane["two_over_eta"])
        ax.plot(steps, half_eta * lane["sharpness"].values, ".", color=colour, ms=1.5,
                label=rf"$\eta\lambda_{{bal}}/2 = {factor:g}$")
        ax.plot(steps, half_eta * lane["flow_sharpness"].values, color=colour, lw=0.6,
                alpha=0.6)
    ax.axhline(1.0, color="k", ls="--", lw=0.7)
    ax.set_xlabel("descent step")
    ax.set_ylabel(r"$\eta\,S/2$ (dashed: the edge, $S = 2/\eta$)")
    ax.set_yscale("log")
    ax.set_title(f"{style.depth_label(float(sub['depth']))}, {_INITS[int(init)]}, "
                 f"scale {float(sub['scale']):.3g}", fontsize=8)
    # outside the axis: inside, the legend would cover the traces; large markers in the legend
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=6, markerscale=4)
    return fig


_MARKERS = ("o", "s", "^", "D", "v", "P")
_RATIO_TICKS = (0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2, 1.5, 2.0, 3.0, 4.0)


@style.styled
def threshold_ratios(ds: xr.Dataset) -> plt.Figure:
    r"""$\sigma_{th}(\eta) / \sigma_{th}(\mathrm{flow})$ against $\eta\lambda/2$: one colour per
    depth (the shared depth colours), one marker per ratio; an open marker is ``uncertain`` (the
    answer flips again near it), lanes without an answer are left out. Dashed: the flow's
    threshold (1); dotted: the stability limit of the larger target."""
    fig, ax = plt.subplots(figsize=(style.COLUMN_WIDTH, 3.2), layout="constrained")
    factors = ds["eta_factor"].values
    for depth in ds["depth"].values:
        colour = style.depth_colour(float(depth))
        for k, ratio in enumerate(ds["ratio"].values):
            lane = ds.sel(depth=depth, ratio=ratio)
            q = lane["threshold_ratio"].values
            ok = np.isfinite(q)
            marker = _MARKERS[k % len(_MARKERS)]
            ax.plot(factors[ok], q[ok], color=colour, lw=0.8, marker=marker, ms=3.5,
                    label=f"{style.depth_label(float(depth))}, $r = {ratio:g}$")
            shaky = ok & (lane["status"].values == status.UNCERTAIN)
            ax.plot(factors[shaky], q[shaky], ls="none", marker=marker, ms=3.5, color="white",
                    markeredgecolor=colour)
    ax.axhline(1.0, color="k", ls="--", lw=0.7)
    ax.axvline(1.0, color="0.5", ls=":", lw=0.7)
    ax.set_yscale("log")
    # ratios near 1 on a log axis: plain numbers at round ratios, not powers of ten
    ax.yaxis.set_major_locator(FixedLocator(_RATIO_TICKS))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(r"step size $\eta\lambda/2$ (dotted: stability limit)")
    ax.set_ylabel(r"$\sigma_{th}(\eta) / \sigma_{th}(\mathrm{flow})$")
    fig.legend(loc="outside lower center", ncol=3, fontsize=5)
    return fig


@style.styled
def diagonal_sparsity(ds: xr.Dataset) -> plt.Figure:
    r"""Two panels against $\eta\lambda_{flow}/2$, one line per depth (median over the seeds
    whose descent converged, the band from their min to max): $\|\beta\|_1$ relative to the
    flow's solution, and the distance to the flow's solution."""
    fig, axes = plt.subplots(1, 2, figsize=(style.PAGE_WIDTH, 2.4), layout="constrained")
    factors = ds["eta_factor"].values
    for depth in ds["depth"].values:
        sub = ds.sel(depth=depth)
        good = sub["converged"]
        colour = style.depth_colour(float(depth))
        for ax, value in zip(axes, (sub["l1"] / sub["l1_flow"], sub["distance"])):
            kept = value.where(good)
            ax.plot(factors, kept.median("seed").values, color=colour, marker="o", ms=3,
                    lw=0.9, label=style.depth_label(float(depth)))
            ax.fill_between(factors, kept.min("seed").values, kept.max("seed").values,
                            color=colour, alpha=0.2, lw=0)
    for ax in axes:
        ax.axvline(1.0, color="0.5", ls=":", lw=0.7)
        ax.set_xlabel(r"step size $\eta\lambda_{flow}/2$ (dotted: stability limit)")
    axes[0].set_ylabel(r"$\|\beta\|_1 / \|\beta_{flow}\|_1$")
    axes[1].set_ylabel(r"$\|\beta - \beta_{flow}\| / \|\beta_{flow}\|$")
    axes[1].set_yscale("log")
    # below the panels: inside, the legend would cover the curves
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=6)
    return fig
