"""Large steps on a diagonal network (d = 40 features, m = 15 samples): the interpolator descent
finds against the flow's (docs/science/edge-of-stability.md). Under 0.1 s beyond the shared
smoke run (``smoke_run("large-step-diagonal")``, ~20 s of compilation, shared with the registry
walk)."""

import numpy as np
import pytest

from jaxflow.engine import status

# shares conftest's smoke_run with tests/test_experiments.py: one worker computes it once
pytestmark = pytest.mark.xdist_group("smoke_runs")


@pytest.fixture(scope="module")
def ds(smoke_run):
    return smoke_run("large-step-diagonal").isel(depth=0, seed=0)


def test_every_run_interpolates_and_converged_descent_is_linearly_stable(ds):
    """Each run ends at an interpolator; a converged descent ends where the sharpness is at most
    2 / eta (a minimum sharper than that repels descent: linear stability, not assumed)."""
    assert int(ds["flow_status"]) == status.OK
    assert (ds["status"] == status.OK).all() and ds["converged"].all()
    assert float(ds["final_loss"].max()) < 1e-12
    assert (ds["final_sharpness"] <= ds["two_over_eta"] * (1 + 1e-6)).all()
    # below the limit descent may end at the flow's minimum, whose sharpness is lambda_flow
    small = ds.sel(eta_factor=0.25)
    assert float(small["final_sharpness"]) == pytest.approx(float(ds["lambda_flow"]), rel=0.05)


def test_small_steps_follow_the_flow_at_first_order(ds):
    """The distance to the flow's solution is first order in eta: it doubles from
    eta lambda / 2 = 0.25 to 0.5 (measured ratio 1.94 on seed 0) and stays below 5%."""
    d = ds["distance"].sel(eta_factor=[0.25, 0.5]).values
    assert d[1] < 0.05
    assert d[1] / d[0] == pytest.approx(2.0, rel=0.1)


def test_steps_beyond_the_limit_find_a_flatter_denser_interpolator(ds):
    """At eta lambda / 2 = 1.5 descent cannot stay at the flow's minimum: it ends at a flatter
    one (sharpness below 2 / eta < lambda_flow), farther than 10% from the flow's, with a larger
    l1 norm (less sparse: Even et al.'s GD finding)."""
    big = ds.sel(eta_factor=1.5)
    assert float(big["final_sharpness"]) < float(ds["lambda_flow"]) / 1.5 * (1 + 1e-6)
    assert float(big["distance"]) > 0.1
    assert float(big["l1"]) > 1.05 * float(ds["l1_flow"])
    assert np.all(np.diff(ds["l1"].values) > 0)  # the l1 norm grows with the step
