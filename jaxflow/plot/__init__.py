"""Every figure of jaxflow (matplotlib, one colour-blind-safe palette, labelled log axes).

Every function takes a dataset (as written by the experiments) and returns a matplotlib
``Figure``; :func:`save` writes it. This is the one module that imports matplotlib; it leaves the
backend as the user had it (a notebook's inline backend keeps drawing; the ``jaxflow`` command
picks Agg for itself). The experiments' ``figures(ds)`` call these functions.

* toy phase diagrams: :func:`phase_diagram`, :func:`thresholds`, :func:`factor_diagram`;
* modes against time: :func:`staircase` (any experiment in the shared layout),
  :func:`quadratic` (E2), :func:`classification` (E3, E4), :func:`omp_picks` (E5), all drawn by
  one panel function (flow solid, descent as markers, one colour per mode);
* matrix sensing's generalization: :func:`generalization`;
* saddle-to-saddle: :func:`saddle_staircase` (the flow against the jump process) and
  :func:`jump_times` (jump times against the initial scale, per depth).

Example:
    >>> from jaxflow.experiments import phase_diagram as pd
    >>> from jaxflow import plot
    >>> ds = pd.run(pd.PhaseDiagramConfig.smoke(), quiet=True)
    >>> fig = plot.thresholds(ds)
    >>> len(fig.axes)
    1
"""

import functools
import math
import os

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.patches import Patch

from jaxflow.oracles import theory

__all__ = [
    "INCREMENTAL_COLOUR",
    "MODE_COLOURS",
    "NOT_INCREMENTAL_COLOUR",
    "DEPTH_COLOURS",
    "FORMATS",
    "OKABE_ITO",
    "classification",
    "depth_label",
    "factor_diagram",
    "figure_format",
    "generalization",
    "omp_picks",
    "phase_diagram",
    "jump_times",
    "quadratic",
    "saddle_staircase",
    "save",
    "staircase",
    "thresholds",
]

# Okabe-Ito palette: distinguishable under the common colour-vision deficiencies.
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000")
INCREMENTAL_COLOUR = OKABE_ITO[4]
NOT_INCREMENTAL_COLOUR = OKABE_ITO[3]
# One colour per tracked mode, from the same palette: blue, vermillion, green, purple first (the
# strongest contrasts for the four targets of the paper's experiments); yellow is left out
# (unreadable as a thin line on white).
MODE_COLOURS = tuple(OKABE_ITO[i] for i in (4, 5, 2, 6, 0, 1, 7))


def depth_label(depth: float) -> str:
    """Legend label of a depth.

    >>> from jaxflow import plot
    >>> plot.depth_label(3.0), plot.depth_label(float("inf"))
    ('N = 3', 'N = inf')
    """
    return "N = inf" if math.isinf(depth) else f"N = {depth:g}"


# Twelve depths must stay apart: Okabe-Ito's seven colours (yellow left out) followed by five
# of Paul Tol's muted scheme, each distinct for the common colour-vision deficiencies.
DEPTH_COLOURS = (
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#56B4E9", "#E69F00", "#000000",
    "#882255", "#44AA99", "#999933", "#AA4499", "#117733",
)


def _depth_colours(depths):
    """One colour per depth; depth 2, the exponential case of the headline, is vermillion."""
    rest = [c for c in DEPTH_COLOURS if c != OKABE_ITO[5]]
    colours, k = {}, 0
    for depth in depths:
        if float(depth) == 2.0:
            colours[2.0] = OKABE_ITO[5]
        else:
            colours[float(depth)] = rest[k % len(rest)]
            k += 1
    return colours


_SUPERSCRIPTS = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _decade_label(value: float, _pos=None) -> str:
    """``10³``-style label of a decade, in plain Unicode: matplotlib's default ``10^{3}`` goes
    through mathtext, whose parser costs ~15 ms per new label (a third of the phase diagram's
    drawing time on one core)."""
    exponent = round(math.log10(value)) if value > 0 else None
    if exponent is None or not math.isclose(value, 10.0 ** exponent, rel_tol=1e-9):
        return ""
    return "10" + str(exponent).translate(_SUPERSCRIPTS)


def _plain_log_ticks(ax) -> None:
    """Major decades labelled by :func:`_decade_label`, minor ticks unlabelled, on both axes."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    for axis in (ax.xaxis, ax.yaxis):
        if axis.get_scale() == "log":
            axis.set_major_formatter(FuncFormatter(_decade_label))
            axis.set_minor_formatter(NullFormatter())


def _log_edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges of log-spaced centres (geometric midpoints), for pcolormesh on log axes."""
    logs = np.log(np.sort(np.asarray(centres, dtype=float)))
    if logs.size == 1:
        return np.exp(logs + np.array([-0.5, 0.5]))
    mid = 0.5 * (logs[1:] + logs[:-1])
    return np.exp(np.concatenate([[2 * logs[0] - mid[0]], mid, [2 * logs[-1] - mid[-1]]]))


