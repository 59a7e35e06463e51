"""Every valid phase-diagram configuration finishes (hypothesis): sweep, thresholds, export,
figures.

tests/test_hostile_input.py generates *invalid* inputs and checks each is refused; here the
strategy generates *valid* small configurations, degenerate ones on purpose -- one depth, one
ratio or one scale; depth 1 (never incremental), 1 < N < 2, 2, non-integer and infinite depths;
ratios within 1e-7 of 1; scales down to e^-5000 and the smallest subnormal 5e-324, and scales
above ``start`` and ``finish * r`` (margin exactly 0 there); scales given in any order; chunks
of one point and chunks larger than the grid -- and runs each through ``jaxflow phase-diagram``
(in-process: sweep into a store, thresholds, summary table, ``.nc`` and both figures as PNG),
then reopens the ``.nc`` and redraws the figures from it, as ``jaxflow plot`` does.

Checked on every example:

* exit 0 when every answer is ok, 3 otherwise (``status.not_answered``), the last line saying
  which; the three files written, the store intact (``jaxflow.sweep.store.verify``);
* dims and coordinates are the config's axes, in its order; the TOML in the file's ``config``
  attribute reads back as the same configuration;
* every lane's status is a known code; no NaN margin on an ok lane; ``incremental`` is
  ``margin >= 0`` on ok lanes;
* a threshold with status ``not_found`` is NaN, and so is every threshold left open by lanes
  that did not finish; ``not_found`` only where every lane of its (depth, ratio) finished ok;
  where its status is ok it agrees with ``theory.incremental_threshold`` (log error <= 1e-5)
  and its error estimate is at most 1e-5: a wrong threshold is never reported as ok;
* the summary table has a row per depth; both figures have axes.

The ``@example`` configurations are the bugs this search found (regressions):
``measured_thresholds`` reported a threshold off by e^9 (depth inf, r = 1.001, grid e^-5000 ..
e^-3) and by e^4100 (depth 2.5, r = 1 + 1e-7) with status ok, when regula falsi ran out of
iterations on a lopsided bracket; and a grid point above ``ln(start)`` whose margin is exactly
0 (both learning times 0) read as incremental: an IndexError after the whole sweep (depth 2,
r = 1.05, scales 1e-6 and 0.99: issue 14's case) or an inverted bracket giving ``ln sigma0_th =
ln 0.99`` with status ok (depth 10 and inf, r = 1.001). :func:`test_grid_above_start` checks
the same bracketing, and a grid entirely above ``start``, on a stand-in margin.

Cost: every example compiles its own program (the config's constants are baked into it); the
examples are few, derandomized, and share one persistent compilation cache.
"""

import math
import os
import tempfile
import tomllib

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from jaxflow import cli
from jaxflow.engine import status
from jaxflow.experiments import phase_diagram as pd  # noqa: E402
from jaxflow.sweep import store  # noqa: E402

DEPTHS = [1.0, 1.5, 2.0, 2.5, 3.0, 10.0, math.inf]
RATIOS = [1.0 + 1e-7, 1.001, 1.05, 1.5, 4.0, 11.0]
LOG_SCALES = [-5000.0, -700.0, -30.0, -5.0, -1.0, -1e-3]
SCALES = [5e-324, 1e-300, 1e-6, 0.01, 0.5, 0.99]
FRACTIONS = [(0.1, 0.9), (0.3, 0.4), (0.01, 0.99)]
CHUNK_SIZES = [1, 5, 64]  # 64: larger than any generated grid (3 x 3 x 4 = 36 points)


def axis(values, max_size):
    return st.lists(st.sampled_from(values), min_size=1, max_size=max_size, unique=True)


@st.composite
def valid_configs(draw):
    """A valid small phase-diagram configuration (1-3 depths, 1-3 ratios, 1-4 scales)."""
    start, finish = draw(st.sampled_from(FRACTIONS))
    grid = dict(depths=tuple(draw(axis(DEPTHS, 3))), ratios=tuple(draw(axis(RATIOS, 3))))
    if draw(st.booleans()):
        grid["log_scales"] = tuple(draw(axis(LOG_SCALES, 4)))
    else:
        grid["scales"] = tuple(draw(axis(SCALES, 4)))
    return pd.PhaseDiagramConfig(**grid, start=start, finish=finish,
                                 chunk_size=draw(st.sampled_from(CHUNK_SIZES)))


