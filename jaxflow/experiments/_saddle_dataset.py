"""The dataset of the saddle-to-saddle experiment: its layout and labels.

Split from :mod:`jaxflow.experiments.saddle_to_saddle` (whose docstring lists the variables):
``run`` there gathers per-run arrays, :func:`dataset` lays them out, labelled (CF
``long_name``/``units``; ``jump_code`` names its codes with flag attributes of
:mod:`jaxflow.oracles.jump_matching`).
"""

import dataclasses

import numpy as np
import xarray as xr

from jaxflow.experiments import _layout
from jaxflow.oracles import jump_matching as jm

__all__ = ["dataset", "quadratic_loss"]


_RESCALED = "time_unit(depth, alpha) (rescaled flow time)"
_LABELS = {
    "scale": ("initialization scale alpha of each |beta_i| (w_+-(0) = alpha^(1/N))", "1"),
    "time": ("rescaled time t / time_unit(depth, alpha)", _RESCALED),
    "mode": ("coordinate index i", "1"),
    "jump": ("oracle jump index (1: first jump of the jump process)", "1"),
    "event": ("detected jump index (time order)", "1"),
    "plateau": ("plateau index (0: the start)", "1"),
    "modes": ("beta_i", "1"),
    "targets": ("beta*_i", "1"),
    "loss": ("training loss mean_k (<beta, x_k> - y_k)^2", "1"),
    "jump_time": ("rescaled time of the detected jump matched to the oracle jump (NaN: "
                  "missed, merged or not run)", _RESCALED),
    "jump_flow_time": ("flow time of the detected jump matched to the oracle jump (NaN: "
                       "missed, merged or not run)", _layout.FLOW_TIME),
    "jump_error": ("jump_time - oracle_jump_time, matched jumps only (NaN otherwise)",
                   _RESCALED),
    "jump_code": ("oracle jump matched, missed or merged (jaxflow.oracles.jump_matching code; "
                  "runs not made: see ran)", None),
    "detected_time": ("rescaled time of each detected jump (NaN: padding)", _RESCALED),
    "detected_jump": ("oracle jump each detected jump was assigned to (0: extra, -1: "
                      "padding)", "1"),
    "num_extra": ("detected jumps assigned to no oracle jump", "1"),
    "jump_width": ("width of the oracle jump at this depth and scale, I_N / (N^2 v^(2-2/N)) / "
                   "time_unit (depth 2: 4 / (v ln(1/alpha)))", _RESCALED),
    "jump_window": ("half-width of the window in which a detected jump matches the oracle "
                    "jump: width + time_step + lag inherited from earlier jumps", _RESCALED),
    "resolution": ("smallest gap to the next oracle jump that is measured apart, (width_k + "
                   "width_(k+1)) / 2 + time_step; closer jumps are merged (NaN: last jump)",
                   _RESCALED),
    "active": ("coordinate active on the detected plateau (|level| > active x max |beta|)",
               "1"),
    "plateau_loss": ("training loss on the plateau", "1"),
    "num_plateaus": ("plateaus detected", "1"),
    "ran": ("1 where the run was made (deep depths: alpha >= deep_floor; descent: rate "
            "<= max_learning_rate)", "1"),
    "steps": ("solver steps (flow) or descent steps", "1"),
    "time_unit": ("flow time per unit of the jump process's time", _layout.FLOW_TIME),
    "invariant_drift": ("max drift of the log-coordinate flow's conserved quantity", "1"),
    "oracle_jump_time": ("jump times of the limiting jump process", _RESCALED),
    "oracle_jump_speed": ("speed |ds_i/dt| of the entering coordinate before the jump", "1"),
    "oracle_active": ("coordinate active on the jump process's plateau", "1"),
    "oracle_plateau_loss": ("training loss on the jump process's plateau (NaN: padding)", "1"),
    "oracle_beta": ("beta on the jump process's plateau (NaN: padding)", "1"),
}


def quadratic_loss(beta, quad):
    """``1/2 beta^T H beta - b^T beta + c`` over the leading axes of ``beta``; ``quad = (H, b,
    c)``."""
    h, b, c = quad
    return 0.5 * np.einsum("...i,ij,...j->...", beta, h, beta) - beta @ b + c


