"""jaxflow.sweep: grid -> shuffled fixed-size chunks -> xarray, and its resumable zarr store.

Checked here:

* ``sweep.run`` returns a Dataset whose dims follow the order of ``axes`` (not sorted) and whose
  values equal numpy broadcasting of the same formula; coords are the axis values.
* Non-scalar outputs get the trailing dims named by ``output_dims`` (or ``<name>_dim<k>``), with
  the right values; a wrong number of names is a ``SweepError``.
* Grids whose size is not a multiple of the chunk size (and grids smaller than one chunk) are
  padded and the padding is dropped: values are still exact.
* The lane shuffle changes which points share a chunk but not the result (seed 0 == seed 5).
* One compiled program: ``Runner.traces == 1`` across chunks, across a second call with new
  axis values of the same grid size, and across a grid of another size.
* zarr store: a second run on the same path without ``resume`` is refused; a store with some
  chunks marked not done and garbage in their rows, resumed, yields exactly the uninterrupted
  dataset and recomputes only those chunks (counted by wrapping ``Runner.chunk``); a store
  resumed with other axes, seed, chunk size or config is refused.
* Bad axes (empty, NaN, repeated values, not 1-D, no axes at all) raise ``SweepError`` naming
  the axis.
"""

import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
import zarr

from jaxflow import sweep


def _affine(p):
    """A cheap per-point function with two scalar outputs of different dtypes."""
    return {
        "value": p["z"] * p["a"] + 3.0 * p["m"] - p["z"] ** 2,
        "positive": p["z"] * p["a"] - p["m"] > 0.0,
    }


AXES = {
    # Deliberately not in alphabetical order: the dims must follow this order.
    "z": [0.5, -1.0, 2.0],
    "a": [1.0, 10.0, 100.0, -3.0],
    "m": [0.25, 7.0],
}


def _expected_affine(axes):
    z = np.asarray(axes["z"])[:, None, None]
    a = np.asarray(axes["a"])[None, :, None]
    m = np.asarray(axes["m"])[None, None, :]
    return z * a + 3.0 * m - z**2, z * a - m > 0.0


def _counting(runner):
    """Wrap ``runner.chunk`` to record the points of every chunk it runs."""
    calls = []
    original = runner.chunk

    def chunk(points):
        calls.append({k: np.array(v) for k, v in points.items()})
        return original(points)

    runner.chunk = chunk
    return calls


# --------------------------------------------------------------------------------------------
# In-memory sweeps


def test_dims_follow_axis_order_and_values_match_numpy():
    ds = sweep.run(_affine, AXES, chunk_size=8, quiet=True)
    assert tuple(ds.dims) == ("z", "a", "m")
    assert ds["value"].dims == ("z", "a", "m")
    assert ds["value"].shape == (3, 4, 2)
    for name, values in AXES.items():
        np.testing.assert_array_equal(ds[name].values, np.asarray(values))
    value, positive = _expected_affine(AXES)
    assert ds["value"].dtype == np.float64
    np.testing.assert_allclose(ds["value"].values, value, rtol=1e-15, atol=0)
    assert ds["positive"].dtype == bool
    np.testing.assert_array_equal(ds["positive"].values, positive)
    # Selection by label agrees with the formula at an individual point.
    assert ds["value"].sel(z=2.0, a=-3.0, m=7.0).item() == 2.0 * -3.0 + 21.0 - 4.0
    assert ds.attrs["chunk_size"] == 8 and ds.attrs["seed"] == 0
    assert ds.attrs["dtype"] == "float64"


