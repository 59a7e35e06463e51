"""Runs sharded over 4 (forced) CPU devices equal the single-device ones, and a store started
on 2 devices resumes on 1 or on 4, bitwise.

One subprocess starts with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (the flag must
be set before jax is imported) and checks ``jax.device_count() == 4``. Like every process of
the suite it compiles with XLA's classic CPU emitters (``CLASSIC_EMITTERS``, tests/conftest.py:
21 s here against 30 s on the default emitters, measured), but at LLVM's default optimisation
level, not the rest of the suite's level 0: measured, at level 0 the 1-device and 4-device
programs give results that differ in their last bits (threshold search, resumed store, the
ensemble's learning times), at the default level they are bitwise equal, so this file checks
the compiler users run (without the suite's ``UNOPTIMISED``). Every comparison below is made
inside this one process. Every run below passes its devices explicitly (``devices=`` of
``pd.run``, ``eos.run``, ``solve_ensemble``), so one process serves every device count; a
``sweep.Runner``'s program is the same whatever the device count (same lanes per share), and
on CPU it is compiled once (every share runs it on the first device), which is checked too;
the phase diagram's work queues are one program per device count, compiled once for all its
chunks (checked on 4 devices). It runs and prints as JSON:

* **Sharded = one device.** The phase diagram on a tiny grid (48 points, chunks of 4) on 4
  devices (its work queues: each device a queue of its share of a chunk's lanes) and on 1; a tiny
  edge-of-stability map (8 lanes across the stability line, the grid of
  tests/test_fault_tolerance.py's kill test) on 4 devices and on 1 (regimes, deciding steps,
  sharpness traces); an ensemble of 61 Lorenz problems (``jaxflow.engine.ensemble``, one work
  queue per device) on 4 devices and on 1, its saves and, through ``jaxflow.solve`` with
  ``Ensemble(devices=...)``, its learning times. Checked: every variable is bitwise identical
  (sweep.Runner keeps one program and one vmapped batch width whatever the device count; the
  ensemble engine's operations are elementwise across lanes), and the thresholds agree with
  theory.
* **Portable resume.** Chunk boundaries are the config's ``chunk_size`` exactly, whatever the
  device count (``sweep.Runner.chunk_size``; only ``call_size``, the lanes of one compiled call,
  depends on the devices; the store records nothing of the devices). The phase diagram runs on
  2 devices into a store (12 chunks of 4); four of its chunks are then "lost" (flag cleared,
  data garbled, as a kill mid-write leaves them); copies of that store are resumed on 1 device
  and on 4 (one chunk a call: a work queue of its 8 lanes). Each resume computes exactly
  the lost chunks (``JAXFLOW_CHUNK_LOG``), and every variable of both resumed datasets equals
  the 2-device run's bitwise (and the 4- and 1-device fresh runs').
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import CLASSIC_EMITTERS, UNOPTIMISED

LOST = [1, 5, 6, 11]
PD_VARIABLES = ("margin", "status", "steps", "incremental", "threshold_measured")

SCRIPT = textwrap.dedent(
    """
    import json, math, os, shutil, sys
    import numpy as np
    import jax
    import zarr
    from jaxflow.experiments import phase_diagram as pd

    jax.config.update("jax_enable_x64", True)  # jaxflow's runs are float64
    tmp, lost = sys.argv[1], json.loads(sys.argv[2])
    compiled = []  # the names of the programs XLA compiled (not those read from the cache)
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, seconds, **kw: compiled.append(kw.get("fun_name"))
        if event.endswith("backend_compile_duration") else None)
    devices = jax.devices()
    out = {"device_count": jax.device_count(), "local_device_count": len(jax.local_devices())}

    def chunks(name):  # the chunks a run computed, from the JAXFLOW_CHUNK_LOG audit hook
        with open(os.path.join(tmp, name + ".log")) as fh:
            return sorted(int(line.split()[1]) for line in fh if line.strip())

    def phase_diagram(name, devs, store=None, resume=False):
        os.environ["JAXFLOW_CHUNK_LOG"] = os.path.join(tmp, name + ".log")
        before = len(compiled)
        ds = pd.run(cfg, devices=devs, store=store, resume=resume, quiet=True)
        out[name] = {v: ds[v].values.tolist() for v in %(variables)r}
        out[name]["queue_compiled"] = compiled[before:].count("jit(_pairs)")
        out[name]["log_error"] = pd.threshold_log_error(ds).values.tolist()
        out[name]["chunks"] = chunks(name)

    cfg = pd.PhaseDiagramConfig(
        depths=(2.0, 3.0, math.inf),
        ratios=(1.5, 4.0),
        scales=tuple(float(s) for s in np.geomspace(1e-10, 1e-2, 8)),
        chunk_size=4,
    )
    phase_diagram("all", devices)
    phase_diagram("one", devices[:1])
    # portable resume: a store from 2 devices, 4 chunks lost, resumed on 1 and on 4 devices
    first = os.path.join(tmp, "two.zarr")
    phase_diagram("two", devices[:2], store=first)
    group = zarr.open_group(first, mode="r+")
    for i in lost:
        group["done"][i] = False
        group["out_margin_in_unit"][4 * i:4 * i + 4] = np.full(4, 123.0)
    for n in (1, 4):
        copy = os.path.join(tmp, f"resumed-on-{n}.zarr")
        shutil.copytree(first, copy)
        phase_diagram(f"resumed-on-{n}", devices[:n], store=copy, resume=True)
    os.environ.pop("JAXFLOW_CHUNK_LOG")

    # edge-of-stability regimes: 8 lanes across the stability line, chunks of 2
    from jaxflow.experiments import edge_of_stability as eos
    small = eos.EdgeOfStabilityConfig(depths=(2.0, 3.0), scales=(0.5,), eta_factors=(0.9, 1.1),
                                      inits=(0.0, 1.0), steps=48, stride=8, chunk_size=2)
    for label, devs in (("all", devices), ("one", devices[:1])):
        before = len(compiled)
        ds = eos.run(small, devices=devs, quiet=True)
        out[label]["eos_lanes_compiled"] = compiled[before:].count("jit(lanes)")
        out[label]["eos"] = {name: ds[name].values.astype(float).tolist() for name in
                             ("regime", "regime_step", "final_loss", "sharpness",
                              "flow_sharpness", "flow_distance")}
    # the ensemble engine: 61 Lorenz problems (rho in [0, 21]), one work queue per device
    import jax.numpy as jnp
    from jaxflow.engine import ensemble

    def lorenz(t, y, rho):
        return jnp.stack([10.0 * (y[1] - y[0]), y[0] * (rho - y[2]) - y[1],
                          y[0] * y[1] - 8.0 / 3.0 * y[2]])

    rho = jnp.linspace(0.0, 21.0, 61)
    y0 = jnp.broadcast_to(jnp.array([1.0, 0.0, 0.0]), (61, 3))
    for label, devs in (("all", devices), ("one", devices[:1])):
        ens = ensemble.solve_ensemble(lorenz, y0, rho, jnp.linspace(0.25, 1.0, 4), rtol=1e-8,
                                      atol=1e-8, devices=devs)
        out[label]["ensemble"] = {name: np.asarray(getattr(ens, name)).tolist() for name in
                                  ("ys", "steps", "rejected", "status")}
        # learning times through the contract, Ensemble(devices=...): when x first reaches
        # 2.5 and 5 (none required, so every lane runs to t = 1; inf where x never gets there)
        import jaxflow
        problem = jaxflow.Problem(vector_field=lambda y, r: lorenz(0.0, y, r), args=rho,
                                  params0=y0, modes=lambda y, r: y[:1],
                                  targets=jnp.full((61, 1), 5.0))
        flow = jaxflow.Flow(solver=jaxflow.Ensemble(devices=devs), rtol=1e-8, atol=1e-8)
        request = jaxflow.Request(fractions=(0.5, 1.0), horizon=1.0,
                                  required=np.zeros((1, 2), bool))
        learned = jaxflow.solve(problem, flow, request, batched=True)
        out[label]["ensemble"]["learning_times"] = np.asarray(
            learned.learning_times).tolist()
    print("RESULT " + json.dumps(out))
    """
) % {"variables": PD_VARIABLES}


@pytest.fixture(scope="module")
def result(tmp_path_factory, subprocess_env):
    env = dict(os.environ)
    # 4 CPU devices, the suite's emitters at the default optimisation level (tests/conftest.py)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count=4 {CLASSIC_EMITTERS}"
    env.pop(UNOPTIMISED)
    env.pop("JAXFLOW_CPU_DEVICES", None)
    env.pop("JAXFLOW_CHUNK_LOG", None)
    tmp = tmp_path_factory.mktemp("multidevice")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp), json.dumps(LOST)], env=env,
        capture_output=True, text=True, timeout=400
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert len(line) == 1, proc.stdout[-4000:]
    return json.loads(line[0][len("RESULT "):])


def test_four_devices_visible(result):
    assert result["device_count"] == 4
    assert result["local_device_count"] == 4


def test_a_runner_compiles_once_whatever_the_cpu_device_count(result):
    """On CPU every share of a sweep.Runner's call runs the one program on the first device
    (from its own thread); jax.jit would compile it once per device, 4 times here. The phase
    diagram's work queues are one program over all the devices (one queue each), compiled
    once for all its chunks and threshold calls. At most once: the run's compilation cache may
    already hold the program."""
    assert result["all"]["queue_compiled"] <= 1  # the phase diagram on 4 devices
    assert result["all"]["eos_lanes_compiled"] <= 1  # edge of stability on 4


@pytest.mark.parametrize("name", ["status", "steps"])
def test_sharded_equals_single_device_exactly(result, name):
    a = np.asarray(result["all"][name])
    b = np.asarray(result["one"][name])
    assert a.shape == b.shape == (3, 2, 8)
    # Every lane takes the same accepted and rejected steps on 4 devices as on one.
    assert np.array_equal(a, b)


@pytest.mark.parametrize("name", ["margin", "threshold_measured"])
def test_sharded_equals_single_device(result, name):
    a = np.asarray(result["all"][name])
    b = np.asarray(result["one"][name])
    assert a.shape == b.shape and a.size > 0
    # Bitwise. (With shard_map over a 4-device mesh, 3 of 48 margins differed by up to 8 ulp:
    # XLA compiles a multi-device program differently; sweep.Runner avoids it.)
    assert np.array_equal(a, b)


def test_store_from_two_devices_resumes_on_one_and_four(result):
    assert result["two"]["chunks"] == list(range(12))
    reference = result["two"]
    for devices in (1, 4):
        resumed = result[f"resumed-on-{devices}"]
        assert resumed["chunks"] == LOST, devices  # exactly the lost chunks, nothing else
        for name in PD_VARIABLES:
            assert np.array_equal(np.asarray(resumed[name]), np.asarray(reference[name])), \
                (devices, name)
    for name in PD_VARIABLES:  # and the fresh runs on 4 and 1 devices give the same bits
        assert np.array_equal(np.asarray(result["all"][name]), np.asarray(reference[name])), name


@pytest.mark.parametrize("name", ["regime", "regime_step", "final_loss", "sharpness",
                                  "flow_sharpness", "flow_distance"])
def test_edge_of_stability_regimes_are_bitwise_across_device_counts(result, name):
    """The edge-of-stability map (8 lanes across eta = 2 / lambda_bal) on 4 devices and on one:
    regimes, the steps deciding them, losses and the sharpness traces, bit for bit."""
    a = np.asarray(result["all"]["eos"][name])
    b = np.asarray(result["one"]["eos"][name])
    assert a.shape == b.shape and a.size >= 8
    assert np.array_equal(a, b, equal_nan=True)
    if name == "regime":  # both sides of the line are in the map: converged and not
        assert {0, 2} <= set(a.ravel().astype(int).tolist()), a


def test_both_agree_with_theory(result):
    for label in ("all", "one", "two", "resumed-on-1", "resumed-on-4"):
        err = np.asarray(result[label]["log_error"])
        assert err.shape == (3, 2)
        assert err.max() <= 1e-5, (label, err)
        assert (np.asarray(result[label]["status"]) == 0).all()


@pytest.mark.parametrize("name", ["ys", "steps", "rejected", "status", "learning_times"])
def test_ensemble_is_bitwise_across_device_counts(result, name):
    """61 Lorenz problems split over 4 devices (shares of 16, the last padded) and on one
    device (one queue of 61): every problem's saves, steps, status and learning times (the
    first times x reaches 2.5 and 5), bit for bit."""
    a = np.asarray(result["all"]["ensemble"][name])
    b = np.asarray(result["one"]["ensemble"][name])
    assert a.shape == b.shape and a.shape[0] == 61
    assert np.array_equal(a, b)
    if name == "status":
        assert (a == 0).all()
    if name == "learning_times":  # some lanes reach both levels, the slowest reach neither
        assert np.isfinite(a).all(axis=(1, 2)).any() and np.isinf(a).all(axis=(1, 2)).any()
    if name == "steps":  # rho spans the adaptive step counts: not one lockstep count
        assert a.min() < a.max()
