"""The diffrax solvers a sweep's configuration may name (``solver = "Tsit5"`` in TOML).

Shared by the toy phase diagram and the factor diagram, which both validate a solver name
against this table and build the solver from it.

Example:
    >>> from jaxflow.experiments._solvers import SOLVERS
    >>> sorted(SOLVERS), type(SOLVERS["Tsit5"]()).__name__
    (['Dopri5', 'Dopri8', 'Tsit5'], 'Tsit5')
"""

import diffrax

__all__ = ["SOLVERS"]

SOLVERS = {"Tsit5": diffrax.Tsit5, "Dopri5": diffrax.Dopri5, "Dopri8": diffrax.Dopri8}