def _events(cells) -> tuple[np.ndarray, np.ndarray]:
    """The detected jumps of every run, padded to the most found: times (NaN) and the oracle
    jump each went to (1-based; 0: extra, -1: padding or run not made)."""
    size = max([1] + [c[0].size for c in cells.ravel() if c is not None])
    times = np.full(cells.shape + (size,), np.nan)
    assigned = np.full(cells.shape + (size,), -1, dtype=np.int16)
    for index in np.ndindex(cells.shape):
        if cells[index] is not None:
            found, to = cells[index]
            times[index][: found.size] = found
            assigned[index][: found.size] = to + 1
    return times, assigned


def dataset(config, data, quad, limit, grid, out, scoring, unit, drift) -> xr.Dataset:
    """The dataset of :mod:`jaxflow.experiments.saddle_to_saddle` from what its ``run`` gathered
    (``out``: per-run arrays; ``scoring``: widths, windows, resolutions; ``unit``: time units;
    ``drift``: the conserved quantity's drift)."""
    plateaus = out["active"].shape[-2]
    num_oracle = limit.times.size
    pad = plateaus - num_oracle

    def padded(values, fill):
        return np.concatenate([values, np.full((pad,) + values.shape[1:], fill)], axis=0)

    detected, assigned = _events(out["events"])
    loss = quadratic_loss(out["modes"], quad)
    coords = {
        "backend": ["flow", "descent"],
        "depth": list(config.depths),
        "scale": list(config.scales),
        "time": grid,
        "mode": np.arange(config.d),
        "jump": np.arange(1, num_oracle),
        "event": np.arange(detected.shape[-1]),
        "plateau": np.arange(plateaus),
    }
    run_dims = ("backend", "depth", "scale")
    grid_dims = ("depth", "scale", "jump")
    jump_time = out["jump_time"]
    ds = xr.Dataset(
        {
            "modes": (run_dims + ("time", "mode"), out["modes"]),
            "loss": (run_dims + ("time",), loss),
            "jump_time": (run_dims + ("jump",), jump_time),
            "jump_flow_time": (run_dims + ("jump",), jump_time * unit[None, :, :, None]),
            "jump_error": (run_dims + ("jump",), jump_time - limit.times[1:]),
            "jump_code": (run_dims + ("jump",), out["jump_code"]),
            "detected_time": (run_dims + ("event",), detected),
            "detected_jump": (run_dims + ("event",), assigned),
            "num_extra": (run_dims, np.sum(assigned == 0, axis=-1).astype(np.int32)),
            "jump_width": (grid_dims, scoring["jump_width"]),
            "jump_window": (grid_dims, scoring["jump_window"]),
            "resolution": (grid_dims, scoring["resolution"]),
            "active": (run_dims + ("plateau", "mode"), out["active"]),
            "plateau_loss": (run_dims + ("plateau",), out["plateau_loss"]),
            "num_plateaus": (run_dims, out["num_plateaus"]),
            "status": (run_dims, out["status"]),
            "ran": (run_dims, out["ran"]),
            "steps": (run_dims, out["steps"]),
            "wall_time": (run_dims, out["wall_time"]),
            "time_unit": (("depth", "scale"), unit),
            "invariant_drift": (("depth", "scale"), drift),
            "oracle_jump_time": (("jump",), limit.times[1:]),
            "oracle_jump_speed": (("jump",), limit.speeds[1:]),
            "oracle_active": (("plateau", "mode"), padded(limit.active, False)),
            "oracle_plateau_loss": (("plateau",), padded(limit.losses, np.nan)),
            "oracle_beta": (("plateau", "mode"), padded(limit.betas, np.nan)),
            "targets": (("mode",), np.asarray(data.target)),
        },
        coords=coords,
    )
    _layout.label(ds, config, _LABELS)
    ds["jump_code"].attrs.update(jm.flag_attributes())
    ds.attrs.update(
        {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()}
    )
    ds.attrs.update(experiment="saddle-to-saddle", num_oracle_jumps=num_oracle - 1,
                    time_step=float(grid[1] - grid[0]))
    return ds
