"""The solvers a sweep's configuration may name (``solver = "Tsit5"`` in TOML).

Shared by the toy phase diagram and the factor diagram, which both validate a solver name
against this table (:func:`check_solver`) and build the solver from it.

Example:
    >>> from jaxflow.experiments._solvers import SOLVERS
    >>> sorted(SOLVERS), type(SOLVERS["Tsit5"]()).__name__
    (['Dopri5', 'Dopri8', 'RKC', 'Tsit5'], 'Tsit5')
"""

from jaxflow.engine.solvers import SOLVERS
from jaxflow.experiments.config import ConfigError

__all__ = ["SOLVERS", "check_solver"]


def check_solver(name: str) -> None:
    """Require a solver name of :data:`SOLVERS`.

    >>> from jaxflow.experiments._solvers import check_solver
    >>> check_solver("Euler")
    Traceback (most recent call last):
    ...
    jaxflow.experiments.config.ConfigError: solver must be one of ['Dopri5', 'Dopri8', 'RKC', 'Tsit5'], got 'Euler'
    """
    if name not in SOLVERS:
        raise ConfigError(f"solver must be one of {sorted(SOLVERS)}, got {name!r}")
