"""One XLA CPU device per core, for the ``jaxflow`` command.

jaxflow's work is many small vmapped solver loops; XLA runs each CPU device's program on one
core, so a single CPU device leaves the other cores idle. The ``jaxflow`` command (never an
import: the device count is a process-wide setting of the user's) asks JAX for one CPU device
per core (``jax_num_cpu_devices``) before JAX starts its backends, and :mod:`jaxflow.sweep` runs
one share of every chunk per device, each from its own thread (on CPU all on the first device,
whose client runs them concurrently: one compilation, :class:`jaxflow.sweep.Runner`; results
are bitwise identical whatever the device count).
Measured on the 2-core machine: 12.4 us per toy trajectory with 2 CPU devices against 19.6 us
with one. In a script or notebook, ``jax.config.update("jax_num_cpu_devices", os.cpu_count())``
before the first JAX array does the same.

It only applies when nothing else chose: ``JAXFLOW_CPU_DEVICES=N`` sets the count (1 keeps
JAX's default; any other value is refused by every ``jaxflow`` command; the library never reads
it); ``JAX_NUM_CPU_DEVICES`` or ``--xla_force_host_platform_device_count`` in ``XLA_FLAGS`` win;
and once JAX's backends are up the setting can no longer change, so it is left alone.
Accelerators (GPU, TPU) are not affected.
"""

import os

import jax

__all__ = ["ENV_VAR", "requested_cpu_devices", "use_cpu_cores"]

ENV_VAR = "JAXFLOW_CPU_DEVICES"


def requested_cpu_devices() -> int | None:
    """The CPU device count jaxflow will ask for, or None to leave JAX's choice alone."""
    if "JAX_NUM_CPU_DEVICES" in os.environ:
        return None
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return None
    value = os.environ.get(ENV_VAR, "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            raise ValueError(f"{ENV_VAR} must be a positive integer, got {value!r}") from None
    return os.cpu_count() or 1


def use_cpu_cores() -> None:
    """Ask JAX for :func:`requested_cpu_devices` CPU devices, if its backends are not up yet.

    Raises:
        ValueError: ``JAXFLOW_CPU_DEVICES`` is not a positive integer.
    """
    count = requested_cpu_devices()
    if count is None or count == 1:
        return
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:
        pass  # the backends are already initialized: keep what the user has