def _theory_log_thresholds(depths, excess, start, finish):
    return np.asarray(theory.incremental_threshold(
        np.asarray(depths, dtype=float)[:, None], 1.0 + np.asarray(excess)[None, :],
        start=start, finish=finish, log=True))


# The exact threshold costs a series per lane, evaluated in blocks of 256, 1024, ... lanes
# (theory._dispatch): 12 depths x 200 points took 1.6 s on one core, 12 x 80 0.35 s. A phase
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


def _dataset_curves(ds: xr.Dataset):
    """``(excess, -ln sigma0_th)`` per depth, the theory curves of a phase-diagram dataset: its
    stored theory where it has ``_STORED_CURVE_MIN`` ratios or more, else
    :func:`_threshold_curves`."""
    excess = ds["ratio"].values - 1
    if "log_threshold_theory" in ds and excess.size >= _STORED_CURVE_MIN:
        order = np.argsort(excess)
        stored = ds["log_threshold_theory"].transpose("depth", "ratio").values
        return excess[order], -stored[:, order]
    return _threshold_curves(tuple(float(d) for d in ds["depth"].values), float(excess.min()),
                             float(excess.max()), float(ds.attrs["start"]),
                             float(ds.attrs["finish"]))


def _example_dataset():
    """A small dataset of the phase-diagram layout filled from the exact theory (doctests)."""
    depths, ratios = np.array([2.0, 3.0]), np.array([1.5, 3.0])
    log_scales = -np.geomspace(1.0, 60.0, 12)[::-1]
    log_th = _theory_log_thresholds(depths, ratios - 1, 0.1, 0.9)
    return xr.Dataset(
        {"incremental": (("depth", "ratio", "log_scale"), log_scales <= log_th[..., None]),
         "log_threshold_measured": (("depth", "ratio"), log_th)},
        coords={"depth": depths, "ratio": ratios, "log_scale": log_scales},
        attrs={"start": 0.1, "finish": 0.9})


