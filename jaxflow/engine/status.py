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
"""A search (the phase diagram's threshold) found no answer on the range it searched, every
simulation it made finishing ``ok``: the value is NaN, and the summary says below which bound it
was looked for. This is an answer ("there is none above the bound"); a search whose simulations
did not all finish says so with their code instead."""
UNCERTAIN = 7
"""An answer whose error estimate, stored beside it, exceeds its tolerance: the value is kept,
but it is not to be trusted to the tolerance asked (the phase diagram's thresholds:
``log_threshold_error_estimate`` above 1e-5 relative in the log)."""

NAMES = {
    OK: "ok",
    MAX_STEPS: "max_steps",
    NONFINITE: "nonfinite",
    DIVERGED: "diverged",
    INVALID: "invalid",
    UNFINISHED: "unfinished",
    NOT_FOUND: "not_found",
    UNCERTAIN: "uncertain",
}

# Least to most severe: what several lanes report together is the most severe of their codes
# (a failure over "did not answer everything" over "answered"), not the largest number.
SEVERITY = (OK, NOT_FOUND, UNCERTAIN, UNFINISHED, MAX_STEPS, DIVERGED, NONFINITE, INVALID)
_RANK = tuple(SEVERITY.index(code) for code in range(len(SEVERITY)))  # code -> its place

__all__ = [
    "DIVERGED", "INVALID", "MAX_STEPS", "NAMES", "NONFINITE", "NOT_FOUND", "OK", "SEVERITY",
    "UNCERTAIN", "UNFINISHED", "answer_report", "flag_attributes", "name", "not_answered",
    "report", "summary", "worse", "worst",
]


def worst(codes, axis=None):
    """The most severe code of ``codes`` (along ``axis``; all of them by default), in the order
    of :data:`SEVERITY`; ``ok`` for none. NumPy in, NumPy out; a JAX array (traced too) in, a
    JAX array out.

    >>> import numpy as np
    >>> from jaxflow.engine import status
    >>> status.name(status.worst(np.array([status.UNFINISHED, status.NONFINITE, status.OK])))
    'nonfinite'
    >>> status.worst(np.array([[0, 5], [1, 0]], dtype=np.int8), axis=1).tolist()
    [5, 1]
    """
    import numpy as np

    xp = np
    if not isinstance(codes, (np.ndarray, np.generic, int, list, tuple)):
        import jax.numpy as xp
    ranks = xp.asarray(_RANK, dtype=np.int8)[xp.asarray(codes)]
    return xp.asarray(SEVERITY, dtype=np.int8)[xp.max(ranks, axis=axis, initial=0)]


def worse(a, b):
    """The more severe of two codes, element by element (NumPy arrays or numbers, broadcast).

    >>> from jaxflow.engine import status
    >>> status.worse([status.OK, status.UNFINISHED], status.MAX_STEPS).tolist()
    [1, 1]
    """
    import numpy as np

    return worst(np.stack(np.broadcast_arrays(a, b)), axis=0)


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


def _status_variables(ds) -> list[str]:
    """The status variables of a dataset: ``status`` (its lanes) and every ``*_status``."""
    return [str(k) for k in ds.data_vars if k == "status" or str(k).endswith("_status")]


def _unanswered(obj) -> tuple[dict[str, dict[str, int]], int]:
    """``({variable: {code name: count}}, requested)``: the codes of ``obj`` that are not an
    answer, by status variable, and the number of answers it holds (see :func:`not_answered`)."""
    import numpy as np
    import xarray as xr

    if not isinstance(obj, xr.Dataset):
        codes = np.asarray(getattr(obj, "values", obj))
        bad = codes[codes != OK]
        return ({"status": summary(bad)} if bad.size else {}), int(codes.size)
    lanes = obj["status"] if "status" in obj.data_vars else None
    found, requested = {}, 0
    for var in _status_variables(obj):
        codes = obj[var]
        bad = codes != OK
        if var != "status" and lanes is not None and set(codes.dims) < set(lanes.dims):
            # A search that found nothing answered "none", but only if every lane it rests on
            # finished: a lane that hit its step budget may hide what was looked for.
            others = [d for d in lanes.dims if d not in codes.dims]
            every_lane_ok = (lanes == OK).all(dim=others)
            bad = bad & ~((codes == NOT_FOUND) & every_lane_ok)
        values = np.asarray(codes.values)[np.asarray(bad.values)]
        if values.size:
            found[var] = summary(values)
        requested += int(codes.size)
    return found, requested


def not_answered(ds_or_codes) -> int:
    """How many requested answers are not ``ok``: the code that decides a run's exit status.

    ``ds_or_codes`` is an array of codes (every code but ``ok`` counts) or a dataset, whose
    ``status`` variable (its lanes) and ``*_status`` variables (its derived answers, e.g. the
    phase diagram's ``threshold_status``) all count. A derived ``not_found`` counts as an answer
    ("none in the range searched") only where every lane of its coordinates (every scale of that
    (depth, ratio)) finished ``ok``.

    >>> import numpy as np, xarray as xr
    >>> from jaxflow.engine import status
    >>> status.not_answered([status.OK, status.UNCERTAIN, status.NOT_FOUND])
    2
    >>> ds = xr.Dataset({"status": (("ratio", "scale"), np.array([[0, 0], [0, 1]], np.int8)),
    ...                  "threshold_status": ("ratio", np.array([6, 6], np.int8))})
    >>> status.not_answered(ds)   # the lane at max_steps, and the threshold resting on it
    2
    """
    found, _ = _unanswered(ds_or_codes)
    return sum(sum(counts.values()) for counts in found.values())


def answer_report(ds_or_codes) -> str:
    """The last line of a run: all requested answers given, or how many were not and which.

    >>> import numpy as np, xarray as xr
    >>> from jaxflow.engine import status
    >>> ds = xr.Dataset({"status": (("ratio", "scale"), np.array([[0, 0], [0, 1]], np.int8)),
    ...                  "threshold_status": ("ratio", np.array([6, 7], np.int8))})
    >>> print(status.answer_report(ds))
    not answered: 2 of 6 (status: max_steps 1; threshold_status: uncertain 1)
    >>> print(status.answer_report(ds["status"][0]))
    answered: all 2
    """
    found, requested = _unanswered(ds_or_codes)
    count = sum(sum(counts.values()) for counts in found.values())
    if not count:
        return f"answered: all {requested}"
    which = "; ".join(f"{var}: " + ", ".join(f"{k} {v}" for k, v in counts.items())
                      for var, counts in found.items())
    return f"not answered: {count} of {requested} ({which})"
