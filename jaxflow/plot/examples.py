"""Small datasets in the layout of each figure function, for examples, tests and a first look
at a figure without running an experiment.

Most are made up (smooth curves of the right shape); the phase diagram's is filled from the
exact theory. None is a simulation result.
"""

import numpy as np
import xarray as xr

__all__ = ["LAYOUTS", "example_dataset"]

LAYOUTS = ("phase_diagram", "staircase", "quadratic", "classification", "omp_picks",
           "generalization", "factor_diagram", "saddles")


def _phase_diagram() -> xr.Dataset:
    from jaxflow.plot.phase import _theory_log_thresholds

    depths, ratios = np.array([2.0, 3.0]), np.array([1.5, 3.0])
    log_scales = -np.geomspace(1.0, 60.0, 12)[::-1]
    log_th = _theory_log_thresholds(depths, ratios - 1, 0.1, 0.9)
    return xr.Dataset(
        {"incremental": (("depth", "ratio", "log_scale"), log_scales <= log_th[..., None]),
         "log_threshold_measured": (("depth", "ratio"), log_th)},
        coords={"depth": depths, "ratio": ratios, "log_scale": log_scales},
        attrs={"start": 0.1, "finish": 0.9})


def _staircase() -> xr.Dataset:
    """The exact depth-2 flow of two targets (a logistic), flow only."""
    t, targets = np.linspace(0.0, 12.0, 60), np.array([2.0, 1.0])
    values = targets / (1 + (targets / 1e-3 - 1) * np.exp(-targets * t[:, None]))
    return xr.Dataset({"modes": (("backend", "depth", "time", "mode"), values[None, None]),
                       "targets": ("mode", targets)},
                      coords={"backend": ["flow"], "depth": [2], "time": t, "mode": [0, 1]})


def _quadratic() -> xr.Dataset:
    t, targets = np.linspace(0.0, 8.0, 41), np.array([1.0, 0.5])
    curves = targets / (1 + (targets / 1e-4 - 1) * np.exp(-16 * targets * t[:, None]))
    modes = np.broadcast_to(curves, (2, 2, 1) + curves.shape)  # bias, backend, depth
    return xr.Dataset({"modes": (("bias", "backend", "depth", "time", "mode"), modes),
                       "targets": ("mode", targets)},
                      coords={"bias": [False, True], "backend": ["flow", "descent"],
                              "depth": [2], "time": t, "mode": [0, 1]},
                      attrs={"learning_rate": 1e-3, "d": 20, "m": 100, "scale": 1e-4})


def _classification() -> xr.Dataset:
    t = np.geomspace(0.1, 100.0, 20)
    modes = np.stack([np.tanh(t), 0.5 * np.tanh(t / 10)], axis=-1)
    modes = np.broadcast_to(modes, (2, 2) + modes.shape)  # backend, depth
    return xr.Dataset({"modes": (("backend", "depth", "time", "mode"), modes),
                       "targets": ("mode", [1.0, 0.5]),
                       "correlation": (("backend", "depth"), [[0.8, 0.99], [0.8, 0.98]]),
                       "svm_correlation": 0.78},
                      coords={"backend": ["flow", "descent"], "depth": [1, 2], "time": t,
                              "mode": [0, 1]})


def _omp_picks() -> xr.Dataset:
    t, targets = np.linspace(0.0, 10.0, 30), np.array([2.0, 1.0, 0.5])
    curves = targets / (1 + (targets / 1e-3 - 1) * np.exp(-2 * targets * t[:, None]))
    seeds = np.arange(3)
    modes = np.broadcast_to(curves, (2, seeds.size) + curves.shape)
    order = np.broadcast_to([0, 1, 2], (2, seeds.size, 3)).copy()
    order[1, 2] = -1  # descent makes no pick on seed 2
    return xr.Dataset(
        {"modes": (("backend", "seed", "time", "mode"), modes),
         "targets": (("seed", "mode"), np.broadcast_to(targets, (seeds.size, 3))),
         "order": (("backend", "seed", "rank"), order),
         "omp_order": (("seed", "rank"), np.broadcast_to([0, 1, 2], (seeds.size, 3))),
         "concurrence": (("backend", "seed"), [[1.0, 1.0, 0.5], [1.0, 1.0, np.nan]]),
         "num_picks": (("backend", "seed"), (order >= 0).sum(-1)),
         "horizon": (("backend",), [10.0, 8.0])},
        coords={"backend": ["flow", "descent"], "seed": seeds, "time": t},
        attrs={"threshold": 0.25, "depth": 5, "d": 50, "m": 25, "sparsity": 3})


