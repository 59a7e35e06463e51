"""The paper's experiments, all of one shape, and the one registry that lists them.

Every experiment is one module that reads top to bottom:

1. a **config**: a frozen dataclass deriving from
   :class:`~jaxflow.experiments.config.ExperimentConfig` (TOML in and out, every bad option a
   one-line :class:`~jaxflow.experiments.config.ConfigError` naming it, reduced sizes in
   ``Config.smoke()``);
2. ``run(config, *, quiet, store, resume, process_index, process_count, size_check) ->
   xarray.Dataset``: the simulation, resumable from its store (a grid of points through
   :func:`jaxflow.sweep.run`, or a list of cells through :func:`jaxflow.sweep.cells.run`),
   shared by processes and size-checked before it starts; every dataset carries a ``status``
   variable (:mod:`jaxflow.engine.status` codes) and the attributes ``experiment`` (its name below),
   ``config`` (the resolved TOML) and the provenance of :func:`jaxflow.provenance.run_metadata`;
3. ``report(ds) -> str``: the text table ``jaxflow`` prints;
4. ``figures(ds) -> {name: Figure}``: its figures, drawn by :mod:`jaxflow.plot` (``name`` is
   the file stem ``jaxflow`` writes, ``name.png``).

:data:`EXPERIMENTS` lists them; the ``jaxflow experiment`` command, its ``--config`` option and
the tests that walk every experiment are generated from it. Adding an experiment is one module
of that shape and one line here. Modules load on first use (``Experiment.module``), so listing
the experiments imports none of them. No experiment imports another: what two of them share
lives in a private module (``_classification`` for E3 and E4, ``_solvers`` for the diagrams).

Example:
    >>> from jaxflow import experiments
    >>> experiments.names()[:3]
    ('phase-diagram', 'factor-diagram', 'matrix-sensing')
    >>> e = experiments.get("quadratic")
    >>> e.config.smoke().d, e.module.__name__
    (10, 'jaxflow.experiments.quadratic')
"""

import dataclasses
import importlib
import inspect
from types import ModuleType
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # listing the experiments stays free of xarray and JAX imports
    import xarray as xr

__all__ = ["EXPERIMENTS", "Experiment", "ExperimentModule", "get", "names"]


class ExperimentModule(Protocol):
    """What an experiment module provides (its config class is named in :class:`Experiment`)."""

    def run(self, config, *, quiet: bool = False) -> "xr.Dataset": ...

    def report(self, ds: "xr.Dataset") -> str: ...

    def figures(self, ds: "xr.Dataset") -> dict: ...


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One line of the registry.

    Attributes:
        name: the command-line name (``jaxflow experiment NAME``), also ``ds.attrs["experiment"]``.
        module_name: the module under ``jaxflow.experiments``.
        config_name: its config class.
        summary: one line for ``jaxflow experiment --help``.
        stem: the file stem of its dataset and store (``STEM.nc``, ``STEM.zarr``; default: the
            name); an experiment with a stem of its own has its own default output directory,
            ``results/STEM``, where the others share ``results/experiments``.
        store_suffix: its store's kind: ``.zarr`` for a grid of points
            (:func:`jaxflow.sweep.run`), ``.cells`` for a list of independent cells
            (:func:`jaxflow.sweep.cells.run`).
    """

    name: str
    module_name: str
    config_name: str
    summary: str
    stem: str = ""
    store_suffix: str = ".cells"

    @property
    def file_stem(self) -> str:
        """``STEM`` of ``STEM.nc`` (and ``STEM.zarr`` for an experiment that keeps a store)."""
        return self.stem or self.name

    @property
    def store_name(self) -> str:
        """``STEM.zarr`` or ``STEM.cells``: the store ``jaxflow experiment NAME`` keeps in
        ``--out`` as it runs, continued by ``--resume``."""
        return self.file_stem + self.store_suffix

    @property
    def default_out(self) -> str:
        """The output directory of ``jaxflow experiment NAME`` without ``--out``."""
        return f"results/{self.stem}" if self.stem else "results/experiments"

    @property
    def run_options(self) -> frozenset[str]:
        """The keyword options of its ``run`` beyond ``quiet``: ``store`` and ``resume`` (its
        resumable store), ``process_index``/``process_count`` (several processes) and
        ``size_check`` (the size check); every registered experiment takes all five."""
        parameters = inspect.signature(self.module.run).parameters
        return frozenset(parameters) - {"config", "quiet", "devices"}

    @property
    def module(self) -> ModuleType:
        """The experiment's module (imported on first use)."""
        return importlib.import_module(f"{__name__}.{self.module_name}")

    @property
    def config(self) -> type:
        """The experiment's config class."""
        return getattr(self.module, self.config_name)

    def run(self, config=None, *, quiet: bool = False, executor=None,
            **options) -> "xr.Dataset":
        """``module.run(config, quiet=quiet, **options)`` (default: the config's defaults;
        ``quiet``: no progress bar; ``options``: some of :attr:`run_options`).

        ``executor``: where its chunks or cells are computed (e.g. a
        :class:`~jaxflow.sweep.ray_executor.RayExecutor`; :mod:`jaxflow.sweep.executor`); its
        ``provenance()`` joins the dataset's attributes."""
        from jaxflow.sweep import executor as _executor

        config = config if config is not None else self.config()
        with _executor.using(executor):
            ds = self.module.run(config, quiet=quiet, **options)
        if executor is not None and hasattr(executor, "provenance"):
            ds.attrs.update(executor.provenance())
        return ds

    def report(self, ds: "xr.Dataset") -> str:
        return self.module.report(ds)

    def figures(self, ds: "xr.Dataset") -> dict:
        return self.module.figures(ds)


