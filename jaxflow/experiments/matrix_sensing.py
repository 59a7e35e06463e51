"""Experiment E1: deep matrix sensing by gradient flow and gradient descent (docs/science/experiments.md).

``W* = diag(12, 6, 4, 3, 0, ...)`` (d = 50, rank 4) observed through m = 1000 Gaussian
measurements (underdetermined: m < d^2); ``W = W_1 ... W_N`` for depths 1-4 from a Gaussian
initialization of RMS singular value ``scale = 1e-4``; learning rate 1e-3. Expected: singular
values learned one at a time, largest first; deeper nets stay low-rank; depth 1 ends near the
minimum-norm interpolant (high reconstruction error).

The module reads config (:class:`MatrixSensingConfig`) -> :func:`run` -> :func:`report` ->
:func:`figures`, as every experiment does (see :mod:`jaxflow.experiments`).

Example (smoke size):
    ```python
    from jaxflow.experiments import matrix_sensing as e1
    ds = e1.run(e1.MatrixSensingConfig.smoke())
    sorted(ds["backend"].values.tolist())  # -> ['descent', 'flow']
    ```
"""

import dataclasses
from typing import ClassVar

import jax
import xarray as xr

from jaxflow import _x64
from jaxflow._table import table
from jaxflow.engine import status
from jaxflow.experiments import _layout, backends
from jaxflow.experiments.config import (
    ConfigError,
    ExperimentConfig,
    check_depths,
    check_dtype,
    check_positive,
    check_positive_int,
    check_seed,
    check_steps,
    option,
)
from jaxflow.models import matrix_sensing as ms
from jaxflow.sweep import cells as _cells

__all__ = ["MatrixSensingConfig", "figures", "problem", "report", "run", "settings", "spec"]


@dataclasses.dataclass(frozen=True)
class MatrixSensingConfig(ExperimentConfig):
    """Options of ``jaxflow experiment matrix-sensing`` (defaults: the paper's E1).

    Each field's help (:func:`~jaxflow.experiments.config.option`) is the sentence its flag
    shows in ``--help``.

    >>> from jaxflow.experiments import matrix_sensing as e1
    >>> cfg = e1.MatrixSensingConfig(d=20, m=240)
    >>> cfg.targets, cfg.depths, cfg.learning_rate
    ((12.0, 6.0, 4.0, 3.0), (1, 2, 3, 4), 0.001)
    >>> e1.MatrixSensingConfig(num_steps=1001)
    Traceback (most recent call last):
    ...
    jaxflow.experiments.config.ConfigError: num_steps must be a multiple of save_every = 50
    """

    # Reduced sizes (d = 10, m = 120, depths 1-3): seconds, and still a staircase.
    RENAMED: ClassVar[dict] = {"values": "targets"}
    SMOKE: ClassVar[dict] = dict(d=10, m=120, depths=(1, 2, 3), num_steps=6000, save_every=100)

    d: int = option(50, "W is d x d")
    targets: tuple[float, ...] = option((12.0, 6.0, 4.0, 3.0),
        "the non-zero singular values of the target W* = diag(targets, 0, ...)")
    m: int = option(1000, "number of measurements")
    depths: tuple[int, ...] = option((1, 2, 3, 4), "depths N (integers >= 1)")
    scale: float = option(1e-4, "RMS singular value of W(0) (sigma0)")
    init_kind: str = option("gaussian",
        "initialization of W(0): 'gaussian' or 'identity' (jaxflow.models.matrix_sensing.init)")
    learning_rate: float = option(1e-3,
        "gradient-descent rate; the flow is compared on its clock, t = learning_rate x step")
    num_steps: int = option(15_000, "gradient-descent steps")
    save_every: int = option(50, "descent steps between saved points (a divisor of num_steps)")
    num_modes: int = option(5, "number of tracked singular values (the top k)")
    seed: int = option(0, "seed of the problem and of W(0)")
    completion: bool = option(False,
        "matrix completion (observed entries) instead of Gaussian sensing")
    dtype: str = option("float64",
        "float64 (exact) or float32 (the problem drawn in float64, rounded once, then solved "
        "in float32)")

    def check(self):
        check_dtype(self.dtype)
        check_depths(self.depths)
        check_steps(self)
        if self.d < len(self.targets):
            raise ConfigError(
                f"d must be >= the number of target values ({len(self.targets)}), got {self.d}")
        check_positive_int("m", self.m)
        check_positive(self, "scale", "learning_rate")
        check_seed(self.seed)


def problem(config: MatrixSensingConfig) -> ms.Problem:
    """The sensing problem of ``config`` (seeded by ``config.seed``).

    >>> from jaxflow.experiments import matrix_sensing as e1
    >>> e1.problem(e1.MatrixSensingConfig.smoke()).operator.shape   # (m, d^2)
    (120, 100)
    """
    target = ms.diagonal_target(config.d, config.targets)
    key = jax.random.key(config.seed)
    make = ms.completion_problem if config.completion else ms.gaussian_problem
    return make(key, target, config.m)


