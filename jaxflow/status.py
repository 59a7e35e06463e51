"""Per-trajectory status codes.

Every trajectory that jaxflow computes (a flow lane, a descent run, a sweep point) carries one
of these int8 codes, so a bad lane is visible and never poisons the others.

>>> from jaxflow import status
>>> status.name(status.MAX_STEPS)
'max_steps'
"""

OK = 0
"""Finished normally: every requested quantity was computed."""
MAX_STEPS = 1
"""The step budget ran out before the stopping condition held."""
NONFINITE = 2
"""A non-finite value (NaN or inf) appeared in the state; the lane stopped there."""
DIVERGED = 3
"""Gradient descent: the loss grew past its bound; the run stopped updating there."""
INVALID = 4
"""The inputs of this point were outside the allowed range (only under jit, where raising is impossible)."""

NAMES = {OK: "ok", MAX_STEPS: "max_steps", NONFINITE: "nonfinite", DIVERGED: "diverged", INVALID: "invalid"}


def name(code: int) -> str:
    """The readable name of a status code.

    >>> from jaxflow import status
    >>> status.name(status.DIVERGED)
    'diverged'
    """
    return NAMES[int(code)]


def summary(codes) -> dict[str, int]:
    """Count the codes of an array of statuses by name, e.g. ``{'ok': 10, 'max_steps': 1}``.

    >>> from jaxflow import status
    >>> status.summary([status.OK, status.OK, status.MAX_STEPS])
    {'ok': 2, 'max_steps': 1}
    """
    import numpy as np

    values, counts = np.unique(np.asarray(codes).ravel(), return_counts=True)
    return {name(v): int(c) for v, c in zip(values, counts)}
