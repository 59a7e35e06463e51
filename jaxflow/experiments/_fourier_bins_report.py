"""E4's Fourier bins, each predicted alone: the theory of a bin's learning time from its own
start under the drive at ``beta = 0`` (:mod:`jaxflow.oracles.fourier_bins`), as dataset
variables, and the predicted-against-observed table of the report.

Why the bins of E4 come out of target order: a bin's learning time is set by its drive (the
gradient at ``beta = 0`` on that bin, which sampling noise moves far from the target's
amplitude), its initial amplitude (a product of N random layer values) and its initial phase
against the drive, not by its target alone.
"""

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from jaxflow import _table
from jaxflow.models import convolutional as cn
from jaxflow.models import diagonal as dn
from jaxflow.oracles import fourier_bins

__all__ = ["bin_table", "bin_theory", "theory_variables"]


def bin_theory(prob: dn.Problem, params, k: int, fractions) -> dict:
    """Each tracked bin's learning times predicted from its own start, under the drive at
    ``beta = 0`` (:mod:`jaxflow.oracles.fourier_bins`): exact while ``beta`` is small.

    Args:
        prob: the data; params: the network's initial parameters (unpadded, depth ``N``);
        k: the number of tracked bins (:func:`jaxflow.models.convolutional.modes`);
        fractions: learning-time fractions of the modes' targets.

    Returns:
        ``{"bin", "drive", "initial_amplitude", "initial_phase"}`` (``(k,)`` each: the rfft bin,
        ``|C|``, ``|u_0|``, the angle of ``u_0`` from ``C`` in ``(-pi, pi]``) and
        ``"learning_time"`` ``(k, F)`` (``inf`` for a zero target).

    >>> import jax
    >>> import numpy as np
    >>> from jaxflow.experiments import convolutional as e4
    >>> from jaxflow.models import convolutional as cn
    >>> config = e4.ConvolutionalConfig(d=8, m=16, targets=(1.0, 2.0))
    >>> prob = e4.problem(config)
    >>> th = e4.bin_theory(prob, cn.init(jax.random.key(1), 1e-2, 2, 8), 3, (0.5,))
    >>> th["bin"].tolist(), bool(np.isinf(th["learning_time"][2, 0]))
    ([1, 0, 2], True)
    """
    bins = np.asarray(cn.bins(prob, k))
    d = prob.data.inputs.shape[1]
    grad0 = jax.grad(lambda b: dn.linear_loss(b, prob.data, prob.loss))(jnp.zeros(d))
    drive = np.fft.rfft(-np.asarray(grad0))[bins]
    layers = np.asarray(cn.layer_spectra(params))[:, bins]
    targets = np.asarray(cn.targets(prob, k))
    times = fourier_bins.learning_times(layers[:, targets > 0], drive[targets > 0],
                                        np.asarray(fractions, dtype=float))
    learning_time = np.full((bins.size, len(fractions)), np.inf)
    # a target of 1 on every learned bin (classification): the levels are the fractions
    learning_time[targets > 0] = times
    u0 = np.prod(layers, axis=0)
    return {"bin": bins, "drive": np.abs(drive), "initial_amplitude": np.abs(u0),
            "initial_phase": np.angle(u0 * np.conj(drive)), "learning_time": learning_time}


def theory_variables(config, prob, init_key, fractions) -> dict:
    """:func:`bin_theory` at every depth, as dataset variables."""
    per_depth = [bin_theory(prob, cn.init(init_key, config.scale, int(n), config.d),
                            config.num_modes, fractions) for n in config.depths]
    first = per_depth[0]
    stack = {key: np.stack([t[key] for t in per_depth]) for key in first}
    return {
        "bin": ("mode", first["bin"]),
        "drive": ("mode", first["drive"]),
        "initial_amplitude": (("depth", "mode"), stack["initial_amplitude"]),
        "initial_phase": (("depth", "mode"), stack["initial_phase"]),
        "predicted_learning_time": (("depth", "mode", "fraction"), stack["learning_time"]),
    }


def bin_table(ds: xr.Dataset) -> str:
    """Each bin's half-target learning time predicted from its start (:func:`bin_theory`)
    against the flow's, by depth, with the drive, initial amplitude and phase that set it."""
    half = ds["learning_time"].sel(backend="flow", fraction=0.5)
    predicted = ds["predicted_learning_time"].sel(fraction=0.5)
    rows = []
    for depth in ds["depth"].values:
        for mode in ds["mode"].values:
            if ds["targets"].values[mode] == 0:
                continue
            p = float(predicted.sel(depth=depth, mode=mode))
            o = float(half.sel(depth=depth, mode=mode))
            rows.append([int(depth), int(ds["bin"].values[mode]), f"{ds['drive'].values[mode]:.3f}",
                         f"{float(ds['initial_amplitude'].sel(depth=depth, mode=mode)):.2e}",
                         f"{float(ds['initial_phase'].sel(depth=depth, mode=mode)):+.2f}",
                         f"{p:.3g}", f"{o:.3g}",
                         f"{o / p - 1:+.1%}" if np.isfinite(o) and p > 0 else "-"])
    return _table.table(
        ["depth", "bin", "|C|", "|u0|", "phase", "t_half predicted", "t_half flow", "flow/pred-1"],
        rows, legend=["predicted = each bin alone under the drive C at beta = 0 (exact while "
                      "beta is small; later bins feel the learned ones)",
                      "|C| = drive, |u0| = initial amplitude, phase = angle of u0 from C (rad)",
                      "inf = not reached by the horizon (the run is then unfinished)"])
