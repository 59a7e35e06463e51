"""Experiment E3: classification with depth-N diagonal linear networks (PAPER.md section 4).

``beta = w_+^N - w_-^N`` (:mod:`jaxflow.models.diagonal`) from ``w_+- = init^(1/N)`` learns
labels ``y = sign(<w*, x>)``, ``w* = (8, 4, 2, 1, 0, ...)/sqrt(85)``, ``x ~ N(0, I_100)``,
``m = 200`` samples, on the exponential loss (or the logistic one), for depths 1-5 with both
back-ends (the layout of :mod:`jaxflow.experiments.backends`). Added to that layout:

    correlation(backend, depth)      cosine between beta and w* at the final time
    kkt_residual(backend, depth)     KKT residual of beta's direction for min ||beta||_(2/N)
    log_loss, loss_underflow (backend, depth)
    late_time(late)                  flow times of the asymptotic check (flow only)
    late_correlation, late_kkt_residual (depth, late)
    svm_correlation, svm_margin, svm_kkt_residual   the exact max-margin SVM (no intercept)

The modes are ``|beta_i|`` on the coordinates of ``w*``, largest first; their ``targets`` are
1 on the support of ``w*`` (``beta`` has no finite limit), so ``learning_time(..., fraction=f)``
is the first time ``|beta_i|`` reaches the level ``f``.

**Log time.** On separable data ``||beta||`` grows like ``ln t``. The gradient flow runs in the
relative time of :mod:`jaxflow.flow` (``dt/dtau = max|w| / max|grad|``), whose step count grows
only like ``ln ln t``: the asymptotic check reaches ``t = 1e24`` in a few thousand steps. The
losses are evaluated through ``logsumexp``; a loss below ``1e-300`` is flagged
(``loss_underflow``), and its zero gradient stops the flow (status ok), never a NaN.

What it shows (defaults, seed 0, measured): correlation at t = 1000 rises with depth,
0.80, 0.987, 0.998, 0.999, 0.999 for depths 1-5, both back-ends within 1e-3; the max-margin SVM
gives 0.780 (the depth-1 limit). The coordinates are learned largest first at depth >= 2.

Example (smoke size):
    >>> from jaxflow.experiments import diagonal as e3
    >>> ds = e3.run(e3.DiagonalConfig.smoke())
    >>> bool((ds["correlation"].sel(depth=3) > ds["correlation"].sel(depth=1)).all())
    True
"""

import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import xarray as xr

from jaxflow import flow, max_margin
from jaxflow.experiments import backends
from jaxflow.experiments.config import check_known_fields
from jaxflow.experiments.phase_diagram import ConfigError
from jaxflow.models import diagonal as dn

if not os.environ.get("DISPLAY") and matplotlib.get_backend().lower() not in ("agg", "pdf", "svg"):
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

# Okabe-Ito colours (colour-blind-safe), one per mode.
MODE_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")


@dataclasses.dataclass(frozen=True)
class DiagonalConfig:
    """Options of ``jaxflow experiment diagonal`` (defaults: the paper's E3).

    Attributes:
        d, m: dimension and number of samples.
        values: the non-zero entries of ``w*`` (normalized to unit norm).
        depths: depths ``N``.
        loss: "exponential" or "logistic".
        init: ``w_+- (0) = init^(1/N)``.
        learning_rate, num_steps, save_every: the descent (flow compared on ``t = lr * step``).
        modes: number of tracked coordinates.
        late_times: flow times of the asymptotic (KKT) check, flow only; () skips it.
        seed: seeds the data.
    """

    d: int = 100
    m: int = 200
    values: tuple[float, ...] = (8.0, 4.0, 2.0, 1.0)
    depths: tuple[int, ...] = (1, 2, 3, 4, 5)
    loss: str = "exponential"
    init: float = 1e-2
    learning_rate: float = 1e-2
    num_steps: int = 100_000
    save_every: int = 10
    modes: int = 5
    late_times: tuple[float, ...] = (1e6, 1e12, 1e24)
    seed: int = 0

    def __post_init__(self):
        check_known_fields(self)
        _check_common(self)
        if self.loss not in ("exponential", "logistic"):
            raise ConfigError(f"loss must be 'exponential' or 'logistic', got {self.loss!r}")
        if self.d < len(self.values):
            raise ConfigError(
                f"d must be >= the number of values ({len(self.values)}), got {self.d}"
            )

    @classmethod
    def smoke(cls, **overrides) -> "DiagonalConfig":
        """Reduced sizes (d = 30, m = 60, depths 1-3, t = 200, no late check): seconds."""
        options = dict(
            d=30, m=60, depths=(1, 2, 3), num_steps=20_000, save_every=100, late_times=()
        )
        options.update(overrides)
        return cls(**options)


