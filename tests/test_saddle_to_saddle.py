"""The saddle-to-saddle experiment at smoke size: its claims hold on the smoke run itself."""

import numpy as np
import pytest

from jaxflow.experiments import saddle_to_saddle as s2s
from jaxflow.experiments.config import ConfigError


@pytest.fixture(scope="module")
def ds(smoke_run):
    return smoke_run("saddle-to-saddle")  # the session's one smoke run (tests/conftest.py)


def test_depth_two_converges_to_the_oracle_like_one_over_log_alpha(ds):
    oracle = ds["oracle_jump_time"].values[:4]
    np.testing.assert_allclose(oracle, [1.443, 2.256, 3.302, 4.644], atol=1e-3)
    conv = s2s.convergence(ds, "flow", 2).sel(scale=[1e-30, 1e-100, 1e-300])
    error = np.abs(conv["error"].values[:, :3])
    assert (np.diff(error, axis=0) < 0).all()
    # error * ln(1/alpha) is the same at 1e-30, 1e-100 and 1e-300: the 1/ln(1/alpha) rate.
    scaled = np.abs(conv["error_times_log"].values[:, :3])
    np.testing.assert_allclose(scaled, scaled[-1:].repeat(3, 0), rtol=0.1)
    # The fourth jump (coordinate 4 leaves into the interpolating minimum, where its gradient
    # vanishes: it decays like 1/t) converges too, more slowly.
    assert abs(conv["error"].values[-1, 3]) < 2e-2
    # Active sets and plateau losses of the oracle, with coordinate 4 entering then leaving.
    flow = ds.sel(backend="flow", depth=2, scale=1e-300)
    assert (flow["active"].values[:5] == ds["oracle_active"].values[:5]).all()
    np.testing.assert_allclose(
        flow["plateau_loss"].values[1:4], ds["oracle_plateau_loss"].values[1:4], rtol=2e-2
    )
    # At alpha = 1e-4 there is no staircase yet.
    assert int(ds["num_plateaus"].sel(backend="flow", depth=2, scale=1e-4)) == 1


def test_depth_three_and_descent(ds):
    deep = ds.sel(backend="flow", depth=3, scale=1e-8)
    error = np.abs(deep["jump_time"].values[:4] - ds["oracle_jump_time"].values[:4])
    assert error.max() < 1e-2
    assert (deep["active"].values[:5] == ds["oracle_active"].values[:5]).all()
    # Gradient descent (rate 5e-3) lands near the flow, with its O(rate) bias.
    gd = ds["jump_time"].sel(backend="descent", depth=2, scale=1e-30).values[:3]
    fl = ds["jump_time"].sel(backend="flow", depth=2, scale=1e-30).values[:3]
    np.testing.assert_allclose(gd, fl, atol=1e-2)
    assert (ds["status"].values[ds["ran"].values] == 0).all()
    # Raw jump times grow like alpha^-(1 - 2/N) at depth 3 (the derived time unit).
    assert abs(s2s.scaling_exponent(ds, 3) - 1.0 / 3.0) < 0.01
    # The conserved quantity of the log-coordinate flow drifts by the solver's tolerance only:
    # depth 2 to rounding (the flow moves a and b by opposite amounts); depth 3 by the local
    # tolerance (rtol 1e-8) accumulated over ~10^4 RKC steps (measured 1e-5).
    drift = ds["invariant_drift"]
    relative = drift.sel(depth=2) / -np.log(ds["scale"])  # rounding of |a| ~ ln(1/alpha)/2
    assert float(relative.max()) < 1e-13
    assert float(drift.sel(depth=3).max()) < 1e-4


def test_report_and_figures(ds):
    text = s2s.report(ds)
    assert "fitted exponent" in text and "depth 3" in text
    figs = s2s.figures(ds)
    assert set(figs) == {"saddle-to-saddle", "saddle-to-saddle-jump-times"}


def test_config_errors():
    with pytest.raises(ConfigError, match="depths"):
        s2s.SaddleToSaddleConfig(depths=(1,))
    with pytest.raises(ConfigError, match="scales"):
        s2s.SaddleToSaddleConfig(scales=(2.0,))
