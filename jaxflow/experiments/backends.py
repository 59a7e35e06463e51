"""Run one experiment on both back-ends and assemble the project's experiment layout.

Every paper experiment (matrix sensing, quadratic networks, diagonal and convolutional nets)
produces the same dataset, so notebooks read them alike:

    dims:  backend ("flow", "descent"), depth, time, mode, fraction  (+ experiment variants)
    modes(backend, depth, time, mode)          on one shared time grid (flow time t = lr * step)
    targets(mode)
    learning_time(backend, depth, mode, fraction)
    status(backend, depth)                     jaxflow.engine.status codes
    gradient_evaluations(backend, depth)       cost: the trajectory's ``evaluations`` (flow:
                                               vector-field evaluations; descent: gradients)
    <measure>(backend, depth)                  the experiment's own measures

The time grid is the descent's save grid ``lr * save_every * i``; gradient flow (diffrax,
relative-speed time) saves its modes at exactly those times, so ``modes`` of both back-ends
overlay point by point.

Example:
    ```python
    import jax.numpy as jnp
    from jaxflow.experiments import backends
    from jaxflow.models import toy
    spec = backends.Spec(
        loss=toy.factor_loss, modes=toy.factor_values, targets=jnp.array([2.0, 1.0]),
        init=lambda depth: toy.factor_init(None, 1e-3, depth=depth, num_coords=2), args=jnp.array([2.0, 1.0]))
    ds = backends.run(spec, depths=(2, 3), learning_rate=1e-2, num_steps=2000, save_every=100)
    ds["modes"].dims  # -> ('backend', 'depth', 'time', 'mode')
    ```
"""

import dataclasses
import time as _time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import numpy as np
import xarray as xr

import jaxflow
from jaxflow import _x64
from jaxflow.engine import status
from jaxflow.provenance import run_metadata
from jaxflow.sweep import progress as _progress

__all__ = ["BACKENDS", "Spec", "TopModes", "run"]


class TopModes(eqx.Module):
    """``fn(params, args, k=k)``: a model's first ``k`` modes as a ``modes(params, args)``.

    A module, not a ``functools.partial`` or a lambda: equal ``(fn, k)`` compare and hash
    equal, so both back-ends (compiled with ``equinox.filter_jit``, callables static) reuse
    their program across calls, where a fresh closure per call would compile again.

    Example:
        >>> from jaxflow.experiments import backends
        >>> from jaxflow.models import diagonal as dn
        >>> backends.TopModes(dn.modes, 3) == backends.TopModes(dn.modes, 3)
        True
    """

    fn: Callable = eqx.field(static=True)
    k: int = eqx.field(static=True)

    def __call__(self, params, args):
        return self.fn(params, args, k=self.k)


@dataclasses.dataclass(frozen=True)
class Spec:
    """What an experiment runs.

    Attributes:
        loss: ``loss(params, args) -> scalar``.
        modes: ``modes(params, args) -> (M,)``: a module-level function or an equal-comparing
            callable such as :class:`TopModes` (a fresh lambda compiles again each depth).
        targets: ``(M,)`` targets of the modes (0 where a mode should stay unlearned).
        init: ``init(depth) -> params0``.
        args: data passed to ``loss`` and ``modes``.
        depth_args: optional ``depth_args(depth) -> args`` replacing ``args`` at each depth, for
            models whose depth is data (an array inside ``args``): every depth then reuses one
            compiled program.
        measures: ``{name: fn(params, args) -> scalar}`` evaluated on the final parameters.

    Example (the toy model's factor level; :func:`run` runs it):
        >>> import jax.numpy as jnp
        >>> from jaxflow.experiments import backends
        >>> from jaxflow.models import toy
        >>> targets = jnp.array([2.0, 1.0])
        >>> spec = backends.Spec(loss=toy.factor_loss, modes=toy.factor_values, targets=targets,
        ...                      init=lambda depth: toy.factor_init(None, 1e-3, depth, 2),
        ...                      args=targets, measures={"final_loss": toy.factor_loss})
        >>> [round(float(v), 12) for v in spec.modes(spec.init(3), spec.args)]
        [0.001, 0.001]
    """

    loss: Callable
    modes: Callable
    targets: Any
    init: Callable[[int], Any]
    args: Any = None
    depth_args: Callable[[int], Any] | None = None
    measures: Mapping[str, Callable] = dataclasses.field(default_factory=dict)


def _methods(learning_rate: float, rtol: float, atol: float) -> dict:
    """The two methods every experiment compares, as values of the one contract."""
    return {
        # The dense interpolant alone locates learning times to about rtol; the exact-step
        # polish would add a solver step per (mode, fraction) to the compiled loop of these
        # large states for no visible gain.
        "flow": jaxflow.Flow(rtol=rtol, atol=atol, refine=False),
        "descent": jaxflow.Descent(learning_rate=learning_rate),
    }


BACKENDS = ("flow", "descent")


