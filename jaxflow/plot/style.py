"""The one figure style of jaxflow: colours, labels, sizes and file formats.

Every figure function of :mod:`jaxflow.plot` draws inside :func:`styled`, takes its colours from
:func:`depth_colour` and :func:`mode_colour`, its depth labels from :func:`depth_label`, its
widths from :data:`COLUMN_WIDTH` and :data:`PAGE_WIDTH`, and is written by :func:`save`.

* **Depth is a value, so its colour is a function of the value**: :func:`depth_colour` maps a
  depth N in [1, inf] onto the colour-blind-safe sequential map :data:`DEPTH_CMAP` (viridis,
  its light yellow end left out). Depth 3 is the same colour in every figure and every run,
  whichever other depths are drawn; deeper is lighter, and neighbouring depths of
  :data:`CANONICAL_DEPTHS` stay apart in greyscale.
* **Modes are categories**: :func:`mode_colour` cycles through the Okabe-Ito palette (yellow
  left out: unreadable as a thin line on white).
* **Labels are matplotlib mathtext** (``$\\sigma_0$``, ``$N = \\infty$``): no TeX installation
  is needed.
* **Sizes are made for a paper**: one column is :data:`COLUMN_WIDTH` inches wide, a figure
  across the page :data:`PAGE_WIDTH`, fonts 7-9 pt; PNGs are written at :data:`DPI` dots per
  inch.

Nothing here changes a global setting of matplotlib: the style is applied around each figure
function (``matplotlib.rc_context``), and the user's backend is left alone.

Example:
    >>> from jaxflow.plot import style
    >>> style.depth_colour(3) == style.depth_colour(3.0)
    True
    >>> style.depth_label(float("inf"))
    '$N = \\\\infty$'
"""

import functools
import math
import os

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import to_hex, to_rgb

__all__ = [
    "CANONICAL_DEPTHS",
    "COLUMN_WIDTH",
    "DEPTH_CMAP",
    "DPI",
    "FORMATS",
    "INCREMENTAL_COLOUR",
    "MODE_COLOURS",
    "NOT_INCREMENTAL_COLOUR",
    "OKABE_ITO",
    "PAGE_WIDTH",
    "RC",
    "depth_colour",
    "depth_label",
    "figure_format",
    "grey",
    "legend_outside",
    "mode_colour",
    "save",
    "styled",
]

# Okabe & Ito (2008), "Color universal design": distinguishable under the common colour-vision
# deficiencies. Orange, sky blue, bluish green, yellow, blue, vermillion, reddish purple, black.
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000")
INCREMENTAL_COLOUR = OKABE_ITO[4]
NOT_INCREMENTAL_COLOUR = OKABE_ITO[3]
# Blue, vermillion, green, purple first: the strongest contrasts for the four targets of the
# paper's experiments.
MODE_COLOURS = tuple(OKABE_ITO[i] for i in (4, 5, 2, 6, 0, 1, 7))

DEPTH_CMAP = "viridis"
# The part of the map used for depths: its last tenth (light yellow) is unreadable on white.
_CMAP_RANGE = (0.0, 0.9)
# The depths of the default phase diagram. They are spread evenly over the map, so that each
# is as far from its neighbours as twelve colours allow; any other depth falls between its
# neighbours (interpolated in 1 - 1/N, which takes N = inf to 1).
CANONICAL_DEPTHS = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, math.inf)
_ANCHORS = np.array([1.0 - 1.0 / d for d in CANONICAL_DEPTHS])

COLUMN_WIDTH = 3.4  # inches: one column of a two-column paper
PAGE_WIDTH = 7.0  # inches: across both columns
DPI = 200
FORMATS = ("png", "pdf", "svg")

RC = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "figure.titlesize": 9,
    "legend.frameon": False,
    "lines.linewidth": 1.2,
    "lines.markersize": 3.5,
    "axes.linewidth": 0.6,
    "grid.linewidth": 0.4,
    "mathtext.fontset": "dejavusans",
    "savefig.dpi": DPI,
    "figure.dpi": 100,
}


def grey(colour) -> float:
    """The greyscale value of a colour in [0, 1] (ITU-R BT.601 luma, as a greyscale print
    or ``PIL``'s ``convert("L")`` renders it).

    Example:
        >>> from jaxflow.plot import style
        >>> style.grey("#000000"), style.grey("#ffffff")
        (0.0, 1.0)
    """
    r, g, b = to_rgb(colour)
    return round(0.299 * r + 0.587 * g + 0.114 * b, 12)


@functools.cache
def _places() -> np.ndarray:
    """Where the canonical depths sit on the map: evenly spaced in greyscale (viridis' luma is
    not linear along the map), so that every pair of neighbours differs by the same grey."""
    low, high = _CMAP_RANGE
    u = np.linspace(low, high, 512)
    greys = np.array([grey(c) for c in mpl.colormaps[DEPTH_CMAP](u)])
    return np.interp(np.linspace(greys[0], greys[-1], _ANCHORS.size), greys, u)


