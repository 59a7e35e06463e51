"""Runs on a Ray cluster: the same bits as one process, whatever the workers, their order or a
worker that dies; unequal tasks keep both workers busy; a Ray run resumes without Ray.

One local Ray cluster of 2 workers serves the whole file (started once, ~10 s with the workers'
first JAX import); the runs are tiny. Measured on the 2-core machine: about 35 s for the file.
"""

import functools
import os
import sys
import warnings

import jax.numpy as jnp
import numpy as np
import pytest

from jaxflow import sweep
from jaxflow.experiments import backends
from jaxflow.models import toy
from jaxflow.oracles import theory
from jaxflow.sweep import cell_store, cells, ray_executor
from jaxflow.sweep import store as sweep_store

ray = pytest.importorskip("ray")

WORKERS = 2


def _pause(seconds: float) -> dict:
    """A task that only takes time (a worker is busy, not the machine's cores)."""
    import time

    time.sleep(seconds)
    return {"y": np.float64(seconds)}


@pytest.fixture(scope="module")
def executor():
    """One local cluster of ``WORKERS`` workers for the file, both started and warm (their
    JAX imported) before any test measures them."""
    if ray.is_initialized():
        ray.shutdown()
    # This file's functions travel by value: the workers cannot import a test module.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with warnings.catch_warnings():  # Ray starts its processes with fork (JAX: a warning)
        warnings.simplefilter("ignore", RuntimeWarning)
        ray_executor.start_local(WORKERS)
    ex = ray_executor.RayExecutor("auto", max_in_flight=4)
    warm = [cells.Cell(f"warm {i}", {"y": ((), np.dtype("f8"))}, functools.partial(_pause, 1.0))
            for i in range(WORKERS)]
    cells.run(warm, quiet=True, executor=ex, size_check=False)
    assert len({r.pid for r in ex.records}) == WORKERS  # both workers alive
    yield ex
    ray.shutdown()


# ------------------------------------------------------------------ an experiment's cells

TARGETS = np.array([2.0, 1.0])
SPEC = backends.Spec(loss=toy.factor_loss, modes=toy.factor_values, targets=TARGETS,
                     init=functools.partial(toy.factor_init, None, 1e-3, num_coords=2),
                     args=jnp.asarray(TARGETS))
SETTINGS = backends.Settings(depths=(2, 3), learning_rate=2e-2, num_steps=400, save_every=40)


def _the_cells():
    return backends.cells(SPEC, SETTINGS)


@pytest.fixture(scope="module")
def reference():
    """The experiment's cells computed in this process: the bits a Ray run must give."""
    return cells.run(_the_cells(), quiet=True)