def _effective_rank(params, args):
    del args  # a measure's signature; the rank is of W alone
    return ms.effective_rank(params)


def spec(config: MatrixSensingConfig) -> backends.Spec:
    """The experiment as a :class:`~jaxflow.experiments.backends.Spec`: loss, modes, init, measures.

    >>> from jaxflow.experiments import matrix_sensing as e1
    >>> s = e1.spec(e1.MatrixSensingConfig.smoke())
    >>> s.targets.tolist(), sorted(s.measures), len(s.init(3))
    ([12.0, 6.0, 4.0, 3.0, 0.0], ['effective_rank', 'reconstruction_error', 'train_loss'], 3)
    """
    prob = problem(config)
    init_key = jax.random.fold_in(jax.random.key(config.seed), 1)
    k = config.num_modes
    return backends.Spec(
        loss=ms.loss,
        modes=backends.TopModes(ms.modes, k),
        targets=ms.targets(prob, k=k),
        init=lambda depth: ms.init(init_key, config.scale, depth, (config.d, config.d),
                                   kind=config.init_kind),
        args=prob,
        measures={
            "reconstruction_error": ms.reconstruction_error,
            "effective_rank": _effective_rank,
            "train_loss": ms.loss,
        },
    )


def settings(config: MatrixSensingConfig) -> backends.Settings:
    """How the back-ends run ``config``: its depths, descent grid and dtype."""
    return backends.Settings(depths=config.depths, learning_rate=config.learning_rate,
                             num_steps=config.num_steps, save_every=config.save_every,
                             dtype=config.dtype)


@_x64.needs_x64
def run(config: MatrixSensingConfig | None = None, *, quiet: bool = False, store=None,
        resume: bool = False, process_index: int | None = None,
        process_count: int | None = None, size_check: bool = True) -> xr.Dataset:
    """Both back-ends at every depth, in the shared experiment layout (see ``backends``).

    Each (back-end, depth) run is a cell of :func:`jaxflow.sweep.cells.run`: ``store``,
    ``resume``, ``process_index``, ``process_count`` and ``size_check`` are its options.

    Returns the layout of :mod:`jaxflow.experiments.backends` with the measures
    ``reconstruction_error``, ``effective_rank`` and ``train_loss``. Example: see the module
    docstring; :func:`figures` draws the result.
    """
    config = config or MatrixSensingConfig()
    the_spec, the_settings = spec(config), settings(config)
    results = _cells.run(backends.cells(the_spec, the_settings), store=store, resume=resume,
                         config=config.to_toml(), quiet=quiet, desc="matrix sensing",
                         process_index=process_index, process_count=process_count,
                         size_check=size_check)
    ds = backends.dataset(the_spec, the_settings, results)
    ds.attrs.update(experiment="matrix-sensing", d=config.d, m=config.m, scale=config.scale,
                    init_kind=config.init_kind, completion=int(config.completion),
                    time_scale="c = 2N (mean squared error, see jaxflow.models.matrix_sensing)")
    _layout.label(ds, config, {
        "modes": ("top singular values of the end-to-end matrix W", "1"),
        "targets": ("singular values of the target W*", "1"),
    })
    ds.attrs["dtype"] = config.dtype  # what the cells computed in (label says the session's)
    return ds


def report(ds: xr.Dataset) -> str:
    """What ``jaxflow experiment matrix-sensing`` prints: per back-end and depth, the
    reconstruction error, effective rank, cost and status."""
    rows = []
    for b in ds["backend"].values:
        for d in ds["depth"].values:
            row = ds.sel(backend=b, depth=d)
            rows.append([b, int(d), f"{row['reconstruction_error'].item():.3e}",
                         int(row["effective_rank"].item()),
                         int(row["gradient_evaluations"].item()),
                         f"{row['wall_time'].item():.2f}",
                         status.name(int(row["status"].item()))])
    header = ["backend", "depth", "reconstruction_error", "effective_rank", "grad_evals",
              "wall_s", "status"]
    return table(header, rows, legend=[
        "reconstruction_error = ||W - W*||_F^2 / ||W*||_F^2 at the horizon",
        "grad_evals = vector-field evaluations (flow) or steps (descent)",
        "status other than ok: the run stopped early (jaxflow.engine.status)"])


def figures(ds: xr.Dataset) -> dict:
    """``{"matrix-sensing": ...}``: the staircase of :func:`jaxflow.plot.staircase`."""
    from jaxflow import plot  # the layer above: imported on use, as is its matplotlib

    targets = ds["targets"].values
    labels = [f"$\\sigma_{i + 1}$ (target {float(v):g})" for i, v in enumerate(targets)]
    return {"matrix-sensing": plot.staircase(
        ds, title="Deep matrix sensing: top singular values of W", value_label="singular value",
        mode_labels=labels)}

