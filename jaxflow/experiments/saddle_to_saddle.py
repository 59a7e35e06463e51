"""Saddle-to-saddle: jump times of diagonal networks of depth 2-5 against the jump process.

One sparse regression problem (``y = X beta*``, ``beta* = (4, -3, 2, 0, ..., 0)``, ``d = 8``,
``m = 12`` Gaussian samples with unit columns, seed 3) is fitted by diagonal linear networks
``beta = w_+^N - w_-^N`` from ``w_+- (0) = alpha^(1/N)`` (``alpha`` is the initial scale of each
``|beta_i|``'s factors' product, :func:`jaxflow.models.diagonal.init`'s ``scale``) on the
squared loss ``mean_k (<beta, x_k> - y_k)^2``, for every depth and ``alpha``:

* **gradient flow** in log coordinates (:mod:`jaxflow.models.log_diagonal`: any ``alpha``), Tsit5
  at depth 2, Runge-Kutta-Chebyshev in plain time at depth >= 3 (stiff plateaus);
* **gradient descent** on the weights themselves (:mod:`jaxflow.models.diagonal`), with the
  learning rate set so that ``descent_steps`` steps reach the end of the grid, where that rate
  is at most ``max_learning_rate`` (else not run).

Both are saved on one grid of *rescaled* time ``t / time_scale(N, alpha)``
(:func:`jaxflow.jump_process.time_scale`: ``ln(1/alpha)/4`` at depth 2, ``alpha^-(1-2/N) /
(N (N-2))`` at depth N), read by :func:`jaxflow.saddles.detect`, and scored against the limiting
jump process of :func:`jaxflow.jump_process.jump_process`. On this problem that process has four
jumps (rescaled times 1.443, 2.256, 3.302, 4.644): coordinates 0, 1 enter, then coordinate 4
(``beta*_4 = 0``) enters, and leaves when coordinate 2 enters and the target is recovered.

Dataset (``config -> run -> report -> figures``):

    dims: backend, depth, alpha, time (rescaled), coordinate, jump, plateau
    modes(backend, depth, alpha, time, coordinate)      beta_i on the rescaled grid
    loss(backend, depth, alpha, time)
    jump_time(backend, depth, alpha, jump)              rescaled (NaN: not found / not run)
    jump_flow_time(backend, depth, alpha, jump)         in flow time t
    active(backend, depth, alpha, plateau, coordinate), plateau_loss(..., plateau), num_plateaus
    status, ran, steps, wall_time (backend, depth, alpha); time_unit(depth, alpha)
    invariant_drift(depth, alpha)   flow: max drift of the conserved quantity of
                                    jaxflow.models.log_diagonal.invariant (0 exactly at t = 0)
    oracle_jump_time(jump), oracle_active(plateau, coordinate), oracle_plateau_loss(plateau),
    oracle_beta(plateau, coordinate); targets(coordinate)

What the full run measured (``jaxflow experiment saddle-to-saddle``; numbers in
``report(ds)``; README gallery):

* depth 2: the rescaled jump times converge to the oracle's with error ``C_k / ln(1/alpha)``
  (the error times ``ln(1/alpha)`` is constant from ``alpha = 1e-30`` down to ``1e-300``, and the
  fitted exponent of the error against ``ln(1/alpha)`` is -1.0); the active sets and plateau
  losses match the oracle's, including coordinate 4 entering and leaving. At ``alpha = 1e-4``
  there is no staircase yet (transitions as long as plateaus).
* depth 3-5 (no published theory): the same jump process, in the time unit derived in
  :mod:`jaxflow.jump_process`, fits every depth; the relative error falls like ``alpha^(1-2/N)``,
  and the raw first-jump time grows like ``alpha^-(1-2/N)`` (fitted exponents in the report):
  the order of the jumps, the active sets (including the spurious coordinate 4) and the plateau
  losses do not change with depth in the limit. What the theory does not give is the finite-
  ``alpha`` picture: at ``alpha = 1e-4`` depth 3 already shows all plateaus while depth 2 shows
  none, i.e. depth separates the saddles at much larger initializations.

Example (the oracle of the default problem; ``run(SaddleToSaddleConfig.smoke())`` takes about
25 s on 2 cores, mostly compilation, and tests/test_saddle_to_saddle.py checks its claims):
    >>> from jaxflow.experiments import saddle_to_saddle as s2s
    >>> jp = s2s.oracle(s2s.SaddleToSaddleConfig.smoke())
    >>> [round(float(t), 3) for t in jp.times], jp.entering.tolist()
    ([0.0, 1.443, 2.256, 3.302, 4.644], [-1, 0, 1, 4, 2])
"""