def phase_diagram(ds: xr.Dataset, ncols: int = 4) -> plt.Figure:
    """Per depth, the incremental region over (ln(1/sigma0), r - 1), theory boundary on top.

    Both axes are logarithmic, the x axis in ``ln(1/sigma0)``: depth 2's boundary (sigma0 down
    to e^-4400) and depth 20's (near 1e-5) share one readable scale.

    Example (a dataset of the phase-diagram layout, here filled from the exact theory; normally
    the output of :func:`jaxflow.experiments.phase_diagram.run` or a reloaded ``.nc`` file):
        >>> from jaxflow import plot
        >>> fig = plot.phase_diagram(plot._example_dataset(), ncols=2)
        >>> len(fig.axes), fig.axes[0].get_xscale()
        (2, 'log')
    """
    from matplotlib.colors import ListedColormap

    depths = [float(d) for d in ds["depth"].values]
    ncols = max(1, min(ncols, len(depths)))
    nrows = math.ceil(len(depths) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3.2 * ncols, 2.6 * nrows + 0.8), sharex=True, sharey=True,
        squeeze=False,
    )
    depth_x = -ds["log_scale"].values  # ln(1/sigma0) > 0
    order = np.argsort(depth_x)
    ratios = ds["ratio"].values
    cmap = ListedColormap([NOT_INCREMENTAL_COLOUR, INCREMENTAL_COLOUR])
    fine, boundary = _dataset_curves(ds)
    for k, (ax, depth) in enumerate(zip(axes.flat, depths)):
        inc = ds["incremental"].sel(depth=depth).values.astype(float)[:, order]
        ax.pcolormesh(_log_edges(depth_x[order]), _log_edges(ratios - 1), inc, cmap=cmap,
                      vmin=0, vmax=1, shading="flat", rasterized=True)
        ok = np.isfinite(boundary[k])
        ax.plot(boundary[k][ok], fine[ok], color="black", lw=1.3)
        meas = -ds["log_threshold_measured"].sel(depth=depth).values
        okm = np.isfinite(meas)
        ax.plot(meas[okm], ratios[okm] - 1, "o", ms=2.2, mfc="white", mec="black", mew=0.5)
        ax.set_xscale("log")
        ax.set_yscale("log")
        # Twelve panels of log axes make ~1300 tick artists with the minor ticks (seconds of
        # drawing); the major decades alone read as well.
        ax.minorticks_off()
        _plain_log_ticks(ax)
        low, high = depth_x.min(), depth_x.max()
        if low == high:  # one scale: a decade around it instead of a singular axis
            low, high = low / 10**0.5, high * 10**0.5
        ax.set_xlim(low, high)
        # A title at a given height skips matplotlib's search for one clear of the tick labels
        # (their bounding boxes, ~a quarter of the drawing time); none sits above these axes.
        ax.set_title(depth_label(depth), fontsize=10, y=1.0)
    for ax in axes.flat[len(depths):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel(r"$\ln(\sigma^*_j/\sigma_0)$")
    for ax in axes[:, 0]:
        ax.set_ylabel(r"$r - 1$")
    handles = [
        Patch(color=INCREMENTAL_COLOUR, label="incremental (simulated)"),
        Patch(color=NOT_INCREMENTAL_COLOUR, label="not incremental"),
        plt.Line2D([], [], color="black", lw=1.3, label="theory threshold"),
        plt.Line2D([], [], ls="", marker="o", mfc="white", mec="black", label="measured threshold"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=4, frameon=False)
    fig.suptitle(f"Incremental learning of a pair: larger target learned to {ds.attrs['finish']:g} "
                 f"before the smaller reaches {ds.attrs['start']:g}")
    height = fig.get_figheight()
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.45 / height + 0.06,
                        top=1 - 0.75 / height, wspace=0.08, hspace=0.3)
    return fig


def thresholds(ds: xr.Dataset) -> plt.Figure:
    """The headline: ``ln(1/sigma0_th)`` against ``r - 1``, log-log, every depth.

    On these axes depth 2 is a straight line of slope -1 (``ln(1/sigma0_th) ~ C/(r - 1)``: an
    exponentially small threshold), while every depth above 2 bends to logarithmic growth
    (``sigma0_th ~ (r - 1)^(N/(N-2))``: polynomially small). Markers: thresholds measured from
    simulations; lines: exact theory; dashed: depth 2's leading-order law ``C/(r - 1)``. Depths
    without any threshold (N = 1) are listed in the legend as "never incremental".

    Example (see :func:`phase_diagram` for the dataset):
        >>> from jaxflow import plot
        >>> fig = plot.thresholds(plot._example_dataset())
        >>> [fig.axes[0].get_xscale(), fig.axes[0].get_yscale()]
        ['log', 'log']
    """
    start, finish = ds.attrs["start"], ds.attrs["finish"]
    excess = ds["ratio"].values - 1
    depths = [float(d) for d in ds["depth"].values]
    colours = _depth_colours(depths)
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    fine, exact = _dataset_curves(ds)
    never = []
    for k, depth in enumerate(depths):
        meas = -ds["log_threshold_measured"].sel(depth=depth).values
        ok, okm = np.isfinite(exact[k]) & (exact[k] > 0), np.isfinite(meas) & (meas > 0)
        if not ok.any() and not okm.any():
            never.append(depth_label(depth))
            continue
        c = colours[depth]
        ax.plot(fine[ok], exact[k][ok], color=c, lw=1.3, label=depth_label(depth))
        ax.plot(excess[okm], meas[okm], "o", ms=3.2, color=c, mec="black", mew=0.3)
    if 2.0 in depths:
        logit = lambda u: math.log(u / (1 - u))
        c2 = logit(finish) - logit(start)
        ax.plot(fine, c2 / fine, color=colours[2.0], lw=0.9, ls="--",
                label=rf"$C/(r-1)$, $C$ = {c2:.3f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log_ticks(ax)
    ax.set_xlabel(r"ratio $-\,1$  ($r = \sigma^*_i/\sigma^*_j$)")
    ax.set_ylabel(r"$\ln(\sigma^*_j/\sigma_0^{th})$: how small the start must be")
    ax.grid(True, which="major", alpha=0.3)
    ax.plot([], [], "o", color="grey", mec="black", mew=0.3, label="simulated")
    ax.plot([], [], color="grey", label="exact theory")
    if never:
        ax.plot([], [], ls="", label=f"never incremental: {', '.join(never)}")
    ax.legend(fontsize=7, ncol=2, loc="upper right")
    ax.set_title("Depth 2 needs an exponentially small start (slope -1);\n"
                 "deeper models a polynomially small one (logarithmic growth)", fontsize=10,
                 y=1.0)  # at a given height: no search for one clear of the tick labels
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.11, top=0.88)
    return fig


def staircase(ds: xr.Dataset, title: str = "", value_label: str = "mode value", *,
              mode_labels=None) -> plt.Figure:
    """The paper's Figure 1 layout: per depth, the tracked modes against time, gradient flow
    solid with gradient descent as circles on top (at ``t = lr * step`` the two nearly coincide,
    so a dashed descent would hide under the flow), each target a thin dotted line in its mode's
    colour; the legend names the modes (``mode_labels``, default ``mode i (target v)``).

    Works on any dataset in the shared experiment layout (``jaxflow.experiments.backends``).

    Example (the layout filled with the exact depth-2 flow of two targets, a logistic):
        >>> import numpy as np, xarray as xr
        >>> from jaxflow import plot
        >>> t, targets = np.linspace(0.0, 12.0, 60), np.array([2.0, 1.0])
        >>> values = targets / (1 + (targets / 1e-3 - 1) * np.exp(-targets * t[:, None]))
        >>> ds = xr.Dataset({"modes": (("backend", "depth", "time", "mode"), values[None, None]),
        ...                  "targets": ("mode", [2.0, 1.0])},
        ...                 coords={"backend": ["flow"], "depth": [2], "time": t, "mode": [0, 1]})
        >>> fig = plot.staircase(ds, title="depth 2, exact")
        >>> len(fig.axes), fig.legends[0].get_texts()[0].get_text()
        (1, 'mode 1 (target 2)')
    """
    depths = list(ds["depth"].values)
    fig, axes = plt.subplots(1, len(depths), figsize=(3.6 * len(depths) + 1.9, 3.6),
                             sharey=True, squeeze=False, layout="constrained")
    t = ds["time"].values
    marks = np.arange(0, t.size, max(1, t.size // 25))  # about 25 descent markers
    targets = ds["targets"].values
    if mode_labels is None:
        mode_labels = [f"mode {i + 1} (target {v:.3g})" for i, v in enumerate(targets)]
    for ax, depth in zip(axes[0], depths):
        _modes_panel(ax, t, ds["modes"].sel(depth=depth), mode_labels, marks=marks,
                     targets=targets)
        ax.set_title(f"depth {depth}")
        ax.set_xlabel("flow time t = lr × step")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel(value_label)
    handles, labels = axes[0][0].get_legend_handles_labels()
    styles, names = _backend_handles()
    handles += styles + [plt.Line2D([], [], color="0.3", lw=0.7, ls=":")]
    labels += names + ["target"]
    fig.legend(handles, labels, loc="outside right center", fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    return fig


FORMATS = ("png", "pdf", "svg")


def figure_format(path, format: str | None = None) -> str:
    """The format a figure is written in: ``format``, else the suffix of ``path``; a
    ``ValueError`` naming both unless it is one of :data:`FORMATS`.

    >>> from jaxflow import plot
    >>> plot.figure_format("fig.PDF"), plot.figure_format("fig", "svg")
    ('pdf', 'svg')
    >>> plot.figure_format("fig.jpg")
    Traceback (most recent call last):
    ...
    ValueError: figures are written as .png, .pdf or .svg; 'fig.jpg' has suffix '.jpg'
    """
    if format is not None:
        if format.lower() not in FORMATS:
            raise ValueError(f"figures are written as png, pdf or svg, got format {format!r}")
        return format.lower()
    suffix = os.path.splitext(os.fspath(path))[1]
    if suffix.lower().lstrip(".") not in FORMATS:
        raise ValueError(f"figures are written as .png, .pdf or .svg; {os.fspath(path)!r} has "
                         + (f"suffix {suffix!r}" if suffix else "no suffix"))
    return suffix.lower().lstrip(".")


def save(fig: plt.Figure, path, dpi: int = 130, format: str | None = None):
    """Write a figure as PNG, PDF or SVG (``format``, else from the suffix) and close it; returns
    the path. Raises ``ValueError`` (naming the path) for any other format.

    ``path`` may be a binary file object (the CLI renders figures in memory, then writes them
    atomically); ``format`` is then required. PDF and SVG keep lines and text as vectors (the
    phase diagram's large colour grids are rasterized at ``dpi``).

    >>> import os, tempfile
    >>> import matplotlib.pyplot as plt
    >>> from jaxflow import plot
    >>> fig, ax = plt.subplots()
    >>> path = plot.save(fig, os.path.join(tempfile.mkdtemp(), "figure.pdf"), dpi=50)
    >>> os.path.getsize(path) > 0
    True
    """
    named = isinstance(path, str | os.PathLike)
    try:
        if not named and format is None:
            raise ValueError("save: a file object needs format= (png, pdf or svg)")
        format = figure_format(path, format)
    except ValueError:
        plt.close(fig)
        raise
    # No creation date in the PDF/SVG metadata: a redrawn figure is byte-identical.
    metadata = {"png": None, "pdf": {"CreationDate": None}, "svg": {"Date": None}}[format]
    fig.savefig(path, dpi=dpi, format=format, metadata=metadata)
    plt.close(fig)
    return os.fspath(path) if named else path


def _seed_bands(ax, ds, name, depths, colours):
    """Mean over seeds against scale, one line per depth, the seeds' range shaded."""
    scales = ds["scale"].values
    for depth in depths:
        values = ds[name].sel(depth=depth)
        ax.fill_between(scales, values.min("seed").values, values.max("seed").values,
                        color=colours[depth], alpha=0.18, lw=0)
        ax.plot(scales, values.mean("seed").values, "o-", ms=3, color=colours[depth],
                label=depth_label(depth))
    ax.set_xscale("log")
    ax.grid(True, alpha=0.3)


def _seed_legend(fig, ax, n: int, extra=()) -> None:
    """The legend of :func:`_seed_bands` panels, right of the figure: the depths (``ax``'s
    lines), what the line and the band stand for, then ``extra`` (handle, label) pairs."""
    handles, labels = ax.get_legend_handles_labels()
    handles += [plt.Line2D([], [], color="0.3", marker="o", ms=3),
                Patch(color="0.3", alpha=0.18, lw=0)] + [h for h, _ in extra]
    labels += [f"mean over {n} seeds", f"range over {n} seeds"] + [label for _, label in extra]
    fig.legend(handles, labels, loc="outside right center", fontsize=8, frameon=False)


def generalization(ds: xr.Dataset) -> plt.Figure:
    """Deep matrix sensing: reconstruction error and effective rank against the init scale.

    Takes the dataset of :func:`jaxflow.experiments.generalization.run` (dims depth, scale, seed).

    Example (made-up numbers in that layout):
        >>> import numpy as np, xarray as xr
        >>> from jaxflow import plot
        >>> dims = ("depth", "scale", "seed")
        >>> error = np.array([[[0.5, 0.6]] * 3, [[1e-6, 1e-6], [1e-4, 1e-4], [0.3, 0.4]]])
        >>> ds = xr.Dataset({"reconstruction_error": (dims, error),
        ...                  "effective_rank": (dims, np.where(error < 0.01, 4, 10))},
        ...                 coords={"depth": [1.0, 3.0], "scale": [1e-4, 1e-2, 1.0],
        ...                         "seed": [0.0, 1.0]},
        ...                 attrs={"d": 20, "m": 200, "target_rank": 4})
        >>> fig = plot.generalization(ds)
        >>> fig.axes[0].get_yscale()
        'log'
    """
    depths = [float(d) for d in ds["depth"].values]
    colours = _depth_colours(depths)
    fig, (err, rank) = plt.subplots(1, 2, figsize=(11, 4.4), sharex=True, layout="constrained")
    floor = 1e-8  # exact recovery shows at the floor of the log axis
    _seed_bands(err, ds.assign(reconstruction_error=ds["reconstruction_error"].clip(min=floor)),
                "reconstruction_error", depths, colours)
    _seed_bands(rank, ds, "effective_rank", depths, colours)
    err.set_yscale("log")
    err.set_ylim(bottom=floor / 2)
    err.set_ylabel(r"reconstruction error $\|W-W^*\|_F^2/\|W^*\|_F^2$")
    rank.set_ylabel("effective rank of W (s > 1% of s_max)")
    target_rank = ds.attrs.get("target_rank", 4)
    rank.axhline(target_rank, color="grey", lw=0.8, ls=":")
    for ax in (err, rank):
        ax.set_xlabel("initialization scale (RMS singular value of W(0))")
    n = ds.sizes["seed"]
    _seed_legend(fig, rank, n, [(plt.Line2D([], [], color="grey", lw=0.8, ls=":"),
                                 f"target rank ({target_rank})")])
    fig.suptitle(f"Deep matrix sensing (d = {ds.attrs.get('d')}, m = {ds.attrs.get('m')}): "
                 f"deeper nets stay low-rank up to larger init ({n} seeds)")
    return fig


def factor_diagram(ds: xr.Dataset) -> plt.Figure:
    """Unbalanced random factors: incremental fraction and rank correlation against sigma0,
    one line per depth, mean over seeds with the seeds' range shaded.

    Takes the dataset of :func:`jaxflow.experiments.factor_diagram.run` (dims depth, scale, seed).

    Example (made-up numbers in that layout):
        >>> import numpy as np, xarray as xr
        >>> from jaxflow import plot
        >>> dims = ("depth", "scale", "seed")
        >>> fraction = np.array([[[0.0, 0.0]] * 2, [[1.0, 1.0], [0.5, 0.0]]])
        >>> ds = xr.Dataset({"incremental_fraction": (dims, fraction),
        ...                  "rank_correlation": (dims, 2 * fraction - 1)},
        ...                 coords={"depth": [1.0, 3.0], "scale": [1e-6, 1e-2], "seed": [0.0, 1.0]},
        ...                 attrs={"num_modes": 4, "ratio": 2.0})
        >>> len(plot.factor_diagram(ds).axes)
        2
    """
    depths = [float(d) for d in ds["depth"].values]
    colours = _depth_colours(depths)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), sharex=True, layout="constrained")
    panels = (
        ("incremental_fraction", "fraction of consecutive pairs\n(start, finish)-incremental"),
        ("rank_correlation", "rank correlation of learning order\nwith target order"),
    )
    for ax, (name, label) in zip(axes, panels):
        _seed_bands(ax, ds, name, depths, colours)
        ax.set_xlabel(r"initialization scale $\sigma_0$ (factors $\sim \sigma_0^{1/N}$)")
        ax.set_ylabel(label)
    axes[0].set_ylim(-0.05, 1.05)
    axes[1].set_ylim(-1.05, 1.05)
    _seed_legend(fig, axes[1], ds.sizes["seed"])
    fig.suptitle(
        f"Random unbalanced factors, {ds.attrs['num_modes']} targets in ratio {ds.attrs['ratio']:g} "
        f"({ds.sizes['seed']} seeds: mean and range)"
    )
    return fig


def _mode_colour(i: int) -> str:
    return MODE_COLOURS[i % len(MODE_COLOURS)]


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
        colour = _mode_colour(i)
        if targets is not None:
            ax.axhline(targets[i], color=colour, lw=0.7, ls=":", alpha=0.9)
        if "flow" in backends:
            ax.plot(times, modes.sel(backend="flow").values[:, i], color=colour, lw=1.6,
                    label=label)
        if "descent" in backends:
            values = modes.sel(backend="descent").values[:, i]
            ax.plot(times[marks], values[marks], ls="none", marker="o", ms=3.5, mfc="none",
                    mew=0.9, color=colour)


def _backend_handles(descent_label: str = "gradient descent"):
    """Legend entries of the two back-ends' styles (in grey, whatever the mode's colour)."""
    return (
        [plt.Line2D([], [], color="0.3", lw=1.6),
         plt.Line2D([], [], color="0.3", ls="none", marker="o", mfc="none")],
        ["gradient flow", descent_label],
    )


def quadratic(ds: xr.Dataset) -> plt.Figure:
    """E2: top eigenvalues of ``W^T W`` against time, one panel per bias variant (Fig. 1b of Gissin et al. 2020).

    Gradient flow is drawn solid, gradient descent as markers on top of it, the targets as thin
    dotted lines in the mode's colour. Takes the dataset of
    :func:`jaxflow.experiments.quadratic.run`.

    Example (made-up curves in that layout):
        >>> import numpy as np, xarray as xr
        >>> from jaxflow import plot
        >>> t = np.linspace(0.0, 8.0, 41)
        >>> targets = np.array([1.0, 0.5])
        >>> curves = targets / (1 + (targets / 1e-4 - 1) * np.exp(-16 * targets * t[:, None]))
        >>> modes = np.broadcast_to(curves, (2, 2, 1) + curves.shape)   # bias, backend, depth
        >>> ds = xr.Dataset({"modes": (("bias", "backend", "depth", "time", "mode"), modes),
        ...                  "targets": ("mode", targets)},
        ...                 coords={"bias": [False, True], "backend": ["flow", "descent"],
        ...                         "depth": [2], "time": t, "mode": [0, 1]},
        ...                 attrs={"learning_rate": 1e-3, "d": 20, "m": 100, "scale": 1e-4})
        >>> [ax.get_title()[:7] for ax in plot.quadratic(ds).axes]
        ['no bias', 'bias, b']
    """
    variants = [bool(b) for b in ds["bias"].values]
    fig, axes = plt.subplots(1, len(variants), figsize=(5.0 * len(variants) + 1.6, 3.8),
                             sharey=True, squeeze=False)
    times = ds["time"].values
    marks = np.arange(0, times.size, max(1, times.size // 25))  # about 25 descent markers
    targets = ds["targets"].values
    labels = [f"$\\lambda_{i + 1}$ (target {target:.3g})" for i, target in enumerate(targets)]
    for ax, bias in zip(axes.flat, variants):
        panel = ds.sel(bias=bias).isel(depth=0)
        _modes_panel(ax, times, panel["modes"], labels, marks=marks, targets=targets)
        title = "bias, b(0) = mean(y)" if bias else "no bias"
        ax.set_title(f"{title}: $f(x) = x^T W^T W x$" + (" + b" if bias else ""))
        ax.set_xlabel("time t = learning rate × step")
        ax.set_xlim(times[0], times[-1])
        ax.grid(alpha=0.25, lw=0.5)
    axes.flat[0].set_ylabel("top eigenvalues of $W^T W$")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    styles, names = _backend_handles(f"gradient descent\n(lr {ds.attrs['learning_rate']:g})")
    handles += styles + [plt.Line2D([], [], color="0.3", lw=0.7, ls=":")]
    labels += names + ["target"]
    fig.legend(handles, labels, loc="center right", fontsize=8, frameon=False)
    fig.suptitle(f"Quadratic network, d = {ds.attrs.get('d')}, m = {ds.attrs.get('m')}, "
                 f"$W^T W(0)$ = {ds.attrs.get('scale'):g} I", fontsize=10)
    fig.tight_layout(rect=(0.0, 0.0, 0.86, 1.0))
    return fig


def classification(ds: xr.Dataset, title: str, value_label: str, *, mode_labels=None,
                   sharey: bool = True) -> plt.Figure:
    """E3, E4: tracked modes against time (log axis), one panel per depth (Fig. 1c/1d of Gissin et al. 2020).

    Gradient flow solid, gradient descent as markers; the legend names the modes
    (``mode_labels``, default ``mode i``). ``sharey=False`` gives each depth its own value axis (the scales of the
    depths differ by orders of magnitude on the convolutional nets). The bottom row shows the
    correlation with the target by depth against the max-margin SVM. Takes the dataset of
    :func:`jaxflow.experiments.diagonal.run` or :func:`jaxflow.experiments.convolutional.run`.

    Example (made-up curves in that layout):
        >>> import numpy as np, xarray as xr
        >>> from jaxflow import plot
        >>> t = np.geomspace(0.1, 100.0, 20)
        >>> modes = np.broadcast_to(np.tanh(t)[:, None], (2, 2, 20, 1))   # backend, depth
        >>> ds = xr.Dataset({"modes": (("backend", "depth", "time", "mode"), modes),
        ...                  "targets": ("mode", [1.0]),
        ...                  "correlation": (("backend", "depth"), [[0.8, 0.99], [0.8, 0.99]]),
        ...                  "svm_correlation": 0.78},
        ...                 coords={"backend": ["flow", "descent"], "depth": [1, 2], "time": t,
        ...                         "mode": [0]})
        >>> len(plot.classification(ds, "made up", "|beta_i|").axes)   # two depths + correlation
        3
    """
    depths = [int(d) for d in ds["depth"].values]
    fig = plt.figure(figsize=(max(7.5, 3.3 * len(depths) + 0.6), 6.6), layout="constrained")
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
        ax.set_title(f"depth {depth}")
        ax.set_xlabel("time t = lr × step")
        ax.grid(alpha=0.25, lw=0.5)
    first.set_ylabel(value_label)
    handles, labels = first.get_legend_handles_labels()
    styles, names = _backend_handles()
    first.legend(handles + styles, labels + names, fontsize=7, loc="upper left")
    ax = fig.add_subplot(grid[1, :])
    shown = []
    for backend, style in (("flow", "o-"), ("descent", "s--")):
        if backend in ds["backend"].values:
            values = ds["correlation"].sel(backend=backend).values
            ax.plot(depths, values, style, ms=5, label=f"{backend} (t = {times[-1]:g})")
            shown.append(values)
    if "svm_correlation" in ds:
        svm = float(ds["svm_correlation"])
        ax.axhline(svm, color="0.4", ls=":", label="max-margin SVM (no intercept)")
        shown.append([svm])
    # axhline does not take part in autoscaling: the limits are set to hold the SVM's level too,
    # with a margin, so that its line never sits on the frame.
    values = np.concatenate([np.ravel(v) for v in shown])
    values = values[np.isfinite(values)]
    if values.size:
        pad = max(0.08 * (values.max() - values.min()), 0.01)
        ax.set_ylim(values.min() - pad, values.max() + pad)
    ax.set_xticks(depths)
    ax.set_xlabel("depth N")
    ax.set_ylabel("correlation with target")
    ax.grid(alpha=0.25, lw=0.5)
    ax.legend(fontsize=8, loc="best")
    fig.suptitle(title, fontsize=10)
    return fig


def omp_picks(ds: xr.Dataset) -> plt.Figure:
    """E5: seed 0's support coordinates against time (flow solid to its horizon, descent markers
    to its own), the pick threshold, and the concurrence with OMP of every seed.

    Takes the dataset of :func:`jaxflow.experiments.omp.run`; an example is the registry's
    smoke run in tests/test_experiments.py.
    """
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.4), width_ratios=(2.6, 1.0),
                                 layout="constrained")
    t = ds["time"].values
    first = ds.sel(seed=0)
    labels = [f"w* = {float(v):.3g}" for v in first["targets"].values]
    _modes_panel(ax, t, first["modes"], labels)
    ax.axhline(ds.attrs["threshold"], color="0.4", ls=":", lw=0.9, label="pick threshold")
    ax.axvline(float(ds["horizon"].sel(backend="descent")), color="0.6", ls="--", lw=0.8,
               label="descent horizon")
    ax.set_yscale("symlog", linthresh=1e-2)
    ax.set_ylim(bottom=0.0)
    ax.set_xlabel("time t = lr × step")
    ax.set_ylabel("|beta_i| on the support (seed 0)")
    ax.set_title(
        f"seed 0 — OMP order: {first['omp_order'].values.tolist()}, flow picks: "
        f"{first['order'].sel(backend='flow').values.tolist()}\n(solid: gradient flow; "
        "circles: gradient descent)",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="center right")
    # Concurrence per seed, compact: it is 1 on most seeds, so the panel is narrow. A seed on
    # which a back-end makes no pick before its horizon has no concurrence; it is drawn as a
    # cross on its own "no pick" row, not left out.
    seeds = ds["seed"].values
    nopick = -0.2
    for b, marker, shift, colour in (("flow", "o", -0.12, OKABE_ITO[4]),
                                     ("descent", "s", 0.12, OKABE_ITO[5])):
        values = ds["concurrence"].sel(backend=b).values
        picked = ds["num_picks"].sel(backend=b).values > 0
        summary = (f"{values[picked].mean():.2f} ± {values[picked].std():.2f}"
                   if picked.any() else "none")
        bx.plot(seeds[picked] + shift, values[picked], marker, mfc="none", color=colour,
                label=f"{b} (t = {float(ds['horizon'].sel(backend=b)):g}): {summary}\n"
                      f"over the {int(picked.sum())} of {seeds.size} seeds with picks")
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
    bx.legend(fontsize=7, loc="center")
    fig.suptitle(
        f"E5: depth-{ds.attrs['depth']} diagonal network against OMP "
        f"(d = {ds.attrs['d']}, m = {ds.attrs['m']}, {ds.attrs['sparsity']}-sparse)"
    )
    return fig


def _oracle_jumps(ds: xr.Dataset) -> np.ndarray:
    times = ds["oracle_jump_time"].values
    return times[np.isfinite(times)]


def saddle_staircase(ds: xr.Dataset) -> plt.Figure:
    """Saddle-to-saddle: the shallowest depth's flow, loss and coordinates against rescaled time
    for each scale (darker = smaller ``alpha``), collapsing onto the jump process's staircase
    (dashed black). ``ds`` as written by :mod:`jaxflow.experiments.saddle_to_saddle`."""
    oracle_t = _oracle_jumps(ds)
    time = ds["time"].values
    edges = np.concatenate([[0.0], oracle_t, [time[-1]]])
    depth = int(ds["depth"].values[0])
    flow_ds = ds.sel(backend="flow", depth=depth)
    alphas = [a for a in ds["alpha"].values if bool(flow_ds["ran"].sel(alpha=a))]
    cmap = plt.get_cmap("cividis")  # the palette of ordered values (as depths elsewhere)
    shades = cmap(np.linspace(0.9, 0.0, len(alphas)))
    betas = ds["oracle_beta"].values[: oracle_t.size + 1]
    learned = np.flatnonzero(np.abs(betas).max(0) > 0)
    fig, (ax_loss, ax_beta) = plt.subplots(1, 2, figsize=(11, 4.4))
    for alpha, colour in zip(alphas, shades):
        run = flow_ds.sel(alpha=alpha)
        ax_loss.plot(time, run["loss"].values, color=colour, lw=1.2, label=f"alpha = {alpha:.0e}")
        for i in learned:
            ax_beta.plot(time, run["modes"].values[:, i], color=colour, lw=1.0)
    floor = 1e-6  # the last plateau's loss is 0 on a log axis: drawn at the floor
    losses = np.maximum(ds["oracle_plateau_loss"].values[: oracle_t.size + 1], floor)
    ax_loss.stairs(losses, edges, baseline=None, color="k", ls="--", lw=1.2,
                   label="jump process (oracle)")
    ax_loss.set_ylim(bottom=floor / 2)
    for i in learned:
        ax_beta.stairs(betas[:, i], edges, baseline=None, color="k", ls="--", lw=1.0)
        ax_beta.annotate(f"beta_{i}", (time[-1], betas[-1, i]), fontsize=8, va="center",
                         xytext=(3, 0), textcoords="offset points")
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("loss")
    ax_beta.set_ylabel("coordinates beta_i (dashed: jump process)")
    unit = "ln(1/alpha)/4" if depth == 2 else f"alpha^-(1-2/N)/(N(N-2)), N = {depth}"
    for ax in (ax_loss, ax_beta):
        ax.set_xlabel(f"rescaled time t / ({unit})")
        ax.grid(alpha=0.25, lw=0.5)
    ax_loss.legend(fontsize=7)
    fig.suptitle(f"Saddle-to-saddle: the depth-{depth} flow collapses onto the jump process "
                 "as alpha -> 0")
    fig.tight_layout()
    return fig


def jump_times(ds: xr.Dataset) -> plt.Figure:
    """Saddle-to-saddle: the flow's jump times (flow time) against ``alpha``, per depth (left,
    over the scales where the deep networks ran) and for depth 2 against ``ln(1/alpha)`` (right,
    where the jump process predicts straight lines); markers measured, lines the oracle's
    ``time_unit(N, alpha) * T_k``."""
    oracle_t = _oracle_jumps(ds)
    fig, (ax, ax_ln) = plt.subplots(1, 2, figsize=(11, 4.6))
    colours = _depth_colours([float(n) for n in ds["depth"].values])
    deep_ran = ds["ran"].sel(backend="flow").where(ds["depth"] > 2, drop=True)
    shown = deep_ran.any("depth").values if deep_ran.size else np.ones(ds.sizes["alpha"], bool)
    alpha = ds["alpha"].values
    for n in ds["depth"].values:
        colour = colours[float(n)]
        measured = ds["jump_flow_time"].sel(backend="flow", depth=n).values
        unit = ds["time_unit"].sel(depth=n).values
        for k, t_k in enumerate(oracle_t):
            label = depth_label(float(n)) if k == 0 else None
            ax.plot(alpha[shown], measured[shown, k], "o", color=colour, ms=3.5, label=label)
            ax.plot(alpha[shown], unit[shown] * t_k, "-", color=colour, lw=0.8, alpha=0.7)
            if n == 2:
                shade = _mode_colour(k)
                ax_ln.plot(-np.log(alpha), measured[:, k], "o", color=shade, ms=3.5,
                           label=f"jump {k + 1}")
                ax_ln.plot(-np.log(alpha), unit * t_k, "-", color=shade, lw=0.8, alpha=0.7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("alpha (initial scale)")
    ax.set_ylabel("jump time t (flow time)")
    ax.set_title("markers: measured; lines: jump process x time unit\n"
                 "(ln(1/alpha)/4 at depth 2, alpha^-(1-2/N)/(N(N-2)) at depth N)", fontsize=9)
    ax_ln.set_xlabel("ln(1/alpha)")
    ax_ln.set_ylabel("jump time t (flow time)")
    ax_ln.set_title("depth 2: jump times linear in ln(1/alpha)", fontsize=9)
    for a in (ax, ax_ln):
        a.grid(alpha=0.25, lw=0.5, which="both")
        a.legend(fontsize=8)
    fig.tight_layout()
    return fig
