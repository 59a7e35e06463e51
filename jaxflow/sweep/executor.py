"""Where a run's chunks and cells are computed: in this process, or by an executor such as Ray.

:func:`jaxflow.sweep.run` and :func:`jaxflow.sweep.cells.run` compute their chunks and cells in
this process unless given an ``executor``: an object whose ``imap(tasks)`` computes
:class:`Task` s elsewhere and yields ``(key, result)`` as each finishes, in any order
(:class:`jaxflow.sweep.ray_executor.RayExecutor`). The run itself stays where it was: this
process writes every finished chunk into the same verified store, so ``--resume``, ``jaxflow
verify`` and ``jaxflow plot`` cannot tell how a chunk was computed.

An experiment calls the two runs deep inside its ``run``; :func:`using` sets the executor they
take when given none, for the duration of a ``with`` block (a context variable: nothing global
changes, and another thread keeps its own).

Example:
    >>> from jaxflow.sweep import executor
    >>> class Inline:  # computes each task here, costly first
    ...     def imap(self, tasks):
    ...         for t in sorted(tasks, key=lambda t: -t.cost):
    ...             yield t.key, t.fn(*t.args)
    >>> with executor.using(Inline()):
    ...     print(type(executor.current()).__name__)
    Inline
    >>> executor.current() is None
    True
"""

import contextlib
import contextvars
import dataclasses
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

__all__ = ["Executor", "Task", "current", "using"]


@dataclasses.dataclass(frozen=True)
class Task:
    """One unit of work: ``fn(*args)`` (both picklable), its ``key`` (a chunk's or cell's
    index) and its estimated relative ``cost`` (costly tasks are handed out first)."""

    key: int
    cost: float
    fn: Callable
    args: tuple


class Executor(Protocol):
    """What :func:`jaxflow.sweep.run` and :func:`jaxflow.sweep.cells.run` need of an executor."""

    def imap(self, tasks: Iterable[Task]) -> Iterator[tuple[int, Any]]:
        """Compute every task; yield ``(task.key, fn(*args))`` as each finishes."""


_CURRENT: contextvars.ContextVar = contextvars.ContextVar("jaxflow_executor", default=None)


def current():
    """The executor set by the innermost :func:`using` block (None: this process computes)."""
    return _CURRENT.get()


@contextlib.contextmanager
def using(executor):
    """Runs inside the block compute their chunks and cells with ``executor`` (None: here)."""
    token = _CURRENT.set(executor)
    try:
        yield executor
    finally:
        _CURRENT.reset(token)