def depth_colour(depth: float) -> str:
    """The colour of a depth, as ``#rrggbb``: a function of the depth's value alone.

    Depths run from 1 (dark purple) to infinity (light green) on :data:`DEPTH_CMAP`; the
    :data:`CANONICAL_DEPTHS` are spread evenly and any other depth falls between its
    neighbours. Depths below 1 take depth 1's colour.

    Example:
        >>> from jaxflow import plot
        >>> plot.depth_colour(2), plot.depth_colour(float("inf"))
        ('#472a7a', '#bddf26')
    """
    depth = float(depth)
    if math.isnan(depth):
        raise ValueError("depth_colour: the depth is NaN")
    position = 1.0 - 1.0 / max(depth, 1.0)  # 0 at N = 1, 1 at N = inf
    return to_hex(mpl.colormaps[DEPTH_CMAP](float(np.interp(position, _ANCHORS, _places()))))


def depth_label(depth: float, math_text: bool = True) -> str:
    """The label of a depth: mathtext for figures (``$N = 3$``), plain text for printed tables
    (``math_text=False``: ``N = 3``).

    Example:
        >>> from jaxflow import plot
        >>> plot.depth_label(3.0), plot.depth_label(float("inf"), math_text=False)
        ('$N = 3$', 'N = inf')
    """
    depth = float(depth)
    if not math_text:
        return "N = inf" if math.isinf(depth) else f"N = {depth:g}"
    return r"$N = \infty$" if math.isinf(depth) else f"$N = {depth:g}$"


def mode_colour(i: int) -> str:
    """The colour of the ``i``-th tracked mode (largest target first), from :data:`MODE_COLOURS`.

    Example:
        >>> from jaxflow import plot
        >>> plot.mode_colour(0) == plot.mode_colour(len(plot.MODE_COLOURS))
        True
    """
    return MODE_COLOURS[i % len(MODE_COLOURS)]


def styled(function):
    """Run a figure function with the style's settings (:data:`RC`), leaving the global
    settings of matplotlib as they were.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> from jaxflow.plot import style
        >>> @style.styled
        ... def empty():
        ...     return plt.figure()
        >>> fig = empty()
        >>> plt.rcParams["font.size"] == style.RC["font.size"]
        False
        >>> plt.close(fig)
    """

    @functools.wraps(function)
    def draw(*args, **kwargs):
        with plt.rc_context(RC):
            return function(*args, **kwargs)

    return draw


def legend_outside(fig, handles, labels, where: str = "right", ncol: int = 1):
    """A figure legend outside every axis (``where``: ``"right"`` or ``"bottom"``), for a
    figure drawn with ``layout="constrained"``, which makes room for it.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> from jaxflow.plot import style
        >>> fig, ax = plt.subplots(layout="constrained")
        >>> line, = ax.plot([0, 1], [0, 1])
        >>> style.legend_outside(fig, [line], ["a line"]).get_texts()[0].get_text()
        'a line'
        >>> plt.close(fig)
    """
    loc = {"right": "outside right center", "bottom": "outside lower center"}[where]
    return fig.legend(handles, labels, loc=loc, ncol=ncol, frameon=False)


def figure_format(path, format: str | None = None) -> str:
    """The format a figure is written in: ``format``, else the suffix of ``path``; a
    ``ValueError`` naming both unless it is one of :data:`FORMATS`.

    Example:
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


def save(fig, path, dpi: int = DPI, format: str | None = None):
    """Write a figure as PNG, PDF or SVG (``format``, else from the suffix) and close it; returns
    the path. Raises ``ValueError`` (naming the path) for any other format.

    ``path`` may be a binary file object (the CLI renders figures in memory, then writes them
    atomically); ``format`` is then required. PDF and SVG keep lines and text as vectors (the
    phase diagram's large colour grids are rasterized at ``dpi``). No creation date is written,
    so a redrawn figure is byte-identical.

    Example:
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
    metadata = {"png": None, "pdf": {"CreationDate": None}, "svg": {"Date": None}}[format]
    fig.savefig(path, dpi=dpi, format=format, metadata=metadata)
    plt.close(fig)
    return os.fspath(path) if named else path


_SUPERSCRIPTS = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def decade_label(value: float, _pos=None) -> str:
    """``10³``-style label of a decade, in plain Unicode (empty off the decades): matplotlib's
    default ``10^{3}`` goes through mathtext, whose parser costs ~15 ms per new label, a third
    of the phase diagram's drawing time on one core.

    Example:
        >>> from jaxflow.plot import style
        >>> style.decade_label(1e-3), style.decade_label(20.0)
        ('10⁻³', '')
    """
    exponent = round(math.log10(value)) if value > 0 else None
    if exponent is None or not math.isclose(value, 10.0 ** exponent, rel_tol=1e-9):
        return ""
    return "10" + str(exponent).translate(_SUPERSCRIPTS)


def decade_ticks(ax) -> None:
    """Major decades labelled by :func:`decade_label`, minor ticks unlabelled, on both log
    axes of ``ax``."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    for axis in (ax.xaxis, ax.yaxis):
        if axis.get_scale() == "log":
            axis.set_major_formatter(FuncFormatter(decade_label))
            axis.set_minor_formatter(NullFormatter())
