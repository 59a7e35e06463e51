"""Fault tolerance and scale-out of ``jaxflow phase-diagram``, run as subprocesses where the
process is what is checked (killed, or cooperating), in-process otherwise.

Checked here:

* **Disk full, kill -9, then --resume.** A phase diagram (48 trajectories, 12 chunks of 4)
  whose store writes fail with ``OSError(ENOSPC)`` after 2 chunks (in-process) exits 2 with one line naming
  the store and the reason, keeps the 2 finished chunks and exports nothing. It is then resumed
  and killed with SIGKILL twice: when 2 more done flags appeared (mid-sweep), then at a random
  delay (up to 1.5 s) after the run printed its first line: it lands in tracing, the sweep, the
  threshold refinement or the export. A last ``--resume`` (in-process, ``jaxflow.cli.main``)
  finishes it. The final netCDF file equals an uninterrupted run's (in-process too), every
  variable bitwise (``np.array_equal``). ``JAXFLOW_CHUNK_LOG`` (sweep.py's audit hook) records
  every chunk a run starts: a run never starts a chunk whose done flag was set before it
  began, done flags only ever get set, and the final run computes exactly the chunks still
  missing.
* **Two processes.** ``--coordinator 127.0.0.1:PORT --num-processes 2 --process-id I`` (two CPU
  processes on loopback through ``jax.distributed``) write one shared store, each its own chunks
  (i % 2 == I, from the chunk log); only process 0 exports; the netCDF file is bitwise the
  one-process run's.
* **Processes at the API level.** Three threads as processes 0-2 of ``sweep.run`` fill a fresh
  store (process 0 starts last: the others wait for its layout), each its chunks; every one
  returns the one-process dataset bitwise. Two then resume it after 4 chunks were lost, each
  computing only the lost chunks of its share. A process 1 without a process 0 gives up after
  ``wait_timeout`` with a SweepError naming it, and creates nothing.
* **Another experiment on the chunked store.** An edge-of-stability map killed (SIGKILL) after
  2 of its 4 chunks and resumed (computing only the missing chunks) equals an uninterrupted run
  bitwise.
* **Status summary.** A sweep whose lanes hit ``max_steps`` summarizes them at the end
  (``status.report`` names the status counts and the coordinates of the bad lanes).

All phase-diagram runs use the same grid (that of tests/test_export_faults.py), so one
persistent compilation cache serves them. Runs whose process is not what is checked (the
references, the last resumes) run in-process, through ``jaxflow.cli.main``.
"""

import errno
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

GRID = ["--depths", "2,3,inf", "--ratios", "1.5,4", "--scales", "1e-12:1e-2:8",
        "--chunk-size", "4", "--quiet"]
N_CHUNKS = 12  # 48 trajectories in chunks of 4 (one CPU device, batch 4)


@pytest.fixture(scope="module")
def env(subprocess_env):
    """The subprocesses' environment (conftest): the suite's compiler, so that the killed and
    resumed runs and the in-process reference give comparable bits."""
    return subprocess_env


