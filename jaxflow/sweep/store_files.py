"""A store's files seen from outside: finding stores in a folder, removing zarr's partial files.

Part of :mod:`jaxflow.sweep.store`; ``jaxflow verify DIR`` finds the stores it checks with
:func:`find_stores`, and a single-process sweep removes the temporary files a killed writer left
(:func:`remove_partial_files`) while it holds the store's writer lock.
"""

import os
import re

__all__ = ["find_stores", "remove_partial_files"]


# zarr writes each file as <name>.<32 hex digits>.partial, then renames it into place.
_PARTIAL = re.compile(r".*\.[0-9a-f]{32}\.partial")


def remove_partial_files(path) -> int:
    """Remove zarr's temporary files left in a store by a killed writer; return their count.

    Only call it while holding the store's writer lock with no cooperating process writing.

    >>> import tempfile
    >>> remove_partial_files(tempfile.mkdtemp())
    0
    """
    removed = 0
    for root, _, files in os.walk(os.fspath(path)):
        for name in files:
            if _PARTIAL.fullmatch(name):
                try:
                    os.unlink(os.path.join(root, name))
                    removed += 1
                except OSError:
                    pass
    return removed


def find_stores(path) -> list[str]:
    """``path`` itself if it is a store, else the ``*.zarr`` directories inside it (sorted).

    >>> import tempfile
    >>> find_stores(tempfile.mkdtemp())
    []
    """
    path = os.fspath(path)
    if path.endswith(".zarr") or os.path.exists(os.path.join(path, "zarr.json")):
        return [path]
    if not os.path.isdir(path):
        return []
    return sorted(os.path.join(path, e) for e in os.listdir(path)
                  if e.endswith(".zarr") and os.path.isdir(os.path.join(path, e)))

