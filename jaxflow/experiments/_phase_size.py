"""The cost of a phase diagram from its counts alone (memory, disk, time), checked against the
machine before anything is built (:func:`jaxflow.experiments.phase_diagram.check_size`)."""

import dataclasses
import os

from jaxflow import sweep

__all__ = ["BYTES_PER_POINT", "BYTES_PER_ROW", "DERIVED_BYTES_PER_POINT", "SECONDS_PER_POINT",
           "check_counts", "request_estimate"]

# Outputs per point (margin_in_unit, log_time_unit: float64; status, steps: 4 bytes at most),
# the variables derived from them (margin, incremental, the grid copies of the labelling), and
# per (depth, ratio) row the exact threshold's and the refinement's working arrays.
BYTES_PER_POINT = 24
DERIVED_BYTES_PER_POINT = 40
BYTES_PER_ROW = 4096
SECONDS_PER_POINT = 2e-5  # measured: 12-20 us per trajectory per CPU device


def request_estimate(counts, *, chunk_size: int, store: bool):
    """The cost of a phase diagram of ``counts = (depths, ratios, scales)`` values, from the
    counts alone (:func:`jaxflow.sweep.estimate.request`; nothing is built).

    >>> from jaxflow.experiments import phase_diagram as pd
    >>> e = pd.request_estimate((1000, 1000, 1000), chunk_size=2048, store=True)
    >>> e.points, e.memory > 10**11
    (1000000000, True)
    """
    from jaxflow.sweep import estimate

    n_depths, n_ratios, _ = (int(c) for c in counts)
    e = estimate.request(counts, bytes_per_point=BYTES_PER_POINT, chunk_size=chunk_size,
                         store=store, extra_per_point=DERIVED_BYTES_PER_POINT,
                         seconds_per_point=SECONDS_PER_POINT)
    return dataclasses.replace(e, memory=e.memory + n_depths * n_ratios * BYTES_PER_ROW)


def check_counts(counts, chunk_size: int, store=None):
    """The estimate of ``counts = (depths, ratios, scales)`` in chunks of ``chunk_size``; a
    one-line SweepError when it does not fit the machine (a new ``store`` counted in)."""
    from jaxflow.sweep import resources

    new_store = store is not None and not os.path.exists(store)
    e = request_estimate(counts, chunk_size=chunk_size, store=new_store)
    try:
        resources.check(memory=e.memory, disk=e.disk, where=store)
    except resources.SizeError as err:
        raise sweep.SweepError(f"{e.points} points ({counts[0]} depths x {counts[1]} ratios x "
                               f"{counts[2]} scales) in chunks of {chunk_size}: "
                               f"{err}") from None
    return e
