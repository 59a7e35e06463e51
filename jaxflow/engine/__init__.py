"""The engine: how a problem is trained.

One concept a module:

- :mod:`~jaxflow.engine.flow`: gradient flow through diffrax, the public ``solve`` and
  ``gradient_flow``;
- ``_flow_problem``: the flow's arguments, checked eagerly and built into what its loop reads;
- ``_flow_loop``: the flow's step loop: its state, one step attempt, the stop rule, the result;
- ``_flow_events``: learning times and saves located inside one step of the flow;
- :mod:`~jaxflow.engine.clock`: the flow's reparametrized time, in which a plateau costs
  bounded steps;
- :mod:`~jaxflow.engine.solvers`: the solvers a flow steps with, and their root-finder
  tolerances;
- :mod:`~jaxflow.engine.evaluations`: the vector-field evaluations a solver's step costs;
- :mod:`~jaxflow.engine.rkc`: Runge-Kutta-Chebyshev, a stabilized explicit solver;
- :mod:`~jaxflow.engine.regula_falsi`: the bracketing root finder of event location;
- :mod:`~jaxflow.engine.coordinatewise`: separable models solved one coordinate per lane;
- :mod:`~jaxflow.engine.descent`: gradient descent through optax;
- :mod:`~jaxflow.engine.trajectory`: the one :class:`~jaxflow.engine.trajectory.Trajectory`
  both return;
- :mod:`~jaxflow.engine.status`: its per-lane status codes.
"""

from jaxflow.engine import (
    clock as clock,
)
from jaxflow.engine import (
    coordinatewise as coordinatewise,
)
from jaxflow.engine import (
    descent as descent,
)
from jaxflow.engine import (
    evaluations as evaluations,
)
from jaxflow.engine import (
    flow as flow,
)
from jaxflow.engine import (
    regula_falsi as regula_falsi,
)
from jaxflow.engine import (
    rkc as rkc,
)
from jaxflow.engine import (
    solvers as solvers,
)
from jaxflow.engine import (
    status as status,
)
from jaxflow.engine import (
    trajectory as trajectory,
)

__all__ = [
    "clock", "coordinatewise", "descent", "evaluations", "flow", "regula_falsi", "rkc", "solvers",
    "status", "trajectory",
]
