"""Exports that cannot crash, and writes that never escape ``--out``.

Checked here (``jaxflow phase-diagram`` on one tiny grid, the one of
tests/test_fault_tolerance.py, resumed from one finished store, so only the threshold refinement
and the export run again; in-process through ``jaxflow.cli.main``, except the real ENOSPC
during the write, run as a subprocess so that a segfault there would fail the test, not the
test run):

* **A real full disk**: the finished ``--out`` is copied onto a small **tmpfs** and the tmpfs is
  filled up; ``--resume`` then refuses up front (free space checked against the netCDF file's
  size), and, with that check disabled (``free_disk`` patched to "unknown"), the kernel's
  ENOSPC during the write gives one line and exit 2, not a segfault. Either way no partial file
  is left, and the store is byte-for-byte untouched. (Skipped where ``mount -t tmpfs`` is not
  allowed; the OS-call fault injection below always runs.)
* **Fault injection at the OS call**: ``os.write`` raising ENOSPC (or EIO) halfway through an
  export: one ``ExportError`` line, the temporary file removed, the old target intact.
* **SIGINT during the export** (sent by the process to itself from inside ``os.write``, and
  inside the netCDF serialization): one line, exit 130, no traceback, no partial file.
* **Planted symbolic links** named like the old temporary files (``phase_diagram.partial.nc``,
  ``phase_diagram.partial.png``, ``thresholds.partial.png``) and at the final name are never
  followed: their targets outside ``--out`` stay untouched.
* An unserializable dataset (a seed of 2**70 used to reach the export) is refused before any
  file is created.
"""

import errno
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from jaxflow import cli
from jaxflow.sweep import atomic as _atomic_write

GRID = ["--depths", "2,3,inf", "--ratios", "1.5,4", "--scales", "1e-12:1e-2:8",
        "--chunk-size", "4", "--quiet"]
EXPORTS = ("phase_diagram.nc", "phase_diagram.png", "thresholds.png")


@pytest.fixture(scope="module")
def env(subprocess_env):
    return subprocess_env


def run(env, out, *flags, code=None, timeout=300):
    main = "\nfrom jaxflow.cli import main\nsys.exit(main(sys.argv[1:]))"
    head = ["-c", textwrap.dedent(code) + main] if code else ["-m", "jaxflow.cli"]
    argv = [sys.executable, *head, "phase-diagram", *GRID, "--out", str(out), *flags]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def phase_diagram(run_cli, out, *flags):
    """``jaxflow phase-diagram`` on GRID in this process: (exit code, stdout, stderr)."""
    return run_cli(["phase-diagram", *GRID, "--out", out, *flags])


@pytest.fixture(scope="module")
def finished(tmp_path_factory, run_cli):
    out = tmp_path_factory.mktemp("finished")
    rc, stdout, stderr = phase_diagram(run_cli, out)
    assert rc == 0, stderr[-3000:]
    return out


def snapshot(directory) -> dict[str, bytes]:
    root = Path(directory)
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def store_files(out) -> dict[str, bytes]:
    return snapshot(Path(out) / "phase_diagram.zarr")


def assert_one_line(stderr, start="jaxflow: error: "):
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(start), stderr[-3000:]
    assert "Traceback" not in stderr


def no_partial_files(out):
    return [p.name for p in Path(out).iterdir() if "partial" in p.name]


def resumable_copy(finished, out):
    """A copy of the finished store in ``out``, without its exports."""
    shutil.copytree(Path(finished) / "phase_diagram.zarr", Path(out) / "phase_diagram.zarr")
    return out


# --------------------------------------------------------------------------------------------
# A real full disk (tmpfs)


@pytest.fixture
def small_tmpfs(tmp_path):
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True)
    if proc.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(mount, leave: int):
    """Fill the file system at ``mount`` until only ``leave`` bytes are free."""
    st = os.statvfs(mount)
    free = st.f_bavail * st.f_frsize
    with open(mount / "filler", "wb") as fh:
        fh.write(b"\0" * max(0, free - leave))


