"""What every experiment's dataset carries, written once: CF labels and provenance.

Every variable and coordinate has a ``long_name`` and ``units`` (``"1"`` for dimensionless
numbers, counts and indices; a time says which clock it is on); a ``status`` variable has
``flag_values``/``flag_meanings`` (:func:`jaxflow.engine.status.flag_attributes`) instead of units, and
a text coordinate (``backend``) has none: CF gives neither a unit. The dataset gets the
provenance of :func:`jaxflow.provenance.run_metadata` with the config (versions, git commit, command
line, resolved config, smoke or not).

:data:`COMMON` labels the names the experiments share (the layout of
:mod:`jaxflow.experiments.backends`); an experiment passes the labels of its own variables,
and may relabel a common name whose meaning it changes.

Example:
    >>> import numpy as np, xarray as xr
    >>> from jaxflow.experiments import _layout
    >>> from jaxflow.experiments.quadratic import QuadraticConfig
    >>> ds = xr.Dataset({"status": ("depth", np.zeros(2, np.int8)), "error": ("depth", [0.1, 0.2])},
    ...                 coords={"depth": [1, 2]})
    >>> ds = _layout.label(ds, QuadraticConfig.smoke(), {"error": ("final error", "1")})
    >>> ds["error"].attrs, ds["depth"].attrs["units"], ds.attrs["smoke"]
    ({'long_name': 'final error', 'units': '1'}, '1', 1)
    >>> ds["status"].attrs["flag_meanings"].split()[0]
    'ok'
"""

import numpy as np
import xarray as xr

from jaxflow.engine import status
from jaxflow.provenance import run_metadata

__all__ = ["COMMON", "FLOW_TIME", "integer_coords", "label"]

FLOW_TIME = "flow time of dtheta/dt = -grad L (descent: learning_rate x steps)"
"""Units of a time on the gradient flow's own clock, the model's loss as written."""

COMMON = {
    "status": ("trajectory status (jaxflow.engine.status code)", None),
    "backend": ("back-end: gradient flow (diffrax) or gradient descent (optax)", None),
    "depth": ("depth N (number of factors)", "1"),
    "seed": ("random seed", "1"),
    "scale": ("initialization scale sigma0", "1"),
    "mode": ("mode index (largest target first)", "1"),
    "fraction": ("fraction of a mode's target", "1"),
    "time": ("flow time t (descent: learning_rate x step)", FLOW_TIME),
    "modes": ("tracked modes (the values learned incrementally)", "1"),
    "targets": ("target of each mode", "1"),
    "learning_time": ("first time a mode reaches fraction x its target (inf: not by the end)",
                      FLOW_TIME),
    "gradient_evaluations": ("gradient evaluations (flow: vector field; descent: steps)", "1"),
    "wall_time": ("wall-clock time of the run", "s"),
    "steps": ("solver steps", "1"),
    "train_loss": ("training loss (mean squared error) at the end of the run", "1"),
    "reconstruction_error": ("relative squared error ||M - M*||_F^2 / ||M*||_F^2 of the "
                             "learned matrix M at the end of the run", "1"),
    "effective_rank": ("number of singular values of M above 1% of the largest", "1"),
}
"""``{name: (long_name, units)}`` of the names the experiments share (units None: a flag or
text variable)."""


def label(ds: xr.Dataset, config, labels=None) -> xr.Dataset:
    """Label ``ds`` in place (and return it): ``labels`` (``{name: (long_name, units)}``) over
    :data:`COMMON` on every variable and coordinate they name, flags on every ``status`` and
    ``*_status`` variable, and the provenance of ``config`` (example: the module docstring)."""
    table = {**COMMON, **(labels or {})}
    for name in ds.variables:
        attrs = ds[name].attrs
        if name in table:
            long_name, units = table[name]
            attrs["long_name"] = long_name
            if units is not None:
                attrs["units"] = units
        if name == "status" or str(name).endswith("_status"):
            attrs.update(status.flag_attributes())
    ds.attrs.update(run_metadata(config))
    return ds


def integer_coords(ds: xr.Dataset, *names: str) -> xr.Dataset:
    """``ds`` with the coordinates ``names`` as int64: a sweep's axes are float64 (its points
    are traced as floats), but a depth of factors or a seed is an integer.

    >>> import xarray as xr
    >>> from jaxflow.experiments import _layout
    >>> ds = xr.Dataset(coords={"seed": [0.0, 1.0]})
    >>> _layout.integer_coords(ds, "seed")["seed"].values.tolist()
    [0, 1]
    """
    return ds.assign_coords({name: ds[name].values.astype(np.int64) for name in names})