import dataclasses
import time as _time

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from jaxflow import descent, flow, saddles, status
from jaxflow import jump_process as jpm
from jaxflow.experiments.config import ConfigError
from jaxflow.models import diagonal as dn
from jaxflow.models import log_diagonal as ld
from jaxflow.rkc import RKC
from jaxflow.sweep import run_metadata

__all__ = [
    "SaddleToSaddleConfig", "convergence", "figures", "oracle", "report", "run", "scaling_exponent",
]

BACKENDS = ("flow", "descent")


@dataclasses.dataclass(frozen=True)
class SaddleToSaddleConfig:
    """Options of ``jaxflow experiment saddle-to-saddle``.

    Attributes:
        d, m, values, seed: the sparse regression problem (``beta* = (values, 0, ...)``).
        depths: network depths ``N >= 2``.
        alphas: initialization scales (each ``|beta_i|`` starts from ``w_+^N = alpha``).
        deep_floor: depths >= 3 run only for ``alpha >= deep_floor`` (their plateaus last
            ``alpha^-(1-2/N)``).
        samples: points of the rescaled time grid (it must resolve a depth-2 jump, whose
            width is about ``4 / ln(1/alpha)`` rescaled units).
        horizon: the grid ends at ``horizon`` times the oracle's last jump.
        descent_steps, max_learning_rate: the descent (module docstring).
        tol, active: detection settings of :func:`jaxflow.saddles.detect`.
    """

    d: int = 8
    m: int = 12
    values: tuple[float, ...] = (4.0, -3.0, 2.0)
    seed: int = 3
    depths: tuple[int, ...] = (2, 3, 4, 5)
    alphas: tuple[float, ...] = (
        1e-3, 1e-4, 1e-6, 1e-8, 1e-10, 1e-12, 1e-16, 1e-30, 1e-60, 1e-100, 1e-200, 1e-300,
    )
    deep_floor: float = 1e-12
    samples: int = 4001
    horizon: float = 1.25
    descent_steps: int = 200_000
    max_learning_rate: float = 2e-3
    tol: float = 1e-3
    active: float = 1e-2

    def __post_init__(self):
        for name in ("d", "m", "samples", "descent_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 2:
                raise ConfigError(f"{name} must be an integer >= 2, got {value!r}")
        if not self.depths or any(int(n) != n or n < 2 for n in self.depths):
            raise ConfigError(f"depths must be integers >= 2, got {self.depths}")
        if not self.alphas or any(not 0 < a < 1 for a in self.alphas):
            raise ConfigError(f"alphas must be in (0, 1), got {self.alphas}")
        if not 1 <= len(self.values) <= self.d:
            raise ConfigError(f"values: {len(self.values)} values do not fit d = {self.d}")
        if not self.horizon > 1:
            raise ConfigError(f"horizon must be > 1, got {self.horizon}")

    @classmethod
    def smoke(cls, **overrides) -> "SaddleToSaddleConfig":
        """Depths 2 and 3, five scales, a 2001-point grid, 20k descent steps: seconds."""
        options = dict(
            depths=(2, 3), alphas=(1e-4, 1e-8, 1e-30, 1e-100, 1e-300), deep_floor=1e-8,
            samples=2001, descent_steps=20_000, max_learning_rate=1e-2,
        )
        options.update(overrides)
        return cls(**options)


def problem(config: SaddleToSaddleConfig) -> dn.Data:
    """The regression data of ``config`` (seeded)."""
    target = dn.sparse_target(config.d, config.values, normalize=False)
    return dn.regression_data(jax.random.key(config.seed), target, config.m)


def oracle(config: SaddleToSaddleConfig) -> jpm.JumpProcess:
    """The limiting jump process of ``config``'s problem (:func:`jaxflow.jump_process.jump_process`)."""
    data = problem(config)
    quad = ld.least_squares(data.inputs, data.labels)
    return jpm.jump_process(np.asarray(quad.hessian), np.asarray(quad.linear), float(quad.offset))


def _descent_modes(params, problem_):
    return dn.beta(params, problem_.depth)


def _flow(depth, log_alpha, quadratic, save_times):
    deep = depth > 2
    return flow.solve(
        ld.vector_field, ld.init(log_alpha, depth, quadratic.linear.shape[0]), quadratic,
        modes=ld.modes, targets=jnp.zeros(quadratic.linear.shape), save_times=save_times,
        # Depth 2: the state moves on straight lines on plateaus (Tsit5, big steps). Depth >= 3:
        # a learned coordinate makes the next plateau stiff for an explicit method.
        solver=RKC() if deep else None, time="plain" if deep else "arclength",
        rtol=1e-8 if deep else 1e-10, atol=1e-12, max_steps=200_000,
    )


def run(config: SaddleToSaddleConfig | None = None) -> xr.Dataset:
    """Flow and descent for every depth and scale, detected and scored (module docstring)."""
    config = config or SaddleToSaddleConfig()
    data = problem(config)
    quad = ld.least_squares(data.inputs, data.labels)
    limit = oracle(config)
    grid = np.linspace(0.0, config.horizon * limit.times[-1], config.samples)
    plateaus = max(8, limit.times.size + 2)
    depths, alphas = list(config.depths), list(config.alphas)
    shape = (len(BACKENDS), len(depths), len(alphas))
    out = {
        "modes": np.full(shape + (grid.size, config.d), np.nan),
        "jump_time": np.full(shape + (plateaus - 1,), np.nan),
        "active": np.zeros(shape + (plateaus, config.d), dtype=bool),
        "plateau_loss": np.full(shape + (plateaus,), np.nan),
        "num_plateaus": np.zeros(shape, dtype=np.int32),
        "status": np.zeros(shape, dtype=np.int8),
        "ran": np.zeros(shape, dtype=bool),
        "steps": np.zeros(shape, dtype=np.int64),
        "wall_time": np.full(shape, np.nan),
    }
    unit = np.full((len(depths), len(alphas)), np.nan)
    quad_np = tuple(np.asarray(v) for v in (quad.hessian, quad.linear, quad.offset))
    drift = np.full((len(depths), len(alphas)), np.nan)
    for j, depth in enumerate(depths):
        quadratic = ld.least_squares(data.inputs, data.labels, depth=float(depth))
        net = dn.Problem(data, depth=float(depth), loss="squared")
        for k, alpha in enumerate(alphas):
            if depth > 2 and alpha < config.deep_floor:
                continue
            unit[j, k] = jpm.time_scale(depth, np.log(alpha))
            save_times = jnp.asarray(unit[j, k] * grid)
            start = _time.perf_counter()
            traj = _flow(float(depth), np.log(alpha), quadratic, save_times)
            modes = np.asarray(traj.modes)
            drift[j, k] = float(jnp.max(jnp.abs(ld.invariant(traj.final_state, quadratic,
                                                              np.log(alpha)))))
            _store(out, (0, j, k), modes, grid, traj.status, traj.steps, start, config, plateaus,
                   quad_np)
            rate = unit[j, k] * grid[-1] / config.descent_steps
            if rate > config.max_learning_rate:
                continue
            start = _time.perf_counter()
            gd = descent.gradient_descent(
                dn.loss, dn.init(alpha, depth, config.d), args=net,
                learning_rate=jnp.asarray(rate), num_steps=config.descent_steps,
                save_every=config.descent_steps // (config.samples - 1), modes=_descent_modes,
            )
            # The descent saves every save_every steps: map them onto the rescaled grid.
            gd_grid = np.asarray(gd.times) / unit[j, k]
            gd_modes = np.stack(
                [np.interp(grid, gd_grid, np.asarray(gd.modes)[:, i]) for i in range(config.d)], 1
            )
            _store(out, (1, j, k), gd_modes, grid, gd.status, gd.steps, start, config, plateaus,
                   quad_np)
    loss = _quadratic_loss(out["modes"], quad_np)
    num_oracle = limit.times.size
    pad = plateaus - num_oracle

    def padded(values, fill):
        return np.concatenate([values, np.full((pad,) + values.shape[1:], fill)], axis=0)

    jump_time = out["jump_time"]
    oracle_jump = padded(limit.times[1:], np.nan)[: plateaus - 1]
    coords = {
        "backend": list(BACKENDS), "depth": depths, "alpha": alphas, "time": grid,
        "coordinate": np.arange(config.d), "jump": np.arange(1, plateaus),
        "plateau": np.arange(plateaus),
    }
    run_dims = ("backend", "depth", "alpha")
    ds = xr.Dataset(
        {
            "modes": (run_dims + ("time", "coordinate"), out["modes"]),
            "loss": (run_dims + ("time",), loss),
            "jump_time": (run_dims + ("jump",), jump_time),
            "jump_flow_time": (run_dims + ("jump",), jump_time * unit[None, :, :, None]),
            "active": (run_dims + ("plateau", "coordinate"), out["active"]),
            "plateau_loss": (run_dims + ("plateau",), out["plateau_loss"]),
            "num_plateaus": (run_dims, out["num_plateaus"]),
            "status": (run_dims, out["status"]),
            "ran": (run_dims, out["ran"]),
            "steps": (run_dims, out["steps"]),
            "wall_time": (run_dims, out["wall_time"]),
            "time_unit": (("depth", "alpha"), unit),
            "invariant_drift": (("depth", "alpha"), drift),
            "oracle_jump_time": (("jump",), oracle_jump),
            "oracle_active": (("plateau", "coordinate"), padded(limit.active, False)),
            "oracle_plateau_loss": (("plateau",), padded(limit.losses, np.nan)),
            "oracle_beta": (("plateau", "coordinate"), padded(limit.betas, np.nan)),
            "targets": (("coordinate",), np.asarray(data.target)),
        },
        coords=coords,
    )
    ds["time"].attrs.update(long_name="rescaled time t / time_unit(depth, alpha)")
    ds.attrs.update(run_metadata())
    ds.attrs.update(
        {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()}
    )
    ds.attrs.update(experiment="saddle-to-saddle", num_oracle_jumps=num_oracle - 1)
    return ds


def _store(out, index, modes, grid, code, steps, start, config, plateaus, quad):
    st = saddles.detect(grid, modes, tol=config.tol, active=config.active, max_plateaus=plateaus)
    out["wall_time"][index] = _time.perf_counter() - start
    out["modes"][index] = modes
    out["jump_time"][index] = np.asarray(st.jump_times)
    out["active"][index] = np.asarray(st.active)
    out["num_plateaus"][index] = int(st.num_plateaus)
    out["status"][index] = int(code)
    out["steps"][index] = int(steps)
    out["ran"][index] = True
    out["plateau_loss"][index] = _quadratic_loss(np.asarray(st.levels), quad)


def _quadratic_loss(beta, quad):
    h, b, c = quad
    return 0.5 * np.einsum("...i,ij,...j->...", beta, h, beta) - beta @ b + c


def convergence(ds: xr.Dataset, backend: str = "flow", depth: int = 2) -> xr.Dataset:
    """Errors of the rescaled jump times against the oracle, per scale and jump, with
    ``error * ln(1/alpha)`` and ``error / alpha^(1-2/N)`` (the two convergence rates).

    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"jump_time": (("backend", "depth", "alpha", "jump"), [[[[1.1], [1.01]]]]),
    ...                  "oracle_jump_time": (("jump",), [1.0])},
    ...                 coords={"backend": ["flow"], "depth": [2], "alpha": [1e-2, 1e-20], "jump": [1]})
    >>> np.round(convergence(ds)["error"].values.ravel(), 6).tolist()
    [0.1, 0.01]
    """
    times = ds["jump_time"].sel(backend=backend, depth=depth)
    error = times - ds["oracle_jump_time"]
    log_inverse = -np.log(ds["alpha"])
    return xr.Dataset(
        {
            "error": error,
            "error_times_log": error * log_inverse,
            "error_over_power": error / ds["alpha"] ** (1.0 - 2.0 / depth),
        }
    )


def scaling_exponent(ds: xr.Dataset, depth: int, jump: int = 1) -> float:
    """Fitted ``p`` in ``t_jump ~ alpha^-p`` (flow time, flow back-end) over the scales run.

    The jump process predicts ``p = 1 - 2/N`` at depth ``N >= 3`` (and ``t ~ ln(1/alpha)``,
    ``p -> 0``, at depth 2).
    """
    times = ds["jump_flow_time"].sel(backend="flow", depth=depth, jump=jump).values
    return _slope(1.0 / ds["alpha"].values, times)


def _slope(x, y):
    keep = np.isfinite(x) & np.isfinite(y) & (y > 0)
    if keep.sum() < 2:
        return np.nan
    return float(np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)[0])


