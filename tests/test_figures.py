"""The figure style holds in every figure function: depth colours are a function of the depth's
value (the same everywhere, neighbours apart in greyscale), legends cover no axes, labels are
mathtext, and each figure matches its stored image within a tolerance.

The stored images are in tests/baseline_images/ (rendered from jaxflow.plot.example_dataset at
a low dpi). After an intended change of a figure, rewrite them with
``JAXFLOW_UPDATE_BASELINES=1 python -m pytest tests/test_figures.py`` and look at them.
"""

import math
import os
import pathlib
import re

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr
from matplotlib.colors import to_hex
from matplotlib.testing.compare import compare_images

from jaxflow import plot
from jaxflow.plot import edge, style

BASELINES = pathlib.Path(__file__).parent / "baseline_images"
BASELINE_DPI = 50
# RMS difference over 0-255 grey levels: font rasterization differs a little between FreeType
# builds; a moved legend, a missing line or a changed layout is far above it.
TOLERANCE = 2.0

ex = plot.example_dataset


def _edge_of_stability():
    """A made-up dataset in the layout of jaxflow.plot.edge: depths 2 and 3, two inits, four
    step sizes (converged below the limit, then catapult, oscillating, diverged), sharpness
    settling towards min(its flow value, 2/eta)."""
    depths, scales = np.array([2, 3]), np.array([0.1, 1.0])
    factors, inits, save = np.array([0.5, 0.9, 1.1, 2.5]), np.array([0, 1]), np.arange(0, 50, 5)
    shape = (depths.size, scales.size, factors.size, inits.size)
    regime = np.broadcast_to(np.array([0, 0, 1, 2])[:, None], shape[2:])
    regime = np.broadcast_to(regime, shape).copy()
    regime[:, 0, 3, :] = 3
    lam = np.broadcast_to((2.0 * depths)[:, None, None, None], shape).astype(float)
    two_over_eta = lam / factors[:, None]
    flow = lam[..., None] * (1 - 0.5 * np.exp(-save / 10.0))
    sharpness = np.minimum(flow, two_over_eta[..., None] * (1 + 0.02 * np.sin(save)))
    dims = ("depth", "scale", "eta_factor", "init")
    return xr.Dataset(
        {"regime": (dims, regime), "lambda_balanced": (dims, lam),
         "two_over_eta": (dims, two_over_eta),
         "sharpness": (dims + ("save",), sharpness), "flow_sharpness": (dims + ("save",), flow)},
        coords={"depth": depths, "scale": scales, "eta_factor": factors, "init": inits,
                "save": save})


def _large_step_thresholds():
    """Made-up threshold ratios: depths 2-4, two target ratios, five step sizes; one lane
    uncertain, one not answered (NaN)."""
    depths, ratios, factors = np.array([2, 3, 4]), np.array([1.5, 4.0]), np.array(
        [0.1, 0.5, 0.9, 1.1, 1.5])
    q = 1.0 + 0.1 * np.sin(depths[:, None, None] + ratios[None, :, None] * factors)
    code = np.zeros(q.shape, dtype=np.int8)
    code[0, 0, 2] = 7  # uncertain
    q[1, 1, 4] = np.nan
    dims = ("depth", "ratio", "eta_factor")
    return xr.Dataset({"threshold_ratio": (dims, q), "status": (dims, code)},
                      coords={"depth": depths, "ratio": ratios, "eta_factor": factors})


def _large_step_diagonal():
    """Made-up l1 norms and distances to the flow's interpolator: depths 2-4, three seeds (one
    not converged at the largest step), four step sizes."""
    depths, seeds, factors = np.array([2, 3, 4]), np.arange(3), np.array([0.25, 0.5, 0.9, 1.5])
    grid = depths[:, None, None] + 0.1 * seeds[None, :, None]
    l1 = 3.0 * (1 + 0.1 * factors[None, None, :] ** 2 / grid)
    distance = 0.02 * factors[None, None, :] / grid
    converged = np.ones(l1.shape, dtype=bool)
    converged[0, 2, 3] = False
    dims = ("depth", "seed", "eta_factor")
    return xr.Dataset({"l1": (dims, l1), "l1_flow": (dims[:2], np.full(grid.shape[:2], 3.0)),
                       "distance": (dims, distance), "converged": (dims, converged)},
                      coords={"depth": depths, "seed": seeds, "eta_factor": factors})


FIGURES = {
    "large_step_thresholds": lambda: edge.threshold_ratios(_large_step_thresholds()),
    "large_step_diagonal": lambda: edge.diagonal_sparsity(_large_step_diagonal()),
    "phase_diagram": lambda: plot.phase_diagram(ex("phase_diagram")),
    "thresholds": lambda: plot.thresholds(ex("phase_diagram")),
    "staircase": lambda: plot.staircase(ex("staircase"), title="staircase"),
    "quadratic": lambda: plot.quadratic(ex("quadratic")),
    "classification": lambda: plot.classification(ex("classification"), "classification",
                                                  r"$|\beta_i|$"),
    "omp_picks": lambda: plot.omp_picks(ex("omp_picks")),
    "generalization": lambda: plot.generalization(ex("generalization")),
    "factor_diagram": lambda: plot.factor_diagram(ex("factor_diagram")),
    "saddle_staircase": lambda: plot.saddle_staircase(ex("saddles")),
    "jump_times": lambda: plot.jump_times(ex("saddles")),
    "edge_regime_map": lambda: edge.regime_map(_edge_of_stability()),
    "edge_sharpness_traces": lambda: edge.sharpness_traces(_edge_of_stability()),
}


