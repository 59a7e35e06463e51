"""What the two classification experiments share (E3 diagonal, E4 convolutional networks).

Both train a linear predictor ``beta`` of a deep network on separable data with the exponential
(or logistic) loss, in the layout of :mod:`jaxflow.experiments.backends`, and compare it with
the max-margin SVM (:mod:`jaxflow.baselines.max_margin`). This private module holds their common
pieces, so that neither experiment imports the other:

* :func:`check_config`: the options both configs have (sizes, depths, scale, rate, loss);
* :func:`late_cells`: the late-time (asymptotic) check of the flow, one cell per depth;
* :func:`add_summary`: the SVM baseline and the late-time check, added to the dataset;
* :func:`report_table`: the table both ``jaxflow experiment`` commands print.

Example:
    >>> import types
    >>> from jaxflow.experiments import _classification
    >>> options = dict(d=10, m=20, num_steps=100, save_every=10, num_modes=3, depths=(1, 2),
    ...                scale=1e-2, learning_rate=1e-2, loss="hinge")
    >>> _classification.check_config(types.SimpleNamespace(**options))
    Traceback (most recent call last):
    ...
    jaxflow.experiments.config.ConfigError: loss must be 'exponential' or 'logistic', got 'hinge'
"""

import dataclasses
import functools

import jax.numpy as jnp
import numpy as np
import xarray as xr

import jaxflow
from jaxflow._table import table
from jaxflow.baselines import max_margin
from jaxflow.engine import status
from jaxflow.experiments.config import (
    ConfigError,
    check_depths,
    check_positive,
    check_positive_int,
    check_seed,
    check_steps,
)
from jaxflow.models import diagonal as dn
from jaxflow.sweep import cells as _cells

__all__ = [
    "LABELS", "LOSSES", "add_summary", "check_config", "kkt_measure", "late_cells", "late_check",
    "report_table",
]

LOSSES = ("exponential", "logistic")

LABELS = {
    "targets": ("|w*| of each mode", "1"),
    "correlation": ("cosine between beta and w* at the end of the run", "1"),
    "kkt_residual": ("KKT residual of beta's direction for the max-margin problem "
                     "(NaN: a sample still misclassified)", "1"),
    "log_loss": ("ln of the training loss at the end of the run", "1"),
    "loss_underflow": ("1 where the loss fell below 1e-300 (its gradient underflowed), else 0",
                       "1"),
    "late": ("index of the late time", "1"),
    "late_time": ("time of the late-time check (flow)", "flow time of dtheta/dt = -grad L"),
    "late_correlation": ("cosine between beta and w* at the late time (flow)", "1"),
    "late_kkt_residual": ("KKT residual of beta's direction at the late time (flow)", "1"),
    "svm_correlation": ("cosine between the max-margin SVM direction and w*", "1"),
    "svm_margin": ("margin of the max-margin SVM (no intercept)", "1"),
    "svm_kkt_residual": ("KKT residual of the max-margin SVM solution", "1"),
}
"""Labels of the variables both classification datasets have (for
:func:`jaxflow.experiments._layout.label`)."""


def check_config(config) -> None:
    """Checks shared by the classification configs (E3, E4); each raises a ConfigError naming
    the option (example: the module docstring)."""
    for name in ("d", "m", "num_modes"):
        check_positive_int(name, getattr(config, name))
    check_steps(config)
    check_depths(config.depths)
    check_positive(config, "scale", "learning_rate")
    if config.loss not in LOSSES:
        raise ConfigError(f"loss must be 'exponential' or 'logistic', got {config.loss!r}")
    check_seed(getattr(config, "seed", 0))


def kkt_measure(beta_fn):
    """``measure(params, args)`` giving the KKT residual of ``beta_fn(params, args)``'s
    direction at ``args.depth``, or NaN where some sample is misclassified (not yet separated)."""

    def measure(params, args):
        b = beta_fn(params, args)
        data = args.data
        if not float(jnp.min(dn.margins(b, data))) > 0.0:
            return jnp.asarray(jnp.nan)
        return max_margin.kkt_residual(b, data.inputs, data.labels, float(args.depth))

    return measure


def late_check(loss, params0, args, beta_fn, late_times, modes, targets, kkt=True):
    """The asymptotic check: flow to each late time, then the correlation and (``kkt``) the KKT
    residual of ``beta``'s direction (relative time: the step count grows like ln ln t)."""
    correlation, residual = [], []
    problem = jaxflow.Problem(loss=loss, params0=params0, args=args, modes=modes, targets=targets)
    method = jaxflow.Flow(rtol=1e-8, atol=1e-12, refine=False)
    for t in late_times:
        # only the state at t matters here: no learning time asked
        request = jaxflow.Request(horizon=jnp.asarray(float(t)), fractions=(), max_steps=100_000)
        traj = jaxflow.solve(problem, method, request)
        b = beta_fn(traj.final_state, args)
        correlation.append(float(dn.cosine(b, args.data.target)))
        residual.append(float(kkt_measure(beta_fn)(traj.final_state, args)) if kkt else np.nan)
    return correlation, residual


