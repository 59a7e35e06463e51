"""No global change at import; float64 entry points refuse to run while x64 is off.

* Importing every module of jaxflow (a fresh process, x64 off, a notebook's inline backend, with
  and without ``DISPLAY``) leaves ``jax_enable_x64``, the CPU device count and matplotlib's
  backend as they were (jaxflow.plot among them: tests/test_figures.py relies on this).
* With x64 off, the theory functions, the experiments' ``run`` and ``sweep.run`` raise one
  ``X64Error`` naming the fix (why an error and not a local scope: ``jaxflow._x64``); a float32
  sweep still runs; inside a ``jax.enable_x64(True)`` block a sweep computes in float64 in every
  device's thread.
"""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxflow import _x64, sweep
from jaxflow.experiments import phase_diagram, quadratic
from jaxflow.oracles import theory

INLINE = "module://matplotlib_inline.backend_inline"

PROBE = """
import json, os, pkgutil, importlib
import jax, matplotlib
def state():
    return {"x64": bool(jax.config.read("jax_enable_x64")),
            "cpu_devices": jax.config.jax_num_cpu_devices,
            "xla_flags": os.environ.get("XLA_FLAGS"), "backend": matplotlib.get_backend()}
before = state()
import jaxflow
names = [m.name for m in pkgutil.walk_packages(jaxflow.__path__, "jaxflow.")]
for name in names:
    importlib.import_module(name)
after = state()
print(json.dumps({"before": before, "after": after, "modules": len(names),
                  "local_devices": jax.local_device_count()}))
"""


def _probe_env(subprocess_env, display):
    env = dict(subprocess_env, MPLBACKEND=INLINE)
    # Nothing chooses for jaxflow: x64 off, JAX's default device count (the settings jaxflow
    # used to change at import).
    for name in ("JAX_ENABLE_X64", "JAXFLOW_CPU_DEVICES", "JAX_NUM_CPU_DEVICES", "XLA_FLAGS",
                 "DISPLAY"):
        env.pop(name, None)
    if display:
        env["DISPLAY"] = ":0"
    return env


def test_importing_every_module_changes_no_global_setting(subprocess_env):
    import json

    # The two cases run side by side: each is one interpreter importing the whole package.
    procs = [subprocess.Popen([sys.executable, "-c", PROBE], env=_probe_env(subprocess_env, d),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for d in (False, True)]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        result = json.loads(out.strip().splitlines()[-1])
        assert result["modules"] > 30, result
        assert result["after"] == result["before"], result
        assert result["before"]["x64"] is False and result["before"]["backend"] == INLINE
        assert result["local_devices"] == 1, result


def test_float64_entry_points_refuse_while_x64_is_off():
    with jax.enable_x64(False):
        with pytest.raises(_x64.X64Error) as info:
            theory.learning_time(2.0, 1.0, 1e-300, 0.5)
        message = str(info.value)
        assert "jaxflow.oracles.theory.learning_time" in message and _x64.FIX in message
        with pytest.raises(_x64.X64Error, match="incremental_threshold"):
            theory.incremental_threshold(2.0, 10.0)
        with pytest.raises(_x64.X64Error, match="quadratic.run"):
            quadratic.run(quadratic.QuadraticConfig.smoke(), quiet=True)
        # The float32 phase diagram still recomputes unresolved lanes (and theory) in float64.
        config = phase_diagram.PhaseDiagramConfig.smoke()
        with pytest.raises(_x64.X64Error, match="phase_diagram.run"):
            phase_diagram.run(type(config)(**{**vars(config), "dtype": "float32"}), quiet=True)
        with pytest.raises(_x64.X64Error, match="float32=True"):
            sweep.run(lambda p: {"y": p["x"]}, {"x": [1.0, 2.0]}, quiet=True)
        # A float32 sweep asked for float32: it runs.
        runner = sweep.Runner(lambda p: {"y": 2.0 * p["x"]}, chunk_size=2, float32=True)
        ds = sweep.run(None, {"x": [1.0, 2.0]}, runner=runner, quiet=True)
        assert ds["y"].values.tolist() == [2.0, 4.0] and ds.attrs["dtype"] == "float32"


def test_a_local_x64_block_reaches_every_device_thread():
    """x64 on only in the caller's ``jax.enable_x64(True)`` block: the sweep's device threads
    (two, here on one device) compute in float64 too, as the dataset says."""
    device = jax.local_devices()[0]

    def point(p):
        tiny = p["x"] * 1e-30
        return {"y": tiny * tiny / 1e-30}  # 1e-60 is 0 in float32

    jax.config.update("jax_enable_x64", False)
    try:
        with jax.enable_x64(True):
            runner = sweep.Runner(point, chunk_size=4, devices=[device, device], batch=2)
            ds = sweep.run(None, {"x": [1.0, 2.0, 3.0, 4.0]}, runner=runner, quiet=True)
            expected = theory.learning_time(2.0, 1.0, 1e-300, 0.5)
    finally:
        jax.config.update("jax_enable_x64", True)
    np.testing.assert_allclose(ds["y"].values, [1e-30, 4e-30, 9e-30, 16e-30], rtol=1e-12)
    assert ds.attrs["dtype"] == "float64"
    assert expected.dtype == np.float64 and abs(float(expected) - np.log(1e300 - 1)) < 1e-9


def test_the_command_turns_float64_on_for_its_own_process(capsys):
    import matplotlib

    from jaxflow import cli

    jax.config.update("jax_enable_x64", False)
    try:
        assert cli.main(["info"]) == 0
        assert bool(jax.config.read("jax_enable_x64"))
    finally:
        jax.config.update("jax_enable_x64", True)
    assert "float64    on" in capsys.readouterr().out
    assert matplotlib.get_backend().lower() == "agg"


def test_the_old_opt_out_variable_is_refused(cli_refuses, monkeypatch):
    monkeypatch.setenv("JAXFLOW_ENABLE_X64", "0")
    cli_refuses(["info"], "JAXFLOW_ENABLE_X64", "--dtype float32")


def test_the_command_asks_for_one_cpu_device_per_core(subprocess_env):
    """The command sets the device count before JAX starts its backends (jaxflow._devices)."""
    env = {k: v for k, v in subprocess_env.items()
           if k not in ("JAXFLOW_CPU_DEVICES", "JAX_NUM_CPU_DEVICES", "XLA_FLAGS")}
    out = subprocess.run([sys.executable, "-m", "jaxflow.cli", "info"], env=env, check=True,
                         capture_output=True, text=True, timeout=300).stdout
    assert out.count("\ndevice ") == os.cpu_count(), out
