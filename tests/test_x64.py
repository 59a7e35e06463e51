"""float64 by default: importing jaxflow turns x64 on; JAXFLOW_ENABLE_X64=0 opts out."""

import os
import subprocess
import sys

import pytest


def _probe(env_value):
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    if env_value is not None:
        env["JAXFLOW_ENABLE_X64"] = env_value
    code = (
        "import jax, jax.numpy as jnp; import jaxflow; "
        "from jaxflow import theory; "
        "print(jnp.zeros(1).dtype, theory.learning_time(2.0, 1.0, 1e-300, 0.5).dtype)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.split()


@pytest.mark.parametrize("value", [None, "1", "yes"])
def test_import_enables_float64(value):
    assert _probe(value) == ["float64", "float64"]


@pytest.mark.parametrize("value", ["0", "false", "off"])
def test_opt_out_leaves_jax_default(value):
    assert _probe(value)[0] == "float32"


def test_one_cpu_device_per_core_by_default_with_opt_out():
    """jaxflow asks for one XLA CPU device per core unless told otherwise (jaxflow._devices)."""
    code = "import jax, jaxflow, os; print(jax.device_count(), os.cpu_count())"
    skip = ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES", "JAXFLOW_CPU_DEVICES")
    env = {k: v for k, v in os.environ.items() if k not in skip}
    count, cores = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                  text=True, check=True).stdout.split()
    assert count == cores
    env["JAXFLOW_CPU_DEVICES"] = "1"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split()[0] == "1"
