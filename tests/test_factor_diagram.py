"""The factor-level phase diagram (random unbalanced factors, where theory is silent), run
once through ``jaxflow experiment factor-diagram``: its layout, the experiment's claim (depth
makes learning incremental and ordered), and the command's files and stored flags."""

import io
import sys
import tomllib

import numpy as np
import pytest
import xarray as xr

from jaxflow.engine import status
from jaxflow.experiments import factor_diagram as fd


FLAGS = ["--depths", "1,2,3", "--scales", "1e-8,1e-4,1e-2", "--seeds", "0,1,2,3",
         "--num-modes", "3", "--ratio", "2", "--chunk-size", "16"]


@pytest.fixture(scope="module")
def command(tmp_path_factory):
    """``jaxflow experiment factor-diagram FLAGS`` in-process, once for the module: three modes
    of ratio 2 on depths 1-3, a small, a middle and a large scale, four seeds. The tests below
    check its dataset (read back from the .nc it wrote) and what the command printed: one
    simulation, one compiled program, for the science and the command."""
    import jax

    from jaxflow import cli

    out = tmp_path_factory.mktemp("fd") / "fd"
    saved = jax.config.jax_compilation_cache_dir  # the command sets the run's cache (conftest)
    with pytest.MonkeyPatch.context() as mp:
        capture = io.StringIO()
        mp.setattr(sys, "stdout", capture)
        code = cli.main(["experiment", "factor-diagram", *FLAGS, "--out", str(out), "--quiet"])
    jax.config.update("jax_compilation_cache_dir", saved)
    return code, capture.getvalue(), out


@pytest.fixture(scope="module")
def grid(command):
    _, _, out = command
    return xr.load_dataset(out / "factor_diagram.nc", engine="h5netcdf")


def test_layout(grid):
    assert grid["incremental_fraction"].dims == ("depth", "scale", "seed")
    assert grid["learning_time"].dims == ("depth", "scale", "seed", "mode", "fraction")
    assert np.all(grid["status"].values == status.OK) and grid.attrs["ok_fraction"] == 1.0


def test_depth_helps(grid):
    """The experiment's claim, measured: depth makes learning incremental and ordered.

    Depth 1 (a linear model) is never incremental and never learns largest first; depths 2 and
    3 are more incremental and better ordered than depth 1 at every scale; from the smallest
    scale depth 2 learns every pair incrementally and strictly largest first on every seed, and
    a larger scale costs it incrementality (measured mean fractions over the scales 1e-8,
    1e-4, 1e-2: 1.0, 0.875, 0.5). Depth 3 gives 0.75 at every scale here (seeds 0 and 3 learn
    one pair out of turn whatever the scale; see the module docstring).
    """
    fraction = grid["incremental_fraction"]
    correlation = grid["rank_correlation"]
    assert np.all(fraction.sel(depth=1.0).values == 0.0)
    assert np.all(correlation.sel(depth=1.0).values <= 0.0)
    for depth in (2.0, 3.0):
        assert np.all(fraction.sel(depth=depth).mean("seed") > fraction.sel(depth=1.0).mean("seed"))
        assert np.all(correlation.sel(depth=depth).mean("seed") > 0.5)
    small = dict(depth=2.0, scale=1e-8)
    assert np.all(fraction.sel(**small).values == 1.0), fraction.sel(**small).values
    assert np.all(correlation.sel(**small).values == 1.0), correlation.sel(**small).values
    mean = fraction.mean("seed").sel(depth=2.0).values
    assert np.all(np.diff(mean) < 0), mean  # incrementality fades with the scale


def test_cli_factor_diagram(command):
    """The command's files, named on stdout; the flags stored in the dataset."""
    code, printed, out = command
    assert code == 0
    assert "factor_diagram.nc" in printed and "factor_diagram.png" in printed
    with xr.open_dataset(out / "factor_diagram.nc", engine="h5netcdf") as ds:
        assert ds.attrs["ratio"] == 2.0 and ds.attrs["num_modes"] == 3
        assert list(ds["depth"].values) == [1.0, 2.0, 3.0]
        assert list(ds["seed"].values) == [0, 1, 2, 3]
        assert fd.FactorDiagramConfig.from_mapping(tomllib.loads(ds.attrs["config"])) == (
            fd.FactorDiagramConfig(depths=(1.0, 2.0, 3.0), scales=(1e-8, 1e-4, 1e-2),
                                   seeds=(0.0, 1.0, 2.0, 3.0), num_modes=3, chunk_size=16))
    assert (out / "factor_diagram.png").stat().st_size > 10_000
