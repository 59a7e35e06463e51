"""jaxflow.experiments.phase_diagram on a tiny grid: schema, thresholds, config, I/O, resume.

Checked here (one module-scoped simulated phase diagram, plus one resumed run):

* Schema: dims exactly (depth, ratio, log_scale) with the derived coordinate scale; margin,
  margin_in_unit, log_time_unit float64, incremental bool, status int8, steps int32 on (depth,
  ratio, log_scale); log and plain thresholds float64 and threshold_status int8 on (depth,
  ratio); the provenance attributes, with ``config`` a TOML text that ``tomllib`` parses back
  into the same configuration, and ``created`` an ISO time.
* Measured thresholds (from simulations only) agree with ``theory.incremental_threshold`` within
  |ln m - ln t| <= 1e-5 max(1, |ln t|), including depth inf, and including thresholds outside
  the scale grid, below it (no grid point incremental) and above it (every grid point
  incremental); depth 1 has none: NaN with status not_found, never 0 passing for a match.
* Thresholds check themselves: each ok threshold's stored ``log_threshold_error_estimate`` is
  within a factor 2 of its true error; next to the critical ratio of depth 1.5 (r = 6.13, the
  margin's limit sigma0 -> 0 vanishes at r = 6.12996) the default rtol leaves a 6e-5 error,
  which the check reports as ``uncertain``; a threshold is either within 1e-5 of theory or not ok.
* A run whose every lane hits max_steps (``max_steps = 8``, through ``jaxflow phase-diagram``
  in-process) answers nothing: no threshold, no "match" in its table, the last line counting the
  unanswered, exit status 3.
* A depth-2 threshold below e^-700 (r = 1.05: ln sigma0_th = -92.6... and r = 1.002: -2200)
  is measured by simulation; depth-3 lanes at sigma0 = e^-10000, whose real times overflow,
  are decided correctly (margin +inf, incremental).
* Every simulated margin has the sign of ``theory.incremental_margin`` at its grid point (points
  within 1e-6 relative of the threshold skipped) and its value within 1e-6 of the two learning
  times; ``incremental`` is ``margin >= 0`` on ok lanes.
* ``PhaseDiagramConfig`` validation: each bad option raises ``ConfigError`` naming it, for the
  constructor and for TOML files (unknown key, malformed TOML); TOML overrides win.
* netCDF round trip through h5netcdf keeps values, dtypes, dims and attributes.
* A run with a zarr store whose chunks are partly reset (an interruption) resumed with
  ``resume=True`` equals the uninterrupted run exactly, recomputing only the missing chunks;
  rerunning on the store without ``resume`` is refused.
"""

import datetime
import math
import tomllib

import numpy as np
import pytest
import xarray as xr
import zarr

from jaxflow import sweep
from jaxflow.engine import status
from jaxflow.experiments import phase_diagram as pd
from jaxflow.oracles import theory

