"""Exported datasets prove themselves, and come before their figures.

* Every ``.nc`` jaxflow exports carries a checksum of its variables. A flipped byte inside a
  variable's values: ``jaxflow plot`` and ``jaxflow verify`` refuse it in one line, exit 1 (it
  used to be plotted as data); ``jaxflow plot --salvage`` plots it with a one-line warning.
* A file that is not netCDF, or truncated: one line, exit 1, never a traceback.
* A dataset written before checksums existed plots with a one-line warning.
* Temporary files left by an export killed mid-write are removed by the next export there.
* ``--log-scales=-1e300`` (a value the figure code cannot draw): the dataset is written, the
  figures are skipped with a warning, exit 3 since that lane has no answer (the figure used to
  crash before the ``.nc`` was written, losing the computed data).
"""

import os

import numpy as np
import pytest
import xarray as xr

from jaxflow import cli
from jaxflow.sweep import checksum

MARKER = np.array([1.2345678901234567, 2.345678901234567, 3.45678901234567])


def _dataset():
    return xr.Dataset({"value": ("x", MARKER)}, coords={"x": [1.0, 2.0, 3.0]},
                      attrs={"experiment": "quadratic", "config": "d = 3\n"})


@pytest.fixture
def sealed(tmp_path):
    path = tmp_path / "quadratic.nc"
    path.write_bytes(checksum.seal(_dataset()))
    return path


def _one_line_status(capsys, argv, status):
    code = cli.main(argv)
    captured = capsys.readouterr()
    assert code == status, (code, captured.err[-2000:])
    assert "Traceback" not in captured.err + captured.out
    return captured


def test_a_sealed_dataset_verifies(sealed, capsys):
    out = _one_line_status(capsys, ["verify", str(sealed)], 0).out
    assert "matches its checksum" in out
    ds, warning = checksum.read(sealed)
    assert warning == "" and np.array_equal(ds["value"].values, MARKER)


def test_a_flipped_byte_in_a_variable_is_refused(sealed, capsys):
    data = bytearray(sealed.read_bytes())
    at = bytes(data).index(MARKER.tobytes())
    data[at + 3] ^= 0x01
    sealed.write_bytes(bytes(data))
    for argv in (["verify", str(sealed)], ["verify", str(sealed.parent)]):
        out = _one_line_status(capsys, argv, 1).out
        assert out.strip().count("\n") == 0 and "do not match its checksum" in out
    err = _one_line_status(capsys, ["plot", str(sealed), "--out", str(sealed.parent)], 1).err
    assert err.count("\n") == 1 and "--salvage" in err
    assert not list(sealed.parent.glob("*.png"))
    err = _one_line_status(capsys, ["plot", str(sealed), "--salvage"], 0).err
    assert "warning" in err and "damaged" in err


@pytest.mark.parametrize("content", [b"not a netCDF file", b"\x89HDF\r\n\x1a\n" + b"\0" * 64],
                         ids=["garbage", "hdf5-signature-only"])
def test_an_unreadable_dataset_is_one_line(tmp_path, capsys, content):
    path = tmp_path / "bad.nc"
    path.write_bytes(content)
    err = _one_line_status(capsys, ["plot", str(path)], 1).err
    assert err.count("\n") == 1 and "damaged" in err
    _one_line_status(capsys, ["verify", str(path)], 1)


def test_a_truncated_dataset_is_one_line(sealed, capsys):
    sealed.write_bytes(sealed.read_bytes()[:300])
    err = _one_line_status(capsys, ["plot", str(sealed)], 1).err
    assert err.count("\n") == 1


def test_a_dataset_without_checksum_plots_with_a_warning(tmp_path, capsys):
    path = tmp_path / "old.nc"
    _dataset().to_netcdf(path, engine="h5netcdf")
    ds, warning = checksum.read(path)
    assert "no checksum" in warning and np.array_equal(ds["value"].values, MARKER)
    out = _one_line_status(capsys, ["verify", str(path)], 0).out
    assert "no checksum" in out


def test_extreme_scales_keep_the_dataset_and_skip_the_figures(tmp_path, capsys):
    out = tmp_path / "out"
    captured = _one_line_status(capsys, [
        "phase-diagram", "--depths", "2", "--ratios", "2", "--log-scales=-1e300,-1",
        "--chunk-size", "2", "--quiet", "--out", str(out)], 3)
    assert "warning: skipped the figures" in captured.err
    assert captured.out.strip().splitlines()[-1].startswith("not answered:"), captured.out
    ds, warning = checksum.read(out / "phase_diagram.nc")
    assert warning == "" and ds["margin"].shape == (1, 1, 2)
    assert not [p for p in os.listdir(out) if ".partial" in p]


def test_temporaries_of_a_killed_export_are_removed(sealed, capsys):
    out = sealed.parent
    stale = out / ".phase_diagram.999999999-0a1b2c3d.partial.nc"  # its process is gone
    live = out / f".phase_diagram.{os.getpid()}-0a1b2c3d.partial.nc"  # a writer still running
    stale.write_bytes(b"half a file")
    live.write_bytes(b"being written")
    _one_line_status(capsys, ["plot", str(sealed), "--out", str(out)], 0)
    assert not stale.exists() and live.exists()
