"""Chunks and cells as Ray tasks: a cluster's workers compute, this process writes the store.

:class:`RayExecutor` is an executor (:mod:`jaxflow.sweep.executor`) for
:func:`jaxflow.sweep.run` and :func:`jaxflow.sweep.cells.run`: every chunk or cell becomes one
Ray task, which computes its arrays on a worker and returns them; the run (this process, the
**driver**) writes each into the run's verified store as it arrives. So:

* **the store is unchanged**: ``--resume``, ``jaxflow verify`` and ``jaxflow plot`` read it as
  any other, and a run started on Ray resumes without Ray (or the other way round);
* **load balancing**: tasks are handed out costly first (each task's ``cost``, an estimate), at
  most ``max_in_flight`` at a time, the next one as soon as one finishes (``ray.wait``), so a
  worker that is done never waits for a slow one;
* **faults**: a task whose worker or node died is submitted again, at most ``max_retries``
  times, then the run stops naming it; the attempts are kept (:meth:`RayExecutor.provenance`,
  stored in the dataset's attributes). An exception raised by the task's own code is not
  retried (the computation is deterministic: it would raise again). A driver killed with
  ``kill -9`` loses only the tasks in flight: every finished one is already in the store;
* **determinism**: a task's result does not depend on where, when or how often it ran: each
  task enters the driver's float64 setting (``jax_enable_x64``) on its worker, and results are
  placed by key, never by arrival order. The results are bitwise those of a run in one process.

Example (shown, not run: it starts a local Ray cluster):
    ```python
    from jaxflow import experiments
    from jaxflow.sweep import ray_executor
    ex = ray_executor.RayExecutor("auto")         # a running cluster, else a local one
    ds = experiments.get("quadratic").run(config, store="q.cells", executor=ex)
    ds.attrs["ray_attempts"]                       # attempts, retries included
    ```
"""

import dataclasses
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

from jaxflow.sweep.errors import SweepError, check_count
from jaxflow.sweep.executor import Task

__all__ = ["DEFAULT_MAX_RETRIES", "RayExecutor", "TaskRecord", "runtime_env", "start_local"]

DEFAULT_MAX_RETRIES = 3


@dataclasses.dataclass(frozen=True)
class TaskRecord:
    """One finished attempt: the task's key, the worker's process id, its start and end
    (``time.time()`` on the worker, seconds) and which attempt it was (1: the first)."""

    key: int
    pid: int
    start: float
    end: float
    attempt: int


def _attempt(fn, args, x64: bool):
    """A task on a worker: the driver's float64 setting, then ``fn(*args)`` and its timing."""
    import jax

    if bool(jax.config.read("jax_enable_x64")) != x64:
        jax.config.update("jax_enable_x64", x64)
    start = time.time()
    result = fn(*args)
    return result, os.getpid(), start, time.time()


def runtime_env() -> dict:
    """Ray's ``runtime_env`` for this driver's workers: the jaxflow this process imported first
    on their path (a checkout that is not installed is found, and never another version), and
    one CPU device each (a worker is one of the cluster's CPUs; the ``jaxflow`` command asks
    for a device per core in its own process only).

    >>> env = runtime_env()["env_vars"]
    >>> "xla_force_host_platform_device_count" in env["XLA_FLAGS"], env["JAX_NUM_CPU_DEVICES"]
    (False, '1')
    """
    import jaxflow

    root = os.path.dirname(os.path.dirname(os.path.abspath(jaxflow.__file__)))
    path = os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])
    flags = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split()
                     if not f.startswith("--xla_force_host_platform_device_count"))
    return {"env_vars": {"PYTHONPATH": path, "XLA_FLAGS": flags, "JAX_NUM_CPU_DEVICES": "1"}}


def _ray():
    try:
        import ray
    except ImportError:
        raise SweepError("--ray needs the ray package: pip install 'jaxflow[ray]'") from None
    return ray


def start_local(num_cpus: int, **options) -> None:
    """Start a local Ray cluster of ``num_cpus`` workers for this process (tests, benchmarks),
    without its dashboard; ``options`` go to ``ray.init``."""
    _ray().init(num_cpus=check_count("num_cpus", num_cpus), include_dashboard=False,
                runtime_env=runtime_env(), **options)