def _same_bits(got, want):
    """Every output of every cell bitwise equal (``wall_time`` is a measurement, not a result)."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        for name in w:
            if name != "wall_time":
                assert g[name].tobytes() == w[name].tobytes(), name
                assert g[name].dtype == w[name].dtype


def test_cells_on_ray_are_bitwise_those_of_one_process(executor, reference, tmp_path):
    # The reference itself is real: the depth-2 flow learns the larger target first.
    flow2 = reference[0]["learning_time"]
    assert flow2[0, 1] < flow2[1, 1]
    got = cells.run(_the_cells(), store=tmp_path / "run.cells", quiet=True, executor=executor)
    _same_bits(got, reference)
    assert cell_store.verify(tmp_path / "run.cells") == []
    # Costly first: the two depth-3 cells (cost 3) started before the depth-2 ones.
    first = sorted(executor.records[-4:], key=lambda r: r.start)[:2]
    assert {r.key for r in first} == {2, 3}


def test_unequal_tasks_keep_both_workers_busy(executor):
    # One long task and six short ones, 2.4 s of work for 2 workers. Handed out costly first,
    # the long one runs on one worker while the other takes the six short ones: 1.2 s, busy
    # fraction 1.0 but for the per-task overhead (~10 ms a task). In the opposite order the
    # long one would start last, after the short ones: 0.6 + 1.2 = 1.8 s, busy 2.4 / 3.6 =
    # 0.67. So >= 0.8 says the order did its job, with room for a loaded machine.
    durations = [0.2] * 6 + [1.2]
    tasks = [cells.Cell(f"pause {i}", {"y": ((), np.dtype("f8"))},
                        functools.partial(_pause, d), cost=d)
             for i, d in enumerate(durations)]
    start = len(executor.records)
    out = cells.run(tasks, quiet=True, executor=executor)
    assert [float(o["y"]) for o in out] == durations  # placed by key, not by arrival
    records = executor.records[start:]
    busy = sum(r.end - r.start for r in records)
    span = max(r.end for r in records) - min(r.start for r in records)
    fraction = busy / (WORKERS * span)
    assert len({r.pid for r in records}) == WORKERS
    assert fraction >= 0.8, f"busy fraction {fraction:.2f} over {span:.2f} s"


# ------------------------------------------------------------------ a sweep's chunks

AXES = {"depth": [2.0, 3.0, 4.0], "scale": [1e-6, 1e-4, 1e-2]}


def _point(p):
    return {"t_half": theory.learning_time(p["depth"], 1.0, p["scale"], 0.5)}


def test_a_ray_sweep_resumes_without_ray(executor, tmp_path, monkeypatch):
    want = sweep.run(_point, AXES, chunk_size=2, quiet=True)
    path = tmp_path / "sweep.zarr"
    real_write, written = sweep.runner._write, []

    def interrupting(backing, index, outputs):  # the driver dies after 3 of its 5 chunks
        if len(written) == 3:
            raise KeyboardInterrupt
        real_write(backing, index, outputs)
        written.append(index)

    monkeypatch.setattr(sweep.runner, "_write", interrupting)
    with pytest.raises(KeyboardInterrupt):
        sweep.run(_point, AXES, chunk_size=2, store=path, quiet=True, executor=executor)
    monkeypatch.setattr(sweep.runner, "_write", real_write)
    assert len(sweep_store.verify(path)) == 1  # 2 chunks not computed yet
    got = sweep.run(_point, AXES, chunk_size=2, store=path, resume=True, quiet=True)
    assert got["t_half"].values.tobytes() == want["t_half"].values.tobytes()
    assert sweep_store.verify(path) == []
    full = sweep.run(_point, AXES, chunk_size=2, quiet=True, executor=executor)
    assert full["t_half"].values.tobytes() == want["t_half"].values.tobytes()
    assert full.attrs["executor"] == "ray" and full.attrs["ray_tasks"] >= 5


# ------------------------------------------------------------------ faults

def _dies_once(marker: str, compute):
    """The first attempt kills its worker outright (no exception, no cleanup), later ones run."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return compute()


def test_a_killed_worker_is_retried_and_the_run_is_unchanged(executor, reference, tmp_path):
    marker = str(tmp_path / "died")
    plan = _the_cells()
    victim = plan[1]
    plan[1] = cells.Cell(victim.name, victim.outputs,
                         functools.partial(_dies_once, marker, victim.compute), victim.cost)
    before = executor.provenance()
    got = cells.run(plan, store=tmp_path / "run.cells", quiet=True, executor=executor)
    _same_bits(got, reference)
    assert os.path.exists(marker)  # the first attempt did die
    assert executor.attempts == {0: 1, 1: 2, 2: 1, 3: 1}
    after = executor.provenance()
    assert after["ray_retried"] - before["ray_retried"] == 1
    assert after["ray_attempts"] - before["ray_attempts"] == 5  # 4 tasks, one twice


def test_retries_are_bounded(executor, tmp_path):
    def always_dies():
        os._exit(1)

    ex = ray_executor.RayExecutor("auto", max_retries=1)
    doomed = [cells.Cell("doomed", {"y": ((), np.dtype("f8"))}, always_dies)]
    with pytest.raises(sweep.SweepError, match="task 0 failed on 2 attempts"):
        cells.run(doomed, quiet=True, executor=ex)