def test_disk_full_on_a_real_tmpfs(env, finished, small_tmpfs, run_cli):
    out = resumable_copy(finished, small_tmpfs / "out")
    before = store_files(out)
    nc_size = (Path(finished) / "phase_diagram.nc").stat().st_size
    fill(small_tmpfs, leave=nc_size // 2)

    # 1. The free space is checked before writing: one line naming the file and the sizes.
    rc, stdout, stderr = phase_diagram(run_cli, out, "--resume")
    assert rc == 2, stderr[-3000:]
    assert_one_line(stderr)
    assert "phase_diagram.nc" in stderr and "free" in stderr and "--resume" in stderr

    # 2. Without that check, the kernel's ENOSPC during the write: one line, no segfault.
    rc, stdout, stderr = run(env, out, "--resume", code="""
        import sys
        from jaxflow.sweep import resources as _resources
        _resources.free_disk = lambda path: None
    """)
    assert rc == 2, (rc, stderr[-3000:])
    assert_one_line(stderr)
    assert "No space left on device" in stderr
    for outcome in (no_partial_files(out), [n for n in EXPORTS if (out / n).exists()]):
        assert outcome == []
    assert store_files(out) == before


# --------------------------------------------------------------------------------------------
# Fault injection at the OS call


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO, errno.EROFS])
def test_os_write_failing_halfway(tmp_path, monkeypatch, code):
    target = tmp_path / "result.nc"
    target.write_bytes(b"the previous export")
    calls = []
    real_write = os.write

    def failing_write(fd, data):
        calls.append(len(data))
        if len(calls) == 2:
            raise OSError(code, os.strerror(code))
        return real_write(fd, data)

    monkeypatch.setattr(_atomic_write.os, "write", failing_write)
    with pytest.raises(_atomic_write.ExportError) as info:
        _atomic_write.write_atomically(target, b"x" * (3 * _atomic_write.CHUNK))
    message = str(info.value)
    assert "\n" not in message and str(target) in message and os.strerror(code) in message
    assert target.read_bytes() == b"the previous export"
    assert sorted(os.listdir(tmp_path)) == ["result.nc"]


def test_export_refused_up_front_when_space_is_short(tmp_path, monkeypatch):
    from jaxflow.sweep import resources as _resources

    monkeypatch.setattr(_resources, "free_disk", lambda path: 10)
    with pytest.raises(_atomic_write.ExportError, match="only 10 B free"):
        _atomic_write.write_atomically(tmp_path / "a.nc", b"x" * 100)
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------------------------
# SIGINT during the export


def test_sigint_while_writing_the_export(finished, tmp_path, monkeypatch, ctrl_c, run_cli):
    out = resumable_copy(finished, tmp_path / "out")
    real_write = os.write

    def write(fd, data):
        # os.write is patched process-wide: only the export's own write (a temporary file, in
        # the main thread) sends Ctrl-C. In a full run a background thread left by an earlier
        # test (ray's, zarr's) can write first, and its interrupt was swallowed.
        if (threading.current_thread() is threading.main_thread()
                and ".partial" in os.readlink(f"/proc/self/fd/{fd}")):
            ctrl_c()  # in the middle of the export (the first write; ctrl_c fires once)
        return real_write(fd, data)

    monkeypatch.setattr(_atomic_write.os, "write", write)
    rc, stdout, stderr = phase_diagram(run_cli, out, "--resume")
    monkeypatch.undo()
    assert rc == 130, (rc, stderr[-3000:])
    assert_one_line(stderr, start="jaxflow: interrupted")
    assert no_partial_files(out) == [] and not (out / "phase_diagram.nc").exists()


def test_sigint_inside_the_netcdf_serialization(monkeypatch, tmp_path, ctrl_c):
    ds = xr.Dataset({"margin": ("scale", np.arange(4.0))})
    real = xr.Dataset.to_netcdf

    def interrupted(self, *args, **kwargs):
        ctrl_c()  # arrives while HDF5 serializes
        return real(self, *args, **kwargs)

    monkeypatch.setattr(xr.Dataset, "to_netcdf", interrupted)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        cli._export(ds, str(tmp_path), "phase_diagram", {})
    assert os.listdir(tmp_path) == []
    assert signal.getsignal(signal.SIGINT) is handler  # restored


# --------------------------------------------------------------------------------------------
# Writes never escape --out


def test_planted_symlinks_are_never_followed(finished, tmp_path, run_cli):
    outside = tmp_path / "outside"
    outside.mkdir()
    out = resumable_copy(finished, tmp_path / "out")
    names = ["phase_diagram.partial.nc", "phase_diagram.partial.png", "thresholds.partial.png",
             ".partial.png", "phase_diagram.nc"]
    for name in names:
        target = outside / f"{name}.target"
        target.write_text("must stay untouched")
        os.symlink(target, out / name)
    rc, stdout, stderr = phase_diagram(run_cli, out, "--resume")
    assert rc == 0, stderr[-3000:]
    for name in names:
        assert (outside / f"{name}.target").read_text() == "must stay untouched"
    assert not (out / "phase_diagram.nc").is_symlink()  # replaced by the export, not followed
    with xr.open_dataset(out / "phase_diagram.nc", engine="h5netcdf") as ds:
        assert ds["margin"].shape == (3, 2, 8)


def test_unserializable_dataset_leaves_nothing(tmp_path):
    ds = xr.Dataset({"margin": ("scale", np.arange(4.0))}, attrs={"seed": 2**70})
    with pytest.raises(cli.CliError, match="cannot be serialized"):
        cli._export(ds, str(tmp_path), "phase_diagram", {})
    assert os.listdir(tmp_path) == []


def test_temporary_files_are_unique_and_exclusive(tmp_path):
    fd1, a = _atomic_write.temporary_file(tmp_path / "x.nc")
    fd2, b = _atomic_write.temporary_file(tmp_path / "x.nc")
    os.close(fd1), os.close(fd2)
    assert a != b and Path(a).parent == Path(b).parent == tmp_path
    assert str(os.getpid()) in a and a.endswith(".partial.nc")
