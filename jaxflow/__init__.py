"""jaxflow: gradient flow and gradient descent of depth-N models, at scale, in JAX.

Importing jaxflow switches JAX to float64 (see ``jaxflow._x64``; opt out with the environment
variable ``JAXFLOW_ENABLE_X64=0`` set before the import), and asks for one XLA CPU device per
core (see ``jaxflow._devices``; ``JAXFLOW_CPU_DEVICES=1`` opts out).

Public modules: ``theory`` (analytic oracles), ``models`` (model families), ``flow`` (gradient
flow through diffrax), ``descent`` (gradient descent through optax), ``incremental``
(incremental-learning metrics), ``baselines`` (OMP, max-margin SVM), ``sweep`` (grids, devices,
stores), ``status`` (trajectory status codes), ``trajectory`` (the one trajectory contract of both
back-ends), ``saddles`` (plateaus and jumps of a trajectory),
``jump_process`` (the saddle-to-saddle limit of diagonal networks, NumPy); ``jaxflow.experiments``
(the registry of experiments) and ``jaxflow.plot`` are imported on demand (they pull in plotting
and storage).
"""

import importlib.metadata
import sys as _sys

from jaxflow._devices import use_cpu_cores as _use_cpu_cores
from jaxflow._x64 import enable_x64_by_default as _enable_x64_by_default

_enable_x64_by_default()
_use_cpu_cores()

from jaxflow import baselines as baselines  # noqa: E402
from jaxflow import engine as engine  # noqa: E402
from jaxflow import models as models  # noqa: E402
from jaxflow import oracles as oracles  # noqa: E402
from jaxflow import sweep as sweep  # noqa: E402
from jaxflow.engine import descent as descent  # noqa: E402
from jaxflow.engine import flow as flow  # noqa: E402
from jaxflow.engine import status as status  # noqa: E402
from jaxflow.engine import trajectory as trajectory  # noqa: E402
from jaxflow.oracles import incremental as incremental  # noqa: E402
from jaxflow.oracles import jump_process as jump_process  # noqa: E402
from jaxflow.oracles import saddles as saddles  # noqa: E402
from jaxflow.oracles import theory as theory  # noqa: E402

# The public modules keep their short paths (``jaxflow.oracles.theory``, ``from jaxflow.engine.flow import
# solve``) wherever they live in the layers below, so user code and notebooks need no change.
for _module in (descent, flow, status, trajectory, incremental, jump_process, saddles, theory):
    _sys.modules["jaxflow." + _module.__name__.rsplit(".", 1)[1]] = _module
del _module

__all__ = [
    "baselines", "descent", "flow", "incremental", "jump_process", "models", "saddles", "status",
    "sweep", "theory",
]


try:
    __version__ = importlib.metadata.version("jaxflow")
except importlib.metadata.PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"
