"""Sweeps: named axes -> chunks -> vmap -> devices -> a verified store -> xarray.

The runner (:mod:`~jaxflow.sweep.runner`: :func:`run`, :class:`Runner`) is the public face;
beside it live the zarr store of finished chunks (:mod:`~jaxflow.sweep.store`), its one-writer
lock (:mod:`~jaxflow.sweep.lock`), whole-or-nothing file writes (:mod:`~jaxflow.sweep.atomic`),
the checksums of exported datasets (:mod:`~jaxflow.sweep.checksum`), the estimate of a request
from its axis counts (:mod:`~jaxflow.sweep.estimate`) and the size guard that checks it against
the machine (:mod:`~jaxflow.sweep.resources`), which programs may run on several CPU devices at
once (:mod:`~jaxflow.sweep.concurrency`) and progress bars (:mod:`~jaxflow.sweep.progress`).
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
    "DEFAULT_WAIT_TIMEOUT", "Runner", "StoreDamagedError", "SweepError", "estimate_size",
    "git_commit", "package_versions", "run", "run_metadata",
]
