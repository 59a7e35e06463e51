"""Progress bars of long runs: one look for every command (tqdm on stderr).

A bar is off with ``quiet=True`` and whenever stderr is not a terminal, so logs, pipes and CI
stay clean; the work is the same either way.

Example:
    >>> from jaxflow.sweep import progress as _progress
    >>> with _progress.bar(3, desc="depths", quiet=True) as runs:
    ...     [d for d in _progress.counted([1, 2, 3], runs)]
    [1, 2, 3]
"""

import sys
from collections.abc import Iterable, Iterator

__all__ = ["bar", "counted"]


def bar(total: int, *, desc: str, unit: str = "run", quiet: bool = False):
    """A tqdm bar of ``total`` units (off when ``quiet`` or stderr is not a terminal)."""
    from tqdm.auto import tqdm

    disable = quiet or not sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, smoothing=0.1)


def counted(items: Iterable, progress) -> Iterator:
    """Yield each item, advancing ``progress`` by one when its iteration is done (also after a
    ``continue``)."""
    for item in items:
        yield item
        progress.update()