@_x64.needs_x64
def run(
    spec: Spec,
    *,
    depths: Sequence[int],
    learning_rate: float,
    num_steps: int,
    save_every: int,
    fractions: Sequence[float] = (0.1, 0.5, 0.9),
    rtol: float = 1e-6,
    atol: float = 1e-9,
    max_steps: int = 200_000,
    require_targets: bool = False,
    backends: Sequence[str] = BACKENDS,
    quiet: bool = False,
) -> xr.Dataset:
    """Gradient flow and gradient descent for every depth, in the shared experiment layout.

    Args:
        spec: the experiment (:class:`Spec`).
        depths: integer depths (each compiles its own program: weight shapes depend on depth).
        learning_rate: the descent's rate; the flow is compared on ``t = lr * step``.
        num_steps, save_every: descent length and save interval (the time grid).
        fractions: fractions of each target at which learning times are recorded.
        rtol, atol, max_steps: gradient-flow solver settings.
        require_targets: every learning time of a nonzero target must be found by the horizon:
            a run that reaches it first is ``unfinished`` (default: only the horizon is asked,
            and a learning time not reached is ``inf`` in an ``ok`` run).
        backends: which back-ends to run (default both).
        quiet: no progress bar (it is also off when stderr is not a terminal).

    Returns:
        ``xarray.Dataset`` in the layout of the module docstring, plus ``wall_time(backend,
        depth)`` in seconds (compilation included).

    Example: see the module docstring.
    """
    for b in backends:
        if b not in BACKENDS:
            raise ValueError(f"backends must be among {BACKENDS}, got {b!r}")
    targets = np.asarray(spec.targets, dtype=float)
    num_saves = num_steps // save_every + 1
    times = learning_rate * save_every * np.arange(num_saves)
    methods = _methods(learning_rate, rtol, atol)
    # One request for both: save on the descent's grid, run to its end (the learning times
    # passed on the way are recorded; inf: not reached by the horizon). The budget covers
    # either method (descent: num_steps steps; flow: solver steps). Required learning times
    # (the engine keeps only those of nonzero targets) make a run that misses one unfinished.
    request = jaxflow.Request(
        save_times=times, fractions=tuple(fractions), max_steps=max(max_steps, num_steps),
        required=np.full((targets.size, len(fractions)), bool(require_targets)),
    )
    shape = (len(backends), len(depths))
    out = {
        "modes": np.full(shape + (num_saves, targets.size), np.nan),
        "learning_time": np.full(shape + (targets.size, len(fractions)), np.inf),
        "status": np.zeros(shape, dtype=np.int8),
        "gradient_evaluations": np.zeros(shape, dtype=np.int64),
        "wall_time": np.zeros(shape),
    }
    measures = {name: np.full(shape, np.nan) for name in spec.measures}
    runs = _progress.bar(len(depths) * len(backends), desc="depth x back-end", quiet=quiet)
    for j, depth in enumerate(depths):
        params0 = spec.init(int(depth))
        args = spec.args if spec.depth_args is None else spec.depth_args(int(depth))
        for i, backend in _progress.counted(enumerate(backends), runs):
            runs.set_postfix_str(f"depth {depth} {backend}")
            start = _time.perf_counter()
            problem = jaxflow.Problem(loss=spec.loss, params0=params0, args=args,
                                      modes=spec.modes, targets=targets)
            traj = jaxflow.solve(problem, methods[backend], request)
            jax.block_until_ready(traj.final_state)
            out["wall_time"][i, j] = _time.perf_counter() - start
            out["modes"][i, j] = np.asarray(traj.modes)
            out["learning_time"][i, j] = np.asarray(traj.learning_times)
            out["status"][i, j] = int(traj.status)
            out["gradient_evaluations"][i, j] = int(traj.evaluations)
            for name, fn in spec.measures.items():
                measures[name][i, j] = float(fn(traj.final_state, args))
    runs.close()
    coords = {
        "backend": list(backends),
        "depth": [int(d) for d in depths],
        "time": times,
        "mode": np.arange(targets.size),
        "fraction": list(fractions),
    }
    data = {
        "modes": (("backend", "depth", "time", "mode"), out["modes"]),
        "targets": (("mode",), targets),
        "learning_time": (("backend", "depth", "mode", "fraction"), out["learning_time"]),
        "status": (("backend", "depth"), out["status"]),
        "gradient_evaluations": (("backend", "depth"), out["gradient_evaluations"]),
        "wall_time": (("backend", "depth"), out["wall_time"]),
    }
    data.update({name: (("backend", "depth"), values) for name, values in measures.items()})
    ds = xr.Dataset(data, coords=coords)
    ds["time"].attrs.update(long_name="flow time t = learning_rate * step")
    ds.attrs.update(run_metadata())
    ds.attrs.update(learning_rate=learning_rate, num_steps=num_steps, save_every=save_every,
                    flow_rtol=rtol, flow_atol=atol, solver="Tsit5", flow_clock="relative")
    ds.attrs["ok"] = int((out["status"] == status.OK).all())
    return ds
