"""The float32 path of the phase diagram (``dtype="float32"``, ``--dtype float32``).

On a small grid whose scales include sigma0 = 1e-60 and 1e-40 (below float32's range) the
float32 run must agree with the float64 run on what is stored: ``incremental`` and ``status``
identical, thresholds equal to 1e-9 in log, margins within the documented float32 resolution
(1e-4 relative), and every lane below float32's range flagged ``recomputed`` and holding the
float64 answer bitwise. A lane is never a silently wrong float32 value.
"""

import math

import numpy as np
import pytest

from jaxflow.experiments import phase_diagram as pd

SCALES = (1e-60, 1e-40, 1e-20, 1e-8, 1e-4, 1e-2)
BASE = dict(depths=(2.0, 3.0, math.inf), ratios=(1.5, 4.0), scales=SCALES, chunk_size=8,
            refine_iterations=8)


@pytest.fixture(scope="module")
def pair():
    exact = pd.run(pd.PhaseDiagramConfig(**BASE), quiet=True)
    fast = pd.run(pd.PhaseDiagramConfig(**BASE, dtype="float32"), quiet=True)
    return exact, fast


def test_schema(pair):
    exact, fast = pair
    assert "recomputed" not in exact and fast["recomputed"].dtype == bool
    assert fast["recomputed"].dims == ("depth", "ratio", "log_scale")
    assert fast.attrs["dtype"] == "float32" and exact.attrs["dtype"] == "float64"
    assert fast["margin"].dtype == exact["margin"].dtype == np.float64


def test_lanes_below_float32_range_are_recomputed_in_float64(pair):
    exact, fast = pair
    below = np.asarray(SCALES) < np.finfo(np.float32).tiny
    assert below.sum() == 2
    recomputed = fast["recomputed"].values
    assert recomputed[..., below].all()
    assert not recomputed.all()  # float32 answered the rest
    for name in ("margin", "status", "steps"):
        assert np.array_equal(fast[name].values[recomputed], exact[name].values[recomputed]), name


def test_lanes_outside_float32_never_run_in_float32(pair, monkeypatch):
    """They go straight to float64: run in float32 they would spend their whole step budget
    and hold their vmapped batch with them (the default grid's float32 pass took 28 s, 2.4 s
    without them)."""
    runner = pd.shared_runner(pd.PhaseDiagramConfig(**BASE, dtype="float32"))  # the pair's
    seen, real = [], runner.fast.chunk
    monkeypatch.setattr(runner.fast, "chunk", lambda points: seen.append(points) or real(points))
    points = {"depth": np.full(4, 3.0), "ratio": np.array([4.0, 4.0, 4.0, 1.0 + 1e-9]),
              "log_scale": np.log([1e-4, 1e-60, 1e-2, 1e-4])}
    out = runner.chunk(points)
    assert out["recomputed"].tolist() == [False, True, False, True]
    assert len(seen) == 1 and np.array_equal(seen[0]["log_scale"], np.log([1e-4, 1e-2]))


def test_float32_agrees_with_float64(pair):
    exact, fast = pair
    assert np.array_equal(fast["incremental"].values, exact["incremental"].values)
    assert np.array_equal(fast["status"].values, exact["status"].values)
    assert (exact["status"].values == 0).all()
    m32, m64 = fast["margin"].values, exact["margin"].values
    assert np.all(np.abs(m32 - m64) <= pd.FLOAT32_RESOLUTION * np.abs(m64)), np.abs(m32 / m64 - 1).max()
    log_error = np.abs(np.log(fast["threshold_measured"].values / exact["threshold_measured"].values))
    assert log_error.max() <= 1e-9, log_error


def test_runner_float32_computes_in_float32_under_x64():
    from jaxflow import sweep

    fast = sweep.Runner(lambda p: {"y": p["x"] * 3.0}, chunk_size=4, batch=2, float32=True)
    exact = sweep.Runner(lambda p: {"y": p["x"] * 3.0}, chunk_size=4, batch=2)
    x = np.array([1.0, 2.0, 1e-60, 7.0])
    y32, y64 = fast({"x": x})["y"], exact({"x": x})["y"]
    assert y32.dtype == np.float32 and y64.dtype == np.float64
    assert np.array_equal(y32, x.astype(np.float32) * np.float32(3.0))
    assert y32[2] == 0.0 and y64[2] > 0  # 1e-60 underflows in float32: what the guard catches
