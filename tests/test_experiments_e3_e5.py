"""`jaxflow experiment diagonal|convolutional|omp --smoke` in-process: dataset contents."""

import numpy as np
import pytest
import xarray as xr

from jaxflow import cli


def _run(name, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JAXFLOW_CACHE_DIR", str(tmp_path / "cache"))
    assert cli.main(["experiment", name, "--smoke", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert f"{name}.nc" in printed and f"{name}.png" in printed
    assert (tmp_path / f"{name}.png").stat().st_size > 10_000
    with xr.open_dataset(tmp_path / f"{name}.nc", engine="h5netcdf") as ds:
        return ds.load(), printed


def test_experiment_diagonal_smoke(tmp_path, monkeypatch, capsys):
    ds, printed = _run("diagonal", tmp_path, monkeypatch, capsys)
    assert set(ds["backend"].values) == {"flow", "descent"} and ds["depth"].values.tolist() == [1, 2, 3]
    assert ds["modes"].dims == ("backend", "depth", "time", "mode") and bool(ds.attrs["ok"])
    corr = ds["correlation"]
    # Correlation rises with depth (measured 0.787, 0.937, 0.965) on both back-ends, which agree.
    assert np.all(np.diff(corr.values, axis=1) > 0.01), corr.values
    np.testing.assert_allclose(corr.sel(backend="flow"), corr.sel(backend="descent"), atol=2e-3)
    # Depth 1 is close to the SVM direction's correlation (0.723), deeper nets well above it.
    assert abs(float(corr.sel(backend="flow", depth=1)) - float(ds["svm_correlation"])) < 0.1
    assert float(ds["svm_kkt_residual"]) < 1e-10 and float(ds["svm_margin"]) > 0
    assert not np.any(np.isnan(ds["modes"].values)) and ds["loss_underflow"].values.sum() == 0
    assert "max-margin SVM" in printed


def test_experiment_convolutional_smoke(tmp_path, monkeypatch, capsys):
    ds, _ = _run("convolutional", tmp_path, monkeypatch, capsys)
    assert ds["depth"].values.tolist() == [1, 3] and bool(ds.attrs["ok"])
    assert ds.sizes["mode"] == 5 and ds["targets"].values.tolist() == [1.0, 1.0, 1.0, 1.0, 0.0]
    np.testing.assert_allclose(ds["correlation"].sel(backend="flow"),
                               ds["correlation"].sel(backend="descent"), atol=2e-3)
    assert np.all((ds["amplitude_correlation"].values > 0.5) & (ds["amplitude_correlation"].values <= 1))
    assert not np.any(np.isnan(ds["modes"].values))


def test_experiment_omp_smoke(tmp_path, monkeypatch, capsys):
    ds, printed = _run("omp", tmp_path, monkeypatch, capsys)
    assert ds.sizes["seed"] == 4 and ds.sizes["rank"] == 3 and bool(ds.attrs["ok"])
    # Every pick of both back-ends is one of OMP's picks (measured concurrence 1.0 on the seeds
    # with picks); the back-ends pick the same coordinates.
    np.testing.assert_array_equal(ds["order"].sel(backend="flow"), ds["order"].sel(backend="descent"))
    assert ds.attrs["concurrence_mean_flow"] == pytest.approx(1.0)
    assert "concurrence" in printed