# Thresholds (theory) of this grid, for orientation:
#   depth 1: none (0); depth 1.5: none below its critical ratio 6.12996, e^-38.88 at r = 6.13;
#   depth 2: 7.5e-6 (r 1.5, below the grid), 1.6e-2 (r 4, above it);
#   depth 3: 4.4e-3 (r 1.5, inside), 4.6e-2 (r 4, above); depth inf: 3.0e-2, 7.5e-2 (above).
NEAR_CRITICAL = (1.5, 6.13)
CONFIG = pd.PhaseDiagramConfig(
    depths=(1.0, 1.5, 2.0, 3.0, math.inf),
    ratios=(1.5, 4.0, 6.13),
    scales=tuple(float(s) for s in np.geomspace(1e-4, 1e-2, 10)),
    chunk_size=16,
)
N_POINTS = 5 * 3 * 10
N_CHUNKS = -(-N_POINTS // 16)


class _ChunkCounter:
    """Counts calls of the phase diagram's runner's ``chunk`` (grid chunks and refinement calls
    alike)."""

    def __init__(self, monkeypatch):
        self.calls = 0
        original = pd.ToyQueueRunner.chunk

        def chunk(runner, points):
            self.calls += 1
            return original(runner, points)

        monkeypatch.setattr(pd.ToyQueueRunner, "chunk", chunk)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """The uninterrupted phase diagram of CONFIG, written to a zarr store while it runs."""
    path = tmp_path_factory.mktemp("pd") / "phase_diagram.zarr"
    with pytest.MonkeyPatch.context() as mp:
        counter = _ChunkCounter(mp)
        ds = pd.run(CONFIG, store=path, quiet=True)
    return ds, path, counter.calls


@pytest.fixture(scope="module")
def ds(stored):
    return stored[0]


# --------------------------------------------------------------------------------------------
# Schema


def test_dims_and_coords(ds):
    assert set(ds.dims) == {"depth", "ratio", "log_scale"}
    np.testing.assert_array_equal(ds["depth"].values, np.asarray(CONFIG.depths))
    np.testing.assert_array_equal(ds["ratio"].values, np.asarray(CONFIG.ratios))
    np.testing.assert_array_equal(ds["log_scale"].values, np.log(CONFIG.scales))
    np.testing.assert_allclose(ds["scale"].values, np.asarray(CONFIG.scales), rtol=1e-15)
    assert ds["scale"].dims == ("log_scale",)
    for name in ("depth", "ratio", "log_scale", "scale"):
        assert ds[name].dtype == np.float64


@pytest.mark.parametrize(
    "name, dtype, dims",
    [
        ("margin", np.float64, ("depth", "ratio", "log_scale")),
        ("margin_in_unit", np.float64, ("depth", "ratio", "log_scale")),
        ("log_time_unit", np.float64, ("depth", "ratio", "log_scale")),
        ("incremental", np.bool_, ("depth", "ratio", "log_scale")),
        ("status", np.int8, ("depth", "ratio", "log_scale")),
        ("steps", np.int32, ("depth", "ratio", "log_scale")),
        ("slot_iterations", np.float64, ("depth", "ratio", "log_scale")),
        ("threshold_measured", np.float64, ("depth", "ratio")),
        ("threshold_theory", np.float64, ("depth", "ratio")),
        ("log_threshold_measured", np.float64, ("depth", "ratio")),
        ("log_threshold_theory", np.float64, ("depth", "ratio")),
        ("log_threshold_error_estimate", np.float64, ("depth", "ratio")),
        ("threshold_status", np.int8, ("depth", "ratio")),
    ],
)
def test_variables(ds, name, dtype, dims):
    assert ds[name].dtype == dtype
    assert ds[name].dims == dims


def test_no_unexpected_variables(ds):
    assert set(ds.data_vars) == {
        "margin", "margin_in_unit", "log_time_unit", "incremental", "status", "steps",
        "slot_iterations", "threshold_measured", "threshold_theory", "log_threshold_measured",
        "log_threshold_theory", "log_threshold_error_estimate", "threshold_status",
    }


def test_attributes(ds):
    a = ds.attrs
    assert a["start"] == 0.1 and a["finish"] == 0.9
    assert a["solver"] == "Tsit5"
    assert a["rtol"] == CONFIG.rtol and a["atol"] == CONFIG.atol
    assert a["dtype"] == "float64"
    assert a["threshold_tolerance"] == 1e-5 and a["check_tolerance_scale"] == 1e-3
    import importlib.metadata as md

    assert a["jaxflow_version"] == md.version("jaxflow")
    assert a["jax_version"] == md.version("jax")
    assert a["diffrax_version"] == md.version("diffrax")
    created = datetime.datetime.fromisoformat(a["created"])
    assert created.tzinfo is not None
    age = datetime.datetime.now(datetime.UTC) - created
    assert datetime.timedelta(0) <= age < datetime.timedelta(hours=1)


def test_config_attribute_round_trips(ds):
    table = tomllib.loads(ds.attrs["config"])
    assert pd.PhaseDiagramConfig.from_mapping(table) == CONFIG
    assert table["depths"][-1] == math.inf


def test_status_and_steps(ds):
    assert (ds["status"].values == status.OK).all()
    steps = ds["steps"].values
    assert steps.min() > 0 and steps.max() < 2 * CONFIG.max_steps
    np.testing.assert_array_equal(
        ds["incremental"].values, (ds["margin"].values >= 0) & (ds["status"].values == status.OK)
    )


# --------------------------------------------------------------------------------------------
# Thresholds and margins against theory


def _log_error(lm, lt):
    return abs(lm - lt) / max(1.0, abs(lt))


def test_theory_column_is_theory(ds):
    d, r = np.meshgrid(CONFIG.depths, CONFIG.ratios, indexing="ij")
    expected = np.asarray(theory.incremental_threshold(d, r))
    np.testing.assert_allclose(ds["threshold_theory"].values, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("depth", CONFIG.depths)
@pytest.mark.parametrize("ratio", CONFIG.ratios)
def test_measured_threshold_matches_theory(ds, depth, ratio):
    """Right (ok, within 1e-5 of theory) or saying it is not: never a wrong ok."""
    point = ds.sel(depth=depth, ratio=ratio)
    m, code = point["log_threshold_measured"].item(), point["threshold_status"].item()
    estimate = point["log_threshold_error_estimate"].item()
    t = float(theory.incremental_threshold(depth, ratio, log=True))
    if t == -math.inf:  # depth 1, and 1.5 below its critical ratio: not found, never a number
        assert depth < 2 and math.isnan(m) and code == status.NOT_FOUND and math.isnan(estimate)
        return
    assert math.isfinite(m)
    if (depth, ratio) == NEAR_CRITICAL:  # flat margin: rtol 1e-8 leaves 6.1e-5 in ln sigma0_th
        assert t < -35 and code == status.UNCERTAIN and estimate > 1e-5
        assert _log_error(m, t) > 1e-5
    else:
        assert code == status.OK and estimate <= 1e-5
        assert _log_error(m, t) <= 1e-5, (m, t)


def test_threshold_error_estimate_is_the_error(ds):
    """The stored estimate (solves 1e-3 x tighter) is within a factor 2 of the error against
    theory, for every checked threshold (measured: 0.995 .. 1.005 here, errors 6e-10 .. 6e-5),
    and NaN where nothing was checked (not found)."""
    estimate = ds["log_threshold_error_estimate"].values
    err = pd.threshold_log_error(ds).values
    codes = ds["threshold_status"].values
    checked = np.isin(codes, [status.OK, status.UNCERTAIN])
    np.testing.assert_array_equal(np.isfinite(estimate), checked)
    assert checked.sum() == 10
    ratio = estimate[checked] / err[checked]
    assert ((ratio > 0.5) & (ratio < 2.0)).all(), ratio
    np.testing.assert_array_equal(codes[checked] == status.OK, estimate[checked] <= 1e-5)
    assert ds["log_threshold_error_estimate"].attrs["units"] == "1"


def test_thresholds_outside_the_grid_are_found(ds):
    lo, hi = math.log(min(CONFIG.scales)), math.log(max(CONFIG.scales))
    cases = {"below": (2.0, 1.5), "above": (math.inf, 4.0), "inside": (3.0, 1.5)}
    for kind, (depth, ratio) in cases.items():
        t = float(theory.incremental_threshold(depth, ratio, log=True))
        row = ds["margin"].sel(depth=depth, ratio=ratio).values
        # The grid really puts this threshold where the case says.
        if kind == "below":
            assert t < lo and (row < 0).all()
        elif kind == "above":
            assert t > hi and (row >= 0).all()
        else:
            assert lo < t < hi and (row >= 0).any() and (row < 0).any()
        m = ds["log_threshold_measured"].sel(depth=depth, ratio=ratio).item()
        assert _log_error(m, t) <= 1e-5, (kind, m, t)
    # Depth 1 has no threshold: the downward search ends at the floor and reports not found,
    # every lane having finished: an answer, which theory's "none" matches.
    assert (ds["margin"].sel(depth=1.0).values < 0).all()
    assert np.isnan(ds["log_threshold_measured"].sel(depth=1.0).values).all()
    table = pd.summary_table(ds)
    assert "not found (below e^-100000)" in table and "match (no threshold)" in table
    assert "thresholds: ok 9, not_found 5, uncertain 1" in table


def test_all_max_steps_answers_nothing_and_exits_3(tmp_path, capsys, monkeypatch):
    """Every lane at max_steps: no threshold is claimed (NaN, status max_steps, not not_found),
    the table says "no answer" and never "match", and ``jaxflow phase-diagram`` ends with the
    count of what it could not answer, exit status 3, after writing its dataset (~5 s: one
    compilation for max_steps = 8)."""
    from jaxflow import cli, experiments

    monkeypatch.setattr(cli._process, "enable_compilation_cache", lambda: "")
    monkeypatch.setattr(experiments.Experiment, "figures", lambda self, ds: {})
    config = tmp_path / "max_steps.toml"
    config.write_text("max_steps = 8\ndepths = [1.5, 2.0]\nratios = [1.5]\n"
                      "log_scales = [-10.0, -3.0]\nchunk_size = 4\n")
    code = cli.main(["phase-diagram", "--config", str(config), "--out", str(tmp_path / "out"),
                     "--quiet"])
    out = capsys.readouterr().out
    assert code == 3
    assert "match" not in out and "not found" not in out.split("legend")[0]
    assert out.count("no answer (max_steps)") == 2
    assert out.strip().splitlines()[-1] == (
        "not answered: 6 of 6 (status: max_steps 4; threshold_status: max_steps 2)")
    ds = xr.load_dataset(tmp_path / "out" / "phase_diagram.nc", engine="h5netcdf")
    assert (ds["status"].values == status.MAX_STEPS).all()
    assert (ds["threshold_status"].values == status.MAX_STEPS).all()
    assert np.isnan(ds["log_threshold_measured"].values).all()
    assert np.isnan(ds["log_threshold_error_estimate"].values).all()
    assert status.not_answered(ds) == 6


def test_depth2_threshold_below_float64_measured_by_simulation():
    """ln sigma0_th = -2200 (r = 1.002) and -4398 (r = 1.001): far below e^-700, measured from
    simulations alone; depth-3 lanes at e^-10000 (real times ~ e^3333) decided correctly."""
    config = pd.PhaseDiagramConfig(depths=(2.0, 3.0), ratios=(1.001, 1.002),
                                   log_scales=(-1e4, -3000.0, -1000.0, -10.0), chunk_size=16)
    ds = pd.run(config, quiet=True)
    expected = np.asarray(theory.incremental_threshold(2.0, np.array([1.001, 1.002]), log=True))
    assert expected.max() < -700
    measured = ds["log_threshold_measured"].sel(depth=2.0).values
    np.testing.assert_allclose(measured, expected, rtol=1e-5)
    deep = ds.sel(depth=3.0, log_scale=-1e4)
    assert (deep["status"] == status.OK).all() and deep["incremental"].all()
    assert np.isposinf(deep["margin"].values).all()  # overflows, with the right sign
    assert (np.isfinite(deep["margin_in_unit"].values) & (deep["margin_in_unit"].values > 0)).all()
    assert float(pd.threshold_log_error(ds).max()) <= 1e-5


def test_threshold_log_error_helper(ds):
    err = pd.threshold_log_error(ds)
    assert err.dims == ("depth", "ratio")
    assert float(err.where(ds["threshold_status"] == status.OK).max()) <= 1e-5
    # The attribute is the worst over every threshold, the uncertain one included.
    assert ds.attrs["max_log_threshold_error"] == float(err.max()) > 1e-5


def test_margins_have_the_sign_of_theory(ds):
    d, r, s = np.meshgrid(CONFIG.depths, CONFIG.ratios, np.exp(ds["log_scale"].values), indexing="ij")
    expected = np.asarray(theory.incremental_margin(d, r, s))
    # the (depth, ratio) thresholds, as test_theory_column_is_theory asks them (one compiled
    # search for both tests), broadcast over the scales
    threshold = np.asarray(theory.incremental_threshold(d[..., 0], r[..., 0]))[..., None]
    far = np.abs(s - threshold) > 1e-6 * threshold
    margin = ds["margin"].values
    assert far.sum() == margin.size  # no grid point sits on a threshold here
    np.testing.assert_array_equal(np.sign(margin[far]), np.sign(expected[far]))
    # Both signs occur, so the comparison above has something to compare.
    assert (expected > 0).any() and (expected < 0).any()
    # Values: T_j(start) - T_i(finish), each a learning time from the same sigma0.
    t_j = np.asarray(theory.learning_time(d, 1.0, s, 0.1))
    t_i = np.asarray(theory.learning_time(d, r, s, 0.9 * r))
    np.testing.assert_allclose(expected, t_j - t_i, rtol=1e-10, atol=1e-10 * np.max(t_j + t_i))
    assert np.all(np.abs(margin - expected) <= 1e-6 * (np.abs(t_j) + np.abs(t_i)))


# --------------------------------------------------------------------------------------------
# Configuration


@pytest.mark.parametrize(
    "kwargs, option",
    [
        ({"ratios": (1.5, 1.0)}, "ratios"),
        ({"ratios": (0.5,)}, "ratios"),
        ({"ratios": (math.inf,)}, "ratios"),
        ({"depths": (2.0, 0.5)}, "depths"),
        ({"depths": ()}, "depths"),
        ({"ratios": []}, "ratios"),
        ({"scales": ()}, "scales"),
        ({"scales": (1e-3, 1.0)}, "scales"),
        ({"scales": (0.0,)}, "scales"),
        ({"scales": (1e-3, 1e-3)}, "scales"),
        ({"depths": (2.0, float("nan"))}, "depths"),
        ({"depths": ("two",)}, "depths"),
        ({"start": 0.9, "finish": 0.9}, "start"),
        ({"start": 0.5, "finish": 0.4}, "finish"),
        ({"finish": 1.0}, "finish"),
        ({"solver": "Euler"}, "solver"),
        ({"rtol": 0.0}, "rtol"),
        ({"atol": 1.0}, "atol"),
        ({"max_steps": 0}, "max_steps"),
        ({"chunk_size": 2.5}, "chunk_size"),
        ({"refine_iterations": -1}, "refine_iterations"),
    ],
)
def test_config_validation(kwargs, option):
    with pytest.raises(pd.ConfigError, match=option):
        pd.PhaseDiagramConfig(**kwargs)


def test_config_accepts_a_scalar_and_normalizes_types():
    cfg = pd.PhaseDiagramConfig(depths=3, ratios=[2], scales=[1e-3, 1e-2], chunk_size=8.0)
    assert cfg.depths == (3.0,) and cfg.ratios == (2.0,) and cfg.scales == (1e-3, 1e-2)
    assert isinstance(cfg.chunk_size, int) and cfg.chunk_size == 8


def test_toml_file_and_overrides(tmp_path):
    path = tmp_path / "pd.toml"
    path.write_text("depths = [2.0, inf]\nratios = [1.5, 3]\nscales = [1e-6, 1e-3]\nrtol = 1e-7\nseed = 4\n")
    cfg = pd.PhaseDiagramConfig.from_toml(path, ratios=[2.0], rtol=None, chunk_size=32)
    assert cfg.depths == (2.0, math.inf)
    assert cfg.ratios == (2.0,)  # the override wins
    assert cfg.rtol == 1e-7  # None overrides nothing
    assert cfg.seed == 4 and cfg.chunk_size == 32
    # to_toml / from_mapping round trip.
    assert pd.PhaseDiagramConfig.from_mapping(tomllib.loads(cfg.to_toml())) == cfg


def test_toml_unknown_key(tmp_path):
    path = tmp_path / "pd.toml"
    path.write_text("depths = [2.0]\nratio = [1.5]\n")
    with pytest.raises(pd.ConfigError, match="unknown option.*ratio"):
        pd.PhaseDiagramConfig.from_toml(path)


def test_toml_bad_value(tmp_path):
    path = tmp_path / "pd.toml"
    path.write_text("depths = [2.0]\nratios = [0.5]\n")
    with pytest.raises(pd.ConfigError, match="ratios"):
        pd.PhaseDiagramConfig.from_toml(path)


def test_toml_malformed(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("depths = [2.0, \nratios = \n")
    with pytest.raises(pd.ConfigError, match="not valid TOML") as info:
        pd.PhaseDiagramConfig.from_toml(path)
    assert "broken.toml" in str(info.value)


def test_toml_missing_file(tmp_path):
    with pytest.raises(pd.ConfigError, match="cannot read config file"):
        pd.PhaseDiagramConfig.from_toml(tmp_path / "absent.toml")


# --------------------------------------------------------------------------------------------
# netCDF


def test_netcdf_round_trip(ds, tmp_path):
    path = tmp_path / "pd.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    with xr.open_dataset(path, engine="h5netcdf") as back:
        back = back.load()
    assert set(back.data_vars) == set(ds.data_vars)
    for name in list(ds.data_vars) + list(ds.coords):
        assert back[name].dims == ds[name].dims, name
        assert back[name].dtype == ds[name].dtype, name
        np.testing.assert_array_equal(back[name].values, ds[name].values)
    for key, value in ds.attrs.items():
        assert back.attrs[key] == value, key
    assert back["status"].attrs["flag_meanings"] == ds["status"].attrs["flag_meanings"]


# --------------------------------------------------------------------------------------------
# Store and resume


def test_existing_store_without_resume_is_refused(stored):
    _, path, _ = stored
    with pytest.raises(sweep.SweepError, match="already exists"):
        pd.run(CONFIG, store=path, quiet=True)


def test_interrupted_and_resumed_equals_uninterrupted(stored, tmp_path, monkeypatch):
    ds, path, full_calls = stored
    # Work on a copy so that the other tests keep the complete store.
    copy = tmp_path / "copy.zarr"
    import shutil

    shutil.copytree(path, copy)
    missing = [0, 3]
    group = zarr.open_group(str(copy), mode="r+")
    assert group["done"].shape == (N_CHUNKS,)
    for i in missing:
        group["done"][i] = False
        rows = slice(i * 16, (i + 1) * 16)
        group["out_margin_in_unit"][rows] = np.full(16, -12345.0)
        group["out_status"][rows] = np.full(16, 3, dtype=group["out_status"].dtype)
        group["out_steps"][rows] = np.full(16, 7, dtype=group["out_steps"].dtype)

    counter = _ChunkCounter(monkeypatch)
    resumed = pd.run(CONFIG, store=copy, resume=True, quiet=True)
    # Only the missing grid chunks were recomputed; the refinement made the same calls as before.
    assert counter.calls == full_calls - N_CHUNKS + len(missing)

    xr.testing.assert_identical(resumed.drop_attrs(), ds.drop_attrs())
    for name in ds.data_vars:
        np.testing.assert_array_equal(resumed[name].values, ds[name].values)
    assert {k: v for k, v in resumed.attrs.items() if k != "created"} == {
        k: v for k, v in ds.attrs.items() if k != "created"
    }


def test_resume_with_another_config_is_refused(stored, tmp_path):
    _, path, _ = stored
    import shutil

    copy = tmp_path / "copy.zarr"
    shutil.copytree(path, copy)
    other = pd.PhaseDiagramConfig(**{**CONFIG.__dict__, "refine_iterations": 5})
    with pytest.raises(sweep.SweepError, match="different sweep"):
        pd.run(other, store=copy, resume=True, quiet=True)


# --------------------------------------------------------------------------------------------
# Work queues (the runner of the default solver)


def test_a_points_answer_does_not_depend_on_its_batch(ds):
    """Twelve grid points again, in another order, with other neighbours and a second queue
    (tighter tolerances for every third point) in the same call: the points at the sweep's
    tolerance give the sweep's bits; one compiled program serves both queues and the sweep."""
    runner = pd.shared_runner(CONFIG)  # the sweep's own (kept in this process)
    # one program: traced and compiled once, or loaded whole from the executable cache (the
    # run's cache directory may hold it from another test) and never traced
    assert isinstance(runner, pd.ToyQueueRunner) and runner.programs == 1
    traces = runner.traces
    assert traces <= 1
    flat = ds.stack(point=("depth", "ratio", "log_scale"))
    pick = np.random.default_rng(1).choice(flat.sizes["point"], size=12, replace=False)
    points = {k: flat[k].values[pick] for k in ("depth", "ratio", "log_scale")}
    tighter = np.where(np.arange(12) % 3 == 0, 1e-3, 1.0)
    out = runner.chunk({**points, "tolerance_scale": tighter})
    same = tighter == 1.0
    for name in ("margin_in_unit", "log_time_unit", "status", "steps"):
        np.testing.assert_array_equal(out[name][same], flat[name].values[pick][same])
    # the tighter queue solved its points again: more steps, margins that moved by no more
    # than the sweep's tolerance allows (1e-6 of the unit, see test_margins_have_the_sign...)
    assert np.all(out["steps"][~same] > flat["steps"].values[pick][~same])
    moved = np.abs(out["margin_in_unit"][~same] - flat["margin_in_unit"].values[pick][~same])
    assert np.all(moved <= 1e-6 * np.maximum(1.0, np.abs(out["margin_in_unit"][~same])))
    assert runner.programs == 1 and runner.traces == traces


def test_the_queues_idle_share_is_stored_and_reported(ds):
    """Every point stores its share of its chunk's slot iterations: they cover the solver
    attempts, and the report prints the idle share they leave."""
    slots, steps = ds["slot_iterations"].values, ds["steps"].values
    assert np.all(slots > 0) and slots.sum() >= steps.sum()
    wasted = pd.wasted_share(ds)
    assert wasted == pytest.approx(1 - steps.sum() / slots.sum(), rel=1e-12)
    assert 0 <= wasted < 1
    assert f"work queues: {100 * wasted:.1f}% of slot iterations idle" in pd.report(ds)


@pytest.mark.parametrize("solver, kind", [("Tsit5", "ToyQueueRunner"), ("Dopri5", "ToyRunner"),
                                          ("Dopri8", "ToyRunner")])
def test_the_runner_follows_the_solver(solver, kind):
    """The work queues are Tsit5 (the ensemble engine's method); other solvers run lockstep."""
    runner = pd.float64_runner(pd.PhaseDiagramConfig(solver=solver))
    assert type(runner).__name__ == kind and runner.traces == 0
