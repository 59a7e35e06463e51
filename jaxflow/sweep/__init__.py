"""Sweeps: named axes -> chunks -> vmap -> devices -> a verified store -> xarray.

One concept a module:

- :mod:`~jaxflow.sweep.runner`: :func:`run`, a sweep from its axes to its dataset (the public
  face: it re-exports the public names of the modules below);
- :mod:`~jaxflow.sweep.grid`: named axes -> shuffled flat points, flat outputs -> a dataset;
- :mod:`~jaxflow.sweep.device_runner`: :class:`Runner`, one call of points over every device;
- :mod:`~jaxflow.sweep.ensemble_runner`: :class:`EnsembleRunner`, each chunk one work queue
  of the ensemble engine (any vector field, no lockstep);
- :mod:`~jaxflow.sweep.kept_runners`: runners kept between sweeps, so a sweep run again
  compiles nothing;
- :mod:`~jaxflow.sweep.cells`: an experiment run as a list of independent cells (resumable,
  shared by processes, size-checked), for the experiments that are not one grid;
- :mod:`~jaxflow.sweep.cell_store`: the store of such a run: a manifest and one checked file
  per finished cell;
- :mod:`~jaxflow.sweep.executor`: where chunks and cells are computed (this process, or an
  executor's workers);
- :mod:`~jaxflow.sweep.ray_executor`: :class:`~jaxflow.sweep.ray_executor.RayExecutor`, every
  chunk or cell a Ray task, retried when its worker dies, written here into the store;
- :mod:`~jaxflow.sweep.store_access`: a sweep's side of its store: open it under the writer
  lock, verify it, write chunks, read it back verified;
- :mod:`~jaxflow.sweep.store`: the zarr store of finished chunks, each with its checksum;
- :mod:`~jaxflow.sweep.store_layout`: what a store holds: its layout, fill values and keyed
  checksums;
- :mod:`~jaxflow.sweep.store_files`: a store's files from outside: finding stores, removing
  zarr's partial files;
- :mod:`~jaxflow.sweep.lock`: a store's one-writer lock;
- :mod:`~jaxflow.sweep.atomic`: whole-or-nothing file writes;
- :mod:`~jaxflow.sweep.checksum`: the checksums of exported datasets;
- (provenance, the versions, commit, command and devices of every dataset, is written by
  :mod:`jaxflow.provenance` alone);
- :mod:`~jaxflow.sweep.errors`: what a sweep raises;
- :mod:`~jaxflow.sweep.estimate`: a request's memory, disk and time from its axis counts;
- :mod:`~jaxflow.sweep.resources`: the size guard that checks an estimate against the machine;
- :mod:`~jaxflow.sweep.concurrency`: which programs may run on several CPU devices at once;
- :mod:`~jaxflow.sweep.progress`: progress bars.
"""

from jaxflow.provenance import (
    git_commit as git_commit,
)
from jaxflow.provenance import (
    package_versions as package_versions,
)
from jaxflow.provenance import (
    run_metadata as run_metadata,
)
from jaxflow.sweep.ensemble_runner import (
    EnsembleRunner as EnsembleRunner,
)
from jaxflow.sweep.runner import (
    CHUNK_LOG_ENV as CHUNK_LOG_ENV,
)
from jaxflow.sweep.runner import (
    DEFAULT_BATCH as DEFAULT_BATCH,
)
from jaxflow.sweep.runner import (
    DEFAULT_CHUNK_SIZE as DEFAULT_CHUNK_SIZE,
)
from jaxflow.sweep.runner import (
    DEFAULT_WAIT_TIMEOUT as DEFAULT_WAIT_TIMEOUT,
)
from jaxflow.sweep.runner import (
    AbstractRunner as AbstractRunner,
)
from jaxflow.sweep.runner import (
    Runner as Runner,
)
from jaxflow.sweep.runner import (
    StoreDamagedError as StoreDamagedError,
)
from jaxflow.sweep.runner import (
    SweepError as SweepError,
)
from jaxflow.sweep.runner import (
    estimate_size as estimate_size,
)
from jaxflow.sweep.runner import (
    run as run,
)

__all__ = [
    "AbstractRunner", "CHUNK_LOG_ENV", "DEFAULT_BATCH", "DEFAULT_CHUNK_SIZE",
    "DEFAULT_WAIT_TIMEOUT", "EnsembleRunner", "Runner", "StoreDamagedError", "SweepError",
    "estimate_size", "git_commit", "package_versions", "run", "run_metadata",
]
