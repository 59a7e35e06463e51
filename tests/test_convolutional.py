"""Circular-convolutional linear networks (E4): FFT model against explicit circulant products."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxflow.models import convolutional as cn
from jaxflow.models import diagonal as dn


def _correlation_matrix(kernel):
    """C with (C h)_j = sum_l k_l h_{(j + l) mod d}: C[j, i] = k[(i - j) mod d]."""
    d = kernel.size
    return np.array([[kernel[(i - j) % d] for i in range(d)] for j in range(d)])


@pytest.mark.parametrize("depth, d", [(2, 5), (3, 6), (4, 7)])
def test_fft_canonical_model_equals_explicit_circulant_product(depth, d):
    params = cn.init(jax.random.key(depth), 0.5, depth, d)
    kernels = np.asarray(params["kernels"])
    v = np.asarray(params["dense"])
    # f(x) = v^T C_{N-1} ... C_1 x, so beta = C_1^T ... C_{N-1}^T v.
    product = np.eye(d)
    for k in kernels:
        product = _correlation_matrix(k) @ product
    beta = product.T @ v
    x = np.random.default_rng(0).standard_normal((4, d))
    # one compiled program per shape (op by op, every FFT and product compiles on its own)
    model = jax.jit(lambda p, x: (cn.beta(p), cn.canonical(p), cn.forward(p, x)))
    got_beta, got_canonical, got_forward = model(params, jnp.asarray(x))
    np.testing.assert_allclose(got_beta, beta, rtol=0, atol=1e-14)
    np.testing.assert_allclose(got_canonical, np.fft.rfft(beta), rtol=0, atol=1e-13)
    np.testing.assert_allclose(got_forward, x @ product.T @ v, atol=1e-13)


def test_one_layer_conv_net_is_a_linear_model():
    params = cn.init(jax.random.key(0), 1e-2, 1, 6)
    assert sorted(params) == ["dense"]
    x = jax.random.normal(jax.random.key(1), (3, 6))
    np.testing.assert_allclose(
        cn.beta(params), params["dense"], rtol=1e-14, atol=0
    )  # FFT round trip
    np.testing.assert_allclose(cn.forward(params, x), x @ params["dense"], atol=1e-16)
    data = dn.classification_data(jax.random.key(2), jnp.arange(6.0) - 2.5, 10)
    problem = dn.Problem(data, loss="logistic")
    assert float(cn.loss(params, problem)) == pytest.approx(
        float(dn.linear_loss(params["dense"], data, "logistic")), rel=1e-15
    )


def test_fourier_target_modes_and_targets():
    w = cn.fourier_target(16, (3.0, 4.0, 6.0, 12.0))
    spectrum = np.abs(np.fft.rfft(np.asarray(w)))
    np.testing.assert_allclose(spectrum[:4] / spectrum[3], [0.25, 1 / 3, 0.5, 1.0], rtol=1e-12)
    assert np.max(spectrum[4:]) < 1e-12 and float(jnp.linalg.norm(w)) == pytest.approx(1.0)
    data = dn.classification_data(jax.random.key(0), w, 8)
    problem = dn.Problem(data)
    params = cn.init(jax.random.key(1), 1.0, 2, 16)
    modes = np.asarray(cn.modes(params, problem, k=5))
    np.testing.assert_allclose(
        modes, np.abs(np.asarray(cn.canonical(params)))[[3, 2, 1, 0, 4]], rtol=1e-14
    )
    assert cn.targets(problem, k=5).tolist() == [1.0, 1.0, 1.0, 1.0, 0.0]
    rms = jax.jit(lambda key: jnp.sqrt(jnp.mean(jnp.abs(cn.canonical(cn.init(key, 1e-2, 3, 400)))
                                                 ** 2)))
    init_rms = [float(rms(jax.random.key(s))) for s in range(4)]
    assert 0.3e-2 < np.mean(init_rms) < 3e-2  # about init (a product of 3 random amplitudes)


def test_clear_errors():
    with pytest.raises(ValueError, match=r"depth \(the number of layers\) must be an integer >= 1"):
        cn.init(jax.random.key(0), 1e-2, 0, 8)
    with pytest.raises(ValueError, match="one length d"):
        cn.beta({"kernels": jnp.ones((1, 4)), "dense": jnp.ones(5)})
    with pytest.raises(ValueError, match="inputs must have shape"):
        cn.forward(cn.init(jax.random.key(0), 1e-2, 2, 4), jnp.ones((3, 5)))
    with pytest.raises(ValueError, match="amplitudes"):
        cn.fourier_target(4, (1.0, 1.0, 1.0, 1.0))


@pytest.mark.parametrize("depth", [2, 3])
def test_bin_learning_times_match_a_direct_solve_of_the_network(depth):
    """The per-bin oracle (drive, unbalanced layers, phase) against scipy's DOP853 on the whole
    network's parameters under the linear loss -<beta, c>, where the bins decouple exactly:
    agreement to 1e-9 relative (measured 1.4e-12 at depths 1-4, including bins that start
    more than 90 degrees from their drive and the real bins that start with the wrong sign).
    One drive bin at a time: at depth >= 3 a driven bin blows up in finite time. ~2 s."""
    from scipy.integrate import solve_ivp

    from jaxflow.oracles import fourier_bins

    d, levels = 8, [0.1, 0.5]
    params = cn.init(jax.random.key(depth), 1e-2, depth, d)
    c = np.random.default_rng(depth).standard_normal(d)
    drive = np.fft.rfft(c)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    grad = jax.jit(jax.grad(lambda f, cc: -jnp.dot(cn.beta(unravel(f)), cc)))
    amplitude = jax.jit(lambda f: jnp.abs(cn.canonical(unravel(f))))
    observed = np.full((d // 2 + 1, len(levels)), np.inf)
    for k in range(d // 2 + 1):
        ck = np.fft.irfft(np.where(np.arange(d // 2 + 1) == k, drive, 0), n=d)
        events = [lambda t, y, a=a, k=k: float(amplitude(y)[k]) - a for a in levels]
        events[-1].terminal = True
        sol = solve_ivp(lambda t, y: -np.asarray(grad(y, ck)), (0, 100), np.asarray(flat),
                        method="DOP853", rtol=1e-12, atol=1e-14, events=events)
        observed[k] = [e[0] for e in sol.t_events]
    predicted = fourier_bins.learning_times(np.asarray(cn.layer_spectra(params)), drive, levels)
    np.testing.assert_allclose(predicted, observed, rtol=1e-9)
    phases = np.angle(np.prod(np.asarray(cn.layer_spectra(params)), axis=0) * np.conj(drive))
    assert np.any(np.abs(phases) > np.pi / 2)  # a bin that first moves away from its drive


def test_bin_learning_times_refuse_bad_shapes_and_levels():
    from jaxflow.oracles import fourier_bins

    with pytest.raises(ValueError, match="layers must have shape"):
        fourier_bins.learning_times(np.ones((2, 3)), np.ones(2), [0.5])
    with pytest.raises(ValueError, match="levels must be finite and > 0"):
        fourier_bins.learning_times(np.ones((2, 3)), np.ones(3), [0.0])
    # a bin that starts above the level: 0; no drive: never
    assert fourier_bins.learning_times(np.ones((1, 2)), [1.0, 0.0], [0.5, 2.0]).tolist() == [
        [0.0, 1.0], [0.0, np.inf]]


def test_init_refuses_an_infinite_scale():
    with pytest.raises(ValueError, match=r"scale \(init\) must be > 0 and finite, got inf"):
        cn.init(jax.random.key(0), float("inf"), depth=2, d=4)