GENERATED = settings(max_examples=4, deadline=None, derandomize=True, database=None,
                     suppress_health_check=[HealthCheck.too_slow,
                                            HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def cache_dir():
    return os.environ["JAXFLOW_CACHE_DIR"]  # the run's XLA cache (conftest)


@GENERATED
@given(config=valid_configs())
@example(config=pd.PhaseDiagramConfig(depths=(math.inf,), ratios=(1.001,),
                                      log_scales=(-5000.0, -3.0, -1e-3), chunk_size=5))
@example(config=pd.PhaseDiagramConfig(depths=(2.5,), ratios=(1.0 + 1e-7,),
                                      log_scales=(-5000.0, -3.0), chunk_size=1))
@example(config=pd.PhaseDiagramConfig(depths=(2.0, 10.0, math.inf), ratios=(1.001, 1.05),
                                      scales=(1e-6, 0.99), chunk_size=64))
def test_valid_config_runs_end_to_end(monkeypatch, capsys, cache_dir, config):
    monkeypatch.setenv("JAXFLOW_CACHE_DIR", cache_dir)
    with tempfile.TemporaryDirectory(prefix="jaxflow-generated-") as tmp:
        path = os.path.join(tmp, "phase_diagram.toml")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(config.to_toml())
        out = os.path.join(tmp, "out")
        code = cli.main(["phase-diagram", "--config", path, "--out", out, "--quiet"])
        captured = capsys.readouterr()
        assert code in (0, 3), captured.err[-3000:]
        assert "Traceback" not in captured.err
        last = captured.out.strip().splitlines()[-1]
        assert last.startswith("answered: all" if code == 0 else "not answered: "), last
        for name in ("phase_diagram.nc", "phase_diagram.png", "thresholds.png"):
            assert os.path.getsize(os.path.join(out, name)) > 0, name
            assert f"wrote {os.path.join(out, name)}" in captured.out
        assert store.verify(os.path.join(out, "phase_diagram.zarr")) == []
        with xr.open_dataset(os.path.join(out, "phase_diagram.nc"), engine="h5netcdf") as nc:
            ds = nc.load()
    check_dataset(ds, config)
    assert code == (3 if status.not_answered(ds) else 0)
    check_figures(ds)


def check_dataset(ds, config):
    assert dict(ds.sizes) == {"depth": len(config.depths), "ratio": len(config.ratios),
                              "log_scale": len(config.log_scales)}
    np.testing.assert_array_equal(ds["depth"].values, config.depths)
    np.testing.assert_array_equal(ds["ratio"].values, config.ratios)
    np.testing.assert_array_equal(ds["log_scale"].values, config.log_scales)
    assert pd.PhaseDiagramConfig.from_mapping(tomllib.loads(ds.attrs["config"])) == config

    codes = ds["status"].values
    assert set(np.unique(codes)) <= set(status.NAMES), np.unique(codes)
    ok = codes == status.OK
    assert not np.isnan(ds["margin_in_unit"].values[ok]).any()
    assert not np.isnan(ds["margin"].values[ok]).any()
    np.testing.assert_array_equal(ds["incremental"].values, (ds["margin_in_unit"].values >= 0) & ok)

    found = ds["threshold_status"].values
    assert set(np.unique(found)) <= set(status.NAMES), np.unique(found)
    measured = ds["log_threshold_measured"].values
    answered = np.isin(found, [status.OK, status.UNCERTAIN])
    assert np.isnan(measured[found == status.NOT_FOUND]).all()
    assert not (np.isnan(measured) & answered).any()  # a NaN is never an answer
    every_lane_ok = (codes == status.OK).all(axis=-1)
    assert not ((found == status.NOT_FOUND) & ~every_lane_ok).any()
    estimate = ds["log_threshold_error_estimate"].values
    assert (estimate[found == status.OK] <= 1e-5).all()
    err = pd.threshold_log_error(ds).values
    bad = (found == status.OK) & ~(err <= 1e-5)
    assert not bad.any(), (ds["depth"].values[np.nonzero(bad)[0]],
                           ds["ratio"].values[np.nonzero(bad)[1]], measured[bad],
                           ds["log_threshold_theory"].values[bad])

    table = pd.summary_table(ds)
    # Rows start with the depth, right-aligned (a number or inf); the header, the legend and
    # the fit lines do not.
    cells = [line.split() for line in table.splitlines()[1:]]
    rows = [c[0] for c in cells if c and (c[0][0].isdigit() or c[0] == "inf")]
    for depth in config.depths:
        assert f"{depth:g}" in rows, (depth, table)


def check_figures(ds):
    figures = pd.figures(ds)
    try:
        assert set(figures) == {"phase_diagram", "thresholds"}
        for name, fig in figures.items():
            assert fig.axes, name
    finally:
        for fig in figures.values():
            plt.close(fig)


@pytest.mark.parametrize("scales", [(1e-4, 0.99), (1e-3, 0.5, 0.99), (0.5, 0.99), (0.99,)])
def test_grid_above_start(scales):
    """Grid points above ``ln(start)`` never end a bracket, whatever their (zero) margin."""
    import jax.numpy as jnp

    from jaxflow import sweep

    config = pd.PhaseDiagramConfig(depths=(3.0,), ratios=(1.05,), scales=scales)
    log_zero = math.log(config.finish * 1.05)  # above: both learning times 0, margin exactly 0

    def stand_in(p):  # changes sign at sigma0 = 0.01, like a real margin, and 0 at the top
        margin = jnp.where(p["log_scale"] >= log_zero, 0.0, jnp.log(0.01) - p["log_scale"])
        return {"margin_in_unit": margin, "status": jnp.zeros((), jnp.int8)}

    runner = sweep.Runner(stand_in, chunk_size=4)
    log_scales = np.asarray(config.log_scales)
    margins = np.where(log_scales >= log_zero, 0.0, math.log(0.01) - log_scales)[None, None]
    log_threshold, code = pd.measured_thresholds(config, margins, runner)
    assert code.tolist() == [[status.OK]]
    np.testing.assert_allclose(np.exp(log_threshold), [[0.01]], rtol=1e-9)


def test_scales_sharing_a_log_are_refused_by_name():
    """Two distinct scales can share ``ln(scale)`` (adjacent floats near 1e-300): the grid's axis
    would repeat, so they are refused, naming ``scales`` (not ``log_scales``, never given)."""
    from jaxflow.experiments.config import ConfigError

    with pytest.raises(ConfigError, match="^scales must differ in ln"):
        pd.PhaseDiagramConfig(scales=(1e-300, float(np.nextafter(1e-300, 1.0))))
