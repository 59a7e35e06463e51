"""Figures of tracked modes against time, the paper's Figure 1 layout: gradient flow solid,
gradient descent as circles on top, one colour per mode (:func:`jaxflow.plot.style.mode_colour`).

* :func:`staircase`: any experiment in the shared layout (matrix sensing, E1);
* :func:`quadratic`: quadratic networks with and without bias (E2);
* :func:`classification`: diagonal and convolutional networks (E3, E4), with the correlation
  against the max-margin SVM;
* :func:`omp_picks`: picks against Orthogonal Matching Pursuit (E5).
"""

import math

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from jaxflow.plot import style

__all__ = ["classification", "omp_picks", "quadratic", "staircase"]

_TIME_LABEL = r"flow time $t = \eta k$ (rate $\eta$, step $k$)"


def _modes_panel(ax, times, modes, labels, *, marks=None, targets=None) -> None:
    """Tracked modes against time on one axis: gradient flow solid, gradient descent as circles.

    Args:
        ax: the axis.
        times: ``(T,)`` the time grid.
        modes: a ``(backend, time, mode)`` DataArray (either back-end may be missing).
        labels: one legend label per mode (on the flow's line).
        marks: indices of the times that get a descent marker (default: all).
        targets: per-mode targets drawn as thin dotted lines (default: none).
    """
    marks = np.arange(times.size) if marks is None else marks
    backends = modes["backend"].values
    for i, label in enumerate(labels):
        colour = style.mode_colour(i)
        if targets is not None:
            ax.axhline(targets[i], color=colour, lw=0.6, ls=":", alpha=0.9)
        if "flow" in backends:
            ax.plot(times, modes.sel(backend="flow").values[:, i], color=colour, lw=1.3,
                    label=label)
        if "descent" in backends:
            values = modes.sel(backend="descent").values[:, i]
            ax.plot(times[marks], values[marks], ls="none", marker="o", ms=3.0, mfc="none",
                    mew=0.8, color=colour)


def _backend_handles(descent_label: str = "gradient descent"):
    """Legend entries of the two back-ends' styles (in grey, whatever the mode's colour)."""
    return (
        [plt.Line2D([], [], color="0.3", lw=1.3),
         plt.Line2D([], [], color="0.3", ls="none", marker="o", mfc="none")],
        ["gradient flow", descent_label],
    )


def _target_handle():
    return plt.Line2D([], [], color="0.3", lw=0.6, ls=":")


