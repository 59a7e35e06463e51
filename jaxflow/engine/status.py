"""Per-trajectory status codes.

Every trajectory that jaxflow computes (a flow lane, a descent run, a sweep point) carries one
of these int8 codes, so a bad lane is visible and never poisons the others.

>>> from jaxflow.engine import status
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
UNFINISHED = 5
"""The run reached its horizon (``t_end`` or the last save time) before it found every learning
time it was asked for, or a descent run told to stop when stationary spent its step budget
first: what it computed is right, but it did not answer everything."""
NOT_FOUND = 6
"""A search (the phase diagram's threshold) found no answer on the range it searched: the value is
NaN, and the summary says below which bound it was looked for."""

NAMES = {
    OK: "ok",
    MAX_STEPS: "max_steps",
    NONFINITE: "nonfinite",
    DIVERGED: "diverged",
    INVALID: "invalid",
    UNFINISHED: "unfinished",
    NOT_FOUND: "not_found",
}

__all__ = [
    "DIVERGED", "INVALID", "MAX_STEPS", "NAMES", "NONFINITE", "NOT_FOUND", "OK", "UNFINISHED",
    "flag_attributes", "name", "report", "summary",
]


def name(code: int) -> str:
    """The readable name of a status code.

    >>> from jaxflow.engine import status
    >>> status.name(status.DIVERGED)
    'diverged'
    """
    return NAMES[int(code)]


def flag_attributes() -> dict:
    """The CF attributes that name the codes in a stored ``status`` variable: ``flag_values``
    (int8, like the variable) and ``flag_meanings`` (the names, space-separated).

    >>> from jaxflow.engine import status
    >>> status.flag_attributes()["flag_meanings"].split()[:3]
    ['ok', 'max_steps', 'nonfinite']
    """
    import numpy as np

    codes = sorted(NAMES)
    return {"flag_values": np.array(codes, dtype=np.int8),
            "flag_meanings": " ".join(NAMES[c] for c in codes)}


def summary(codes) -> dict[str, int]:
    """Count the codes of an array of statuses by name, e.g. ``{'ok': 10, 'max_steps': 1}``.

    >>> from jaxflow.engine import status
    >>> status.summary([status.OK, status.OK, status.MAX_STEPS])
    {'ok': 2, 'max_steps': 1}
    """
    import numpy as np

    values, counts = np.unique(np.asarray(codes).ravel(), return_counts=True)
    return {name(v): int(c) for v, c in zip(values, counts)}


def _coordinate_text(value) -> str:
    """A coordinate value as text: numbers in ``%g``, anything else (a backend name) as is."""
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return str(value)


def report(codes, limit: int = 3) -> str:
    """One line for the end of a run: the count of every status, and where the bad lanes are.

    ``codes`` is an ``xarray.DataArray`` of status codes; up to ``limit`` of its non-ok lanes are
    named by their coordinates, so a run that hit ``max_steps`` or a non-finite value says so.

    >>> import numpy as np, xarray as xr
    >>> codes = xr.DataArray(np.array([[0, 1], [0, 0]], dtype=np.int8), dims=("depth", "scale"),
    ...                      coords={"depth": [2.0, 3.0], "scale": [1e-3, 1e-2]})
    >>> print(report(codes))
    trajectory status: ok 3, max_steps 1; not ok: 1 of 4 (depth=2, scale=0.01)
    """
    import numpy as np

    values = np.asarray(codes.values)
    counts = summary(values)
    line = "trajectory status: " + ", ".join(f"{k} {v}" for k, v in counts.items())
    bad = np.argwhere(values != OK)
    if bad.size:
        where = [
            ", ".join(f"{dim}={_coordinate_text(codes[dim].values[i])}"
                      for dim, i in zip(codes.dims, idx))
            for idx in bad[:limit]
        ]
        more = ", ..." if len(bad) > limit else ""
        line += f"; not ok: {len(bad)} of {values.size} ({'; '.join(where)}{more})"
    return line
