"""Exports written whole or not at all: inside their directory, never through a planted link.

Every file jaxflow exports (``.nc``, figures) goes through :func:`write_atomically`:

* the content is produced first (the netCDF file is serialized **in memory**, so HDF5 never
  writes to the disk itself: h5py segfaulted on a full disk);
* the free space is checked against its size before anything is written;
* it is written to a temporary file created exclusively (``O_CREAT | O_EXCL | O_NOFOLLOW``:
  never an existing file, never through a symbolic link) with a unique name in the target's
  directory, fsynced, then renamed onto the target (``rename`` replaces a link, it does not
  follow it);
* any failure (ENOSPC, EIO, a read-only file system, SIGINT) removes the temporary file and
  raises :class:`ExportError` (one line) or ``KeyboardInterrupt``, and leaves the target as it was.

A process killed with SIGKILL mid-write cannot clean up: its temporary file (named after its
pid) is removed by the next export into that directory once that pid is gone
(:func:`remove_stale_temporaries`).

SIGINT is held off while a file is written (:func:`interrupts_deferred`) and delivered between
steps, after the cleanup, as ``KeyboardInterrupt``: an interrupt inside C code could otherwise
be swallowed (printed as "Exception ignored") and the command would exit 0.

Example:
    >>> import os, tempfile
    >>> out = tempfile.mkdtemp()
    >>> path = write_atomically(os.path.join(out, "hello.txt"), b"hello")
    >>> open(path, "rb").read(), sorted(os.listdir(out))
    (b'hello', ['hello.txt'])
"""

import contextlib
import os
import re
import signal
import threading

from jaxflow.sweep import resources as _resources

__all__ = [
    "CHUNK", "ExportError", "check_interrupt", "interrupts_deferred", "remove_stale_temporaries",
    "temporary_file", "write_atomically",
]

CHUNK = 1 << 20  # bytes per os.write: an interrupt is delivered within one chunk


class ExportError(OSError):
    """An export could not be written; the message is one line and nothing was left behind."""


_interrupted = threading.Event()


@contextlib.contextmanager
def interrupts_deferred():
    """Hold SIGINT off inside the block; deliver it as KeyboardInterrupt at the next
    :func:`check_interrupt` or when the block ends. A no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _interrupted.clear()
    previous = signal.signal(signal.SIGINT, lambda signum, frame: _interrupted.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    check_interrupt()


def check_interrupt() -> None:
    """Raise KeyboardInterrupt if SIGINT arrived while deferred."""
    if _interrupted.is_set():
        _interrupted.clear()
        raise KeyboardInterrupt


def temporary_file(path) -> tuple[int, str]:
    """A new, empty file beside ``path`` with a unique name: ``(fd, name)``.

    Created with ``O_CREAT | O_EXCL | O_NOFOLLOW``, so it is never an existing file or link.
    """
    path = os.fspath(path)
    directory, base = os.path.split(os.path.abspath(path))
    root, ext = os.path.splitext(base)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(100):
        name = os.path.join(directory, f".{root}.{os.getpid()}-{os.urandom(4).hex()}.partial{ext}")
        try:
            return os.open(name, flags, 0o644), name
        except FileExistsError:
            continue
    raise ExportError(f"cannot create a temporary file in {directory}")


_TEMPORARY = re.compile(r"\..*\.(\d+)-[0-9a-f]{8}\.partial(\.[^.]*)?")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # someone else's process, or not a pid: leave its file alone
    return True


def remove_stale_temporaries(directory) -> int:
    """Remove the temporary files of :func:`temporary_file` in ``directory`` whose process is
    gone (killed mid-write); return their count.

    >>> import tempfile
    >>> out = tempfile.mkdtemp()
    >>> _ = open(os.path.join(out, ".fig.999999999-0a1b2c3d.partial.png"), "w").close()
    >>> remove_stale_temporaries(out), os.listdir(out)
    (1, [])
    """
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    for entry in entries:
        match = _TEMPORARY.fullmatch(entry.name)
        if match and entry.is_file(follow_symlinks=False) and not _alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed += 1
    return removed


def _reason(err: OSError) -> str:
    return err.strerror or str(err) or type(err).__name__


def write_atomically(path, data: bytes | memoryview) -> str:
    """Write ``data`` to ``path`` whole or not at all (see the module docstring); return path.

    Raises:
        ExportError: not enough free space, or the write failed (the message names the path).
    """
    path = os.fspath(path)
    data = memoryview(data).cast("B")
    free = _resources.free_disk(os.path.dirname(os.path.abspath(path)))
    if free is not None and data.nbytes > free:
        raise ExportError(
            f"cannot write {path}: it needs {_resources.format_bytes(data.nbytes)}, only "
            f"{_resources.format_bytes(free)} free; the store is untouched: free space and "
            "rerun with --resume"
        )
    tmp = None
    try:
        fd, tmp = temporary_file(path)
        try:
            for start in range(0, data.nbytes, CHUNK):
                check_interrupt()
                view = data[start:start + CHUNK]
                while view.nbytes:
                    view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        check_interrupt()
        os.replace(tmp, path)
        tmp = None
    except OSError as err:
        if isinstance(err, ExportError):
            raise
        raise ExportError(
            f"cannot write {path}: {_reason(err)}; nothing was left behind and the store is "
            "untouched: fix it and rerun with --resume"
        ) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return path
