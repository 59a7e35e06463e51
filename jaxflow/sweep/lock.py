"""One writer per store and process index, through an OS file lock (``filelock``).

A sweep's store may be written by several *cooperating* processes of one distributed run
(process ``I`` of ``P`` writes the chunks ``i % P == I``), but never by two runs at once: two
``--resume`` runs on one ``--out`` would both compute everything and race on the layout. So the
lock is per **(store, process index)**: process 0 of a run holds ``<store>.writer-0.lock`` while
it lays the store out and writes its chunks, process 1 holds ``writer-1``, and a second run's
process 0 is refused while the first one's is alive. ``flock`` locks die with their process, so a
run killed with SIGKILL never leaves a stale lock behind.

The lock is keyed by the store's **resolved** path (``os.path.realpath``): the same store
reached through a symbolic link, a ``..`` or a relative path is one store with one lock, so two
runs cannot write it at once through two spellings of its path. A lock file left behind by a
killed run is not stale in any harmful sense: the OS released its lock with the process, and the
next run takes it over (the holder line is rewritten).

The holder writes ``pid <pid> host <host>`` into the lock file once it holds it, so a refusal can
name who holds the store. The lock file is opened with ``O_NOFOLLOW`` (by filelock, and here when
writing the holder), so a symlink planted under its name is never followed.

Example:
    >>> import os, tempfile
    >>> store = os.path.join(tempfile.mkdtemp(), "demo.zarr")
    >>> with WriterLock(store, process_index=0) as lock:
    ...     holder(lock.path).startswith("pid ")
    True
"""

import os
import socket
import time

import filelock

__all__ = ["StoreBusyError", "WriterLock", "holder", "lock_path"]


class StoreBusyError(ValueError):
    """Another run holds the store (the message names its pid and host)."""


def lock_path(store: str, process_index: int) -> str:
    """``<store>.writer-<process index>.lock``, next to the store (never inside it: laying a
    store out replaces its directory).

    >>> lock_path("out/phase_diagram.zarr", 0)
    'out/phase_diagram.zarr.writer-0.lock'
    """
    return f"{os.fspath(store)}.writer-{int(process_index)}.lock"


def holder(path: str) -> str:
    """What the lock file at ``path`` says about its holder ("" when unknown)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK)
    except OSError:
        return ""
    try:
        return os.read(fd, 512).decode("utf-8", "replace").strip()
    finally:
        os.close(fd)


class WriterLock:
    """Hold the writer lock of ``store`` for ``process_index``; refuse at once if it is held.

    Use as a context manager, or ``acquire()`` / ``release()``.

    Raises:
        StoreBusyError: another process holds it (``store ... is being written by pid N on
            host H``), or a symlink/unwritable file sits where the lock file goes.
    """

    def __init__(self, store, process_index: int = 0):
        self.store = os.fspath(store)
        # One lock per store, whatever path reaches it (links, "..", relative paths).
        self.path = lock_path(os.path.realpath(self.store), process_index)
        self.process_index = int(process_index)
        # thread_local=False: the lock belongs to the run, whatever thread releases it.
        self._lock = filelock.FileLock(self.path, timeout=0, thread_local=False)

    def acquire(self) -> "WriterLock":
        if os.path.islink(self.path):
            raise StoreBusyError(
                f"{self.path} is a symbolic link; jaxflow never follows links it did not make: "
                "remove it and rerun"
            )
        try:
            self._lock.acquire()
        except filelock.Timeout:
            # The holder writes its name right after acquiring: give it a moment to appear.
            who = ""
            for _ in range(20):
                who = holder(self.path)
                if who:
                    break
                time.sleep(0.01)
            raise StoreBusyError(
                f"store {self.store} is being written by another run "
                f"({who or 'holder unknown'}, process {self.process_index} of its run); wait for "
                "it to finish or stop it, then rerun with --resume"
            ) from None
        except OSError as err:
            raise StoreBusyError(
                f"cannot lock store {self.store} ({self.path}): {err.strerror or err}"
            ) from None
        try:
            fd = os.open(self.path, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0))
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"pid {os.getpid()} host {socket.gethostname()}\n".encode())
            finally:
                os.close(fd)
        except OSError:
            pass  # the holder's name is a courtesy; the lock itself is held
        return self

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release()

    def __enter__(self) -> "WriterLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
