"""What a sweep raises: a sweep that cannot run as asked, and a store that is damaged.

Both are ``ValueError``s whose message is one line saying what to do next; the ``jaxflow``
commands exit with status 2 on a :class:`SweepError` and 1 on a :class:`StoreDamagedError`.
"""

from jaxflow._integers import check_integer

__all__ = ["StoreDamagedError", "SweepError", "check_count"]


class SweepError(ValueError):
    """A sweep cannot run as asked (bad axes, or a store that does not match).

    >>> from jaxflow import sweep
    >>> try:
    ...     sweep.run(lambda p: {"y": p["x"]}, {"x": [1.0, 1.0]})
    ... except sweep.SweepError as err:
    ...     print(err)
    axis 'x' has repeated values
    """


class StoreDamagedError(SweepError):
    """The sweep's store is damaged (its metadata, layout or arrays), not misused: the
    ``jaxflow`` commands exit with status 1 on it."""



def check_count(name: str, value, low: int = 1) -> int:
    """An integer option >= ``low`` (no bool, no float with a fraction), else a SweepError."""
    return check_integer(name, value, low=low, error=SweepError)

