"""An experiment run as a list of independent cells: resumable, shared by processes, size-checked.

Where :func:`jaxflow.sweep.run` maps one function over a grid of points, :func:`run` runs a list
of :class:`Cell` s, each a computation of its own (one back-end at one depth, one repeat seed,
one (depth, scale) pair) whose outputs have shapes known before it runs. It gives every
experiment what the grid sweep gives the phase diagram:

* **a store** (``store=PATH``, :mod:`jaxflow.sweep.cell_store`): each finished cell is written
  at once, whole or not at all, with a checksum bound to the run's fingerprint (config, cells,
  jaxflow version). ``resume=True`` verifies the finished cells and computes only the missing or
  corrupt ones; the outputs are then exactly (bitwise) those of an uninterrupted run. A store made
  by another config is refused, naming the options that differ. One run writes a store at a time
  (:mod:`jaxflow.sweep.lock`).
* **several processes** (``process_index``, ``process_count``; by default from
  ``jax.distributed``): process ``p`` of ``P`` computes the cells ``i`` with ``i % P == p``,
  process 0 lays the store out, and every process waits for the others' cells and returns them
  all. The coordination goes through the store's files only.
* **a size check** before anything is created (``size_check``): the outputs' bytes, from their
  declared shapes, against the machine's memory and the free disk under the store
  (:mod:`jaxflow.sweep.resources`); refused in one line naming ``--no-size-check``.

Each cell is computed by this module's ``_compute`` and written by its ``_write`` (module
globals: a test can interpose on them, e.g. to interrupt a run after some cells).

Example:
    >>> import numpy as np
    >>> from jaxflow.sweep import cells
    >>> square = [cells.Cell(f"x={x}", {"y": ((), np.dtype("float64"))},
    ...                      lambda x=x: {"y": x * x}) for x in (1.0, 2.0, 3.0)]
    >>> [float(out["y"]) for out in cells.run(square, quiet=True)]
    [1.0, 4.0, 9.0]
"""

import dataclasses
import os
import sys
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from jaxflow.sweep import atomic as _atomic
from jaxflow.sweep import cell_store as _cell_store
from jaxflow.sweep import executor as _executor
from jaxflow.sweep import progress as _progress
from jaxflow.sweep import resources as _resources
from jaxflow.sweep.errors import StoreDamagedError, SweepError
from jaxflow.sweep.executor import Task
from jaxflow.sweep.grid import process_share
from jaxflow.sweep.store_access import clear_corrupt, locked, wait_until_finished

__all__ = ["DEFAULT_WAIT_TIMEOUT", "Cell", "check_size", "estimate", "run"]

DEFAULT_WAIT_TIMEOUT = 600.0
_FILE_BLOCK = 4096  # a file system block per cell file and the manifest


@dataclasses.dataclass(frozen=True)
class Cell:
    """One independent piece of an experiment's run.

    Attributes:
        name: a label, unique in the run (``"flow depth=2"``); stored in the manifest and named
            by ``jaxflow verify``.
        outputs: ``{name: (shape, dtype)}`` of what ``compute`` returns, known before it runs
            (the size check and the store's layout read it).
        compute: ``compute() -> {name: array}``, deterministic: a resumed run recomputes a cell
            and must get the same bits. Picklable (a module-level function or a
            ``functools.partial`` of one) for a run on an executor such as Ray.
        cost: its estimated cost relative to the run's other cells (an executor hands the
            costly ones out first; default 1).
    """

    name: str
    outputs: Mapping[str, tuple[tuple[int, ...], np.dtype]]
    compute: Callable[[], Mapping[str, object]]
    cost: float = 1.0

    def layout(self) -> tuple[str, dict]:
        return self.name, {k: (tuple(int(n) for n in s), np.dtype(d))
                           for k, (s, d) in self.outputs.items()}