def late_cells(spec, depths, beta_fn, late_times, *, kkt=True) -> list[_cells.Cell]:
    """The asymptotic check as cells, one per depth (none without ``late_times``): each flows
    to every late time (:func:`late_check`) and gives ``late_correlation`` and
    ``late_kkt_residual``, one value per late time."""
    late = np.asarray(late_times, dtype=float)
    if not late.size:
        return []
    shapes = {name: ((late.size,), np.dtype(np.float64))
              for name in ("late_correlation", "late_kkt_residual")}

    def compute(depth):
        args = spec.args if spec.depth_args is None else spec.depth_args(depth)
        corr, resid = late_check(spec.loss, spec.init(depth), args, beta_fn, late, spec.modes,
                                 spec.targets, kkt)
        return {"late_correlation": corr, "late_kkt_residual": resid}

    return [_cells.Cell(f"late depth={int(d)}", shapes, functools.partial(compute, int(d)))
            for d in depths]


def add_summary(ds, config, data, late_results=(), *, late_times=()) -> xr.Dataset:
    """Add the SVM baseline, the late-time check at ``late_times`` (the outputs of
    :func:`late_cells`, depth by depth) and the config as attributes to a classification
    dataset."""
    svm = max_margin.max_margin(data.inputs, data.labels)
    late = np.asarray(late_times, dtype=float)
    corr = np.full((len(config.depths), late.size), np.nan)
    resid = np.full_like(corr, np.nan)
    for j, result in enumerate(late_results):
        corr[j], resid[j] = result["late_correlation"], result["late_kkt_residual"]
    ds = ds.assign_coords(late=np.arange(late.size))
    ds["late_time"] = ("late", late)
    ds["late_correlation"] = (("depth", "late"), corr)
    ds["late_kkt_residual"] = (("depth", "late"), resid)
    ds["svm_correlation"] = float(dn.cosine(svm.direction, data.target))
    ds["svm_margin"] = float(svm.margin)
    ds["svm_kkt_residual"] = float(svm.kkt_residual)
    ds.attrs.update(
        {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()}
    )
    ds.attrs["config"] = config.to_toml()
    return ds


def report_table(ds: xr.Dataset) -> str:
    """The correlation by depth and back-end next to the SVM, the KKT residuals, the learning
    times at fraction 0.5 and the status (what ``jaxflow experiment`` prints)."""
    lines = [
        f"max-margin SVM (no intercept): correlation {float(ds['svm_correlation']):.4f}, "
        f"margin {float(ds['svm_margin']):.4g}, KKT residual {float(ds['svm_kkt_residual']):.1e}"
    ]
    second = "kkt_residual" if "kkt_residual" in ds else "amplitude_correlation"
    half = ds["learning_time"].sel(fraction=0.5)
    runs, times = [], []
    for b in ds["backend"].values:
        for d in ds["depth"].values:
            row = ds.sel(backend=b, depth=d)
            runs.append([
                b, int(d), f"{row['correlation'].item():.4f}",
                f"{row[second].item():{'.4f' if second == 'amplitude_correlation' else '.3g'}}",
                {1.0: "yes", 0.0: "no"}.get(row["loss_underflow"].item(), "nan"),
                int(row["gradient_evaluations"].item()), f"{row['wall_time'].item():.2f}",
                status.name(int(row["status"].item())),
            ])
            times.append([b, int(d), *(f"{v:.3g}" for v in half.sel(backend=b, depth=d).values)])
    lines.append(table(
        ["backend", "depth", "correlation", second, "underflow", "grad_evals", "wall_s",
         "status"], runs, legend=[
            "correlation = cosine between the predictor and w*",
            "underflow = the loss reached float64's underflow (its gradient vanished)",
            "grad_evals = vector-field evaluations (flow) or steps (descent)",
            *(["kkt_residual nan = some sample not yet separated"] if second == "kkt_residual"
              else [])]))
    lines.append("")
    lines.append(table(
        ["backend", "depth", *(f"t_half[{i}]" for i in range(half.sizes["mode"]))], times,
        legend=["t_half[i] = flow time at which mode i reaches half its target",
                "inf = not reached by the horizon (never, for a zero target)"]))
    if ds.sizes.get("late", 0) and "kkt_residual" in ds:
        lines.append("late-time check (flow): correlation / KKT residual at each late time t")
        late = ds["late_time"].values
        lines.append(table(
            ["depth", *(f"t = {t:g}" for t in late)],
            [[int(d), *(f"{c:.4f} / {r:.3g}" for c, r in zip(
                ds["late_correlation"].sel(depth=d).values,
                ds["late_kkt_residual"].sel(depth=d).values))]
             for d in ds["depth"].values]))
    return "\n".join(lines)
