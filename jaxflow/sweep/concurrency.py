"""Which compiled programs may run on several XLA CPU devices at once.

A :class:`~jaxflow.sweep.Runner` launches one share of every call per device and lets them run
concurrently (on CPU, concurrent executions of one program on the first device). On XLA's CPU
backend that deadlocks for programs holding a **batched LAPACK call**
(``jnp.linalg.svd``, ``eigh``, ``qr``, ``solve``, ``inv`` ... under ``vmap``): jaxlib runs such a
call as a custom call whose kernel splits its batch into tasks on XLA's intra-op thread pool
(``tf_XLAEigen``, one thread per core) and then *blocks the pool thread it runs on* until the
tasks finish (``jax::ParallelBatchMap`` waiting on a ``BlockingCounter``). With two devices on
two cores, both pool threads can be inside such a call at once, each waiting for tasks that only
a free pool thread could run: none is free, and the process hangs for ever (seen with ``gdb``:
both ``tf_XLAEigen`` threads in ``lapack_dgesdd_ffi -> ParallelBatchMap -> BlockingCounter::Wait``,
the main thread awaiting the result). One device never hangs: one blocked pool thread leaves the
others to run its tasks.

So such a program is run on one device at a time (:func:`serial_devices`): the device calls of a
chunk are launched one after another, each waited for before the next starts. The programs, and
hence the results, are the very same (bitwise identical whatever the device count); only the
overlap between CPU devices is given up, and only for programs with LAPACK calls. Accelerators
(GPU, TPU) use their own solver libraries and keep running concurrently.

Example:
    >>> import jax, jax.numpy as jnp
    >>> text = jax.jit(jax.vmap(jnp.linalg.svd)).lower(jnp.ones((4, 3, 3))).as_text()
    >>> serial_devices(text, ["cpu", "cpu"]), serial_devices(text, ["cpu"])
    (True, False)
    >>> serial_devices(jax.jit(jnp.sin).lower(1.0).as_text(), ["cpu", "cpu"])
    False
"""

import re

__all__ = ["LAPACK_CALL", "serial_devices"]

# jaxlib's CPU LAPACK kernels are FFI custom calls named lapack_<type><routine>[_ffi].
LAPACK_CALL = re.compile(r"custom_call\s*@lapack_")


def serial_devices(program_text: str, platforms) -> bool:
    """True when a program (its lowered text) must run on one CPU device at a time.

    Args:
        program_text: ``jax.jit(f).lower(...).as_text()``.
        platforms: the platform of each device it runs on (``device.platform``).
    """
    platforms = list(platforms)
    return (len(platforms) > 1 and all(p == "cpu" for p in platforms)
            and LAPACK_CALL.search(program_text) is not None)