def estimate(cells: Sequence[Cell], store: bool) -> tuple[int, int]:
    """Upper bounds of a run's memory and new store size in bytes, from its outputs' shapes:
    ``(memory, disk)``. Memory counts the outputs three times (computed or read back, gathered,
    and in the dataset); disk the cells' files, uncompressed, and a block per file.

    >>> one = Cell("c", {"modes": ((1000, 5), np.dtype("float64"))}, dict)
    >>> estimate([one] * 10, store=True)
    (1200000, 445056)
    """
    per_cell = [sum(int(np.prod(s, dtype=np.int64)) * np.dtype(d).itemsize
                    for s, d in cell.outputs.values()) for cell in cells]
    total = sum(per_cell)
    disk = total + (len(cells) + 1) * _FILE_BLOCK if store else 0
    return 3 * total, disk


def check_size(cells: Sequence[Cell], store) -> None:
    """Refuse (SweepError, one line naming ``--no-size-check``) a run whose estimate
    (:func:`estimate`) exceeds the machine's memory or the free disk under ``store``."""
    new_store = store is not None and not os.path.exists(store)
    memory, disk = estimate(cells, new_store)
    try:
        _resources.check(memory=memory, disk=disk, where=store)
    except _resources.SizeError as err:
        raise SweepError(f"{len(cells)} cells: {err}") from None


def _conform(cell: Cell, out) -> dict[str, np.ndarray]:
    """A cell's outputs in its declared shapes and dtypes (a mismatch is a bug: ValueError)."""
    if not isinstance(out, Mapping) or set(out) != set(cell.outputs):
        got = sorted(out) if isinstance(out, Mapping) else type(out).__name__
        raise ValueError(f"cell {cell.name!r} returned {got}, declared {sorted(cell.outputs)}")
    conformed = {}
    for name, (shape, dtype) in cell.outputs.items():
        value = np.asarray(out[name])
        if value.shape != tuple(shape):
            raise ValueError(f"cell {cell.name!r}: output {name!r} has shape {value.shape}, "
                             f"declared {tuple(shape)}")
        conformed[name] = value.astype(dtype, copy=False)
    return conformed


def _compute(cell: Cell) -> dict[str, np.ndarray]:
    return _conform(cell, cell.compute())


def _call(compute):
    """A cell's computation, as a task of an executor (a module-level function: picklable)."""
    return compute()


def _computed(cells: Sequence[Cell], indices, executor):
    """``(i, outputs)`` of the cells ``indices``: here in order, or on ``executor`` (each
    cell a task, costly first) in the order they finish."""
    if executor is None:
        for i in indices:
            yield i, _compute(cells[i])
        return
    tasks = [Task(int(i), float(cells[i].cost), _call, (cells[i].compute,)) for i in indices]
    for i, out in executor.imap(tasks):
        yield i, _conform(cells[i], out)


def _write(backing, index: int, outputs) -> None:
    try:
        backing.write(index, outputs)
    except OSError as err:  # ExportError's message already says what to do
        raise SweepError(str(err) if isinstance(err, _atomic.ExportError) else
                         f"cannot write cell {index} to the store at {backing.path}: "
                         f"{err.strerror or err}; finished cells are kept: rerun with "
                         "--resume") from None


