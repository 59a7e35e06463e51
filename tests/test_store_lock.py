"""One writer per store: a real OS lock, a one-line refusal naming the holder.

Checked here, with real processes:

* A second process holding a store's writer lock (``jaxflow.sweep.lock.WriterLock`` in a
  ``python -c`` child) makes ``sweep.run`` and ``jaxflow phase-diagram --resume`` refuse at
  once, in one line naming the holder's pid and host; once the holder exits (even by SIGKILL:
  ``flock`` locks die with their process) the store is usable again.
* Two ``sweep.run`` calls starting together in one process (threads) on one store: one
  finishes, the other finishes after it or is refused with the lock's line (they used to fail
  with a zarr ContainsArrayError).
* **Two racing processes** start the same sweep (100 chunks) on one store at the same moment
  (each reports ready once imported; both are released together): each either
  finishes or is refused with the lock's line (never a zarr ContainsArrayError or a "No such
  file" traceback), at least one finishes, and the store verifies clean.
* Cooperating processes of one distributed run are not refused: the lock is per process index
  (tests/test_fault_tolerance.py runs 3 such processes on one store, and 2 through the CLI).
* A symbolic link planted where the lock file goes is refused, and its target stays untouched.
"""

import os
import signal
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from jaxflow import cli, sweep
from jaxflow.sweep import lock as _store_lock
from jaxflow.sweep import store

AXES = {"x": np.linspace(-2.0, 3.0, 40).tolist()}


def _poly(p):
    return {"value": p["x"] ** 3 - 2.0 * p["x"]}


# The holder loads jaxflow/sweep/lock.py from its file alone (it imports only the standard
# library and filelock): the same WriterLock, without the ~2 s of importing jaxflow and JAX.
HOLD = textwrap.dedent(
    """
    import importlib.util, sys, time
    spec = importlib.util.spec_from_file_location("jaxflow_sweep_lock", sys.argv[2])
    lock = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lock)
    with lock.WriterLock(sys.argv[1], process_index=0):
        print("held", flush=True)
        time.sleep(120)
    """
)


def _hold(path, env):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), _store_lock.__file__],
                            env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_held_store_is_refused_naming_the_holder(tmp_path, capsys, subprocess_env):
    path = tmp_path / "phase_diagram.zarr"
    holder = _hold(path, subprocess_env)
    try:
        with pytest.raises(sweep.SweepError) as info:
            sweep.run(_poly, AXES, chunk_size=4, store=path, quiet=True)
        message = str(info.value)
        assert f"pid {holder.pid} host {socket.gethostname()}" in message
        assert "being written by another run" in message and "\n" not in message
        assert not path.exists()  # refused before laying anything out

        code = cli.main(["phase-diagram", "--depths", "2,3", "--ratios", "2", "--scales",
                         "1e-6:1e-2:4", "--quiet", "--resume", "--out", str(tmp_path)])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
        assert err.startswith("jaxflow: error: store ") and f"pid {holder.pid}" in err
    finally:
        holder.send_signal(signal.SIGKILL)  # a killed holder leaves no stale lock
        holder.wait()
    ds = sweep.run(_poly, AXES, chunk_size=4, store=path, quiet=True)
    assert ds["value"].size == 40


RACE = textwrap.dedent(
    """
    import sys
    import jax
    import numpy as np
    from jaxflow import sweep

    jax.config.update("jax_enable_x64", True)  # jaxflow's sweeps are float64

    def poly(p):
        return {"value": p["x"] ** 3 - 2.0 * p["x"]}

    print("ready", flush=True)
    sys.stdin.readline()  # the go: both processes start their sweep together
    try:
        ds = sweep.run(poly, {"x": np.linspace(-2.0, 3.0, 100).tolist()}, chunk_size=1,
                       store=sys.argv[1], resume=True, quiet=True)
    except sweep.SweepError as err:
        print("refused:", err)
        sys.exit(3)
    print("finished", float(ds["value"].sum()))
    """
)


def test_two_racing_processes(tmp_path, subprocess_env):
    path = tmp_path / "race.zarr"
    procs = [subprocess.Popen([sys.executable, "-c", RACE, str(path)], env=subprocess_env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for p in procs:  # both have imported jax and jaxflow: release them together
        assert p.stdout.readline() == "ready\n"
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    finished = 0
    for out, err, rc in results:
        assert "Traceback" not in err, err[-3000:]
        if rc == 0:
            finished += 1
            assert out.startswith("finished")
        else:
            assert rc == 3, (rc, out, err[-2000:])
            assert out.startswith("refused: store ") and "being written by another run" in out
            assert out.count("\n") == 1
    assert finished >= 1
    assert store.verify(path) == []


def test_a_planted_symlink_at_the_lock_is_refused(tmp_path):
    target = tmp_path / "elsewhere.txt"
    target.write_text("untouched")
    path = tmp_path / "out" / "sweep.zarr"
    path.parent.mkdir()
    os.symlink(target, _store_lock.lock_path(str(path), 0))
    with pytest.raises(sweep.SweepError, match="symbolic link"):
        sweep.run(_poly, AXES, chunk_size=4, store=path, quiet=True)
    assert target.read_text() == "untouched"


def test_two_sweeps_starting_together_in_one_process(tmp_path):
    import concurrent.futures
    import threading

    path = tmp_path / "threads.zarr"
    barrier = threading.Barrier(2)

    def one(_):
        barrier.wait()
        try:
            ds = sweep.run(_poly, AXES, chunk_size=1, store=path, resume=True, quiet=True)
        except sweep.SweepError as err:
            return str(err)
        return ds

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(one, range(2)))
    finished = [o for o in outcomes if not isinstance(o, str)]
    refused = [o for o in outcomes if isinstance(o, str)]
    assert finished and all("being written by another run" in r for r in refused), refused
    assert store.verify(path) == []