def test_non_scalar_outputs_with_output_dims():
    def fn(p):
        x, y = p["x"], p["y"]
        return {
            "powers": jnp.stack([x, x**2, x**3]),
            "outer": jnp.array([[x, y], [x * y, x - y]]),
            "plain": jnp.stack([y, -y]),
        }

    axes = {"x": [1.0, 2.0, 3.0], "y": [-1.0, 0.5]}
    ds = sweep.run(fn, axes, chunk_size=4, output_dims={"powers": ["k"], "outer": ["i", "j"]}, quiet=True)
    assert ds["powers"].dims == ("x", "y", "k")
    assert ds["outer"].dims == ("x", "y", "i", "j")
    assert ds["plain"].dims == ("x", "y", "plain_dim0")  # default names for unnamed dims
    x = np.asarray(axes["x"])[:, None]
    y = np.asarray(axes["y"])[None, :]
    xb, yb = np.broadcast_arrays(x, y)
    np.testing.assert_allclose(ds["powers"].values, np.stack([xb, xb**2, xb**3], axis=-1), rtol=1e-15)
    outer = np.stack([np.stack([xb, yb], -1), np.stack([xb * yb, xb - yb], -1)], -2)
    np.testing.assert_allclose(ds["outer"].values, outer, rtol=1e-15)
    np.testing.assert_allclose(ds["plain"].values, np.stack([yb, -yb], -1), rtol=0)

    with pytest.raises(sweep.SweepError, match="outer"):
        sweep.run(fn, axes, chunk_size=4, output_dims={"outer": ["i"]}, quiet=True)


