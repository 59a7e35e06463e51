"""What a solver's step costs: the vector-field evaluations jaxflow counts for every solver.

``Trajectory.evaluations`` (the cost benchmarks compare) sums the evaluations of every step
attempt. An explicit Runge-Kutta solver says its count through its Butcher tableau (stages,
first-same-as-last); a solver whose count varies per step declares it by deriving
:class:`AbstractCountedSolver` (jaxflow's :class:`jaxflow.engine.rkc.RKC` chooses its stage
count per step); an implicit solver's Newton iterations are not reported by diffrax: -1
(unknown). This module sits below both :mod:`jaxflow.engine.rkc` (which derives the interface)
and :mod:`jaxflow.engine.solvers` (which names RKC among the solvers a configuration may ask for).

Example:
    >>> import diffrax
    >>> from jaxflow.engine import evaluations
    >>> evaluations.step_evaluations(diffrax.Tsit5(), None)   # 7 stages, first same as last
    6
    >>> evaluations.step_evaluations(diffrax.Kvaerno5(), None)
    -1
"""

import abc

import diffrax
from jaxtyping import Array, PyTree

__all__ = [
    "AbstractCountedSolver",
    "counts_evaluations",
    "init_evaluations",
    "step_evaluations",
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
