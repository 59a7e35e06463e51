"""A sweep's side of its store: open it under the writer lock, verify, write, read back verified.

:func:`jaxflow.sweep.run` opens its store under this process's writer lock
(:mod:`jaxflow.sweep.lock`), verifies the chunks already finished (a resumed run recomputes the
corrupt ones), writes each chunk as it finishes, waits for the other processes' chunks and reads
the whole store back, every chunk checked against its checksum (:mod:`jaxflow.sweep.store`). A
file system error stops the sweep with a :class:`~jaxflow.sweep.errors.SweepError` naming the
store; the chunks already finished stay valid for ``resume``.
"""

import contextlib
import os
import sys
import time

import numpy as np

from jaxflow.sweep import lock as _store_lock
from jaxflow.sweep import store as _store
from jaxflow.sweep.errors import StoreDamagedError, SweepError

__all__ = [
    "clear_corrupt", "locked", "open_store", "read_verified", "store_error", "verified_on_start", "wait_all_done",
    "wait_until_finished", "write_chunk",
]


def store_error(path, what: str, err: OSError) -> SweepError:
    """The one-line error of a file system failure on the store: what failed, what to do."""
    return SweepError(
        f"cannot {what} the store at {path}: {err.strerror or err}; finished chunks are "
        "kept: free space or fix permissions, then rerun with resume=True (--resume)"
    )


@contextlib.contextmanager
def locked(path: str, process_index: int, open_backing, error):
    """``open_backing()`` under this process's writer lock on ``path``, its failures as one-line
    errors: a held lock as the lock's own message, a store that is not this sweep's as a
    SweepError, a damaged one as a StoreDamagedError, a file system failure as
    ``error(what, err)`` (``what``: "lock" or "lay out"). Shared by the chunked store and the
    cell store (:mod:`jaxflow.sweep.cells`); the lock is released when the block ends."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        lock = _store_lock.WriterLock(path, process_index).acquire()
    except _store_lock.StoreBusyError as err:
        raise SweepError(str(err)) from None
    except OSError as err:
        raise error("lock", err) from None
    try:
        try:
            backing = open_backing()
        except _store.StoreDamagedError as err:
            raise StoreDamagedError(str(err)) from None
        except _store.StoreError as err:
            raise SweepError(str(err)) from None
        except OSError as err:
            raise error("lay out", err) from None
        yield backing
    finally:
        lock.release()


@contextlib.contextmanager
def open_store(path, layout, fingerprint, resume, process_index, process_count, wait_timeout):
    """The store, opened under this process's writer lock (None without a store path)."""
    if path is None:
        yield None
        return
    path = os.fspath(path)

    def open_backing():
        if process_index == 0:
            return _store.Store.open(path, layout=layout, fingerprint=fingerprint,
                                     resume=resume)
        return _store.Store.attach(path, layout=layout, fingerprint=fingerprint,
                                   wait_timeout=wait_timeout)

    with locked(path, process_index, open_backing,
                lambda what, err: store_error(path, what, err)) as backing:
        if process_count == 1:  # no cooperating writer: zarr's leftovers of a killed run
            _store.remove_partial_files(path)
        yield backing


def clear_corrupt(backing, finished: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(done, corrupt)``: of the ``finished`` entries of ``backing`` (chunks or cells), those
    whose data passes its check, and the indices of the others, which are cleared here so that
    the run computes them again. Shared by the chunked store and the cell store."""
    if not finished.any():
        return finished, np.flatnonzero(finished)  # a fresh store: nothing to verify
    done = backing.verified()
    corrupt = np.flatnonzero(finished & ~done)
    for i in corrupt:
        backing.clear(int(i))
    return done, corrupt


def verified_on_start(backing) -> np.ndarray:
    """Chunks finished and intact; corrupt ones (flag set, checksum wrong) are cleared."""
    try:
        done, corrupt = clear_corrupt(backing, backing.flags())
    except OSError as err:
        raise store_error(backing.path, "read", err) from None
    if corrupt.size:  # not a progress message: said even when quiet
        print(f"store {backing.path}: recomputing {corrupt.size} corrupt chunk(s) "
              f"{corrupt[:10].tolist()} (missing or damaged data)", file=sys.stderr)
    return done


def write_chunk(backing, index: int, outputs) -> None:
    """Write chunk ``index`` (data, checksum, done flag); a file system error stops the sweep."""
    try:
        backing.write(index, outputs)
    except OSError as err:
        raise store_error(backing.path, f"write chunk {index} to", err) from None


def wait_all_done(backing, wait_timeout: float) -> None:
    """Wait for the other processes' chunks; fail if none finishes for ``wait_timeout`` s."""
    wait_until_finished(backing.flags, backing.path, wait_timeout, unit="chunk",
                        rerun="resume=True (--resume)")


def wait_until_finished(finished, path, wait_timeout: float, *, unit: str, rerun: str) -> None:
    """Poll ``finished() -> bool array`` until all are true; a SweepError naming the missing
    ``unit``s when none finished for ``wait_timeout`` s (a process died), saying to rerun with
    ``rerun``. Shared by the chunked store and the cell store."""
    count, last = -1, time.monotonic()
    while True:
        done = finished()
        if done.all():
            return
        if done.sum() > count:
            count, last = int(done.sum()), time.monotonic()
        elif time.monotonic() - last > wait_timeout:
            missing = np.flatnonzero(~done)
            raise SweepError(
                f"store {path}: no {unit} finished for wait_timeout={wait_timeout:g} s; "
                f"{missing.size} {unit}s missing (e.g. {missing[:5].tolist()}); did a process "
                f"die? rerun every process with {rerun}"
            )
        time.sleep(0.1)


def read_verified(backing, compute) -> dict[str, np.ndarray]:
    """Read the whole store back, every chunk checked against its checksum.

    A chunk damaged since it was written (or by another process) is recomputed here, once;
    if it still does not verify, the store cannot be trusted and the sweep stops naming it.
    """
    try:
        data, ok = backing.read()
        bad = np.flatnonzero(~ok)
        if bad.size:
            for i, out in compute(bad):
                backing.clear(i)
                backing.write(i, out)
            data, ok = backing.read()
    except OSError as err:
        raise store_error(backing.path, "read", err) from None
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise StoreDamagedError(
            f"store {backing.path}: chunk {i} does not match its checksum even after being "
            "recomputed (is another program writing to the store?); run `jaxflow verify` on it"
        )
    return data
