"""Runners kept between sweeps: the same sweep run again in this process compiles nothing.

A :class:`~jaxflow.sweep.device_runner.Runner` compiles its per-point function on its first
call, and a new runner (a new closure, built by each run) compiles it again, although the
program is the same (measured on the smoke configs, in one process: 4 to 6 s of the 5 to 7 s
of a rerun of the edge-of-stability, large-step or factor diagrams). A run that says which
program it runs (a hashable ``key``, e.g. the experiment's name and config) takes the runner
an earlier run with the same key built: a notebook cell run again, a sweep resumed in the
process that was interrupted, a smoke run repeated by a test.

Only the last :data:`KEEP` runners are kept (each holds its compiled programs).

Example:
    >>> from jaxflow.sweep import Runner
    >>> from jaxflow.sweep.kept_runners import kept_runner
    >>> build = lambda: Runner(lambda p: {"y": 2.0 * p["x"]}, chunk_size=4)
    >>> kept_runner(("doubling", 4), build) is kept_runner(("doubling", 4), build)
    True
    >>> kept_runner(("doubling", 4), build) is kept_runner(("doubling", 8), build)
    False
"""

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TypeVar

__all__ = ["KEEP", "kept_runner"]

KEEP = 8
_KEPT: OrderedDict = OrderedDict()

R = TypeVar("R")


def kept_runner(key: Hashable, build: Callable[[], R]) -> R:
    """The runner kept under ``key``, or ``build()`` kept under it (the oldest of more than
    :data:`KEEP` is dropped).

    ``key`` must determine the program completely: everything the runner's function reads
    that is not a point of the sweep, its chunk size, its devices and its precision.
    """
    if key in _KEPT:
        _KEPT.move_to_end(key)
        return _KEPT[key]
    runner = _KEPT[key] = build()
    while len(_KEPT) > KEEP:
        _KEPT.popitem(last=False)
    return runner
