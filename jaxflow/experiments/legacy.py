"""Datasets written before the configs took one name per concept, read with today's names.

Up to jaxflow 0.1 the experiments named one concept several ways: a target was ``values``,
``target_values`` or ``amplitudes``, an initialization scale ``alpha``/``alphas``, a step count
``descent_steps``, a horizon ``flow_time``. Their datasets carry those names as attributes (the
config's fields), in the stored ``config`` TOML, and once as a dimension (saddle-to-saddle's
``alpha``, now ``scale``). :func:`upgrade` renames them on read, so ``jaxflow plot`` redraws an
old dataset exactly as a new one; nothing is written back.

Example:
    >>> import xarray as xr
    >>> from jaxflow import experiments
    >>> from jaxflow.experiments import legacy
    >>> old = xr.Dataset(coords={"alpha": [1e-3, 1e-6]},
    ...                  attrs={"values": [4.0, -3.0], "config": "alphas = [0.001, 1e-06]\\n"})
    >>> new = legacy.upgrade(old, experiments.get("saddle-to-saddle"))
    >>> list(new.dims), new.attrs["targets"], new.attrs["config"]
    (['scale'], [4.0, -3.0], 'scales = [0.001, 1e-06]\\n')
"""

import tomllib

import xarray as xr

from jaxflow import _toml

__all__ = ["VARIABLES", "upgrade"]

VARIABLES = {"saddle-to-saddle": {"alpha": "scale"}}
"""``{experiment: {old variable or dimension: new}}``; the attributes and config keys renamed
are each config class's ``RENAMED``."""


def upgrade(ds: xr.Dataset, experiment) -> xr.Dataset:
    """``ds`` with the names of before the rename replaced by today's (a new dataset when a
    variable or dimension is renamed; the attributes are renamed in place).

    Args:
        ds: a dataset of ``experiment``, of any jaxflow version.
        experiment: its :class:`jaxflow.experiments.Experiment` (registry line).
    """
    variables = {old: new for old, new in VARIABLES.get(experiment.name, {}).items()
                 if (old in ds.variables or old in ds.dims) and new not in ds.variables}
    if variables:
        ds = ds.rename(variables)
    renamed = experiment.config.RENAMED
    for old, new in renamed.items():
        if old in ds.attrs and new not in ds.attrs:
            ds.attrs[new] = ds.attrs.pop(old)
    config = ds.attrs.get("config")
    if isinstance(config, str) and any(old in config for old in renamed):
        try:
            table = tomllib.loads(config)
        except tomllib.TOMLDecodeError:
            return ds  # an unreadable config stays as written; the figures do not read it
        if set(table) & set(renamed):
            ds.attrs["config"] = _toml.dumps({renamed.get(k, k): v for k, v in table.items()})
    return ds
