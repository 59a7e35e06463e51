"""Figures of sweeps over the initial scale with several seeds: one line per depth (the mean over
seeds, the seeds' range shaded), for deep matrix sensing's generalization
(:func:`generalization`) and the random unbalanced factors (:func:`factor_diagram`).
"""

import matplotlib.pyplot as plt
import xarray as xr
from matplotlib.patches import Patch

from jaxflow.plot import style

__all__ = ["factor_diagram", "generalization"]


def _seed_bands(ax, ds, name, depths):
    """Mean over seeds against scale, one line per depth, the seeds' range shaded."""
    scales = ds["scale"].values
    for depth in depths:
        colour = style.depth_colour(depth)
        values = ds[name].sel(depth=depth)
        ax.fill_between(scales, values.min("seed").values, values.max("seed").values,
                        color=colour, alpha=0.18, lw=0)
        ax.plot(scales, values.mean("seed").values, "o-", ms=2.5, color=colour,
                label=style.depth_label(depth))
    ax.set_xscale("log")
    ax.grid(True, alpha=0.3)


def _seed_legend(fig, ax, n: int, extra=()) -> None:
    """The legend of :func:`_seed_bands` panels, right of the figure: the depths (``ax``'s
    lines), what the line and the band stand for, then ``extra`` (handle, label) pairs."""
    handles, labels = ax.get_legend_handles_labels()
    handles += [plt.Line2D([], [], color="0.3", marker="o", ms=2.5),
                Patch(color="0.3", alpha=0.18, lw=0)] + [h for h, _ in extra]
    labels += [f"mean over {n} seeds", f"range over {n} seeds"] + [label for _, label in extra]
    style.legend_outside(fig, handles, labels)


@style.styled
def generalization(ds: xr.Dataset) -> plt.Figure:
    """Deep matrix sensing: reconstruction error and effective rank against the init scale.

    Takes the dataset of :func:`jaxflow.experiments.generalization.run` (dims depth, scale, seed).

    Example (made-up numbers in that layout):
        >>> from jaxflow import plot
        >>> fig = plot.generalization(plot.example_dataset("generalization"))
        >>> fig.axes[0].get_yscale()
        'log'
    """
    depths = [float(d) for d in ds["depth"].values]
    fig, (err, rank) = plt.subplots(1, 2, figsize=(style.PAGE_WIDTH, 2.8), sharex=True,
                                    layout="constrained")
    floor = 1e-8  # exact recovery shows at the floor of the log axis
    _seed_bands(err, ds.assign(reconstruction_error=ds["reconstruction_error"].clip(min=floor)),
                "reconstruction_error", depths)
    _seed_bands(rank, ds, "effective_rank", depths)
    err.set_yscale("log")
    err.set_ylim(bottom=floor / 2)
    err.set_ylabel(r"reconstruction error $\|W-W^*\|_F^2/\|W^*\|_F^2$")
    rank.set_ylabel(r"effective rank of $W$ ($s > 0.01\,s_{max}$)")
    target_rank = ds.attrs.get("target_rank", 4)
    rank.axhline(target_rank, color="grey", lw=0.8, ls=":")
    for ax in (err, rank):
        ax.set_xlabel(r"initialization scale (RMS singular value of $W(0)$)")
    n = ds.sizes["seed"]
    _seed_legend(fig, rank, n, [(plt.Line2D([], [], color="grey", lw=0.8, ls=":"),
                                 f"target rank ({target_rank})")])
    fig.suptitle(f"Deep matrix sensing ($d = {ds.attrs.get('d')}$, $m = {ds.attrs.get('m')}$): "
                 f"deeper nets stay low-rank up to larger init ({n} seeds)")
    return fig


@style.styled
def factor_diagram(ds: xr.Dataset) -> plt.Figure:
    r"""Unbalanced random factors: incremental fraction and rank correlation against
    $\sigma_0$, one line per depth, mean over seeds with the seeds' range shaded.

    Takes the dataset of :func:`jaxflow.experiments.factor_diagram.run` (dims depth, scale, seed).

    Example (made-up numbers in that layout):
        >>> from jaxflow import plot
        >>> len(plot.factor_diagram(plot.example_dataset("factor_diagram")).axes)
        2
    """
    depths = [float(d) for d in ds["depth"].values]
    fig, axes = plt.subplots(1, 2, figsize=(style.PAGE_WIDTH, 2.8), sharex=True,
                             layout="constrained")
    panels = (
        ("incremental_fraction", "fraction of consecutive pairs\n(start, finish)-incremental"),
        ("rank_correlation", "rank correlation of learning order\nwith target order"),
    )
    for ax, (name, label) in zip(axes, panels):
        _seed_bands(ax, ds, name, depths)
        ax.set_xlabel(r"initialization scale $\sigma_0$ (factors $\sim \sigma_0^{1/N}$)")
        ax.set_ylabel(label)
    axes[0].set_ylim(-0.05, 1.05)
    axes[1].set_ylim(-1.05, 1.05)
    _seed_legend(fig, axes[1], ds.sizes["seed"])
    fig.suptitle(
        f"Random unbalanced factors, {ds.attrs['num_modes']} targets in ratio "
        f"{ds.attrs['ratio']:g} ({ds.sizes['seed']} seeds: mean and range)"
    )
    return fig
