"""jaxflow: gradient flow and gradient descent of depth-N models, at scale, in JAX.

One contract for every method, in the style of ``diffrax.diffeqsolve``::

    trajectory = jaxflow.solve(jaxflow.Problem(loss=..., params0=..., modes=..., targets=...),
                               jaxflow.Flow() or jaxflow.Descent(learning_rate=...),
                               jaxflow.Request(save_times=..., fractions=..., horizon=...))

Importing jaxflow (or any of its modules) changes no global setting: JAX's x64 mode and CPU device
count and matplotlib's backend stay as the user had them. jaxflow computes in float64, so turn
x64 on once at the start of a program, ``jax.config.update("jax_enable_x64", True)``; a float64
entry point called while it is off raises one error saying so (see ``jaxflow._x64``). The
``jaxflow`` command sets what it needs for its own process (``jaxflow.cli.main``).

Public modules: ``theory`` (analytic oracles), ``models`` (model families), ``flow`` (gradient
flow through diffrax), ``descent`` (gradient descent through optax), ``incremental``
(incremental-learning metrics), ``baselines`` (OMP, max-margin SVM), ``sweep`` (grids, devices,
stores), ``status`` (trajectory status codes), ``trajectory`` (the one trajectory contract of both
back-ends), ``saddles`` (plateaus and jumps of a trajectory),
``jump_process`` (the saddle-to-saddle limit of diagonal networks, NumPy); ``jaxflow.experiments``
(the registry of experiments) and ``jaxflow.plot`` are imported on demand (they pull in plotting
and storage).
"""

import gc as _gc
import importlib.metadata
import sys as _sys

# The garbage collector is paused while the package imports (and put back as it was): the
# import allocates about 180,000 tracked long-lived objects (jax, diffrax, xarray) and little to
# collect, and the collector's passes over them during the import cost 0.2 s of its 1.1 s
# (measured: python -X importtime, and gc.callbacks timing each pass). The ``jaxflow`` command
# then freezes them out of its collector's reach (jaxflow.cli.command).
_collecting = _gc.isenabled()
_gc.disable()
try:
    from jaxflow import baselines as baselines
    from jaxflow import engine as engine
    from jaxflow import models as models
    from jaxflow import oracles as oracles
    from jaxflow import sweep as sweep
    from jaxflow.engine import descent as descent
    from jaxflow.engine import flow as flow
    from jaxflow.engine import status as status
    from jaxflow.engine import trajectory as trajectory
    from jaxflow.engine.contract import solve as solve
    from jaxflow.engine.ensemble_method import Ensemble as Ensemble
    from jaxflow.engine.methods import Descent as Descent
    from jaxflow.engine.methods import Flow as Flow
    from jaxflow.engine.problem import Problem as Problem
    from jaxflow.engine.request import Request as Request
    from jaxflow.engine.trajectory import Trajectory as Trajectory
    from jaxflow.oracles import incremental as incremental
    from jaxflow.oracles import jump_process as jump_process
    from jaxflow.oracles import saddles as saddles
    from jaxflow.oracles import theory as theory
finally:
    if _collecting:
        _gc.enable()
    del _collecting

# The public modules keep their short paths (``jaxflow.theory``, ``from jaxflow.flow import
# solve``) wherever they live in the layers below, so user code and notebooks need no change.
for _module in (descent, flow, status, trajectory, incremental, jump_process, saddles, theory):
    _sys.modules["jaxflow." + _module.__name__.rsplit(".", 1)[1]] = _module
del _module

__all__ = [
    "Descent", "Ensemble", "Flow", "Problem", "Request", "Trajectory", "solve",
    "baselines", "descent", "flow", "incremental", "jump_process", "models", "saddles", "status",
    "sweep", "theory",
]


try:
    __version__ = importlib.metadata.version("jaxflow")
except importlib.metadata.PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"