class RayExecutor:
    """Computes tasks on a Ray cluster (see the module docstring).

    Args:
        address: the cluster: ``"auto"`` (``$RAY_ADDRESS``, else the cluster last started on
            this machine with ``ray start``, else a new local one) or a head node's
            ``HOST:PORT`` / ``ray://HOST:PORT``. Ignored when Ray is already initialized in this
            process (e.g. by :func:`start_local`).
        max_retries: how many times a task whose worker died is submitted again (>= 0).
        max_in_flight: tasks submitted at a time (default: twice the cluster's CPUs, at least
            2): enough to keep every worker busy, few enough that the costly-first order holds.

    Attributes:
        records: every finished attempt (:class:`TaskRecord`), in order of arrival.
        attempts: ``{key: attempts}`` of the tasks of the last :meth:`imap`.
    """

    def __init__(self, address: str = "auto", *, max_retries: int = DEFAULT_MAX_RETRIES,
                 max_in_flight: int | None = None):
        if not isinstance(address, str) or not address.strip():
            raise SweepError(f"ray address must be 'auto' or HOST:PORT, got {address!r}")
        self.address = address.strip()
        self.max_retries = check_count("max_retries", max_retries, 0)
        self.max_in_flight = (None if max_in_flight is None
                              else check_count("max_in_flight", max_in_flight))
        self.records: list[TaskRecord] = []
        self.attempts: dict[int, int] = {}
        self._history: list[int] = []  # attempts of every task of every imap

    def connect(self):
        """``ray``, initialized (connected to :attr:`address` unless it already was)."""
        ray = _ray()
        if not ray.is_initialized():
            address = None if self.address == "auto" else self.address
            try:
                ray.init(address=address, runtime_env=runtime_env(), include_dashboard=False,
                         log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as err:
                reason = (str(err).strip() or type(err).__name__).splitlines()[0]
                raise SweepError(f"--ray {self.address}: cannot connect: {reason}") from None
        return ray

    def imap(self, tasks: Iterable[Task]) -> Iterator[tuple[int, Any]]:
        """Compute every task on the cluster; yield ``(key, result)`` as each finishes.

        Raises:
            SweepError: a task whose worker died on every one of its ``1 + max_retries``
                attempts. The task's own exceptions are raised as they are.
        """
        import jax

        ray = self.connect()
        remote = ray.remote(_attempt).options(max_retries=0, num_cpus=1)
        x64 = bool(jax.config.read("jax_enable_x64"))
        pending = sorted(tasks, key=lambda t: -t.cost)[::-1]  # costly last: popped first
        window = self.max_in_flight or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
        self.attempts = {}
        in_flight: dict = {}
        try:
            while pending or in_flight:
                while pending and len(in_flight) < window:
                    task = pending.pop()
                    self.attempts[task.key] = self.attempts.get(task.key, 0) + 1
                    in_flight[remote.remote(task.fn, task.args, x64)] = task
                [ref], _ = ray.wait(list(in_flight), num_returns=1)
                task = in_flight.pop(ref)
                try:
                    result, pid, start, end = ray.get(ref)
                except ray.exceptions.RayTaskError as err:
                    raise err.as_instanceof_cause() from None
                except ray.exceptions.RayError as err:
                    pending.append(self._retry(task, err))
                    continue
                self.records.append(TaskRecord(task.key, pid, start, end,
                                               self.attempts[task.key]))
                yield task.key, result
        finally:
            for ref in in_flight:  # an error or a closed generator: nothing left running
                ray.cancel(ref, force=True)
            self._history.extend(self.attempts.values())

    def _retry(self, task: Task, err) -> Task:
        """The task again (its worker died), or a SweepError once its retries are spent."""
        if self.attempts[task.key] > self.max_retries:
            reason = (str(err).strip() or type(err).__name__).splitlines()[0][:200]
            raise SweepError(
                f"--ray: task {task.key} failed on {self.attempts[task.key]} attempts (its "
                f"worker died: {reason}); finished ones are in the store: rerun with --resume")
        return task

    def provenance(self) -> dict:
        """The dataset attributes of the tasks run so far: ``executor``, ``ray_address``,
        ``ray_tasks``, ``ray_attempts`` (retries included) and ``ray_retried`` (how many tasks
        needed more than one attempt)."""
        return {"executor": "ray", "ray_address": self.address,
                "ray_tasks": len(self._history), "ray_attempts": int(sum(self._history)),
                "ray_retried": sum(1 for a in self._history if a > 1)}