@style.styled
def staircase(ds: xr.Dataset, title: str = "", value_label: str = "mode value", *,
              mode_labels=None) -> plt.Figure:
    """The paper's Figure 1 layout: per depth, the tracked modes against time, gradient flow
    solid with gradient descent as circles on top (at ``t = lr * step`` the two nearly coincide,
    so a dashed descent would hide under the flow), each target a thin dotted line in its mode's
    colour; the legend, right of the panels, names the modes (``mode_labels``, default
    ``mode i (target v)``).

    Works on any dataset in the shared experiment layout (``jaxflow.experiments.backends``).

    Example (the layout filled with the exact depth-2 flow of two targets, a logistic):
        >>> from jaxflow import plot
        >>> fig = plot.staircase(plot.example_dataset("staircase"), title="depth 2, exact")
        >>> len(fig.axes), fig.legends[0].get_texts()[0].get_text()
        (1, 'mode 1 (target 2)')
    """
    depths = list(ds["depth"].values)
    fig, axes = plt.subplots(1, len(depths), figsize=(style.PAGE_WIDTH, 2.6), sharey=True,
                             squeeze=False, layout="constrained")
    t = ds["time"].values
    marks = np.arange(0, t.size, max(1, t.size // 25))  # about 25 descent markers
    targets = ds["targets"].values
    if mode_labels is None:
        mode_labels = [f"mode {i + 1} (target {v:.3g})" for i, v in enumerate(targets)]
    for ax, depth in zip(axes[0], depths):
        _modes_panel(ax, t, ds["modes"].sel(depth=depth), mode_labels, marks=marks,
                     targets=targets)
        ax.set_title(style.depth_label(depth))
        ax.set_xlabel(r"flow time $t$")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel(value_label)
    handles, labels = axes[0][0].get_legend_handles_labels()
    styles, names = _backend_handles()
    style.legend_outside(fig, handles + styles + [_target_handle()], labels + names + ["target"])
    if title:
        fig.suptitle(title)
    return fig


@style.styled
def quadratic(ds: xr.Dataset) -> plt.Figure:
    """E2: top eigenvalues of ``W^T W`` against time, one panel per bias variant (Fig. 1b of
    Gissin et al. 2020).

    Gradient flow is drawn solid, gradient descent as markers on top of it, the targets as thin
    dotted lines in the mode's colour. Takes the dataset of
    :func:`jaxflow.experiments.quadratic.run`.

    Example (made-up curves in that layout):
        >>> from jaxflow import plot
        >>> [ax.get_title()[:7] for ax in plot.quadratic(plot.example_dataset("quadratic")).axes]
        ['no bias', 'bias, $']
    """
    variants = [bool(b) for b in ds["bias"].values]
    fig, axes = plt.subplots(1, len(variants), figsize=(style.PAGE_WIDTH, 2.6), sharey=True,
                             squeeze=False, layout="constrained")
    times = ds["time"].values
    marks = np.arange(0, times.size, max(1, times.size // 25))  # about 25 descent markers
    targets = ds["targets"].values
    labels = [f"$\\lambda_{i + 1}$ (target {target:.3g})" for i, target in enumerate(targets)]
    for ax, bias in zip(axes.flat, variants):
        panel = ds.sel(bias=bias).isel(depth=0)
        _modes_panel(ax, times, panel["modes"], labels, marks=marks, targets=targets)
        title = r"bias, $b(0) = \mathrm{mean}(y)$" if bias else "no bias"
        ax.set_title(f"{title}: $f(x) = x^T W^T W x" + (" + b$" if bias else "$"))
        ax.set_xlabel(_TIME_LABEL)
        ax.set_xlim(times[0], times[-1])
        ax.grid(alpha=0.25, lw=0.5)
    axes.flat[0].set_ylabel("top eigenvalues of $W^T W$")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    styles, names = _backend_handles(
        f"gradient descent\n($\\eta = {ds.attrs['learning_rate']:g}$)")
    style.legend_outside(fig, handles + styles + [_target_handle()], labels + names + ["target"])
    fig.suptitle(f"Quadratic network, $d = {ds.attrs.get('d')}$, $m = {ds.attrs.get('m')}$, "
                 f"$W^T W(0) = {ds.attrs.get('scale'):g}\\,I$")
    return fig


@style.styled
def classification(ds: xr.Dataset, title: str, value_label: str, *, mode_labels=None,
                   sharey: bool = True) -> plt.Figure:
    """E3, E4: tracked modes against time (log axis), one panel per depth (Fig. 1c/1d of Gissin
    et al. 2020).

    Gradient flow solid, gradient descent as markers; the legend names the modes
    (``mode_labels``, default ``mode i``). ``sharey=False`` gives each depth its own value axis
    (the scales of the depths differ by orders of magnitude on the convolutional nets). The
    bottom row shows the correlation with the target by depth against the max-margin SVM.
    Takes the dataset of :func:`jaxflow.experiments.diagonal.run` or
    :func:`jaxflow.experiments.convolutional.run`.

    Example (made-up curves in that layout):
        >>> from jaxflow import plot
        >>> ds = plot.example_dataset("classification")
        >>> len(plot.classification(ds, "made up", r"$|\\beta_i|$").axes)  # 2 depths + correlation
        3
    """
    depths = [int(d) for d in ds["depth"].values]
    fig = plt.figure(figsize=(style.PAGE_WIDTH, 4.8), layout="constrained")
    grid = fig.add_gridspec(2, len(depths), height_ratios=(1.6, 1.0))
    times = ds["time"].values
    positive = times > 0  # a log time axis
    marks = np.unique(np.geomspace(1, positive.sum(), 30).astype(int)) - 1
    if mode_labels is None:
        mode_labels = [f"mode {i + 1}" for i in range(ds.sizes["mode"])]
    first = None
    for j, depth in enumerate(depths):
        ax = fig.add_subplot(grid[0, j], sharey=first if sharey else None)
        first = first or ax
        modes = ds["modes"].sel(depth=depth).isel(time=np.flatnonzero(positive))
        _modes_panel(ax, times[positive], modes, mode_labels, marks=marks)
        ax.set_xscale("log")
        ax.set_title(style.depth_label(depth))
        ax.set_xlabel(r"flow time $t$")
        ax.grid(alpha=0.25, lw=0.5)
    first.set_ylabel(value_label)
    handles, labels = first.get_legend_handles_labels()
    styles, names = _backend_handles()
    handles, labels = handles + styles, labels + names
    ax = fig.add_subplot(grid[1, :])
    shown = []
    for backend, fmt in (("flow", "o-"), ("descent", "s--")):
        if backend in ds["backend"].values:
            values = ds["correlation"].sel(backend=backend).values
            ax.plot(depths, values, fmt, ms=4, color="0.2" if backend == "flow" else "0.5",
                    label=f"correlation, {backend} ($t = {times[-1]:g}$)")
            shown.append(values)
    if "svm_correlation" in ds:
        svm = float(ds["svm_correlation"])
        ax.axhline(svm, color="0.4", ls=":", label="max-margin SVM\n(no intercept)")
        shown.append([svm])
    # axhline does not take part in autoscaling: the limits are set to hold the SVM's level too,
    # with a margin, so that its line never sits on the frame.
    values = np.concatenate([np.ravel(v) for v in shown])
    values = values[np.isfinite(values)]
    if values.size:
        pad = max(0.08 * (values.max() - values.min()), 0.01)
        ax.set_ylim(values.min() - pad, values.max() + pad)
    ax.set_xticks(depths)
    ax.set_xlabel("depth $N$")
    ax.set_ylabel("correlation with target")
    ax.grid(alpha=0.25, lw=0.5)
    more, more_labels = ax.get_legend_handles_labels()
    # below the panels: beside them it would take a third of the width from five depths
    style.legend_outside(fig, handles + more, labels + more_labels, where="bottom", ncol=4)
    fig.suptitle(title)
    return fig


@style.styled
def omp_picks(ds: xr.Dataset) -> plt.Figure:
    """E5: seed 0's support coordinates against time (flow solid to its horizon, descent markers
    to its own), the pick threshold, and the concurrence with OMP of every seed.

    Takes the dataset of :func:`jaxflow.experiments.omp.run`.

    Example (made-up picks in that layout):
        >>> from jaxflow import plot
        >>> len(plot.omp_picks(plot.example_dataset("omp_picks")).axes)
        2
    """
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(style.PAGE_WIDTH, 3.4), width_ratios=(2.2, 1.0),
                                 layout="constrained")
    t = ds["time"].values
    first = ds.sel(seed=0)
    labels = [f"$w^* = {float(v):.3g}$" for v in first["targets"].values]
    _modes_panel(ax, t, first["modes"], labels)
    ax.axhline(ds.attrs["threshold"], color="0.4", ls=":", lw=0.9, label="pick threshold")
    ax.axvline(float(ds["horizon"].sel(backend="descent")), color="0.6", ls="--", lw=0.8,
               label="descent horizon")
    ax.set_yscale("symlog", linthresh=1e-2)
    ax.set_ylim(bottom=0.0)
    ax.set_xlabel(_TIME_LABEL)
    ax.set_ylabel(r"$|\beta_i|$ on the support (seed 0)")
    ax.set_title(
        f"seed 0: OMP order {first['omp_order'].values.tolist()}, flow picks "
        f"{first['order'].sel(backend='flow').values.tolist()}"
    )
    handles, names = ax.get_legend_handles_labels()
    styles, backend_names = _backend_handles()
    handles, names = handles + styles, names + backend_names
    # Concurrence per seed, compact: it is 1 on most seeds, so the panel is narrow. A seed on
    # which a back-end makes no pick before its horizon has no concurrence; it is drawn as a
    # cross on its own "no pick" row, not left out.
    seeds = ds["seed"].values
    nopick = -0.2
    for b, marker, shift, colour in (("flow", "o", -0.12, style.OKABE_ITO[4]),
                                     ("descent", "s", 0.12, style.OKABE_ITO[5])):
        values = ds["concurrence"].sel(backend=b).values
        picked = ds["num_picks"].sel(backend=b).values > 0
        summary = (f"{values[picked].mean():.2f} ± {values[picked].std():.2f}"
                   if picked.any() else "none")
        bx.plot(seeds[picked] + shift, values[picked], marker, mfc="none", color=colour,
                label=f"concurrence, {b} ($t = {float(ds['horizon'].sel(backend=b)):g}$): "
                      f"{summary}\nover the {int(picked.sum())} of {seeds.size} seeds with picks")
        if not picked.all():
            bx.plot(seeds[~picked] + shift, np.full((~picked).sum(), nopick), "x",
                    color=colour, label=f"{b}: no pick on seed "
                    f"{', '.join(str(int(s)) for s in seeds[~picked])}")
    bx.axhline((nopick + 0) / 2, color="0.7", lw=0.6)
    bx.set_ylim(nopick - 0.12, 1.12)
    bx.set_yticks([nopick, 0.0, 0.5, 1.0], ["no pick", "0", "0.5", "1"])
    bx.set_xticks(seeds if seeds.size <= 10 else seeds[:: math.ceil(seeds.size / 10)])
    bx.set_xlabel("seed")
    bx.set_ylabel("concurrence with OMP")
    more, more_names = bx.get_legend_handles_labels()
    style.legend_outside(fig, handles + more, names + more_names, where="bottom", ncol=3)
    fig.suptitle(
        f"E5: depth-{ds.attrs['depth']} diagonal network against OMP "
        f"($d = {ds.attrs['d']}$, $m = {ds.attrs['m']}$, {ds.attrs['sparsity']}-sparse)"
    )
    return fig
