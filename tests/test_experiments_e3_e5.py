"""`jaxflow experiment diagonal|convolutional|omp --smoke` in-process: dataset contents."""

import numpy as np
import xarray as xr

from jaxflow import cli
from jaxflow.experiments import omp as e5


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
    assert set(ds["backend"].values) == {"flow", "descent"} and ds["depth"].values.tolist() == [
        1,
        2,
        3,
    ]
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
    ds, printed = _run("convolutional", tmp_path, monkeypatch, capsys)
    assert ds["depth"].values.tolist() == [1, 3] and bool(ds.attrs["ok"])
    assert ds.sizes["mode"] == 5 and ds["targets"].values.tolist() == [1.0, 1.0, 1.0, 1.0, 0.0]
    np.testing.assert_allclose(
        ds["correlation"].sel(backend="flow"), ds["correlation"].sel(backend="descent"), atol=2e-3
    )
    assert np.all(
        (ds["amplitude_correlation"].values > 0.5) & (ds["amplitude_correlation"].values <= 1)
    )
    assert not np.any(np.isnan(ds["modes"].values))
    # Depth 1 is a linear model: near the SVM direction (measured 0.790 against 0.769 at t = 100).
    assert (
        abs(float(ds["correlation"].sel(backend="flow", depth=1)) - float(ds["svm_correlation"]))
        < 0.05
    )
    # Depth 3 learns the largest Fourier amplitude (bin 3, target 12) first.
    half = ds["learning_time"].sel(backend="flow", depth=3, fraction=0.5).values
    assert half[0] < np.min(half[1:4]), half
    # Two repeats (seeds 0 and 1) by gradient flow: repeat 0 is the run above; on each seed
    # depth 1 stays near that seed's SVM (seed 1 measured 0.802 against 0.801).
    assert ds["repeat_seed"].values.tolist() == [0, 1]
    np.testing.assert_allclose(ds["repeat_correlation"][0], ds["correlation"].sel(backend="flow"))
    assert float(ds["repeat_svm_correlation"][0]) == float(ds["svm_correlation"])
    gap = ds["repeat_correlation"].sel(depth=1) - ds["repeat_svm_correlation"]
    assert np.all(np.abs(gap.values) < 0.05), gap.values
    assert "repeats (gradient flow, 2 seeds" in printed


def test_experiment_omp_smoke(tmp_path, monkeypatch, capsys):
    ds, printed = _run("omp", tmp_path, monkeypatch, capsys)
    assert ds.sizes["seed"] == 4 and ds.sizes["rank"] == 3 and bool(ds.attrs["ok"])
    assert ds["horizon"].values.tolist() == [400.0, 40.0]
    flow, descent = ds.sel(backend="flow"), ds.sel(backend="descent")
    # By t = 400 the flow (RKC) picked exactly the true support on every seed, in OMP's order.
    for s in range(4):
        support = np.flatnonzero(e5.problem(e5.OMPConfig.smoke(), s).data.target)
        assert sorted(flow["order"].sel(seed=s).values.tolist()) == support.tolist()
        np.testing.assert_array_equal(flow["order"].sel(seed=s), flow["omp_order"].sel(seed=s))
    assert ds.attrs["concurrence_mean_flow"] == 1.0 and ds.attrs["seeds_with_picks_flow"] == 4
    # The descent (t = 40) made a prefix of the flow's picks, at the same times (lr 1e-3);
    # seed 3 has no pick by t = 40: counted and left out, never a NaN in the summary.
    assert descent["num_picks"].values.tolist() == [2, 2, 3, 0]
    for s, n in enumerate(descent["num_picks"].values):
        np.testing.assert_array_equal(
            descent["order"].sel(seed=s)[:n], flow["order"].sel(seed=s)[:n]
        )
        np.testing.assert_allclose(
            descent["pick_time"].sel(seed=s)[:n], flow["pick_time"].sel(seed=s)[:n], rtol=5e-3
        )
    assert ds.attrs["seeds_with_picks_descent"] == 3 and ds.attrs["concurrence_mean_descent"] == 1.0
    assert np.isnan(float(descent["concurrence"].sel(seed=3)))
    assert "on seeds [3] (left out of the concurrence)" in printed
    # The descent's modes stop at its horizon; the flow's run to t = 400.
    assert not np.any(np.isnan(flow["modes"].values))
    assert np.all(np.isnan(descent["modes"].sel(time=slice(41, None)).values))