@pytest.fixture(scope="module")
def drawn():
    """``drawn(name)``: FIGURES[name] built and drawn once for the module (every test of a
    figure, and the colour test, look at the same one); all closed at the end."""
    figures = {}

    def get(name):
        if name not in figures:
            figures[name] = FIGURES[name]()
            figures[name].canvas.draw()
        return figures[name]

    yield get
    for fig in figures.values():
        plt.close(fig)


@pytest.fixture(scope="module", params=sorted(FIGURES))
def figure(request, drawn):
    return request.param, drawn(request.param)


# --- the style functions -------------------------------------------------------------------

def test_depth_colour_depends_on_the_value_only():
    assert plot.depth_colour(3) == plot.depth_colour(3.0) == plot.depth_colour(np.float32(3))
    assert plot.depth_colour(math.inf) != plot.depth_colour(20.0)
    assert plot.depth_colour(0.5) == plot.depth_colour(1.0)  # below the range: depth 1's
    # a depth between two canonical ones lies between them in greyscale
    assert (style.grey(plot.depth_colour(6.0)) < style.grey(plot.depth_colour(7.0))
            < style.grey(plot.depth_colour(8.0)))
    with pytest.raises(ValueError, match="NaN"):
        plot.depth_colour(math.nan)


def test_neighbouring_depths_stay_distinct_in_greyscale():
    greys = np.array([style.grey(plot.depth_colour(d)) for d in style.CANONICAL_DEPTHS])
    # deeper is lighter, and every step between neighbours is visible in a greyscale print
    assert np.all(np.diff(greys) >= 0.05), np.diff(greys)
    dense = [style.grey(plot.depth_colour(d)) for d in np.linspace(1.0, 50.0, 400)]
    assert np.all(np.diff(dense) >= 0)


def _depth_colours_drawn(fig) -> dict:
    """{depth label: colour} of the legend entries of a figure that name a depth."""
    found = {}
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    for legend in legends:
        for handle, text in zip(legend.legend_handles, legend.get_texts()):
            label = text.get_text()
            if re.fullmatch(r"\$N = [^$]+\$", label):
                found[label] = to_hex(handle.get_color())
    return found


def test_the_same_depth_has_the_same_colour_in_every_figure(drawn):
    alone = plot.thresholds(ex("phase_diagram").sel(depth=[3.0]))
    depth_figures = {
        "thresholds": drawn("thresholds"),  # depths 2, 3
        "thresholds of depth 3 alone": alone,
        "generalization": drawn("generalization"),  # depths 1, 3
        "factor_diagram": drawn("factor_diagram"),  # depths 1, 3
        "jump_times": drawn("jump_times"),  # depths 2, 3
    }
    for name, fig in depth_figures.items():
        colours = _depth_colours_drawn(fig)
        assert style.depth_label(3) in colours, name
        for label, colour in colours.items():
            depth = math.inf if "infty" in label else float(label.strip("$").split("= ")[1])
            assert colour == plot.depth_colour(depth), (name, label)
    plt.close(alone)


# --- every figure function -----------------------------------------------------------------

def test_legends_cover_no_axes(figure):
    name, fig = figure
    renderer = fig.canvas.get_renderer()
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    assert legends, name
    page = fig.bbox
    for legend in legends:
        box = legend.get_window_extent(renderer)
        assert page.x0 - 1 <= box.x0 and box.x1 <= page.x1 + 1, (name, "legend off the page")
        assert page.y0 - 1 <= box.y0 and box.y1 <= page.y1 + 1, (name, "legend off the page")
        for ax in fig.axes:
            if ax.get_visible():
                assert not box.overlaps(ax.bbox), (name, "legend over an axis")


# ASCII spellings of symbols that belong in mathtext
_ASCII = re.compile(r"sigma0|sigma_|alpha|beta_|lambda_|\binf\b|\br ?- ?1\b|\^")


def _outside_math(text: str) -> str:
    return re.sub(r"\$[^$]*\$", "", text)


def test_labels_are_mathtext(figure):
    name, fig = figure
    texts = [t.get_text() for t in fig.findobj(matplotlib.text.Text)]
    ascii_math = [t for t in texts if _ASCII.search(_outside_math(t))]
    assert not ascii_math, (name, ascii_math)


def test_figures_are_sized_for_a_paper(figure):
    name, fig = figure
    width, height = fig.get_size_inches()
    assert width <= style.PAGE_WIDTH + 1e-9 and height <= 9, name
    assert style.DPI >= 150


def test_figures_match_their_stored_images(figure, tmp_path):
    name, fig = figure
    expected = BASELINES / f"{name}.png"
    if os.environ.get("JAXFLOW_UPDATE_BASELINES") == "1":
        BASELINES.mkdir(exist_ok=True)
        fig.savefig(expected, dpi=BASELINE_DPI, metadata={"Software": None})
        pytest.skip(f"rewrote {expected.name}")
    actual = tmp_path / f"{name}.png"
    fig.savefig(actual, dpi=BASELINE_DPI, metadata={"Software": None})
    result = compare_images(str(expected), str(actual), tol=TOLERANCE, in_decorator=True)
    assert result is None, (name, result)


def test_save_writes_pngs_at_the_style_dpi(tmp_path):
    from PIL import Image

    fig = plot.staircase(ex("staircase"))
    width = fig.get_size_inches()[0]
    path = plot.save(fig, tmp_path / "staircase.png")
    assert Image.open(path).size[0] == round(width * style.DPI)


# Importing jaxflow.plot leaves matplotlib's backend alone: tests/test_x64.py imports every module
# of jaxflow (jaxflow.plot among them) in fresh processes with a backend set and checks it is
# still the one set.
