"""float64 by default.

Thresholds of the depth-2 model sit below 1e-40 and learning times reach 1e20, so every
result of jaxflow is computed in float64 unless the user opts out. Importing jaxflow switches
``jax_enable_x64`` on, once, before any array is made. Opt out by setting the environment
variable ``JAXFLOW_ENABLE_X64=0`` before the import (for float32 accelerator runs); jaxflow then
leaves JAX's setting alone.
"""

import os

import jax

__all__ = ["ENV_VAR", "enable_x64_by_default", "x64_enabled", "x64_requested"]


ENV_VAR = "JAXFLOW_ENABLE_X64"


def x64_requested() -> bool:
    """Whether the environment asks jaxflow to turn float64 on (the default)."""
    return os.environ.get(ENV_VAR, "1").strip().lower() not in ("0", "false", "no", "off")


def enable_x64_by_default() -> None:
    if x64_requested():
        jax.config.update("jax_enable_x64", True)


def x64_enabled() -> bool:
    """Whether JAX currently computes in float64 by default."""
    return bool(jax.config.read("jax_enable_x64"))
