"""The engine: how a problem is trained.

The contract: :func:`jaxflow.solve` (:mod:`~jaxflow.engine.contract`) takes a
:class:`~jaxflow.engine.problem.Problem` (what is trained), a method value
(:mod:`~jaxflow.engine.methods`: ``Flow``, ``Descent``) and a
:class:`~jaxflow.engine.request.Request` (what to answer, when to stop; stationarity has one
meaning, :mod:`~jaxflow.engine.stationarity`) and returns a
:class:`~jaxflow.engine.trajectory.Trajectory`. Behind it:

Gradient flow (:mod:`~jaxflow.engine.flow`, diffrax) and gradient descent
(:mod:`~jaxflow.engine.descent`, optax) return the one
:class:`~jaxflow.engine.trajectory.Trajectory` with a per-lane :mod:`~jaxflow.engine.status`
code. The flow's clock (:mod:`~jaxflow.engine.clock`), its declared solver interface
(:mod:`~jaxflow.engine.solvers`, :mod:`~jaxflow.engine.rkc`), the per-coordinate split of
separable models (:mod:`~jaxflow.engine.coordinatewise`) and the event root finder
(:mod:`~jaxflow.engine.regula_falsi`) live beside them.
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
    "clock", "contract", "coordinatewise", "descent", "descent_loop", "flow", "methods", "problem",
    "regula_falsi", "request", "rkc", "solvers", "stationarity", "status", "trajectory",
]
