"""Figures of saddle-to-saddle dynamics: the flow against the jump process
(:func:`saddle_staircase`) and jump times against the initial scale per depth
(:func:`jump_times`). Both take the dataset of :mod:`jaxflow.experiments.saddle_to_saddle`.
"""

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from jaxflow.plot import style

__all__ = ["jump_times", "saddle_staircase"]


def _oracle_jumps(ds: xr.Dataset) -> np.ndarray:
    times = ds["oracle_jump_time"].values
    return times[np.isfinite(times)]


def _time_unit(depth: int) -> str:
    return (r"\ln(1/\alpha)/4" if depth == 2
            else rf"\alpha^{{-(1-2/N)}}/(N(N-2)),\ N = {depth}")


@style.styled
def saddle_staircase(ds: xr.Dataset) -> plt.Figure:
    r"""Saddle-to-saddle: the shallowest depth's flow, loss and coordinates against rescaled time
    for each scale (darker = smaller $\alpha$), collapsing onto the jump process's staircase
    (dashed black).

    Example (made-up trajectories in that layout):
        >>> from jaxflow import plot
        >>> len(plot.saddle_staircase(plot.example_dataset("saddles")).axes)
        2
    """
    oracle_t = _oracle_jumps(ds)
    time = ds["time"].values
    edges = np.concatenate([[0.0], oracle_t, [time[-1]]])
    depth = int(ds["depth"].values[0])
    flow_ds = ds.sel(backend="flow", depth=depth)
    alphas = [a for a in ds["scale"].values if bool(flow_ds["ran"].sel(scale=a))]
    # Scales are ordered values, like depths: a sequential colour-blind-safe map (cividis, so
    # that they are not read as depths), the smallest scale darkest whatever the stored order.
    rank = np.argsort(np.argsort(alphas))
    shades = plt.get_cmap("cividis")(np.linspace(0.0, 0.9, len(alphas))[rank])
    betas = ds["oracle_beta"].values[: oracle_t.size + 1]
    learned = np.flatnonzero(np.abs(betas).max(0) > 0)
    fig, (ax_loss, ax_beta) = plt.subplots(1, 2, figsize=(style.PAGE_WIDTH, 2.8),
                                           layout="constrained")
    for alpha, colour in zip(alphas, shades):
        run = flow_ds.sel(scale=alpha)
        exponent = np.log10(alpha)
        ax_loss.plot(time, run["loss"].values, color=colour, lw=1.1,
                     label=rf"$\alpha = 10^{{{exponent:.3g}}}$")
        for i in learned:
            ax_beta.plot(time, run["modes"].values[:, i], color=colour, lw=0.9)
    floor = 1e-6  # the last plateau's loss is 0 on a log axis: drawn at the floor
    losses = np.maximum(ds["oracle_plateau_loss"].values[: oracle_t.size + 1], floor)
    ax_loss.stairs(losses, edges, baseline=None, color="k", ls="--", lw=1.1,
                   label="jump process (oracle)")
    ax_loss.set_ylim(bottom=floor / 2)
    for i in learned:
        ax_beta.stairs(betas[:, i], edges, baseline=None, color="k", ls="--", lw=0.9)
        ax_beta.annotate(rf"$\beta_{{{i}}}$", (time[-1], betas[-1, i]), fontsize=7,
                         va="center", xytext=(3, 0), textcoords="offset points",
                         annotation_clip=False)
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("loss")
    ax_beta.set_ylabel(r"coordinates $\beta_i$ (dashed: jump process)")
    for ax in (ax_loss, ax_beta):
        ax.set_xlabel(rf"rescaled time $t\,/\,({_time_unit(depth)})$")
        ax.grid(alpha=0.25, lw=0.5)
    handles, labels = ax_loss.get_legend_handles_labels()
    style.legend_outside(fig, handles, labels)
    fig.suptitle(f"Saddle-to-saddle: the depth-{depth} flow collapses onto the jump process "
                 r"as $\alpha \to 0$")
    return fig


@style.styled
def jump_times(ds: xr.Dataset) -> plt.Figure:
    r"""Saddle-to-saddle: the flow's jump times (flow time) against $\alpha$, per depth (left,
    over the scales where the deep networks ran) and for depth 2 against $\ln(1/\alpha)$
    (right, where the jump process predicts straight lines); markers the detected jumps matched
    to the oracle's by time (:mod:`jaxflow.oracles.jump_matching`: missed and merged jumps are
    not drawn), lines the oracle's ``time_unit(N, alpha) * T_k``. Depths take their colours of
    :func:`jaxflow.plot.style.depth_colour`, jumps those of the modes.

    Example (made-up jump times in that layout):
        >>> from jaxflow import plot
        >>> len(plot.jump_times(plot.example_dataset("saddles")).axes)
        2
    """
    oracle_t = _oracle_jumps(ds)
    fig, (ax, ax_ln) = plt.subplots(1, 2, figsize=(style.PAGE_WIDTH, 2.9), layout="constrained")
    deep_ran = ds["ran"].sel(backend="flow").where(ds["depth"] > 2, drop=True)
    shown = deep_ran.any("depth").values if deep_ran.size else np.ones(ds.sizes["scale"], bool)
    alpha = ds["scale"].values
    handles, labels = [], []
    for n in ds["depth"].values:
        colour = style.depth_colour(float(n))
        measured = ds["jump_flow_time"].sel(backend="flow", depth=n).values
        unit = ds["time_unit"].sel(depth=n).values
        for k, t_k in enumerate(oracle_t):
            line, = ax.plot(alpha[shown], measured[shown, k], "o", color=colour, ms=3.0)
            ax.plot(alpha[shown], unit[shown] * t_k, "-", color=colour, lw=0.8, alpha=0.7)
            if k == 0:
                handles.append(line)
                labels.append(style.depth_label(float(n)))
            if n == 2:
                shade = style.mode_colour(k)
                line, = ax_ln.plot(-np.log(alpha), measured[:, k], "s", color=shade, ms=3.0)
                ax_ln.plot(-np.log(alpha), unit * t_k, "-", color=shade, lw=0.8, alpha=0.7)
                handles.append(line)
                labels.append(f"$N = 2$, jump {k + 1}")
    handles += [plt.Line2D([], [], color="0.3", ls="none", marker="o", ms=3.0),
                plt.Line2D([], [], color="0.3", lw=0.8)]
    labels += ["measured", "jump process\n× time unit"]
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"$\alpha$ (initial scale)")
    ax.set_ylabel(r"jump time $t$ (flow time)")
    ax.set_title(r"time unit: $\ln(1/\alpha)/4$ at $N = 2$, $\alpha^{-(1-2/N)}/(N(N-2))$ at $N$")
    ax_ln.set_xlabel(r"$\ln(1/\alpha)$")
    ax_ln.set_ylabel(r"jump time $t$ (flow time)")
    ax_ln.set_title(r"depth 2: jump times linear in $\ln(1/\alpha)$")
    for a in (ax, ax_ln):
        a.grid(alpha=0.25, lw=0.5, which="both")
    style.legend_outside(fig, handles, labels)
    return fig
