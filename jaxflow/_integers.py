"""The one integer check of jaxflow: counts, sizes, seeds and depths given as options.

Options arrive from Python (``512``, ``512.0``, ``np.int64(512)``), from TOML and from the
command line, so "an integer" means any real number without a fractional part, never a bool
(``True`` is an ``int`` to Python, but not a count to a user). Each layer raises its own error
type (``ConfigError`` for configurations, ``SweepError`` for sweeps, ``ValueError`` for the
functions), so the caller passes it.

Example:
    >>> from jaxflow._integers import check_integer
    >>> check_integer("chunk_size", 512.0)
    512
    >>> check_integer("seed", -1, low=0)
    Traceback (most recent call last):
    ...
    ValueError: seed must be an integer >= 0, got -1
"""

import math
import numbers

__all__ = ["INT_MAX", "check_integer", "is_integer"]

INT_MAX = 2**31 - 1  # step counts and sizes are stored as int32


def is_integer(value) -> bool:
    """Whether ``value`` is a real number without a fractional part (and not a bool).

    >>> from jaxflow._integers import is_integer
    >>> [is_integer(v) for v in (3, 3.0, 3.5, True, "3", float("inf"))]
    [True, True, False, False, False, False]
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return math.isfinite(value) and int(value) == value


def check_integer(name: str, value, low: int = 1, high: int | None = None, error=ValueError) -> int:
    """``value`` as an ``int`` in ``[low, high]``, else ``error`` with a one-line message naming it.

    Args:
        name: the option's name, as the user wrote it.
        value: the value to check.
        low, high: inclusive bounds (``high=None``: no upper bound).
        error: the exception class to raise (a ``ValueError`` subclass of the caller's layer).

    >>> from jaxflow._integers import check_integer
    >>> check_integer("num_atoms", 4, high=3)
    Traceback (most recent call last):
    ...
    ValueError: num_atoms must be an integer in [1, 3], got 4
    """
    ok = is_integer(value) and value >= low and (high is None or value <= high)
    if not ok:
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise error(f"{name} must be an integer {bounds}, got {value!r}")
    return int(value)
