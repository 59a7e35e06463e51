"""The factor-level phase diagram (random unbalanced factors, where theory is silent)."""

import numpy as np

from jaxflow import status
from jaxflow.experiments import factor_diagram as fd


def test_factor_diagram_small():
    cfg = fd.FactorDiagramConfig(depths=(1.0, 2.0), scales=(1e-8, 1e-2), seeds=(0.0, 1.0),
                                 num_modes=3, chunk_size=8)
    ds = fd.run(cfg, quiet=True)
    assert ds["incremental_fraction"].dims == ("depth", "scale", "seed")
    assert ds["learning_time"].dims == ("depth", "scale", "seed", "mode", "fraction")
    assert np.all(ds["status"].values == status.OK)
    # Depth 1 (a linear model) is never incremental: every target takes the same time.
    assert np.all(ds["incremental_fraction"].sel(depth=1.0).values == 0.0)
    # The fraction is a fraction of k - 1 = 2 pairs, the correlation a correlation.
    assert set(np.unique(ds["incremental_fraction"].values)) <= {0.0, 0.5, 1.0}
    assert np.all(np.abs(ds["rank_correlation"].values) <= 1.0 + 1e-12)
    # Learning times of a mode are ordered in the fraction (start before finish).
    lt = ds["learning_time"].values
    assert np.all(lt[..., 0] <= lt[..., 1])


def test_cli_model_factor(tmp_path, monkeypatch, capsys):
    import xarray as xr

    from jaxflow import cli

    monkeypatch.setenv("JAXFLOW_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "fd"
    code = cli.main(["phase-diagram", "--model", "factor", "--depths", "2,3", "--scales",
                     "1e-6,1e-2", "--ratios", "3", "--chunk-size", "8", "--out", str(out), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "factor_diagram.nc" in printed and "factor_diagram.png" in printed
    ds = xr.open_dataset(out / "factor_diagram.nc", engine="h5netcdf")
    assert ds.attrs["ratio"] == 3.0 and list(ds["depth"].values) == [2.0, 3.0]
    assert (out / "factor_diagram.png").stat().st_size > 10_000