EXPERIMENTS = (
    Experiment("phase-diagram", "phase_diagram", "PhaseDiagramConfig",
               "toy model: incremental region over depth x ratio x scale, thresholds vs theory",
               stem="phase_diagram", store_suffix=".zarr"),
    Experiment("factor-diagram", "factor_diagram", "FactorDiagramConfig",
               "toy model from random unbalanced factors, k-mode spectra (theory is silent)",
               stem="factor_diagram", store_suffix=".zarr"),
    Experiment("matrix-sensing", "matrix_sensing", "MatrixSensingConfig",
               "E1: deep matrix sensing, singular values learned one at a time"),
    Experiment("matrix-sensing-generalization", "generalization", "GeneralizationConfig",
               "E1 sweep: reconstruction error and effective rank over depth x scale x seed",
               store_suffix=".zarr"),
    Experiment("quadratic", "quadratic", "QuadraticConfig",
               "E2: quadratic network, eigenvalues of W^T W with and without a bias"),
    Experiment("diagonal", "diagonal", "DiagonalConfig",
               "E3: diagonal networks on separable data against the max-margin SVM"),
    Experiment("convolutional", "convolutional", "ConvolutionalConfig",
               "E4: circular-convolutional networks, Fourier amplitudes"),
    Experiment("omp", "omp", "OMPConfig",
               "E5: order of learned coordinates of a deep diagonal network against OMP"),
    Experiment("saddle-to-saddle", "saddle_to_saddle", "SaddleToSaddleConfig",
               "jump times of diagonal networks of depth 2-5 against the jump process"),
    Experiment("edge-of-stability", "edge_of_stability", "EdgeOfStabilityConfig",
               "large-step descent on scalar networks: regimes over depth x scale x eta",
               stem="edge_of_stability", store_suffix=".zarr"),
    Experiment("large-step-thresholds", "large_step_thresholds", "LargeStepThresholdsConfig",
               "incremental threshold sigma0_th measured by descent against eta, vs the flow's",
               stem="large_step_thresholds", store_suffix=".zarr"),
    Experiment("large-step-diagonal", "large_step_diagonal", "LargeStepDiagonalConfig",
               "diagonal networks, sparse regression: the interpolator descent finds vs eta",
               stem="large_step_diagonal", store_suffix=".zarr"),
)


def names() -> tuple[str, ...]:
    """The registered experiments' names, in registry order."""
    return tuple(e.name for e in EXPERIMENTS)


def get(name: str) -> Experiment:
    """The registry line of ``name``; ``KeyError`` naming the known ones otherwise.

    >>> from jaxflow import experiments
    >>> experiments.get("nope")
    Traceback (most recent call last):
    ...
    KeyError: "unknown experiment 'nope'; known: phase-diagram, factor-diagram, matrix-sensing, matrix-sensing-generalization, quadratic, diagonal, convolutional, omp, saddle-to-saddle, edge-of-stability, large-step-thresholds, large-step-diagonal"
    """
    for e in EXPERIMENTS:
        if e.name == name:
            return e
    raise KeyError(f"unknown experiment {name!r}; known: {', '.join(names())}")