def run(cells: Sequence[Cell], *, store=None, resume: bool = False, config: str = "",
        quiet: bool = False, desc: str = "cells", process_index: int | None = None,
        process_count: int | None = None, wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        size_check: bool = True, executor=None) -> list[dict[str, np.ndarray]]:
    """Compute every cell (this process's share, the rest from the store); return their
    outputs in order, each in its declared shapes and dtypes.

    Args:
        cells: the run's :class:`Cell` s (names unique).
        store: path of the cell store (``STEM.cells``), written cell by cell (optional).
        resume: continue an existing store, computing only its missing or corrupt cells.
        config: the resolved config as TOML: stored, part of the fingerprint, and what a
            refusal to resume another config's store compares.
        quiet: no progress bar (it is also off when stderr is not a terminal).
        process_index, process_count: this process's share (default: ``jax.distributed``'s);
            several processes need a shared ``store``.
        wait_timeout: seconds to wait for process 0's layout, or for another process's next
            cell, before giving up with a SweepError.
        size_check: refuse up front a run too big for the machine (:func:`estimate`).
        executor: where the cells are computed (:mod:`jaxflow.sweep.executor`; default: the
            one of an enclosing ``executor.using`` block, else this process). This process
            writes every finished cell into the store, whoever computed it.

    Raises:
        SweepError: repeated names; an existing store without ``resume``; a store of another
            config (naming what differs) or another jaxflow; a store another run is writing; a
            store that cannot be written (finished cells stay resumable); another process that
            never came; a run too big for the machine. StoreDamagedError: a damaged store.
    """
    cells = list(cells)
    names = [c.name for c in cells]
    if len(set(names)) != len(names):
        raise SweepError(f"cell names must be unique, got {names}")
    index, count = process_share(process_index, process_count)
    if count > 1 and store is None:
        raise SweepError(f"store is required when process_count > 1 (got {count} processes)")
    if size_check:
        check_size(cells, store)
    executor = executor if executor is not None else _executor.current()
    if store is None:
        out = [None] * len(cells)
        with _progress.bar(len(cells), desc=desc, unit="cell", quiet=quiet) as bar:
            for i, outputs in _computed(cells, range(len(cells)), executor):
                out[i] = outputs
                bar.update(1)
        return out
    layout = [c.layout() for c in cells]
    with _opened(os.fspath(store), layout, config, resume, index, wait_timeout) as backing:
        done = _verified_on_start(backing)
        mine = [i for i in range(len(cells)) if not done[i] and i % count == index]
        with _progress.bar(len(cells), desc=desc, unit="cell", quiet=quiet) as bar:
            bar.update(int(done.sum()))
            for i, outputs in _computed(cells, mine, executor):
                bar.set_postfix_str(cells[i].name)
                _write(backing, i, outputs)
                bar.update(1)
        if count > 1:
            _wait_all(backing, wait_timeout)
        return _read_all(backing, cells)


def _opened(path, layout, config, resume, index, wait_timeout):
    """The cell store under this process's writer lock (:func:`store_access.locked`)."""

    def open_backing():
        if index == 0:
            return _cell_store.CellStore.open(path, cells=layout, config=config, resume=resume)
        return _cell_store.CellStore.attach(path, cells=layout, config=config,
                                            wait_timeout=wait_timeout)

    def error(what, err):
        advice = "; free space or fix permissions, then rerun" if what == "lay out" else ""
        return SweepError(f"cannot {what} the store at {path}: {err.strerror or err}{advice}")

    return locked(path, index, open_backing, error)


def _verified_on_start(backing) -> np.ndarray:
    """Cells finished and intact; corrupt ones (a file that fails its check) are removed."""
    done, corrupt = clear_corrupt(backing, backing.present())
    if corrupt.size:  # not a progress message: said even when quiet
        print(f"store {backing.path}: recomputing {corrupt.size} corrupt cell(s) "
              f"{[backing.names[i] for i in corrupt[:10]]} (unreadable or damaged data)",
              file=sys.stderr)
    return done


def _wait_all(backing, wait_timeout: float) -> None:
    """Wait for the other processes' cells; fail if none appears for ``wait_timeout`` s."""
    wait_until_finished(backing.present, backing.path, wait_timeout, unit="cell",
                        rerun="--resume")


def _read_all(backing, cells) -> list[dict[str, np.ndarray]]:
    """Every cell read back and checked; one damaged since it was written is recomputed once."""
    out = []
    for i, cell in enumerate(cells):
        outputs = backing.read_cell(i)
        if outputs is None:
            backing.clear(i)
            _write(backing, i, _compute(cell))
            outputs = backing.read_cell(i)
        if outputs is None:
            raise StoreDamagedError(
                f"store {backing.path}: cell {i} ({cell.name}) does not match its checksum "
                "even after being recomputed (is another program writing to the store?); run "
                "`jaxflow verify` on it")
        out.append(outputs)
    return out