def report(ds: xr.Dataset) -> str:
    """The measured jump times against the oracle, the convergence rates and the depth scaling.

    Lines: the oracle's jumps; per depth and scale, the flow's rescaled jump times and their
    errors; for depth 2, the fitted exponent of ``|error|`` against ``ln(1/alpha)`` (the theory:
    -1); for depth >= 3, the fitted exponent of the first raw jump time against ``1/alpha``
    (the derivation: ``1 - 2/N``); the status of every run.
    """
    oracle = ds["oracle_jump_time"].values
    oracle = oracle[np.isfinite(oracle)]
    lines = [
        f"saddle-to-saddle: d = {ds.attrs['d']}, m = {ds.attrs['m']}, oracle jumps at rescaled "
        f"t = {', '.join(f'{t:.3f}' for t in oracle)}"
    ]
    entering = [
        int(np.flatnonzero(ds["oracle_active"].values[k + 1] & ~ds["oracle_active"].values[k])[0])
        if (ds["oracle_active"].values[k + 1] & ~ds["oracle_active"].values[k]).any() else -1
        for k in range(oracle.size)
    ]
    lines.append(f"  coordinates entering at each jump: {entering}; oracle plateau losses "
                 + ", ".join(f"{v:.3f}" for v in ds["oracle_plateau_loss"].values[: oracle.size + 1]))
    lines.append("backend  depth  alpha     plateaus  rescaled jump times (error)")
    for b in ds["backend"].values:
        for n in ds["depth"].values:
            for a in ds["alpha"].values:
                row = ds.sel(backend=b, depth=n, alpha=a)
                if not bool(row["ran"]):
                    continue
                times = row["jump_time"].values[: oracle.size]
                cells = " ".join(
                    f"{t:6.3f}({t - o:+.1e})" if np.isfinite(t) else "   --   " + " " * 8
                    for t, o in zip(times, oracle)
                )
                lines.append(f"{b:<8} {int(n):<6} {a:<9.0e} {int(row['num_plateaus']):<9} {cells}"
                             f"  {status.name(int(row['status']))}")
    if 2 in ds["depth"].values:
        conv = convergence(ds, "flow", 2)
        small = ds["alpha"].values <= 1e-30
        slopes = [
            _slope(-np.log(ds["alpha"].values[small]), np.abs(conv["error"].values[small, i]))
            for i in range(oracle.size)
        ]
        lines.append(
            "depth 2 (flow): fitted exponent of |error| against ln(1/alpha), alpha <= 1e-30 "
            "(theory -1): " + ", ".join(f"{s:.2f}" for s in slopes)
        )
        lines.append(
            "  error * ln(1/alpha) per jump at the smallest alpha: "
            + ", ".join(f"{v:.2f}" for v in conv["error_times_log"].values[-1, : oracle.size])
        )
    for n in ds["depth"].values:
        if n <= 2:
            continue
        exponent = scaling_exponent(ds, int(n))
        rel = np.abs(ds["jump_time"].sel(backend="flow", depth=n).values[:, : oracle.size] - oracle)
        ran = ds["ran"].sel(backend="flow", depth=n).values
        smallest = int(np.flatnonzero(ran)[-1]) if ran.any() else 0
        lines.append(
            f"depth {int(n)} (flow): first jump time ~ alpha^-{exponent:.3f} (derived 1 - 2/N = "
            f"{1 - 2 / n:.3f}); max |rescaled error| at alpha = {ds['alpha'].values[smallest]:.0e}: "
            f"{np.nanmax(rel[smallest]):.1e}"
        )
    ran = ds["invariant_drift"].values[np.isfinite(ds["invariant_drift"].values)]
    if ran.size:
        lines.append(f"conserved quantity (flow): max drift {ran.max():.1e} over every run")
    return "\n".join(lines)


