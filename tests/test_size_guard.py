"""The size guard: an oversized run is refused up front, in one line, before touching --out.

* ``--scales 1e-12:1e-2:1000000000000`` (an axis of 1e12 values), a 1e12-point grid of three
  1e4-value axes, ``--chunk-size 2147483647`` and ``--config /dev/zero``: exit 2, one line with
  the estimate (or the file's size limit), and no ``--out`` directory left behind (not even an
  empty one).
* ``sweep.run`` refuses a sweep whose estimate exceeds the memory available (here patched to
  1 MB) naming ``--no-size-check``; ``size_check=False`` runs it anyway; the CLI flag
  ``--no-size-check`` reaches it.
* A new store larger than the free disk space is refused before it is created.
"""

import os

import numpy as np
import pytest

from jaxflow import cli, sweep
from jaxflow.sweep import resources as _resources


@pytest.mark.parametrize("flags, words", [
    (["--depths", "2,3", "--ratios", "2", "--scales", "1e-12:1e-2:1000000000000"],
     ["--scales", "memory"]),
    (["--depths", "1:1e4:10000", "--ratios", "1.01:10:10000", "--scales", "1e-12:1e-2:10000"],
     ["1000000000000 points", "memory", "--no-size-check"]),
    (["--depths", "2,3", "--ratios", "2", "--scales", "1e-6:1e-2:4", "--chunk-size", "2147483647"],
     ["chunks of 2147483647", "memory"]),
    (["--config", "/dev/zero"], ["/dev/zero", "larger than"]),
], ids=["huge-axis", "huge-grid", "huge-chunk", "dev-zero"])
def test_oversized_runs_are_refused_before_creating_out(tmp_path, cli_refuses, flags, words):
    if flags[:2] == ["--config", "/dev/zero"] and not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    out = tmp_path / "deep" / "out"
    cli_refuses(["phase-diagram", *flags, "--quiet", "--out", str(out)], *words)
    assert not (tmp_path / "deep").exists()


def _poly(p):
    return {"value": p["x"] ** 2}


def test_sweep_estimate_against_memory_and_the_override(monkeypatch, tmp_path):
    monkeypatch.setattr(_resources, "available_memory", lambda: 10**6)
    axes = {"x": np.linspace(0.0, 1.0, 20_000).tolist()}
    with pytest.raises(sweep.SweepError, match="--no-size-check") as info:
        sweep.run(_poly, axes, chunk_size=1024, quiet=True, store=tmp_path / "s.zarr")
    assert "of memory" in str(info.value) and "\n" not in str(info.value)
    assert os.listdir(tmp_path) == []
    ds = sweep.run(_poly, axes, chunk_size=1024, quiet=True, size_check=False)
    assert ds["value"].size == 20_000


def test_a_store_larger_than_the_free_disk_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(_resources, "free_disk", lambda path: 50_000)
    axes = {"x": np.linspace(0.0, 1.0, 20_000).tolist()}
    with pytest.raises(sweep.SweepError, match="free there"):
        sweep.run(_poly, axes, chunk_size=64, quiet=True, store=tmp_path / "s.zarr")
    assert os.listdir(tmp_path) == []


def test_no_size_check_flag_reaches_the_sweep():
    args = cli.build_parser().parse_args(["phase-diagram", "--no-size-check"])
    assert args.size_check is False
    assert cli.build_parser().parse_args(["phase-diagram"]).size_check is True
