"""The size guard: what a run will need, checked against what the machine has, before it starts.

An oversized run (a 1e12-point grid, a chunk of 2**31 points) used to end in a MemoryError
traceback after creating its output directory. :func:`check` compares an estimate with the
available memory (``MemAvailable`` on Linux) and the free disk space under the store, and refuses
with one line giving the estimate. The estimates are upper bounds of the large arrays only
(points, outputs, the store's uncompressed chunks); a run just under the limit may still be
tight, which is why the limit keeps a margin (``HEADROOM``).

Example:
    >>> from jaxflow.sweep import resources as _resources
    >>> _resources.check(memory=1024, disk=1024, where=".")      # a kilobyte fits
    >>> _resources.format_bytes(3.2e12)
    '3.2 TB'
"""

import os

__all__ = ["HEADROOM", "SizeError", "available_memory", "check", "format_bytes", "free_disk"]

HEADROOM = 0.8  # use at most this fraction of what is free


class SizeError(ValueError):
    """The run needs more memory or disk than the machine has (the message gives both)."""


def format_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation, or None when unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def free_disk(path) -> int | None:
    """Free bytes on the file system that holds ``path`` (or its nearest existing parent)."""
    path = os.path.abspath(os.fspath(path))
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def check(*, memory: float, disk: float = 0.0, where=None,
          override: str = "--no-size-check") -> None:
    """Refuse (SizeError, one line) a run whose estimate exceeds the machine's memory or disk.

    Args:
        memory: estimated peak bytes of memory.
        disk: estimated bytes written under ``where``.
        where: a path on the file system written to (``None``: no disk check).
        override: how the user turns the check off (named in the message).
    """
    have = available_memory()
    if have is not None and memory > HEADROOM * have:
        raise SizeError(
            f"this run needs about {format_bytes(memory)} of memory, more than the "
            f"{format_bytes(have)} available: use a smaller grid or --chunk-size "
            f"(or {override} to run anyway)"
        )
    if where is not None and disk > 0:
        free = free_disk(where)
        if free is not None and disk > HEADROOM * free:
            raise SizeError(
                f"this run writes about {format_bytes(disk)} under {where}, more than the "
                f"{format_bytes(free)} free there: free space, use a smaller grid or "
                f"--chunk-size (or {override} to run anyway)"
            )
