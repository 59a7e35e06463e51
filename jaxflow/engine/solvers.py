"""The solvers jaxflow steps with, and what it needs to know about each one.

:func:`jaxflow.engine.flow.solve` drives any adaptive diffrax solver through its ``init``/``step``
interface and a ``PIDController``. Two facts about a solver are jaxflow's own business:

* **how many vector-field evaluations a step attempt costs** (``Trajectory.evaluations``):
  :mod:`jaxflow.engine.evaluations` counts them (:class:`AbstractCountedSolver` for a solver
  whose count varies per step, such as :class:`jaxflow.engine.rkc.RKC`); its names are
  re-exported here;
* **the tolerances of an implicit solver's root finder**, which ``diffrax.diffeqsolve`` fills
  from the step-size controller and jaxflow's own loop must fill the same way.

:data:`SOLVERS` names the solvers a configuration file may ask for.

Example:
    >>> import diffrax
    >>> from jaxflow.engine import solvers
    >>> from jaxflow.engine.rkc import RKC
    >>> solvers.step_evaluations(diffrax.Tsit5(), None)   # 7 stages, first same as last
    6
    >>> solvers.step_evaluations(diffrax.Kvaerno5(), None)
    -1
    >>> isinstance(RKC(), solvers.AbstractCountedSolver), sorted(solvers.SOLVERS)
    (True, ['Dopri5', 'Dopri8', 'RKC', 'Tsit5'])
"""

import diffrax
import equinox as eqx
import jax
import numpy as np

from jaxflow.engine.evaluations import AbstractCountedSolver as AbstractCountedSolver
from jaxflow.engine.evaluations import counts_evaluations as counts_evaluations
from jaxflow.engine.evaluations import init_evaluations as init_evaluations
from jaxflow.engine.evaluations import step_evaluations as step_evaluations
from jaxflow.engine.rkc import RKC

__all__ = [
    "SOLVERS",
    "AbstractCountedSolver",
    "counts_evaluations",
    "init_evaluations",
    "step_evaluations",
    "with_root_finder_tolerances",
]


def with_root_finder_tolerances(solver, controller):
    """Give an implicit solver's root finder the controller's tolerances where it has none.

    ``diffrax.diffeqsolve`` does this in its own loop; :func:`jaxflow.engine.flow.solve` calls
    ``solver.step`` directly and must do it too. diffrax marks "use the controller's value" by a
    placeholder that is not a number (``rtol``, ``atol``) or not callable (``norm``): those are
    filled.
    """
    if not isinstance(solver, diffrax.AbstractImplicitSolver):
        return solver
    finder = solver.root_finder

    def unset(name):
        value = getattr(finder, name, None)
        if name == "norm":
            return value is not None and not callable(value)
        return value is not None and not isinstance(value, (int, float, np.ndarray, jax.Array))

    names = [n for n in ("rtol", "atol", "norm") if unset(n)]
    if not names:
        return solver
    return eqx.tree_at(
        lambda s: tuple(getattr(s.root_finder, n) for n in names),
        solver,
        tuple(getattr(controller, n) for n in names),
    )


# Solvers a configuration may name (``solver = "Tsit5"`` in TOML): name -> constructor.
SOLVERS = {"Tsit5": diffrax.Tsit5, "Dopri5": diffrax.Dopri5, "Dopri8": diffrax.Dopri8, "RKC": RKC}
