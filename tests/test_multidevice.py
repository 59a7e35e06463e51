"""The phase diagram sharded over 4 (forced) CPU devices equals the single-device result.

A subprocess starts with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (the flag must be
set before jax is imported), checks ``jax.device_count() == 4``, runs ``pd.run`` on a tiny grid
once with ``devices=jax.devices()`` (4 devices: each runs the same program on a quarter of
every chunk) and once with ``devices=[jax.devices()[0]]``, and prints both as JSON; the same
for a tiny edge-of-stability map (regimes, deciding steps, sharpness traces) and for an
ensemble of 301 Lorenz problems (``jaxflow.engine.ensemble``, one work queue per device). Checked:
every variable is bitwise identical (sweep.Runner keeps one program and one vmapped batch width
whatever the device count), and the thresholds agree with theory in both.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent(
    """
    import json, math
    import numpy as np
    import jax
    from jaxflow.experiments import phase_diagram as pd

    jax.config.update("jax_enable_x64", True)  # jaxflow's runs are float64

    cfg = pd.PhaseDiagramConfig(
        depths=(2.0, 3.0, math.inf),
        ratios=(1.5, 4.0),
        scales=tuple(float(s) for s in np.geomspace(1e-10, 1e-2, 8)),
        chunk_size=16,
    )
    devices = jax.devices()
    out = {"device_count": jax.device_count(), "local_device_count": len(jax.local_devices())}
    for label, devs in (("all", devices), ("one", devices[:1])):
        ds = pd.run(cfg, devices=devs, quiet=True)
        out[label] = {
            "device_count_attr": int(ds.attrs["device_count"]),
            "margin": ds["margin"].values.tolist(),
            "status": ds["status"].values.tolist(),
            "steps": ds["steps"].values.tolist(),
            "threshold_measured": ds["threshold_measured"].values.tolist(),
            "log_error": pd.threshold_log_error(ds).values.tolist(),
        }
    # edge-of-stability regimes: a tiny map across the stability line, 8 lanes in chunks of 4
    from jaxflow.experiments import edge_of_stability as eos
    small = eos.EdgeOfStabilityConfig(depths=(2.0, 3.0), scales=(0.5,), eta_factors=(0.9, 1.1),
                                      inits=(0.0, 1.0), steps=48, stride=8, chunk_size=4)
    for label, devs in (("all", devices), ("one", devices[:1])):
        ds = eos.run(small, devices=devs, quiet=True)
        out[label]["eos"] = {name: ds[name].values.astype(float).tolist() for name in
                             ("regime", "regime_step", "final_loss", "sharpness",
                              "flow_sharpness", "flow_distance")}
    # the ensemble engine: 301 Lorenz problems (rho in [0, 21]), one work queue per device
    import jax.numpy as jnp
    from jaxflow.engine import ensemble

    def lorenz(t, y, rho):
        return jnp.stack([10.0 * (y[1] - y[0]), y[0] * (rho - y[2]) - y[1],
                          y[0] * y[1] - 8.0 / 3.0 * y[2]])

    rho = jnp.linspace(0.0, 21.0, 301)
    y0 = jnp.broadcast_to(jnp.array([1.0, 0.0, 0.0]), (301, 3))
    for label, devs in (("all", devices), ("one", devices[:1])):
        ens = ensemble.solve_ensemble(lorenz, y0, rho, jnp.linspace(0.25, 1.0, 4), rtol=1e-8,
                                      atol=1e-8, devices=devs)
        out[label]["ensemble"] = {name: np.asarray(getattr(ens, name)).tolist() for name in
                                  ("ys", "steps", "rejected", "status")}
    print("RESULT " + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def result():
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=400
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert len(line) == 1, proc.stdout[-4000:]
    return json.loads(line[0][len("RESULT "):])


def test_four_devices_visible(result):
    assert result["device_count"] == 4
    assert result["local_device_count"] == 4


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
    for label in ("all", "one"):
        err = np.asarray(result[label]["log_error"])
        assert err.shape == (3, 2)
        assert err.max() <= 1e-5, (label, err)
        assert (np.asarray(result[label]["status"]) == 0).all()


@pytest.mark.parametrize("name", ["ys", "steps", "rejected", "status"])
def test_ensemble_is_bitwise_across_device_counts(result, name):
    """301 Lorenz problems split over 4 devices (shares of 76, the last padded) and on one
    device (one queue of 301): every problem's saves, steps and status, bit for bit."""
    a = np.asarray(result["all"]["ensemble"][name])
    b = np.asarray(result["one"]["ensemble"][name])
    assert a.shape == b.shape and a.shape[0] == 301
    assert np.array_equal(a, b)
    if name == "status":
        assert (a == 0).all()
    if name == "steps":  # rho spans the adaptive step counts: not one lockstep count
        assert a.min() < a.max()