@pytest.mark.parametrize("chunk_size", [5, 7, 64])
def test_padding_when_grid_is_not_a_multiple_of_the_chunk(chunk_size):
    # 3 * 4 * 2 = 24 points: chunk 5 and 7 leave a partial last chunk, 64 is bigger than the grid.
    runner = sweep.Runner(_affine, chunk_size=chunk_size)
    calls = _counting(runner)
    ds = sweep.run(_affine, AXES, runner=runner, quiet=True)
    assert len(calls) == -(-24 // runner.chunk_size)
    assert all(len(c["z"]) == runner.chunk_size for c in calls)
    value, positive = _expected_affine(AXES)
    np.testing.assert_allclose(ds["value"].values, value, rtol=1e-15, atol=0)
    np.testing.assert_array_equal(ds["positive"].values, positive)


def test_runner_call_pads_and_drops_padding():
    runner = sweep.Runner(lambda p: {"y": 2.0 * p["x"] + 1.0}, chunk_size=4)
    out = runner({"x": np.arange(6.0)})
    np.testing.assert_array_equal(out["y"], 2.0 * np.arange(6.0) + 1.0)
    assert runner.traces == 1


def test_shuffle_does_not_change_results():
    results, first_chunks = [], []
    for seed in (0, 5):
        runner = sweep.Runner(_affine, chunk_size=8)
        calls = _counting(runner)
        ds = sweep.run(_affine, AXES, runner=runner, seed=seed, quiet=True)
        results.append(ds)
        first_chunks.append(np.stack([calls[0][k] for k in AXES], -1))
        assert ds.attrs["seed"] == seed
    # The shuffle is real: the two seeds put different points in the first chunk ...
    assert not np.array_equal(first_chunks[0], first_chunks[1])
    # ... and neither is the first block of the unshuffled (C-ordered) grid.
    grid = np.stack(np.meshgrid(*AXES.values(), indexing="ij"), -1).reshape(-1, len(AXES))
    for chunk in first_chunks:
        assert not np.array_equal(chunk, grid[:8])
    for name in ("value", "positive"):
        np.testing.assert_array_equal(results[0][name].values, results[1][name].values)
    value, _ = _expected_affine(AXES)
    np.testing.assert_allclose(results[1]["value"].values, value, rtol=1e-15, atol=0)


def test_group_by_puts_alike_points_together_and_changes_no_result():
    """Grouped by ``a``, the chunks hold one value of ``a`` each (6 points per value, chunks
    of 6), shuffled within it; the results are the ungrouped sweep's bits."""
    runner = sweep.Runner(_affine, chunk_size=6)
    calls = _counting(runner)
    grouped = sweep.run(_affine, AXES, runner=runner, group_by=("a",), quiet=True)
    assert [np.unique(c["a"]).size for c in calls] == [1, 1, 1, 1]
    assert sorted(c["a"][0] for c in calls) == sorted(AXES["a"])
    plain = sweep.run(_affine, AXES, chunk_size=6, quiet=True)
    for name in ("value", "positive"):
        assert grouped[name].values.tobytes() == plain[name].values.tobytes()
    with pytest.raises(sweep.SweepError, match=r"group_by must name axes of the sweep \(z, a, m\)"):
        sweep.run(_affine, AXES, chunk_size=6, group_by=("depth",), quiet=True)


def test_no_retrace_across_chunks_and_calls():
    runner = sweep.Runner(_affine, chunk_size=4)
    calls = _counting(runner)
    ds1 = sweep.run(_affine, AXES, runner=runner, quiet=True)
    assert len(calls) == 6  # 24 points / 4
    assert runner.traces == 1

    # New values, same grid size: the same program.
    new_axes = {"z": [3.0, 4.0, -5.0], "a": [0.1, 0.2, 0.3, 0.4], "m": [-1.0, 1.0]}
    ds2 = sweep.run(_affine, new_axes, runner=runner, quiet=True)
    assert runner.traces == 1
    np.testing.assert_allclose(ds2["value"].values, _expected_affine(new_axes)[0], rtol=1e-15, atol=0)
    assert not np.allclose(ds1["value"].values, ds2["value"].values)

    # Another grid size is still the same chunk shape: still no retrace.
    other = {"z": [1.0, 2.0], "a": [5.0], "m": [0.0, 1.0, 2.0, 3.0, 4.0]}
    ds3 = sweep.run(_affine, other, runner=runner, quiet=True)
    assert runner.traces == 1
    np.testing.assert_allclose(ds3["value"].values, _expected_affine(other)[0], rtol=1e-15, atol=0)


def test_chunk_size_validation():
    with pytest.raises(sweep.SweepError, match="chunk_size"):
        sweep.Runner(_affine, chunk_size=0)


def test_runner_fn_is_the_one_that_runs():
    """A runner's function is never silently swapped for another ``fn``: pass None (or the
    runner's own) with a runner; ``sweep.run`` refuses a different one."""
    runner = sweep.Runner(_affine, chunk_size=8)
    with pytest.raises(sweep.SweepError, match="runner's function"):
        sweep.run(lambda p: {"value": p["a"]}, AXES, runner=runner, quiet=True)
    with pytest.raises(sweep.SweepError, match="fn"):
        sweep.run(None, AXES, quiet=True)
    ds = sweep.run(None, AXES, runner=runner, quiet=True)
    np.testing.assert_allclose(ds["value"].values, _expected_affine(AXES)[0], rtol=1e-15, atol=0)


# --------------------------------------------------------------------------------------------
# Axis validation


@pytest.mark.parametrize(
    "bad, message",
    [
        ([], "non-empty"),
        ([1.0, float("nan"), 2.0], "NaN"),
        ([1.0, 2.0, 1.0], "repeated"),
        ([[1.0, 2.0], [3.0, 4.0]], "1-D"),
    ],
    ids=["empty", "nan", "repeated", "2d"],
)
def test_bad_axis_raises_naming_the_axis(bad, message):
    axes = {"good": [1.0, 2.0], "learning_rate": bad}
    with pytest.raises(sweep.SweepError, match=message) as info:
        sweep.run(lambda p: {"y": p["good"]}, axes, chunk_size=4, quiet=True)
    assert "'learning_rate'" in str(info.value)
    assert "'good'" not in str(info.value)


def test_no_axes_raises():
    with pytest.raises(sweep.SweepError, match="at least one axis"):
        sweep.run(lambda p: {"y": 1.0}, {}, chunk_size=4, quiet=True)


# --------------------------------------------------------------------------------------------
# zarr store and resume


STORE_AXES = {"z": [0.5, -1.0, 2.0, 4.0, 8.0], "a": [1.0, 10.0, 100.0, -3.0], "m": [0.25, 7.0]}  # 40 pts
STORE_CHUNK = 6  # 7 chunks, the last one padded


@pytest.fixture(scope="module")
def reference():
    """The uninterrupted in-memory sweep the stored ones must reproduce."""
    return sweep.run(_affine, STORE_AXES, chunk_size=STORE_CHUNK, config="k = 1\n", quiet=True)


def _assert_same_data(a: xr.Dataset, b: xr.Dataset):
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
    for name in a.data_vars:
        assert a[name].dtype == b[name].dtype
        np.testing.assert_array_equal(a[name].values, b[name].values)
    keep = lambda attrs: {k: v for k, v in attrs.items() if k != "created"}  # noqa: E731
    assert keep(a.attrs) == keep(b.attrs)


def test_store_matches_memory_and_refuses_rerun_without_resume(tmp_path, reference):
    path = tmp_path / "sweep.zarr"
    ds = sweep.run(_affine, STORE_AXES, chunk_size=STORE_CHUNK, store=path, config="k = 1\n", quiet=True)
    _assert_same_data(ds, reference)
    group = zarr.open_group(str(path), mode="r")
    assert np.asarray(group["done"][:]).all() and group["done"].shape == (7,)

    with pytest.raises(sweep.SweepError, match="already exists"):
        sweep.run(_affine, STORE_AXES, chunk_size=STORE_CHUNK, store=path, config="k = 1\n", quiet=True)


def test_resume_recomputes_only_missing_chunks(tmp_path, reference):
    path = tmp_path / "sweep.zarr"
    sweep.run(_affine, STORE_AXES, chunk_size=STORE_CHUNK, store=path, config="k = 1\n", quiet=True)

    # Simulate an interruption: chunks 1, 4 and the padded last chunk 6 lost their completion
    # flag and hold garbage (a chunk half-written when the process was killed).
    missing = [1, 4, 6]
    group = zarr.open_group(str(path), mode="r+")
    for i in missing:
        group["done"][i] = False
        rows = slice(i * STORE_CHUNK, (i + 1) * STORE_CHUNK)
        group["out_value"][rows] = np.full(STORE_CHUNK, 1e300)
        group["out_positive"][rows] = ~np.asarray(group["out_positive"][rows])
    assert np.asarray(group["done"][:]).sum() == 7 - len(missing)

    runner = sweep.Runner(_affine, chunk_size=STORE_CHUNK)
    calls = _counting(runner)
    resumed = sweep.run(
        _affine, STORE_AXES, runner=runner, store=path, resume=True, config="k = 1\n", quiet=True
    )
    assert len(calls) == len(missing)
    # The recomputed chunks are exactly the missing ones (same shuffled points).
    n = 40
    order = np.random.default_rng(0).permutation(n)
    order = np.concatenate([order, np.full(7 * STORE_CHUNK - n, order[0])])
    z_all = np.asarray(STORE_AXES["z"])[np.unravel_index(order, (5, 4, 2))[0]]
    for call, i in zip(calls, missing):
        np.testing.assert_array_equal(call["z"], z_all[i * STORE_CHUNK : (i + 1) * STORE_CHUNK])
    _assert_same_data(resumed, reference)
    assert np.asarray(zarr.open_group(str(path), mode="r")["done"][:]).all()

    # A complete store resumed again computes nothing and still gives the same data.
    runner2 = sweep.Runner(_affine, chunk_size=STORE_CHUNK)
    calls2 = _counting(runner2)
    again = sweep.run(
        _affine, STORE_AXES, runner=runner2, store=path, resume=True, config="k = 1\n", quiet=True
    )
    assert calls2 == []
    _assert_same_data(again, reference)


@pytest.mark.parametrize(
    "change",
    [
        {"axes": {**STORE_AXES, "m": [0.25, 7.5]}},
        {"axes": {"a": STORE_AXES["a"], "z": STORE_AXES["z"], "m": STORE_AXES["m"]}},
        {"seed": 1},
        {"chunk_size": 8},
        {"config": "k = 2\n"},
        {"group_by": ("a",)},
    ],
    ids=["axis-values", "axis-order", "seed", "chunk-size", "config", "grouping"],
)
def test_resume_with_a_different_sweep_is_refused(tmp_path, change):
    path = tmp_path / "sweep.zarr"
    base = dict(axes=STORE_AXES, chunk_size=STORE_CHUNK, seed=0, config="k = 1\n", group_by=())
    sweep.run(_affine, base["axes"], chunk_size=STORE_CHUNK, store=path, config=base["config"], quiet=True)
    kw = {**base, **change}
    with pytest.raises(sweep.SweepError, match="different sweep"):
        sweep.run(
            _affine,
            kw["axes"],
            chunk_size=kw["chunk_size"],
            seed=kw["seed"],
            config=kw["config"],
            group_by=kw["group_by"],
            store=path,
            resume=True,
            quiet=True,
        )
