"""The engine: how a problem is trained.

The contract: :func:`jaxflow.solve` takes a problem, a method and a request and returns a
trajectory. One concept a module:

- :mod:`~jaxflow.engine.contract`: ``solve(problem, method, request)``, the one entry point;
- :mod:`~jaxflow.engine.problem`: ``Problem``, what is trained (a loss or a vector field, the
  start, the data, the modes and targets);
- :mod:`~jaxflow.engine.methods`: the method values ``Flow`` and ``Descent``;
- :mod:`~jaxflow.engine.request`: ``Request``, what to answer and when to stop;
- :mod:`~jaxflow.engine.stationarity`: the one meaning of a stationary run;
- :mod:`~jaxflow.engine.trajectory`: the one :class:`~jaxflow.engine.trajectory.Trajectory`
  every method returns;
- :mod:`~jaxflow.engine.status`: its per-lane status codes;
- :mod:`~jaxflow.engine.flow`: the gradient-flow engine behind ``Flow`` (diffrax; its classic
  entry points ``solve`` and ``gradient_flow`` are kept for scripts);
- ``_flow_problem``: the flow's arguments, checked eagerly and built into what its loop reads;
- ``_flow_loop``: the flow's step loop: its state, one step attempt, the stop rule, the result;
- ``_flow_events``: learning times and saves located inside one step of the flow;
- :mod:`~jaxflow.engine.clock`: the flow's reparametrized time, in which a plateau costs
  bounded steps;
- :mod:`~jaxflow.engine.solvers`: the solvers a flow steps with, and their root-finder
  tolerances;
- :mod:`~jaxflow.engine.evaluations`: the vector-field evaluations a solver's step costs;
- :mod:`~jaxflow.engine.ensemble`: many problems of any vector field in one compiled loop
  (Tsit5 on a lanes-last block, ``_tsit5_lanes``; a work queue instead of lockstep,
  ``_ensemble_queue``);
- :mod:`~jaxflow.engine.ensemble_method`: ``Ensemble``, the value that puts a batched
  ``jaxflow.solve`` on that engine;
- :mod:`~jaxflow.engine.rkc`: Runge-Kutta-Chebyshev, a stabilized explicit solver;
- :mod:`~jaxflow.engine.regula_falsi`: the bracketing root finder of event location;
- :mod:`~jaxflow.engine.coordinatewise`: separable models solved one coordinate per lane;
- :mod:`~jaxflow.engine.descent_loop`: gradient descent's compiled loop (optax steps, saves,
  learning times, stops);
- :mod:`~jaxflow.engine.descent`: ``gradient_descent``, a thin fixed-length wrapper of
  ``solve`` with ``Descent``, kept for scripts.
"""

from jaxflow.engine import (
    clock as clock,
)
from jaxflow.engine import (
    contract as contract,
)
from jaxflow.engine import (
    coordinatewise as coordinatewise,
)
from jaxflow.engine import (
    descent as descent,
)
from jaxflow.engine import (
    descent_loop as descent_loop,
)
from jaxflow.engine import (
    ensemble as ensemble,
)
from jaxflow.engine import (
    ensemble_method as ensemble_method,
)
from jaxflow.engine import (
    evaluations as evaluations,
)
from jaxflow.engine import (
    flow as flow,
)
from jaxflow.engine import (
    methods as methods,
)
from jaxflow.engine import (
    problem as problem,
)
from jaxflow.engine import (
    regula_falsi as regula_falsi,
)
from jaxflow.engine import (
    request as request,
)
from jaxflow.engine import (
    rkc as rkc,
)
from jaxflow.engine import (
    solvers as solvers,
)
from jaxflow.engine import (
    stationarity as stationarity,
)
from jaxflow.engine import (
    status as status,
)
from jaxflow.engine import (
    trajectory as trajectory,
)

__all__ = [
    "clock", "contract", "coordinatewise", "descent", "descent_loop", "ensemble",
    "ensemble_method", "evaluations", "flow",
    "methods", "problem", "regula_falsi", "request", "rkc", "solvers", "stationarity", "status",
    "trajectory",
]
