"""Portable resume: a store started on 2 devices resumes on 1 or on 4, bitwise identically.

Chunk boundaries are the config's ``chunk_size`` exactly, whatever the device count
(``sweep.Runner.chunk_size``; only ``call_size``, the lanes of one compiled call, depends on the
devices). Checked with three subprocesses, each with ``--xla_force_host_platform_device_count``
set before jax is imported:

1. 2 devices run the phase diagram (48 points, 12 chunks of 4) into a store; four of its chunks
   are then "lost" (flag cleared, data garbled, as a kill mid-write leaves them);
2. copies of that store are resumed on 1 device and on 4 devices (2 or 4 chunks packed in one
   call of 8 or 16 lanes);
3. each resume computes exactly the lost chunks (``JAXFLOW_CHUNK_LOG``), and every variable of
   both resumed datasets equals the 2-device run's bitwise.
"""

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import zarr

LOST = [1, 5, 6, 11]

SCRIPT = textwrap.dedent(
    """
    import json, math, sys
    import numpy as np
    import jax
    from jaxflow.experiments import phase_diagram as pd

    jax.config.update("jax_enable_x64", True)  # jaxflow's runs are float64
    store, resume, devices = sys.argv[1], sys.argv[2] == "resume", int(sys.argv[3])
    assert jax.device_count() == devices, jax.device_count()
    cfg = pd.PhaseDiagramConfig(depths=(2.0, 3.0, math.inf), ratios=(1.5, 4.0),
                                scales=tuple(float(s) for s in np.geomspace(1e-10, 1e-2, 8)),
                                chunk_size=4)
    ds = pd.run(cfg, store=store, resume=resume, quiet=True)
    print("RESULT " + json.dumps({name: ds[name].values.tolist() for name in
                                  ("margin", "status", "steps", "incremental",
                                   "threshold_measured")}))
    """
)


def run(env, store, mode, devices, log):
    env = dict(env)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAXFLOW_CHUNK_LOG"] = str(log)
    env.pop("JAXFLOW_CPU_DEVICES", None)
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(store), mode, str(devices)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result(proc):
    out, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err[-4000:]
    line = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    return json.loads(line[0][len("RESULT "):])


def chunks(log):
    return sorted(int(line.split()[1]) for line in Path(log).read_text().splitlines())


def test_store_from_two_devices_resumes_on_one_and_four(tmp_path, subprocess_env):
    first = tmp_path / "two.zarr"
    reference = result(run(subprocess_env, first, "fresh", 2, tmp_path / "two.log"))
    assert chunks(tmp_path / "two.log") == list(range(12))

    group = zarr.open_group(str(first), mode="r+")
    for i in LOST:
        group["done"][i] = False
        group["out_margin_in_unit"][4 * i:4 * i + 4] = np.full(4, 123.0)

    procs = {}
    for devices in (1, 4):
        copy = tmp_path / f"resumed-on-{devices}.zarr"
        shutil.copytree(first, copy)
        procs[devices] = run(subprocess_env, copy, "resume", devices, tmp_path / f"{devices}.log")
    for devices, proc in procs.items():
        resumed = result(proc)
        assert chunks(tmp_path / f"{devices}.log") == LOST, devices
        for name, values in reference.items():
            assert np.array_equal(np.asarray(resumed[name]), np.asarray(values)), (devices, name)