def _seeds(names) -> xr.Dataset:
    depths, scales, seeds = np.array([1.0, 3.0]), np.geomspace(1e-4, 1.0, 5), np.arange(2.0)
    base = np.array([np.full(5, 0.5), np.tanh(scales * 3)])  # depth, scale
    values = base[..., None] + 0.05 * seeds  # depth, scale, seed
    dims = ("depth", "scale", "seed")
    return xr.Dataset({name: (dims, transform(values)) for name, transform in names.items()},
                      coords={"depth": depths, "scale": scales, "seed": seeds})


def _generalization() -> xr.Dataset:
    ds = _seeds({"reconstruction_error": lambda v: v ** 4,
                 "effective_rank": lambda v: 4 + 6 * v})
    return ds.assign_attrs(d=20, m=200, target_rank=4)


def _factor_diagram() -> xr.Dataset:
    ds = _seeds({"incremental_fraction": lambda v: 1 - v, "rank_correlation": lambda v: 1 - 2 * v})
    return ds.assign_attrs(num_modes=4, ratio=2.0)


def _saddles() -> xr.Dataset:
    depths, alphas = np.array([2, 3]), np.array([1e-6, 1e-3])
    time = np.linspace(0.0, 3.0, 61)
    jumps = np.array([1.0, 2.0])
    betas = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 0.5]])  # plateau, mode
    losses = np.array([1.0, 0.3, 0.0])
    step = np.searchsorted(jumps, time, side="right")
    sharpness = 1 / np.log(1 / alphas)  # smaller alpha: closer to the staircase
    smooth = [np.clip(0.5 + (time[:, None] - jumps) / (4 * s), 0, 1) for s in sharpness]
    modes = np.stack([sm @ np.diff(betas, axis=0) for sm in smooth])  # scale, time, mode
    modes = np.broadcast_to(modes, (1, depths.size) + modes.shape)
    loss = np.stack([np.maximum(losses[step], 1e-7) * (1 + s) for s in sharpness])
    loss = np.broadcast_to(loss, (1, depths.size) + loss.shape)
    unit = np.array([np.log(1 / alphas) / 4, alphas ** -(1 / 3) / 3])
    jump_flow = unit[..., None] * jumps * (1 + 0.05 * sharpness[None, :, None])
    return xr.Dataset(
        {"modes": (("backend", "depth", "scale", "time", "mode"), modes),
         "loss": (("backend", "depth", "scale", "time"), loss),
         "ran": (("backend", "depth", "scale"), np.ones((1, 2, 2), bool)),
         "jump_flow_time": (("backend", "depth", "scale", "jump"), jump_flow[None]),
         "time_unit": (("depth", "scale"), unit),
         "oracle_jump_time": (("jump",), jumps),
         "oracle_plateau_loss": (("plateau",), losses),
         "oracle_beta": (("plateau", "mode"), betas)},
        coords={"backend": ["flow"], "depth": depths, "scale": alphas, "time": time})


def example_dataset(layout: str) -> xr.Dataset:
    """A small dataset in the layout of a figure function (one of :data:`LAYOUTS`; "saddles"
    serves both saddle-to-saddle figures).

    Example:
        >>> from jaxflow import plot
        >>> ds = plot.example_dataset("phase_diagram")
        >>> sorted(ds.sizes.items())
        [('depth', 2), ('log_scale', 12), ('ratio', 2)]
    """
    makers = {"phase_diagram": _phase_diagram, "staircase": _staircase, "quadratic": _quadratic,
              "classification": _classification, "omp_picks": _omp_picks,
              "generalization": _generalization, "factor_diagram": _factor_diagram,
              "saddles": _saddles}
    if layout not in makers:
        raise ValueError(f"example_dataset: unknown layout {layout!r}; one of {LAYOUTS}")
    return makers[layout]()