def start(env, out, *flags, log=None, code=None, stdout=subprocess.PIPE):
    """Start ``jaxflow phase-diagram`` on GRID (or ``python -c code`` with the same argv)."""
    env = dict(env)
    if log is not None:
        env["JAXFLOW_CHUNK_LOG"] = str(log)
    argv = ["phase-diagram", *GRID, "--out", str(out), *flags]
    head = ["-c", code] if code else ["-m", "jaxflow.cli"]
    return subprocess.Popen([sys.executable, *head, *argv], env=env, stdout=stdout,
                            stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def done_flags(out) -> set[int]:
    """Chunks whose done flag is on disk (zarr writes each flag as its own file, atomically)."""
    path = Path(out) / "phase_diagram.zarr" / "done" / "c"
    try:
        return {int(name) for name in os.listdir(path) if name.isdigit()}
    except FileNotFoundError:
        return set()


def logged_chunks(log) -> list[tuple[int, int]]:
    if not Path(log).exists():
        return []
    return [tuple(int(x) for x in line.split()) for line in Path(log).read_text().split("\n") if line]


def load(path) -> xr.Dataset:
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        return ds.load()


def assert_bitwise_equal(a: xr.Dataset, b: xr.Dataset):
    assert set(a.data_vars) == set(b.data_vars)
    assert set(a.data_vars) >= {"margin", "incremental", "status", "steps",
                                "threshold_measured", "threshold_theory"}
    for name in list(a.data_vars) + list(a.coords):
        assert a[name].dims == b[name].dims, name
        assert a[name].dtype == b[name].dtype, name
        assert np.array_equal(a[name].values, b[name].values), name
    assert a.attrs["config"] == b.attrs["config"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, run_cli):
    """The uninterrupted run, in this process: the bits every run in a subprocess must give."""
    out = tmp_path_factory.mktemp("reference")
    log = out / "chunks.log"
    rc, stdout, stderr = run_cli(["phase-diagram", *GRID, "--out", out], JAXFLOW_CHUNK_LOG=log)
    assert rc == 0, stderr[-3000:]
    assert sorted(c for _, c in logged_chunks(log)) == list(range(N_CHUNKS))
    assert "trajectory status: ok 48" in stdout
    return load(out / "phase_diagram.nc")


def kill_when(proc, condition, deadline=240.0):
    """SIGKILL ``proc`` once ``condition()`` holds; returns its exit code (-9 if killed)."""
    t0 = time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < deadline:
        if condition():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    proc.communicate(timeout=60)
    return proc.returncode


def fill_disk_after_two_chunks(monkeypatch):
    """Every zarr write after the 2nd done flag fails with ENOSPC, as on a full disk."""
    from zarr.core.array import Array

    original = Array.__setitem__
    flags = []

    def setitem(self, key, value):
        if len(flags) >= 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(self, key, value)
        if self.basename == "done":
            flags.append(key)

    monkeypatch.setattr(Array, "__setitem__", setitem)


def test_disk_full_then_killed_at_random_moments_then_resumed(env, tmp_path, reference,
                                                              monkeypatch, run_cli):
    out = tmp_path / "out"
    # 1. The disk fills up after 2 chunks (in this process: the store's writes fail from the
    # 3rd chunk on): one clear line, the 2 chunks kept, no export.
    with monkeypatch.context() as patch:
        fill_disk_after_two_chunks(patch)
        rc, stdout, stderr = run_cli(["phase-diagram", *GRID, "--out", out], JAXFLOW_CHUNK_LOG=None)
    assert rc == 2, (stdout[-2000:], stderr[-3000:])
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    store = str(out / "phase_diagram.zarr")
    assert lines[0].startswith("jaxflow: error: cannot write chunk ")
    assert store in lines[0] and "No space left on device" in lines[0] and "--resume" in lines[0]
    assert len(done_flags(out)) == 2
    assert not (out / "phase_diagram.nc").exists()

    # 2. Resumed, and killed twice: when 2 more flags appeared (mid-sweep), then at a random
    # delay of up to 1.5 s after the run printed its first line (its options are checked; then
    # come tracing, the sweep, the refinement and the export, which take longer than that even
    # with a warm compilation cache).
    rng = random.Random(20240607)
    plans = [("flags", 2), ("delay", rng.uniform(0.0, 1.5))]
    killed, mid_sweep = 0, 0
    for k, (kind, value) in enumerate(plans):
        before = done_flags(out)
        log = tmp_path / f"chunks-{k}.log"
        stdout = tmp_path / f"stdout-{k}.txt"
        with open(stdout, "w") as sink:
            proc = start(env, out, "--resume", log=log, stdout=sink)
            if kind == "flags":
                target = len(before) + value
                rc = kill_when(proc, lambda: len(done_flags(out)) >= target)
            else:
                started_at = []

                def due():
                    if not started_at and "jaxflow phase-diagram:" in stdout.read_text():
                        started_at.append(time.monotonic())
                    return bool(started_at) and time.monotonic() - started_at[0] >= value

                rc = kill_when(proc, due)
        after = done_flags(out)
        killed += rc == -signal.SIGKILL
        mid_sweep += rc == -signal.SIGKILL and 0 < len(after) < N_CHUNKS
        assert rc in (0, -signal.SIGKILL), (kind, value, rc)
        assert before <= after  # a done flag is never lost
        started = {c for _, c in logged_chunks(log)}
        assert not (started & before), (k, sorted(started & before))  # nothing computed twice
        assert after - before <= started  # every new flag comes from a chunk this run computed
    # the flags kill always lands mid-sweep; the random one lands wherever the run still is
    # (on a machine fast enough to finish first it exits 0, and the checks above still hold)
    assert killed >= 1 and mid_sweep >= 1, (killed, mid_sweep)

    # 3. The last --resume computes exactly what is missing; the dataset is the reference's.
    before = done_flags(out)
    log = tmp_path / "chunks-final.log"
    rc, stdout, stderr = run_cli(["phase-diagram", *GRID, "--out", out, "--resume"],
                                 JAXFLOW_CHUNK_LOG=log)
    assert rc == 0, stderr[-3000:]
    assert sorted(c for _, c in logged_chunks(log)) == sorted(set(range(N_CHUNKS)) - before)
    assert done_flags(out) == set(range(N_CHUNKS))
    assert not list(out.glob("*.partial*"))  # exports are renamed into place, never half-written
    assert_bitwise_equal(load(out / "phase_diagram.nc"), reference)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one(env, tmp_path, reference):
    out = tmp_path / "out"
    coordinator = f"127.0.0.1:{_free_port()}"
    procs = [
        start(env, out, "--coordinator", coordinator, "--num-processes", "2", "--process-id", str(i),
              log=tmp_path / f"chunks-{i}.log")
        for i in range(2)
    ]
    results = [finish(p, timeout=400) for p in procs]
    for i, (rc, stdout, stderr) in enumerate(results):
        assert rc == 0, (i, stderr[-3000:])
        assert f"process {i} of 2" in stdout
    assert "wrote " in results[0][1] and "wrote " not in results[1][1]  # only process 0 exports
    for i in range(2):
        chunks = sorted(c for p, c in logged_chunks(tmp_path / f"chunks-{i}.log"))
        assert chunks == list(range(i, N_CHUNKS, 2))
    assert_bitwise_equal(load(out / "phase_diagram.nc"), reference)


def test_max_steps_lanes_are_summarized():
    import jax.numpy as jnp

    from jaxflow import sweep
    from jaxflow.engine import flow, status
    from jaxflow.models import toy

    def point(p):
        target = jnp.ones(1)
        traj = flow.solve(toy.reduced_vector_field, jnp.log(p["scale"])[None],
                          toy.ToyArgs(depth=p["depth"], targets=target), modes=toy.reduced_modes,
                          targets=target, fractions=(0.5,), max_steps=40, time=toy.reduced_speed)
        return {"status": traj.status}

    ds = sweep.run(point, {"depth": [2.0, 3.0], "scale": [1e-1, 1e-30]}, chunk_size=4, quiet=True)
    codes = ds["status"].values
    # A lane from sigma0 = 1e-30 needs 65-119 steps; one from 0.1 about 21.
    assert codes[:, 0].tolist() == [status.OK, status.OK]
    assert codes[:, 1].tolist() == [status.MAX_STEPS, status.MAX_STEPS]
    line = status.report(ds["status"])
    assert line.startswith("trajectory status: ok 2, max_steps 2; not ok: 2 of 4 (")
    assert "depth=2, scale=1e-30" in line and "depth=3, scale=1e-30" in line


# --------------------------------------------------------------------------------------------
# Several processes at the API level: two threads play processes 0 and 1 of sweep.run (cheap:
# a polynomial per point, no solver), on a fresh store and on a partly done one.


def _poly(p):
    return {"value": p["x"] ** 3 - 2.0 * p["x"] * p["y"] + p["y"], "sign": p["x"] > p["y"]}


POLY_AXES = {"x": np.linspace(-2.0, 3.0, 7).tolist(), "y": [0.5, -1.0, 4.0, 2.5, 8.0]}  # 35 points


def _as_processes(store, count, monkeypatch, resume=False):
    """Run sweep.run as processes 0..count-1 (threads); returns their datasets and chunk logs."""
    import concurrent.futures

    from jaxflow import sweep
    from jaxflow.sweep import runner

    logs = {}
    original = runner._log_chunk
    monkeypatch.setattr(runner, "_log_chunk", lambda p, c: (logs.setdefault(p, []).append(c), original(p, c)))

    def one(index):
        return sweep.run(_poly, POLY_AXES, chunk_size=3, store=store, resume=resume, quiet=True,
                         process_index=index, process_count=count, wait_timeout=120)

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        datasets = list(pool.map(one, reversed(range(count))))  # process 0 starts last
    return datasets[::-1], logs


def test_processes_share_a_fresh_store_and_resume_it(tmp_path, monkeypatch):
    from jaxflow import sweep

    single = sweep.run(_poly, POLY_AXES, chunk_size=3, quiet=True)
    n_chunks = 12  # 35 points in chunks of 3

    datasets, logs = _as_processes(tmp_path / "fresh.zarr", 3, monkeypatch)
    for index in range(3):
        assert sorted(logs[index]) == list(range(index, n_chunks, 3))
    for ds in datasets:  # every process returns the full dataset, bitwise the one-process one
        for name in ("value", "sign"):
            assert np.array_equal(ds[name].values, single[name].values), name

    # A store with chunks 2, 5, 6 and 11 lost, resumed by two processes: each computes only
    # the missing chunks of its share.
    import zarr

    group = zarr.open_group(str(tmp_path / "fresh.zarr"), mode="r+")
    for i in (2, 5, 6, 11):
        group["done"][i] = False
        group["out_value"][3 * i:3 * i + 3] = np.full(3, np.nan)
    datasets, logs = _as_processes(tmp_path / "fresh.zarr", 2, monkeypatch, resume=True)
    assert sorted(logs.get(0, [])) == [2, 6] and sorted(logs.get(1, [])) == [5, 11]
    for ds in datasets:
        assert np.array_equal(ds["value"].values, single["value"].values)


def test_a_process_without_process_zero_gives_up_clearly(tmp_path):
    from jaxflow import sweep

    store = tmp_path / "lonely.zarr"
    with pytest.raises(sweep.SweepError, match="not laid out by process 0 within wait_timeout=0.3"):
        sweep.run(_poly, POLY_AXES, chunk_size=3, store=store, quiet=True,
                  process_index=1, process_count=2, wait_timeout=0.3)
    assert not store.exists()  # process 1 never creates the store
    with pytest.raises(sweep.SweepError, match="store is required when process_count > 1"):
        sweep.run(_poly, POLY_AXES, chunk_size=3, quiet=True, process_index=0, process_count=2)


# A registered experiment other than the phase diagram on the same chunked store: the
# edge-of-stability map (8 lanes in 4 chunks of 2; the map of tests/test_multidevice.py, so
# one compiled program serves both). Each done flag is followed by a pause, so
# that the kill lands between chunks whatever the machine's speed.
EOS_ARGS = ["experiment", "edge-of-stability", "--depths", "2,3", "--scales", "0.5",
            "--eta-factors", "0.9,1.1", "--inits", "0,1", "--steps", "48", "--stride", "8",
            "--chunk-size", "2", "--quiet"]
SLOW_FLAGS = textwrap.dedent(
    """
    import sys, time
    from zarr.core.array import Array

    original = Array.__setitem__

    def setitem(self, key, value):
        original(self, key, value)
        if self.basename == "done":
            time.sleep(0.5)

    Array.__setitem__ = setitem
    from jaxflow.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def test_edge_of_stability_killed_then_resumed_is_bitwise_the_uninterrupted_map(
        env, tmp_path, run_cli):
    """kill -9 after 2 of 4 chunks of an edge-of-stability map, then ``--resume``: the regimes,
    deciding steps and traces equal an uninterrupted run's bitwise."""
    def run(out, *flags, code=None):
        head = ["-c", code] if code else ["-m", "jaxflow.cli"]
        return subprocess.Popen([sys.executable, *head, *EOS_ARGS, "--out", str(out), *flags],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    flags = tmp_path / "killed" / "edge_of_stability.zarr" / "done" / "c"

    def done() -> int:
        return len([n for n in os.listdir(flags) if n.isdigit()]) if flags.exists() else 0

    assert kill_when(run(tmp_path / "killed", code=SLOW_FLAGS), lambda: done() >= 2) == -9
    finished = {int(n) for n in os.listdir(flags) if n.isdigit()}
    assert 2 <= len(finished) < 4
    # the resume and the uninterrupted run in this process: only the killed one must be real
    log = tmp_path / "chunks.log"
    rc, _, err = run_cli([*EOS_ARGS, "--out", tmp_path / "killed", "--resume"],
                         JAXFLOW_CHUNK_LOG=log)
    assert rc == 0, err[-3000:]
    assert sorted(c for _, c in logged_chunks(log)) == sorted(set(range(4)) - finished)
    rc, _, err = run_cli([*EOS_ARGS, "--out", tmp_path / "whole"], JAXFLOW_CHUNK_LOG=None)
    assert rc == 0, err[-3000:]
    resumed = load(tmp_path / "killed" / "edge_of_stability.nc")
    whole = load(tmp_path / "whole" / "edge_of_stability.nc")
    assert {"regime", "regime_step", "sharpness", "flow_sharpness"} <= set(whole.data_vars)
    assert set(resumed.data_vars) == set(whole.data_vars)
    for name in whole.data_vars:
        if name != "wall_time":  # a clock reading, not a result
            assert np.array_equal(resumed[name].values, whole[name].values, equal_nan=True), name
