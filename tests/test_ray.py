"""Runs on a Ray cluster: the same bits as one process, whatever the workers, their order or a
worker that dies; unequal tasks keep both workers busy; a Ray run resumes without Ray.

One local Ray cluster of 2 workers serves the whole file (started once, ~10 s with the workers'
first JAX import); the runs are tiny. Measured on the 2-core machine at load 12: 40 s for
the file (16 s of it the cluster's start and the reference, 11 s the killed worker's replacement).
"""

import functools
import os
import sys
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
import ray

import jaxflow
from jaxflow import sweep
from jaxflow.experiments import backends
from jaxflow.models import toy
from jaxflow.oracles import theory
from jaxflow.sweep import cell_store, cells, ray_executor
from jaxflow.sweep import store as sweep_store

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
    warm = [cells.Cell(f"warm {i}", {"y": ((), np.dtype("f8"))}, functools.partial(_pause, 0.5))
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
SETTINGS = backends.Settings(depths=(2, 3), learning_rate=2e-2, num_steps=1000, save_every=100,
                             backends=("descent",))


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
    # The reference itself is real: at depth 2 the larger target is learned first, both by
    # the horizon (t = 20).
    times = reference[0]["learning_time"]
    assert times[0, 1] < times[1, 1] < 20.0
    got = cells.run(_the_cells(), store=tmp_path / "run.cells", quiet=True, executor=executor)
    _same_bits(got, reference)
    assert cell_store.verify(tmp_path / "run.cells") == []
    assert sorted(r.key for r in executor.records[-2:]) == [0, 1]


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


@pytest.fixture(scope="module")
def want():
    """The sweep in this process (5 chunks of 2 points): the bits every Ray run must give."""
    ds = sweep.run(_point, AXES, chunk_size=2, quiet=True)
    assert ds["t_half"].sel(depth=2.0, scale=1e-6).item() == pytest.approx(np.log(1e6 - 1))
    return ds["t_half"].values


def test_a_ray_sweep_resumes_without_ray(executor, want, tmp_path, monkeypatch):
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
    [missing] = sweep_store.verify(path)
    assert "chunks not computed yet: 2 of 5" in missing
    got = sweep.run(_point, AXES, chunk_size=2, store=path, resume=True, quiet=True)
    assert got["t_half"].values.tobytes() == want.tobytes()
    assert sweep_store.verify(path) == []


# ------------------------------------------------------------------ an ensemble sweep's chunks


def _lorenz(y, rho):
    return jnp.stack([10.0 * (y[1] - y[0]), y[0] * (rho - y[2]) - y[1],
                      y[0] * y[1] - 8.0 / 3.0 * y[2]])


def _every_coordinate(y, rho):
    return y


def _lorenz_problems(points):
    rho = jnp.asarray(points["rho"])
    return jaxflow.Problem(vector_field=_lorenz, args=rho, modes=_every_coordinate,
                           params0=jnp.tile(jnp.array([1.0, 0.0, 0.0]), (rho.size, 1)))


def test_an_ensemble_sweep_on_ray_is_bitwise_one_process(executor):
    """sweep.EnsembleRunner travels to the workers as its recipe; each chunk is one work queue
    on a worker: the dataset, and the wasted share read from it, are those of one process."""
    def ensemble_sweep(**kw):
        runner = sweep.EnsembleRunner(
            _lorenz_problems, jaxflow.Flow(solver=jaxflow.Ensemble(), rtol=1e-8, atol=1e-8),
            jaxflow.Request(save_times=[0.5, 1.0], fractions=()), chunk_size=4)
        return sweep.run(None, {"rho": np.linspace(0.0, 21.0, 10)}, runner=runner, quiet=True,
                         output_dims={"modes": ("save", "c"), "final_modes": ("c",)}, **kw)

    local = ensemble_sweep()
    start = len(executor.records)
    remote = ensemble_sweep(executor=executor)
    assert len(executor.records) - start == 3  # three chunks, three tasks
    assert (local["status"].values == 0).all()
    for name in local.data_vars:
        assert remote[name].values.tobytes() == local[name].values.tobytes(), name
    wasted = sweep.ensemble_runner.wasted_share
    assert wasted(remote) == wasted(local)


# ------------------------------------------------------------------ faults


class DiesOnce(sweep.Runner):
    """A runner whose first chunk, anywhere, kills its worker outright (no exception, no
    cleanup: ``os._exit``); every later chunk runs."""

    def __init__(self, fn, chunk_size: int, marker: str):
        super().__init__(fn, chunk_size=chunk_size)
        self.marker = marker

    def chunk(self, points):
        # Created atomically: the two workers start their first chunks at the same moment, and
        # with an exists-then-create check both could see no marker and both die (measured: 2
        # of 4 runs of this file retried two chunks).
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return super().chunk(points)
        os._exit(1)


def test_a_killed_worker_is_retried_and_the_sweep_is_unchanged(executor, want, tmp_path):
    marker = str(tmp_path / "died")
    runner = DiesOnce(_point, 2, marker)
    before = executor.provenance()
    ds = sweep.run(None, AXES, runner=runner, store=tmp_path / "s.zarr", quiet=True,
                   executor=executor)
    assert os.path.exists(marker)  # a first attempt did die
    assert ds["t_half"].values.tobytes() == want.tobytes()
    assert sorted(executor.attempts.values()) == [1, 1, 1, 1, 2]
    assert ds.attrs["executor"] == "ray"
    assert ds.attrs["ray_retried"] - before["ray_retried"] == 1
    assert ds.attrs["ray_attempts"] - before["ray_attempts"] == 6  # 5 chunks, one twice
    assert sweep_store.verify(tmp_path / "s.zarr") == []


def test_retries_are_bounded(executor):
    def always_dies():
        os._exit(1)

    ex = ray_executor.RayExecutor("auto", max_retries=0)
    doomed = [cells.Cell("doomed", {"y": ((), np.dtype("f8"))}, always_dies)]
    with pytest.raises(sweep.SweepError, match="task 0 failed on 1 attempts"):
        cells.run(doomed, quiet=True, executor=ex)


def test_the_command_takes_ray_from_the_flag_or_the_config_file(tmp_path):
    import argparse

    from jaxflow.cli import _experiment
    from jaxflow.experiments.quadratic import QuadraticConfig

    toml = tmp_path / "q.toml"
    toml.write_text('ray = "head:6379"\nd = 12\n')
    from_file = _experiment._executor(argparse.Namespace(ray=None, config=str(toml)), 1)
    assert from_file["executor"].address == "head:6379"
    # The key says how to run, not what: no part of the config (nor of a store's fingerprint).
    assert QuadraticConfig.from_toml(toml).to_toml() == QuadraticConfig(d=12).to_toml()
    flag = _experiment._executor(argparse.Namespace(ray="auto", config=str(toml)), 1)
    assert flag["executor"].address == "auto"
    assert _experiment._executor(argparse.Namespace(ray=None, config=None), 1) == {}
    with pytest.raises(Exception, match="--ray and --distributed"):
        _experiment._executor(argparse.Namespace(ray="auto", config=None), 2)
