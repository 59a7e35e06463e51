"""Every figure of jaxflow, in one style (matplotlib, mathtext labels, no TeX needed).

Every figure function takes a dataset (as written by the experiments) and returns a matplotlib
``Figure``; :func:`save` writes it. The experiments' ``figures(ds)`` call these functions.

* :mod:`jaxflow.plot.style`: colour as a function of the depth's value
  (:func:`depth_colour`, the same depth the same colour in every figure), mode colours, labels,
  sizes for a paper column, file formats;
* :mod:`jaxflow.plot.phase`: the toy model's phase diagram, :func:`phase_diagram` and
  :func:`thresholds` (the headline);
* :mod:`jaxflow.plot.seeds`: sweeps over the initial scale with seeds, :func:`generalization`
  and :func:`factor_diagram`;
* :mod:`jaxflow.plot.modes`: modes against time, :func:`staircase` (any experiment in the
  shared layout), :func:`quadratic` (E2), :func:`classification` (E3, E4), :func:`omp_picks`
  (E5);
* :mod:`jaxflow.plot.saddles`: saddle-to-saddle, :func:`saddle_staircase` and
  :func:`jump_times`;
* :mod:`jaxflow.plot.examples`: a small dataset in each figure's layout
  (:func:`example_dataset`).

Importing this package changes no setting of matplotlib: the backend stays the user's
(matplotlib itself falls back to Agg where no display is available), and the style is applied
around each figure function only.

Example:
    >>> from jaxflow import plot
    >>> fig = plot.thresholds(plot.example_dataset("phase_diagram"))
    >>> len(fig.axes)
    1
"""

import matplotlib.pyplot as plt

from jaxflow.plot.examples import example_dataset
from jaxflow.plot.modes import classification, omp_picks, quadratic, staircase
from jaxflow.plot.phase import phase_diagram, thresholds
from jaxflow.plot.saddles import jump_times, saddle_staircase
from jaxflow.plot.seeds import factor_diagram, generalization
from jaxflow.plot.style import (
    CANONICAL_DEPTHS,
    COLUMN_WIDTH,
    DPI,
    FORMATS,
    INCREMENTAL_COLOUR,
    MODE_COLOURS,
    NOT_INCREMENTAL_COLOUR,
    OKABE_ITO,
    PAGE_WIDTH,
    depth_colour,
    depth_label,
    figure_format,
    mode_colour,
    save,
)

# The colours of the canonical depths, in order (kept for code that indexed this tuple; new
# code calls depth_colour with the depth itself).
DEPTH_COLOURS = tuple(depth_colour(d) for d in CANONICAL_DEPTHS)

__all__ = [
    "CANONICAL_DEPTHS",
    "COLUMN_WIDTH",
    "DEPTH_COLOURS",
    "DPI",
    "FORMATS",
    "INCREMENTAL_COLOUR",
    "MODE_COLOURS",
    "NOT_INCREMENTAL_COLOUR",
    "OKABE_ITO",
    "PAGE_WIDTH",
    "classification",
    "depth_colour",
    "depth_label",
    "example_dataset",
    "factor_diagram",
    "figure_format",
    "generalization",
    "jump_times",
    "mode_colour",
    "omp_picks",
    "phase_diagram",
    "plt",
    "quadratic",
    "saddle_staircase",
    "save",
    "staircase",
    "thresholds",
]
