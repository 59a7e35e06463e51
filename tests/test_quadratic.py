"""Quadratic networks (docs/science/experiments.md, E2): the model, its population loss and the experiment."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxflow.engine import descent, status
from jaxflow.experiments import quadratic as qe
from jaxflow.experiments.config import ConfigError
from jaxflow.models import quadratic as qn

# shares conftest's smoke_run with tests/test_experiments.py: one worker computes it once
pytestmark = pytest.mark.xdist_group("smoke_runs")

# ---------------------------------------------------------------------------------------------
# The Gaussian fourth-moment identity behind the time scale


def test_quadratic_form_second_moment_monte_carlo():
    # E[(x^T D x + c)^2] = 2 ||D||_F^2 + (tr D + c)^2 for symmetric D, x ~ N(0, I).
    rng = np.random.default_rng(0)
    d, n = 4, 1_000_000
    a = rng.standard_normal((d, d))
    sym = 0.5 * (a + a.T)
    c = 0.7
    x = rng.standard_normal((n, d))
    q = np.einsum("ki,ij,kj->k", x, sym, x) + c
    samples = q**2
    exact = 2.0 * np.sum(sym**2) + (np.trace(sym) + c) ** 2
    stderr = samples.std(ddof=1) / np.sqrt(n)
    assert abs(samples.mean() - exact) < 5.0 * stderr, (samples.mean(), exact, stderr)
    # The model's population loss is this identity with D = W^T W - M*, c = b.
    params = {"w": jnp.asarray(rng.standard_normal((d, d))), "bias": jnp.asarray(c)}
    target = jnp.asarray(sym)
    diff = np.asarray(qn.gram(params)) - sym
    expected = 2.0 * np.sum(diff**2) + (np.trace(diff) + c) ** 2
    assert float(qn.population_loss(params, target)) == pytest.approx(expected, rel=1e-12)


def test_population_flow_on_commuting_start_matches_docstring():
    # For diagonal W (P commutes with a diagonal M*), -grad of the population loss moves the
    # eigenvalues p_i = w_i^2 as  16 p_i (s_i - p_i) - 8 (tr D + b) p_i  and b as -2 (tr D + b).
    s = jnp.array([1.0, 0.5, 1.0 / 3.0, 0.0])
    w = jnp.array([0.3, 0.2, 0.05, 0.01])
    p = w**2
    target = jnp.diag(s)
    trace_d = jnp.sum(p - s)
    for params in ({"w": jnp.diag(w)}, {"w": jnp.diag(w), "bias": jnp.asarray(1.5)}):
        grads = jax.grad(qn.population_loss)(params, target)
        dw = -grads["w"]
        dp = jnp.diag(dw.T @ params["w"] + params["w"].T @ dw)
        shift = trace_d + params.get("bias", 0.0)
        np.testing.assert_allclose(dp, 16.0 * p * (s - p) - 8.0 * shift * p, rtol=1e-12)
        assert float(jnp.max(jnp.abs(dw - jnp.diag(jnp.diag(dw))))) == 0.0  # stays diagonal
        if "bias" in params:
            assert float(-grads["bias"]) == pytest.approx(-2.0 * float(shift), rel=1e-12)
    assert qn.time_scale() == 16.0


def test_population_descent_with_bias_follows_time_scale_and_lag():
    # Half-learning times of the population loss with a bias, against the docstring: the
    # decoupled toy flow with c = 16 plus the bias-lag delay sum_{i<j} s_i / (4 s_j).
    # Measured (lr 1e-3): 0.613, 1.552, 2.615, 3.723 against 0.576, 1.565, 2.646, 3.789.
    d, init = 10, 1e-4
    target = qn.diagonal_target(d)
    params = {"w": jnp.sqrt(init) * jnp.eye(d), "bias": jnp.trace(target) - d * init}
    s = np.array([1.0, 0.5, 1.0 / 3.0, 0.25])
    run = descent.gradient_descent(
        qn.population_loss, params, args=target, learning_rate=1e-3, num_steps=6000,
        save_every=100, modes=qn.modes, targets=jnp.asarray(np.append(s, 0.0)), fractions=(0.5,))
    decoupled = np.log((s - init) / init) / (qn.time_scale() * s)
    lag = np.concatenate([[0.0], np.cumsum(s)[:-1]]) / (4.0 * s)
    np.testing.assert_allclose(run.learning_times[:4, 0], decoupled + lag, rtol=0.1)


# ---------------------------------------------------------------------------------------------
# Model


@pytest.fixture(scope="module")
def small():
    data = qn.gaussian_data(jax.random.key(3), qn.diagonal_target(5, (1.0, 0.5)), 11, noise=0.1)
    return data


def test_data_and_loss_definition(small):
    data = qn.gaussian_data(jax.random.key(0), qn.diagonal_target(5, (1.0, 0.5)), 11)
    x = np.asarray(data.inputs)
    np.testing.assert_allclose(data.observations, x[:, 0] ** 2 + 0.5 * x[:, 1] ** 2, rtol=1e-13)
    params = qn.init(jax.random.key(1), 0.3, small, bias=True)
    w, b = np.asarray(params["w"]), float(params["bias"])
    xs = np.asarray(small.inputs)
    f = np.sum((xs @ w.T) ** 2, axis=1) + b
    np.testing.assert_allclose(qn.predict(params, small.inputs), f, rtol=1e-13)
    expected = np.mean((f - np.asarray(small.observations)) ** 2)
    assert float(qn.loss(params, small)) == pytest.approx(expected, rel=1e-13)


@pytest.mark.parametrize("bias", [False, True])
def test_gradient_matches_finite_differences(small, bias):
    key_w, key_dir = jax.random.split(jax.random.key(7))
    params = qn.init(key_w, 0.5, small, bias=bias)
    params["w"] = params["w"] + 0.3 * jax.random.normal(key_dir, params["w"].shape)
    grads = jax.grad(qn.loss)(params, small)
    directions = jax.tree_util.tree_map(
        lambda leaf: jax.random.normal(jax.random.key(leaf.size), leaf.shape), params)
    h = 1e-5

    def along(eps):
        moved = jax.tree_util.tree_map(lambda p, v: p + eps * v, params, directions)
        return float(qn.loss(moved, small))

    numeric = (along(h) - along(-h)) / (2.0 * h)
    analytic = sum(float(jnp.sum(g * v)) for g, v in zip(
        jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(directions)))
    assert numeric == pytest.approx(analytic, rel=1e-7)


def test_modes_at_init_equal_init(small):
    for bias in (False, True):
        params = qn.init(jax.random.key(2), 1e-4, small, bias=bias)
        np.testing.assert_allclose(qn.eigenvalues(params), 1e-4, rtol=1e-10)
        np.testing.assert_allclose(qn.modes(params, small), 1e-4, rtol=1e-10)
        np.testing.assert_allclose(qn.gram(params), 1e-4 * np.eye(5), atol=1e-17)
        assert qn.modes(params, small, k=3).shape == (3,)
    assert float(params["bias"]) == pytest.approx(float(jnp.mean(small.observations)), rel=1e-14)
    assert sorted(qn.init(jax.random.key(2), 1e-4, small)) == ["w"]
    np.testing.assert_array_equal(qn.targets(small), [1.0, 0.5, 0.0, 0.0, 0.0])
    # A rotated target has the same eigenvalues.
    q = np.linalg.qr(np.random.default_rng(0).standard_normal((5, 5)))[0]
    m_star = q @ np.diag([0.0, 0.5, 0.0, 1.0, 0.0]) @ q.T
    rotated = qn.gaussian_data(jax.random.key(0), 0.5 * (m_star + m_star.T), 4)
    np.testing.assert_allclose(qn.targets(rotated, k=3), [1.0, 0.5, 0.0], atol=1e-15)


def test_bad_inputs_raise(small):
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="square"):
        qn.gaussian_data(key, jnp.zeros((3, 4)), 5)
    with pytest.raises(ValueError, match="square"):
        qn.gaussian_data(key, jnp.zeros(3), 5)
    with pytest.raises(ValueError, match="symmetric"):
        qn.gaussian_data(key, jnp.array([[1.0, 2.0], [0.0, 1.0]]), 5)
    with pytest.raises(ValueError, match="m"):
        qn.gaussian_data(key, jnp.eye(3), 0)
    with pytest.raises(ValueError, match="noise"):
        qn.gaussian_data(key, jnp.eye(3), 5, noise=-1.0)
    with pytest.raises(ValueError, match="dimension"):
        qn.Data(jnp.zeros((4, 3)), jnp.zeros(4), jnp.eye(2))
    with pytest.raises(ValueError, match="observations"):
        qn.Data(jnp.zeros((4, 3)), jnp.zeros(5), jnp.eye(3))
    wrong = {"w": jnp.eye(4)}  # d = 4 against data with d = 5
    with pytest.raises(ValueError, match="d = 5"):
        qn.loss(wrong, small)
    with pytest.raises(ValueError, match="k"):
        qn.modes(qn.init(key, 1e-3, small), small, k=6)
    with pytest.raises(ValueError, match="k"):
        qn.targets(small, k=6)
    with pytest.raises(ValueError, match="scale"):
        qn.init(key, 0.0, small)
    with pytest.raises(ValueError, match="fit"):
        qn.diagonal_target(2, (1.0, 0.5, 0.2))
    with pytest.raises(ConfigError, match="num_modes"):
        qe.QuadraticConfig(d=4)
    with pytest.raises(ConfigError, match="m must be"):
        qe.QuadraticConfig(m=0)
    with pytest.raises(ConfigError, match="multiple"):
        qe.QuadraticConfig(num_steps=1001, save_every=50)
    with pytest.raises(ConfigError, match="scale"):
        qe.QuadraticConfig(scale=-1.0)


# ---------------------------------------------------------------------------------------------
# The experiment at smoke size


@pytest.fixture(scope="module")
def smoke(smoke_run):
    return smoke_run("quadratic")


def test_smoke_layout(smoke):
    ds = smoke
    assert set(ds.data_vars) == {
        "modes", "targets", "learning_time", "status", "gradient_evaluations", "wall_time",
        "reconstruction_error", "train_loss",
    }
    assert ds["modes"].dims == ("bias", "backend", "depth", "time", "mode")
    assert ds["learning_time"].dims == ("bias", "backend", "depth", "mode", "fraction")
    for name in ("status", "gradient_evaluations", "wall_time", "reconstruction_error",
                 "train_loss"):
        assert ds[name].dims == ("bias", "backend", "depth"), name
    assert ds["targets"].dims == ("mode",)
    assert ds["bias"].values.tolist() == [False, True]
    assert ds["backend"].values.tolist() == ["flow", "descent"]
    assert ds["depth"].values.tolist() == [2]
    cfg = qe.QuadraticConfig.smoke()
    assert ds.sizes["time"] == cfg.num_steps // cfg.save_every + 1
    np.testing.assert_allclose(ds["time"], cfg.learning_rate * cfg.save_every
                               * np.arange(ds.sizes["time"]), rtol=1e-12)
    np.testing.assert_allclose(ds["targets"], [1.0, 0.5, 1.0 / 3.0, 0.25, 0.0], rtol=1e-14)
    assert (ds["status"].values == status.OK).all() and ds.attrs["ok"] == 1
    assert np.isfinite(ds["modes"].values).all()
    # Both variants start from the same W(0): every eigenvalue at init.
    np.testing.assert_allclose(ds["modes"].isel(time=0), cfg.scale, rtol=1e-10)
    # With the bias the four targets are learned (90%) and W^T W reconstructs M*.
    assert (ds["reconstruction_error"].sel(bias=True) < 0.01).all()
    assert np.isfinite(ds["learning_time"].sel(bias=True, fraction=0.9).values[..., :4]).all()


def test_smoke_descent_matches_flow(smoke):
    flow = smoke["modes"].sel(backend="flow").isel(time=-1).values
    descent = smoke["modes"].sel(backend="descent").isel(time=-1).values
    init = qe.QuadraticConfig.smoke().scale
    # Learned eigenvalues agree to ~1e-5, the decaying spurious ones to ~0.5% (O(lr)).
    np.testing.assert_array_less(np.abs(descent - flow) / np.maximum(np.abs(flow), init), 0.02)
    times = smoke["learning_time"].values
    finite = np.isfinite(times[:, 0])
    assert (finite == np.isfinite(times[:, 1])).all()
    lt_flow, lt_descent = times[:, 0][finite], times[:, 1][finite]
    np.testing.assert_array_less(np.abs(lt_descent - lt_flow) / lt_flow, 0.02)


def test_smoke_staircase_with_bias(smoke):
    # Eigenvalues reach half their targets one after the other, largest target first.
    half = smoke["learning_time"].sel(bias=True, fraction=0.5).isel(depth=0)
    for backend in ("flow", "descent"):
        times = half.sel(backend=backend).values[:4]
        assert np.all(np.diff(times) > 0.0), (backend, times)
        assert np.all(times[1:] / times[:-1] > 1.3), (backend, times)


def test_smoke_bias_removes_early_rise(smoke):
    # The zero-target eigenvalue (mode 4), up to the time the smallest target is half learned:
    # without bias the shared trace rate lifts it hundreds of times above init; with the bias
    # it stays within a few times init (measured: 264x against 3.7x init, ratio 71).
    init = qe.QuadraticConfig.smoke().scale
    peaks = {}
    for bias in (False, True):
        for backend in ("flow", "descent"):
            panel = smoke.sel(bias=bias, backend=backend).isel(depth=0)
            t4 = float(panel["learning_time"].sel(fraction=0.5).values[3])
            early = panel["time"].values <= t4
            peaks[bias, backend] = float(panel["modes"].values[early, 4].max())
    for backend in ("flow", "descent"):
        assert peaks[False, backend] > 100.0 * init, peaks
        assert peaks[True, backend] < 10.0 * init, peaks
        assert peaks[False, backend] > 10.0 * peaks[True, backend], peaks


def test_figure(smoke, tmp_path):
    fig = qe.figures(smoke)["quadratic"]
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert "time" in ax.get_xlabel()  # "flow time $t = \eta k$ ..."
        # 5 target lines + 5 flow curves + 5 descent marker series
        assert len(ax.get_lines()) == 15
    assert "eigenvalues" in fig.axes[0].get_ylabel()
    fig.savefig(tmp_path / "quadratic.png", dpi=60)
    assert (tmp_path / "quadratic.png").stat().st_size > 0


def test_init_refuses_an_infinite_scale():
    data = qn.gaussian_data(jax.random.key(0), jnp.eye(2), 3)
    with pytest.raises(ValueError, match=r"scale \(init\) must be > 0 and finite, got inf"):
        qn.init(jax.random.key(1), float("inf"), data)
