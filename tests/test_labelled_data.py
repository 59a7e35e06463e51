"""Every dataset the ``jaxflow`` command writes describes itself (issue 13, labelled data).

Walked over every registered experiment, on the ``NAME.nc`` that ``jaxflow experiment NAME
--smoke`` writes and read back from disk (netCDF keeps what it keeps, not what xarray held):

* every variable and coordinate has a ``long_name`` and ``units``; a status variable has CF
  ``flag_values``/``flag_meanings`` naming :mod:`jaxflow.engine.status`'s codes instead of units, and a
  text coordinate (``backend``) has none (CF gives neither a unit);
* the provenance: package versions, git commit (``"unknown"`` outside a checkout), the command
  line, the resolved config (which reads back as the smoke config) and ``smoke = 1``;
* integer coordinates where integers are meant (seeds, indices, and depths everywhere but the
  toy phase diagram, whose depth is real and may be inf).

The simulations are not run again: the command's ``run`` is the session's smoke run
(conftest's ``smoke_run``, shared with tests/test_experiments.py), and its figures are left out
(tests/test_experiments.py draws them).
"""

import tomllib

import numpy as np
import pytest
import xarray as xr

from jaxflow import cli, experiments
from jaxflow.engine import status

# The smoke runs (conftest's smoke_run) are shared in-process: under pytest-xdist these files
# go to one worker together (--dist loadgroup), so none is computed twice.
pytestmark = pytest.mark.xdist_group("smoke_runs")

NAMES = experiments.names()
INTEGER_COORDS = {"depth", "seed", "mode", "rank", "jump", "plateau", "late", "repeat"}
REAL_DEPTH = {"phase-diagram"}  # the reduced toy flow takes any real N >= 1, and inf
PROVENANCE = {"jaxflow_version", "jax_version", "numpy_version", "xarray_version", "git_commit",
              "command", "config", "smoke", "created", "experiment", "dtype"}


@pytest.fixture(scope="module")
def written(smoke_run, tmp_path_factory):
    """``written(name)``: the dataset ``jaxflow experiment NAME --smoke`` writes, read back."""
    cache = {}

    def get(name):
        if name not in cache:
            out = tmp_path_factory.mktemp(name)
            computed = smoke_run(name)  # before `run` is replaced: the shared run is the real one
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(experiments.Experiment, "run",
                           lambda self, config=None, **options: computed.copy(deep=True))
                mp.setattr(experiments.Experiment, "figures", lambda self, ds: {})
                mp.setattr(cli._process, "enable_compilation_cache", lambda: "")
                assert cli.main(["experiment", name, "--smoke", "--out", str(out)]) == 0
            stem = experiments.get(name).file_stem
            with xr.open_dataset(out / f"{stem}.nc", engine="h5netcdf") as ds:
                cache[name] = ds.load()
        return cache[name]

    return get


def _is_flag(var) -> bool:
    return "flag_values" in var.attrs


@pytest.mark.parametrize("name", NAMES)
def test_every_variable_and_coordinate_is_labelled(name, written):
    ds = written(name)
    unlabelled, no_units = [], []
    for key in ds.variables:
        var = ds[key]
        long_name = var.attrs.get("long_name")
        if not (isinstance(long_name, str) and long_name.strip()):
            unlabelled.append(key)
        if _is_flag(var) or var.dtype.kind in "USO":
            continue
        units = var.attrs.get("units")
        if not (isinstance(units, str) and units.strip()):
            no_units.append(key)
    assert not unlabelled, f"{name}: no long_name on {unlabelled}"
    assert not no_units, f"{name}: no units on {no_units}"


@pytest.mark.parametrize("name", NAMES)
def test_status_variables_name_their_codes(name, written):
    ds = written(name)
    codes = sorted(status.NAMES)
    flagged = [k for k in ds.variables if k == "status" or str(k).endswith("_status")]
    assert "status" in flagged
    for key in flagged:
        attrs = ds[key].attrs
        np.testing.assert_array_equal(attrs["flag_values"], codes)
        assert np.asarray(attrs["flag_values"]).dtype == ds[key].dtype == np.int8
        assert attrs["flag_meanings"].split() == [status.NAMES[c] for c in codes]
        assert set(np.unique(ds[key].values)) <= set(codes)


@pytest.mark.parametrize("name", NAMES)
def test_provenance(name, written):
    ds = written(name)
    missing = PROVENANCE - set(ds.attrs)
    assert not missing, f"{name}: no {sorted(missing)}"
    assert ds.attrs["experiment"] == name
    assert ds.attrs["command"].startswith(f"jaxflow experiment {name} --smoke --out ")
    assert int(ds.attrs["smoke"]) == 1
    commit = ds.attrs["git_commit"]
    assert commit == "unknown" or len(commit.removesuffix("-dirty")) == 40, commit
    cls = experiments.get(name).config
    assert cls.from_mapping(tomllib.loads(ds.attrs["config"])) == cls.smoke()


@pytest.mark.parametrize("name", NAMES)
def test_integer_coordinates(name, written):
    ds = written(name)
    wanted = INTEGER_COORDS - ({"depth"} if name in REAL_DEPTH else set())
    floats = {k: str(ds[k].dtype) for k in wanted & set(ds.coords) if ds[k].dtype.kind not in "iu"}
    assert not floats, f"{name}: integer coordinates stored as floats: {floats}"