def _check_common(config) -> None:
    """Checks shared by the classification configs (E3, E4)."""
    for name in ("d", "m", "num_steps", "save_every", "modes"):
        value = getattr(config, name)
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    if not config.depths or any(int(n) != n or n < 1 for n in config.depths):
        raise ConfigError(f"depths must be integers >= 1, got {config.depths}")
    if not (config.init > 0 and config.learning_rate > 0):
        raise ConfigError("init and learning_rate must be > 0")
    if config.num_steps % config.save_every:
        raise ConfigError("num_steps must be a multiple of save_every")
    if any(not t > 0 for t in config.late_times):
        raise ConfigError(f"late_times must be > 0, got {config.late_times}")


@functools.cache
def _modes(k: int):
    # One function object per k: the descent caches its compiled program on it.
    return functools.partial(dn.modes, k=k)


def problem(config: DiagonalConfig, depth: float = 1.0) -> dn.Problem:
    """The data of ``config`` (seeded) at ``depth``."""
    target = dn.sparse_target(config.d, config.values)
    data = dn.classification_data(jax.random.key(config.seed), target, config.m)
    return dn.Problem(data, depth=float(depth), loss=config.loss)


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
    for t in late_times:
        traj = flow.gradient_flow(
            loss,
            params0,
            args,
            modes=modes,
            targets=targets,
            t_end=jnp.asarray(float(t)),
            rtol=1e-8,
            atol=1e-12,
            max_steps=100_000,
            refine=False,
        )
        b = beta_fn(traj.final_state, args)
        correlation.append(float(dn.cosine(b, args.data.target)))
        residual.append(float(kkt_measure(beta_fn)(traj.final_state, args)) if kkt else np.nan)
    return correlation, residual


def _beta(params, args):
    return dn.beta(params, args.depth)


def run(config: DiagonalConfig | None = None) -> xr.Dataset:
    """Both back-ends at every depth, in the shared layout, plus the SVM and the late check."""
    config = config or DiagonalConfig()
    prob = problem(config)
    k = config.modes
    targets = dn.targets(prob, k=k)
    spec = backends.Spec(
        loss=dn.loss,
        modes=_modes(k),
        targets=targets,
        init=lambda depth: dn.init(config.init, depth, config.d),
        depth_args=lambda depth: dn.Problem(prob.data, depth=float(depth), loss=config.loss),
        measures={
            "correlation": dn.correlation,
            "kkt_residual": kkt_measure(_beta),
            "log_loss": dn.log_loss,
            "loss_underflow": dn.loss_underflow,
        },
    )
    ds = backends.run(
        spec,
        depths=config.depths,
        learning_rate=config.learning_rate,
        num_steps=config.num_steps,
        save_every=config.save_every,
    )
    ds = add_classification_summary(ds, config, spec, prob.data, _beta)
    ds.attrs.update(experiment="diagonal", time_scale="1 (the descent's rate; no 1/2 in the loss)")
    return ds


def add_classification_summary(ds, config, spec, data, beta_fn, kkt=True) -> xr.Dataset:
    """Add the SVM baseline and the late-time check (flow; KKT residual if ``kkt``) to a
    classification dataset."""
    svm = max_margin.max_margin(data.inputs, data.labels)
    late = np.asarray(config.late_times, dtype=float)
    corr = np.full((len(config.depths), late.size), np.nan)
    resid = np.full_like(corr, np.nan)
    for j, depth in enumerate(config.depths):
        args = spec.args if spec.depth_args is None else spec.depth_args(int(depth))
        corr[j], resid[j] = late_check(
            spec.loss, spec.init(int(depth)), args, beta_fn, late, spec.modes, spec.targets, kkt
        )
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
    return ds


