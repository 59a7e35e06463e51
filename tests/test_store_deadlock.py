"""No deadlock: batched LAPACK inside a sweep on two XLA CPU devices finishes.

jaxlib's batched SVD kernel blocks an XLA pool thread while its batch runs on the same pool;
two devices doing so at once on a 2-thread pool hung for ever (see
:mod:`jaxflow.sweep.concurrency`; measured on the old code: 3 of 3 runs of 60 calls hung, 1 of
3 runs of 20 calls). The sweep now runs such programs on one device at a time. Checked in a
subprocess with 2 forced CPU devices and a timeout, so that a regression fails instead of
hanging CI: 24 calls of 1024 lanes, each a 10-step scan of 10 x 10 SVDs, give the same bits as
one device.
"""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    from jaxflow import sweep
    from jaxflow.sweep import concurrency

    def point(p):
        m0 = p["x"] * jnp.eye(10) + jnp.sin(jnp.arange(100.0)).reshape(10, 10)
        def step(m, _):
            s = jnp.linalg.svd(m, compute_uv=False)
            return m * 0.999 + 1e-3 * s[0], s[0]
        return {"s": jax.lax.scan(step, m0, None, length=10)[1][-1]}

    assert len(jax.devices()) == 2
    runner = sweep.Runner(point, chunk_size=1024)
    points = {"x": np.linspace(1.0, 2.0, 1024)}
    text = jax.jit(jax.vmap(point)).lower(points).as_text()
    assert concurrency.serial_devices(text, ["cpu", "cpu"])
    for _ in range(24):
        both = runner.chunk(points)
    one = sweep.Runner(point, chunk_size=1024, devices=jax.devices()[:1]).chunk(points)
    assert np.array_equal(both["s"], one["s"])
    print("finished", flush=True)
    """
)


def test_batched_svd_on_two_cpu_devices_finishes(subprocess_env):
    env = dict(subprocess_env, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    env.pop("JAXFLOW_CPU_DEVICES", None)
    try:
        done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                              text=True, timeout=240)
    except subprocess.TimeoutExpired:
        raise AssertionError("batched SVD on 2 CPU devices hung (timeout 240 s)") from None
    assert done.returncode == 0 and "finished" in done.stdout, done.stderr[-2000:]
