"""Every limit checked before any work, and small inputs refused in one line.

* ``jaxflow phase-diagram`` on a 1000 x 1000 x 1000 grid, or with a 1e7-value scale axis, is
  refused in one line (exit 2) from the axis counts alone: no axis array is built (the flags'
  values are never made), no theory thread started, no ``--out`` folder created. They used to
  grow to 14 GB, or to run 52 s, before the size guard refused them (measured refusal now:
  0.06 s in-process, 220 MB peak for the whole process, most of it importing JAX).
* ``phase_diagram.run`` itself checks the size before building a runner or starting the theory
  thread (the thread used to start first).
* The estimate is within a factor 2 of the measured peak memory at three grid sizes.
* A FIFO given as ``--config`` is refused at once (it used to block for ever); a TOML file
  nested too deeply is one line (it was a RecursionError traceback); ``--depths 2,,3`` is
  refused (it read as 2,3); the dtype refusal says what to write.
"""

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from jaxflow import cli, sweep
from jaxflow.experiments import phase_diagram as pd
from jaxflow.sweep import resources

HUGE = {
    "grid-1000^3": ["--depths", "1:10:1000", "--ratios", "1.01:10:1000",
                    "--scales", "1e-100:1e-2:1000"],
    "axis-1e7": ["--scales", "1e-100:1e-2:10000000"],
}


@pytest.mark.parametrize("flags", list(HUGE.values()), ids=list(HUGE))
def test_huge_requests_are_refused_from_the_counts(tmp_path, cli_refuses, monkeypatch, flags):
    def never(*args, **kwargs):
        raise AssertionError("work started before the size check")

    monkeypatch.setattr(cli._options, "_numbers", never)  # builds the axes' values
    monkeypatch.setattr(cli._options, "_log_numbers", never)
    monkeypatch.setattr(pd, "theory_thresholds", never)
    out = tmp_path / "new" / "out"
    start = time.perf_counter()
    line = cli_refuses(["phase-diagram", *flags, "--quiet", "--out", str(out)],
                       "points", "memory", "--no-size-check")
    assert time.perf_counter() - start < 10.0, line  # generous: measured 0.06 s
    assert not (tmp_path / "new").exists()


def test_the_library_checks_the_size_before_any_thread(monkeypatch):
    called = []
    monkeypatch.setattr(resources, "available_memory", lambda: 1000)
    monkeypatch.setattr(pd, "theory_thresholds", lambda config: called.append(1))
    config = pd.PhaseDiagramConfig(depths=(2.0, 3.0), ratios=(2.0,), chunk_size=64)
    threads = threading.active_count()
    with pytest.raises(sweep.SweepError, match="--no-size-check"):
        pd.run(config, quiet=True)
    assert called == [] and threading.active_count() == threads


MEASURE = textwrap.dedent(
    """
    import os, tempfile
    import jax
    import numpy as np
    jax.config.update("jax_enable_x64", True)  # jaxflow leaves x64 to its caller
    from jaxflow import sweep
    from jaxflow.sweep import estimate

    def point(p):
        return {"y": p["a"] * p["b"] + p["c"]}

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

    sweep.run(point, {"a": [1.0, 2.0], "b": [1.0], "c": [1.0]}, chunk_size=4096, quiet=True,
              store=os.path.join(tempfile.mkdtemp(), "warm.zarr"))  # compiles
    for side in (200, 400, 600):
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets the peak (VmHWM) to the current resident size
        before = status("VmRSS")
        axes = {"a": np.linspace(1, 2, side), "b": np.linspace(1, 2, side), "c": [1.0, 2.0, 3.0]}
        sweep.run(point, axes, chunk_size=4096, quiet=True,
                  store=os.path.join(tempfile.mkdtemp(), "s.zarr"))
        peak = status("VmHWM") - before
        guess = estimate.request([side, side, 3], bytes_per_point=8, chunk_size=4096,
                                 store=True).memory
        print("RATIO", side, guess / peak, peak, flush=True)
    """
)


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
def test_the_estimate_is_within_2x_of_the_measured_peak(subprocess_env):
    done = subprocess.run([sys.executable, "-c", MEASURE], env=subprocess_env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    ratios = [float(line.split()[2]) for line in done.stdout.splitlines()
              if line.startswith("RATIO")]
    assert len(ratios) == 3 and all(0.5 <= r <= 2.0 for r in ratios), done.stdout


def test_a_fifo_config_is_refused_not_waited_on(tmp_path, capsys):
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    result = []
    worker = threading.Thread(target=lambda: result.append(cli.main(
        ["phase-diagram", "--config", str(fifo), "--out", str(tmp_path / "out"), "--quiet"])),
        daemon=True)
    worker.start()
    worker.join(timeout=30)
    if worker.is_alive():  # the old code blocks in open(): release it, then fail
        with open(fifo, "w"):
            pass
        worker.join(timeout=30)
        raise AssertionError("--config FIFO blocked")
    err = capsys.readouterr().err
    assert result == [2] and "not a regular file (a FIFO)" in err and err.count("\n") == 1


def test_a_deeply_nested_config_is_one_line(tmp_path, cli_refuses):
    path = tmp_path / "deep.toml"
    path.write_text("depths = " + "[" * 50_000 + "]" * 50_000 + "\n")
    cli_refuses(["phase-diagram", "--config", str(path), "--out", str(tmp_path / "o")],
                "nests", "too deeply")


@pytest.mark.parametrize("argv", [
    ["phase-diagram", "--depths", "2,,3"],
    ["phase-diagram", "--ratios", "2,3,"],
    ["phase-diagram", "--log-scales=,-5"],
    ["experiment", "matrix-sensing-generalization", "--depths", "2,,3"],
], ids=["depths", "trailing", "leading", "experiment-flag"])
def test_empty_list_items_are_refused(tmp_path, cli_refuses, argv):
    cli_refuses([*argv, "--out", str(tmp_path / "o")], "is empty", "e.g. '2,3'")
    assert not (tmp_path / "o").exists()


def test_the_dtype_refusal_says_what_to_write(tmp_path, cli_refuses):
    path = tmp_path / "c.toml"
    path.write_text("dtype = 32\n")
    cli_refuses(["phase-diagram", "--config", str(path), "--out", str(tmp_path / "o")],
                "dtype", 'dtype = "float64"', "--dtype")
