import os

import jax


# The suite runs on one CPU device (jaxflow would otherwise ask for one per core): tests that
# count chunks and traces assume it; tests/test_multidevice.py checks 4 devices explicitly.
os.environ.setdefault("JAXFLOW_CPU_DEVICES", "1")

# Same numerics policy as diffrax's test-suite: float64, and no silent dtype promotion.
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")

import jaxflow  # noqa: E402,F401

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def smoke_run():
    """``smoke_run(name)``: the registered experiment ``name`` run once per session at its smoke
    size (``Config.smoke()``), shared by every test file that checks it: the smoke runs are the
    suite's costliest fixtures, so none is computed twice."""
    from jaxflow import experiments

    cache = {}

    def get(name: str):
        if name not in cache:
            experiment = experiments.get(name)
            cache[name] = experiment.run(experiment.config.smoke())
        return cache[name]

    return get