def figures(ds: xr.Dataset) -> dict:
    """``{"staircase": ..., "jump_times": ...}`` (matplotlib figures; see the module docstring).

    * ``staircase``: depth-2 flow, loss and coordinates against rescaled time for each scale
      (darker = smaller), collapsing onto the oracle's staircase (dashed black).
    * ``jump_times``: the flow's jump times (flow time) against ``alpha`` per depth, with the
      oracle's prediction ``time_unit(N, alpha) * T_k`` as lines.
    """
    import matplotlib.pyplot as plt

    oracle_t = ds["oracle_jump_time"].values
    oracle_t = oracle_t[np.isfinite(oracle_t)]
    time = ds["time"].values
    edges = np.concatenate([[0.0], oracle_t, [time[-1]]])
    depth = int(ds["depth"].values[0])
    flow_ds = ds.sel(backend="flow", depth=depth)
    alphas = [a for a in ds["alpha"].values if bool(flow_ds["ran"].sel(alpha=a))]
    shades = plt.cm.viridis(np.linspace(0.85, 0.0, len(alphas)))
    fig1, (ax_loss, ax_beta) = plt.subplots(1, 2, figsize=(11, 4.2))
    for alpha, colour in zip(alphas, shades):
        run_ = flow_ds.sel(alpha=alpha)
        ax_loss.plot(time, run_["loss"].values, color=colour, lw=1.2, label=f"alpha = {alpha:.0e}")
        for i in np.flatnonzero(np.abs(ds["oracle_beta"].values[: oracle_t.size + 1]).max(0) > 0):
            ax_beta.plot(time, run_["modes"].values[:, i], color=colour, lw=1.0)
    floor = 1e-6  # the last plateau's loss is 0 on a log axis: drawn at the floor
    losses = np.maximum(ds["oracle_plateau_loss"].values[: oracle_t.size + 1], floor)
    betas = ds["oracle_beta"].values[: oracle_t.size + 1]
    ax_loss.stairs(losses, edges, baseline=None, color="k", ls="--", lw=1.2,
                   label="jump process (oracle)")
    ax_loss.set_ylim(bottom=floor / 2)
    for i in np.flatnonzero(np.abs(betas).max(0) > 0):
        ax_beta.stairs(betas[:, i], edges, baseline=None, color="k", ls="--", lw=1.0)
        ax_beta.annotate(f"beta_{i}", (time[-1], betas[-1, i]), fontsize=8, va="center")
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("loss")
    ax_beta.set_ylabel("coordinates beta_i")
    for ax in (ax_loss, ax_beta):
        ax.set_xlabel(f"rescaled time t / (ln(1/alpha)/4)  (depth {depth})")
        ax.grid(alpha=0.25, lw=0.5)
    ax_loss.legend(fontsize=7)
    fig1.suptitle("Saddle-to-saddle: depth-2 flow collapses onto the jump process as alpha -> 0")
    fig1.tight_layout()

    # Left: every depth where depths >= 3 ran (power laws against ln); right: depth 2 over the
    # whole range against ln(1/alpha), where the jump process predicts straight lines.
    fig2, (ax, ax_ln) = plt.subplots(1, 2, figsize=(11, 4.5))
    colours = plt.cm.tab10(np.arange(ds.sizes["depth"]))
    deep_ran = ds["ran"].sel(backend="flow").where(ds["depth"] > 2, drop=True)
    shown = (deep_ran.any("depth").values if deep_ran.size else np.ones(ds.sizes["alpha"], bool))
    alpha = ds["alpha"].values
    for n, colour in zip(ds["depth"].values, colours):
        measured = ds["jump_flow_time"].sel(backend="flow", depth=n).values
        unit = ds["time_unit"].sel(depth=n).values
        for k, t_k in enumerate(oracle_t):
            label = f"depth {int(n)}" if k == 0 else None
            ax.plot(alpha[shown], measured[shown, k], "o", color=colour, ms=3.5, label=label)
            ax.plot(alpha[shown], unit[shown] * t_k, "-", color=colour, lw=0.8, alpha=0.7)
            if n == 2:
                shade = plt.cm.viridis(k / max(1, oracle_t.size - 1))
                ax_ln.plot(-np.log(alpha), measured[:, k], "o", color=shade, ms=3.5,
                           label=f"jump {k + 1}")
                ax_ln.plot(-np.log(alpha), unit * t_k, "-", color=shade, lw=0.8, alpha=0.7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("alpha (initial scale)")
    ax.set_ylabel("jump time t (flow time)")
    ax.set_title("markers: measured; lines: jump process x time unit\n"
                 "(ln(1/alpha)/4 at depth 2, alpha^-(1-2/N)/(N(N-2)) at depth N)", fontsize=9)
    ax_ln.set_xlabel("ln(1/alpha)")
    ax_ln.set_ylabel("jump time t (flow time)")
    ax_ln.set_title("depth 2: jump times linear in ln(1/alpha)", fontsize=9)
    for a in (ax, ax_ln):
        a.grid(alpha=0.25, lw=0.5, which="both")
        a.legend(fontsize=8)
    fig2.tight_layout()
    return {"staircase": fig1, "jump_times": fig2}


def main(smoke: bool = False):
    """``jaxflow experiment saddle-to-saddle [--smoke]``: run, print the report, return
    (dataset, figure)."""
    ds = run(SaddleToSaddleConfig.smoke() if smoke else SaddleToSaddleConfig())
    print(report(ds))
    return ds, figures(ds)["staircase"]