def figure(
    ds: xr.Dataset, title: str, value_label: str, *, mode_labels=None, sharey: bool = True
) -> plt.Figure:
    """Tracked modes against time (log axis), one panel per depth (PAPER Figure 1c/1d layout).

    Gradient flow solid, gradient descent as markers; the legend gives each mode's target (or
    ``mode_labels``). ``sharey=False`` gives each depth its own value axis (the scales of the
    depths differ by orders of magnitude on the convolutional nets).
    The bottom row shows the correlation by depth against the SVM baseline.
    """
    depths = [int(d) for d in ds["depth"].values]
    fig = plt.figure(figsize=(3.3 * len(depths) + 0.6, 6.4))
    grid = fig.add_gridspec(2, len(depths), height_ratios=(1.6, 1.0))
    times = ds["time"].values
    positive = times > 0
    marks = np.unique(np.geomspace(1, positive.sum(), 30).astype(int)) - 1
    targets = ds["targets"].values
    first = None
    for j, depth in enumerate(depths):
        ax = fig.add_subplot(grid[0, j], sharey=first if sharey else None)
        first = first or ax
        panel = ds.sel(depth=depth)
        for i, target in enumerate(targets):
            colour = MODE_COLOURS[i % len(MODE_COLOURS)]
            if "flow" in panel["backend"].values:
                ax.plot(
                    times[positive],
                    panel["modes"].sel(backend="flow").values[positive, i],
                    color=colour,
                    lw=1.6,
                    label=(
                        mode_labels[i]
                        if mode_labels is not None
                        else f"mode {i + 1} (target {target:.3g})"
                    ),
                )
            if "descent" in panel["backend"].values:
                v = panel["modes"].sel(backend="descent").values[positive, i]
                ax.plot(
                    times[positive][marks],
                    v[marks],
                    ls="none",
                    marker="o",
                    ms=3.5,
                    mfc="none",
                    mew=0.9,
                    color=colour,
                )
        ax.set_xscale("log")
        ax.set_title(f"depth {depth}")
        ax.set_xlabel("time t = lr × step")
        ax.grid(alpha=0.25, lw=0.5)
    first.set_ylabel(value_label)
    handles, labels = first.get_legend_handles_labels()
    handles += [
        plt.Line2D([], [], color="0.3", lw=1.6),
        plt.Line2D([], [], color="0.3", ls="none", marker="o", mfc="none"),
    ]
    labels += ["gradient flow", "gradient descent"]
    first.legend(handles, labels, fontsize=7, loc="upper left")
    ax = fig.add_subplot(grid[1, :])
    for backend, style in (("flow", "o-"), ("descent", "s--")):
        if backend in ds["backend"].values:
            ax.plot(
                depths,
                ds["correlation"].sel(backend=backend).values,
                style,
                ms=5,
                label=f"{backend} (t = {times[-1]:g})",
            )
    if "svm_correlation" in ds:
        ax.axhline(
            float(ds["svm_correlation"]), color="0.4", ls=":", label="max-margin SVM (no intercept)"
        )
    ax.set_xticks(depths)
    ax.set_xlabel("depth N")
    ax.set_ylabel("correlation with target")
    ax.grid(alpha=0.25, lw=0.5)
    ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def print_table(ds: xr.Dataset) -> None:
    """The correlation by depth and back-end next to the SVM, the KKT residuals, the learning
    times at fraction 0.5 and the status (what ``jaxflow experiment`` prints)."""
    from jaxflow import status

    print(
        f"max-margin SVM (no intercept): correlation {float(ds['svm_correlation']):.4f}, "
        f"margin {float(ds['svm_margin']):.4g}, KKT residual {float(ds['svm_kkt_residual']):.1e}"
    )
    second = "kkt_residual" if "kkt_residual" in ds else "amplitude_correlation"
    print(
        f"backend  depth  correlation  {second[:10]:<10} underflow  t(|mode| >= 0.5) per mode"
        "            grad-evals  wall-s  status"
    )
    half = ds["learning_time"].sel(fraction=0.5)
    for b in ds["backend"].values:
        for d in ds["depth"].values:
            row = ds.sel(backend=b, depth=d)
            times = " ".join(f"{v:7.3g}" for v in half.sel(backend=b, depth=d).values)
            print(
                f"{b:<8} {int(d):<6} {row['correlation'].item():<12.4f} "
                f"{row[second].item():<10.4g} {int(row['loss_underflow'].item()):<10} "
                f"{times:<35} {int(row['gradient_evaluations'].item()):<11} "
                f"{row['wall_time'].item():<7.2f} {status.name(int(row['status'].item()))}"
            )
    if ds.sizes.get("late", 0) and "kkt_residual" in ds:
        print(
            "late-time check (flow): depth, then correlation / KKT residual at t = "
            + ", ".join(f"{t:g}" for t in ds["late_time"].values)
        )
        for d in ds["depth"].values:
            cells = "  ".join(
                f"{c:.4f} / {r:.3g}"
                for c, r in zip(
                    ds["late_correlation"].sel(depth=d).values,
                    ds["late_kkt_residual"].sel(depth=d).values,
                )
            )
            print(f"  {int(d):<4} {cells}")


def main(smoke: bool = False):
    """``jaxflow experiment diagonal [--smoke]``: run, print the table, return (dataset, figure)."""
    ds = run(DiagonalConfig.smoke() if smoke else DiagonalConfig())
    print_table(ds)
    fig = figure(
        ds,
        f"Diagonal networks, {ds.attrs['loss']} loss (d = {ds.attrs['d']}, "
        f"m = {ds.attrs['m']}): |beta_i| on the support of w*",
        "|beta_i|",
    )
    return ds, fig
