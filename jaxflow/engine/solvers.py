"""The solvers jaxflow steps with, and what it needs to know about each one.

:func:`jaxflow.engine.flow.solve` drives any adaptive diffrax solver through its ``init``/``step``
interface and a ``PIDController``. Two facts about a solver are jaxflow's own business:

* **how many vector-field evaluations a step attempt costs** (``Trajectory.evaluations``, the
  cost benchmarks compare). An explicit Runge-Kutta solver says it through its Butcher tableau
  (stages, first-same-as-last); a solver whose count varies per step declares it by deriving
  :class:`AbstractCountedSolver` (jaxflow's :class:`jaxflow.engine.rkc.RKC` chooses its stage count per
  step); an implicit solver's Newton iterations are not reported by diffrax: -1 (unknown).
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

import abc

import diffrax
import equinox as eqx
import jax
import numpy as np
from jaxtyping import Array, PyTree

__all__ = [
    "SOLVERS",
    "AbstractCountedSolver",
    "counts_evaluations",
    "init_evaluations",
    "step_evaluations",
    "with_root_finder_tolerances",
]


class AbstractCountedSolver(diffrax.AbstractAdaptiveSolver):
    """An adaptive solver that reports the vector-field evaluations of its own steps.

    Subclasses implement :meth:`evaluations`: the count made by the step attempt (or the
    ``init``) that returned a solver state. :func:`jaxflow.engine.flow.solve` sums them.
    """

    @abc.abstractmethod
    def evaluations(self, solver_state: PyTree) -> Array:
        """Vector-field evaluations made by the call that returned ``solver_state``."""


def step_evaluations(solver, new_state) -> Array | int:
    """Vector-field evaluations of one step attempt of ``solver`` (-1 where unknown)."""
    if isinstance(solver, AbstractCountedSolver):
        return solver.evaluations(new_state)
    if isinstance(solver, diffrax.AbstractImplicitSolver):
        return -1  # Newton iterations vary per step and diffrax does not report them
    tableau = getattr(solver, "tableau", None)
    if tableau is None:
        return -1
    stages = len(tableau.a_lower) + 1
    # First-same-as-last: the last stage of a step is the first of the next.
    return stages - 1 if getattr(tableau, "fsal", False) else stages


def counts_evaluations(solver) -> bool:
    """Whether jaxflow knows ``solver``'s evaluation count (a property of its type)."""
    if isinstance(solver, AbstractCountedSolver):
        return True
    return step_evaluations(solver, None) != -1


def init_evaluations(solver, solver_state) -> Array | int:
    """Evaluations of ``solver.init``: ``f(y0)``, plus what a counted solver reports."""
    return solver.evaluations(solver_state) if isinstance(solver, AbstractCountedSolver) else 1


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


def _rkc():
    from jaxflow.engine.rkc import RKC  # RKC derives AbstractCountedSolver: imported on demand

    return RKC()


# Solvers a configuration may name (``solver = "Tsit5"`` in TOML): name -> constructor.
SOLVERS = {"Tsit5": diffrax.Tsit5, "Dopri5": diffrax.Dopri5, "Dopri8": diffrax.Dopri8, "RKC": _rkc}
