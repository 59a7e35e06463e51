"""The ``jaxflow`` process: what it checks and sets for itself (environment, float64, CPU
devices, matplotlib's Agg backend, the persistent compilation cache) and, with
``--distributed``, its place among several processes.
"""

import os
import re

from jaxflow.cli._errors import CliError

# Private: what the other modules of jaxflow.cli use.
__all__ = [
    "cache_dir", "CACHE_ENV", "_check_environment", "_configure_process",
    "enable_compilation_cache", "_init_distributed", "_OLD_X64_ENV",
]

CACHE_ENV = "JAXFLOW_CACHE_DIR"


def cache_dir() -> str:
    """Persistent XLA compilation cache location (``$JAXFLOW_CACHE_DIR`` or ~/.cache/jaxflow).

    >>> import os
    >>> from jaxflow import cli
    >>> os.environ["JAXFLOW_CACHE_DIR"] = "/tmp/jaxflow-xla"
    >>> cli.cache_dir()
    '/tmp/jaxflow-xla'
    >>> del os.environ["JAXFLOW_CACHE_DIR"]
    """
    default = os.path.join(os.path.expanduser("~"), ".cache", "jaxflow", "xla")
    return os.environ.get(CACHE_ENV, default)


def enable_compilation_cache() -> str:
    """Turn on JAX's persistent compilation cache: a second run skips XLA compilation.

    Returns the cache directory, or "" when it cannot be created (then nothing changes).
    The ``jaxflow`` commands call it; call it yourself to share their cache, e.g.
    ``enable_compilation_cache()`` at the top of a script (not run here: it changes JAX's
    global configuration).

    Example (the settings it changes are put back afterwards):
        >>> import os, tempfile, jax
        >>> from jaxflow import cli
        >>> before = jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs
        >>> saved = os.environ.get("JAXFLOW_CACHE_DIR")
        >>> os.environ["JAXFLOW_CACHE_DIR"] = tempfile.mkdtemp()
        >>> cli.enable_compilation_cache() == jax.config.jax_compilation_cache_dir == os.environ["JAXFLOW_CACHE_DIR"]
        True
        >>> jax.config.update("jax_compilation_cache_dir", before[0])
        >>> jax.config.update("jax_persistent_cache_min_compile_time_secs", before[1])
        >>> _ = os.environ.pop("JAXFLOW_CACHE_DIR") if saved is None else os.environ.update(JAXFLOW_CACHE_DIR=saved)
    """
    import jax

    path = cache_dir()
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return ""  # an unwritable home only costs compile time
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return path


def _check_environment() -> None:
    """The environment variables jaxflow reads, checked (a bad one is a one-line error)."""
    from jaxflow import _devices

    try:
        _devices.requested_cpu_devices()
    except ValueError as err:
        raise CliError(str(err)) from None
    # Read by jaxflow up to 0.1 (x64 at import); ignored silently, it would promise float32.
    if os.environ.get(_OLD_X64_ENV, "").strip().lower() in ("0", "false", "no", "off"):
        raise CliError(f"{_OLD_X64_ENV} is no longer read: jaxflow computes in float64; "
                       "for float32 use `jaxflow phase-diagram --dtype float32`")


_OLD_X64_ENV = "JAXFLOW_ENABLE_X64"


def _configure_process() -> None:
    """What the command needs, set for its own process. Importing jaxflow sets none of it (a
    notebook or script keeps its own settings): float64 (``jax_enable_x64``), one CPU device per
    core (before JAX starts its backends: nothing before this line made an array), and the Agg
    backend, since the command only writes figures to files and must run without a display."""
    import jax
    import matplotlib

    from jaxflow import _devices

    jax.config.update("jax_enable_x64", True)
    _devices.use_cpu_cores()
    matplotlib.use("Agg")


def _init_distributed(args) -> tuple[int, int]:
    """``jax.distributed.initialize`` when asked; returns ``(process index, process count)``.

    ``--distributed`` alone lets JAX find the cluster (SLURM, TPU pods, ...); elsewhere
    ``--coordinator HOST:PORT --num-processes P --process-id I`` name it. Any of the three
    implies ``--distributed``.
    """
    explicit = (args.coordinator, args.num_processes, args.process_id)
    if not args.distributed and all(v is None for v in explicit):
        return 0, 1
    if args.num_processes is not None and args.num_processes < 1:
        raise CliError(f"--num-processes must be >= 1, got {args.num_processes}")
    limit = args.num_processes if args.num_processes is not None else float("inf")
    if args.process_id is not None and not 0 <= args.process_id < limit:
        raise CliError(f"--process-id must lie in [0, --num-processes), got {args.process_id}")
    if args.coordinator is not None and not re.fullmatch(r"[^\s:]+:\d{1,5}", args.coordinator):
        raise CliError(f"--coordinator must be HOST:PORT, got {args.coordinator!r}")
    import jax

    try:
        jax.distributed.initialize(
            coordinator_address=args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
        )
    except (RuntimeError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CliError(f"--distributed: cannot initialize jax.distributed: {reason}") from None
    return jax.process_index(), jax.process_count()
