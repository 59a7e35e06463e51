"""A stabilized explicit solver for the stiff plateaus of coupled models: Runge-Kutta-Chebyshev.

Once a deep model has learned its large target components, their curvature (about
``c sigma*^(2-2/N)``) bounds the step of every explicit Runge-Kutta method, while the small
components still sit on a plateau that is long and smooth. Tsit5 then steps at its stability
limit and gradient flow costs about what gradient descent costs (benchmarks/matrix_sensing.py).

``RKC`` is the second-order Runge-Kutta-Chebyshev method of Sommeijer, Shampine and Verwer
(J. Comput. Appl. Math. 88, 1997): ``s`` explicit stages whose stability polynomial is a shifted,
damped Chebyshev polynomial, so the real stability interval grows like ``0.65 s^2`` while the
cost grows like ``s``. Each step estimates the Jacobian's spectral radius ``rho`` by a nonlinear
power iteration (finite differences of the vector field, warm-started from the previous step's
dominant direction) and takes ``s = 1 + ceil(sqrt(1 + 1.54 h rho))`` stages: a step ``h`` costs
about ``sqrt(h rho)`` evaluations instead of ``h rho``, and ``h`` is left to the accuracy of the
slow components. That is the right tool for a stiff spectrum that is (nearly) real and negative,
which is what the Hessian of a loss near a learned component gives.

It is a diffrax solver (``step``/``init``/``func``, an embedded error estimate of local order 3
for a ``PIDController``, cubic Hermite dense output), so :func:`jaxflow.engine.flow.solve` and
``diffrax.diffeqsolve`` both accept it. ``RKC.evaluations(solver_state)`` reports the
vector-field evaluations of the last step attempt, which :func:`jaxflow.engine.flow.solve` sums.

Example:
    >>> import diffrax, jax.numpy as jnp
    >>> from jaxflow.engine.rkc import RKC
    >>> # dy/dt = -1000 (y - cos t): stiff, smooth solution; exact y(1) below
    >>> term = diffrax.ODETerm(lambda t, y, args: -1000.0 * (y - jnp.cos(t)))
    >>> sol = diffrax.diffeqsolve(term, RKC(), 0.0, 1.0, 0.01, jnp.array(0.0),
    ...                           stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-8))
    >>> exact = 1e6 / (1e6 + 1) * (jnp.cos(1.0) + 1e-3 * jnp.sin(1.0)) - 1e6 / (1e6 + 1) * jnp.exp(-1000.0)
    >>> bool(abs(sol.ys[0] - exact) < 1e-7)
    True
"""

from typing import ClassVar

import diffrax
import jax
import jax.numpy as jnp
import jax.tree_util as jtu

from jaxflow.engine.evaluations import AbstractCountedSolver

__all__ = ["RKC", "stability_bound"]


def _axpy(a, x, y):
    """``a * x + y`` on pytrees."""
    return jtu.tree_map(lambda xi, yi: a * xi + yi, x, y)


def _combine(*terms):
    """``sum(coefficient * tree)`` over ``(coefficient, tree)`` pairs."""
    coefficients, trees = zip(*terms)
    return jtu.tree_map(lambda *leaves: sum(c * leaf for c, leaf in zip(coefficients, leaves)), *trees)


def _norm(tree):
    return jnp.sqrt(sum(jnp.sum(leaf**2) for leaf in jtu.tree_leaves(tree)))


def stability_bound(stages, damping=2.0 / 13.0):
    """Length ``beta(s)`` of the real stability interval ``[-beta, 0]`` of ``s``-stage RKC.

    ``beta(s) = (1 + w0) T_s''(w0) / T_s'(w0)`` with ``w0 = 1 + damping / s^2``; about
    ``0.653 s^2`` for the default damping 2/13.

    Example:
        >>> from jaxflow.engine.rkc import stability_bound
        >>> round(float(stability_bound(100)) / 100**2, 3)
        0.653
    """
    w0 = 1.0 + damping / jnp.asarray(stages, dtype=float) ** 2
    _, dt, ddt = _chebyshev(w0, stages)
    return (1.0 + w0) * ddt / dt


def _chebyshev(w0, s):
    """``T_s(w0), T_s'(w0), T_s''(w0)`` by the three-term recurrence (``s`` may be traced)."""

    def body(_, c):
        t1, t0, d1, d0, e1, e0 = c
        return (2 * w0 * t1 - t0, t1, 2 * t1 + 2 * w0 * d1 - d0, d1, 4 * d1 + 2 * w0 * e1 - e0, e1)

    one, zero = jnp.ones_like(w0), jnp.zeros_like(w0)
    t, _, d, _, e, _ = jax.lax.fori_loop(1, s, body, (w0, one, one, zero, zero, zero))
    return t, d, e


class RKC(AbstractCountedSolver):
    """Second-order Runge-Kutta-Chebyshev (stabilized explicit) solver for stiff, real spectra.

    Attributes:
        damping: the damping ``epsilon`` of the Chebyshev polynomial (2/13: the stability
            polynomial stays below about 0.95 in magnitude inside the interval, at the cost of
            2% of its length).
        max_stages: most stages per step. A step whose ``h rho`` needs more is rejected with an
            infinite error, so the controller shrinks it. Rounding stays benign up to several
            hundred stages.
        power_iterations: nonlinear power iterations per step for the spectral radius (warm
            started, so 1-2 suffice once the dominant direction has settled).
        rho_safety: the spectral-radius estimate is multiplied by this before choosing ``s``.

    Example (a gradient flow: the toy model's learning time against the closed form):
        >>> import jax.numpy as jnp
        >>> import jaxflow
        >>> from jaxflow.oracles import theory
        >>> from jaxflow.models import toy
        >>> from jaxflow.engine.rkc import RKC
        >>> args = toy.ToyArgs(depth=3.0, targets=jnp.array([1.0]))
        >>> problem = jaxflow.Problem(vector_field=toy.reduced_vector_field, args=args,
        ...                           params0=toy.reduced_init(1e-6, 1), modes=toy.reduced_modes,
        ...                           targets=args.targets)
        >>> traj = jaxflow.solve(problem, jaxflow.Flow(solver=RKC(), rtol=1e-9, atol=1e-9),
        ...                      jaxflow.Request(fractions=(0.5,), max_steps=20_000))
        >>> exact = theory.learning_time(3.0, 1.0, 1e-6, 0.5)
        >>> bool(abs(traj.learning_times[0, 0] / exact - 1) < 1e-5), int(traj.status)
        (True, 0)
    """

    damping: float = 2.0 / 13.0
    max_stages: int = 320
    power_iterations: int = 2
    rho_safety: float = 1.2

    term_structure: ClassVar = diffrax.AbstractTerm
    interpolation_cls: ClassVar = diffrax.ThirdOrderHermitePolynomialInterpolation

    def order(self, terms):
        return 2

    def error_order(self, terms):
        # The embedded estimate below is the local error of a second-order method: O(h^3).
        return 3

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)

    def init(self, terms, t0, t1, y0, args):
        f0 = terms.vf(t0, y0, args)
        # Start the power iteration from the flow direction plus a generic perturbation, so it
        # is not orthogonal to the stiff subspace; the first steps refine it.
        direction = jtu.tree_map(
            lambda f, y: f + 1e-3 * jnp.cos(jnp.arange(y.size, dtype=float).reshape(y.shape)) * (1 + jnp.abs(y)),
            f0, y0,
        )
        iterations = 2 * self.power_iterations + 4
        _, direction = self._spectral_radius(terms, t0, y0, f0, direction, args, iterations)
        # Evaluations so far: f0 and the power iterations (``evaluations`` of the initial state).
        return f0, direction, jnp.asarray(1 + iterations, dtype=jnp.int32)

    def evaluations(self, solver_state):
        """Vector-field evaluations made by the step attempt that returned ``solver_state``
        (by ``init`` for the initial state)."""
        return solver_state[2]

    def _spectral_radius(self, terms, t0, y0, f0, direction, args, iterations):
        """Nonlinear power iteration: ``|f(y + d v) - f(y)| / d`` for a small ``d`` along ``v``."""
        y_norm = _norm(y0)
        eps = jnp.sqrt(jnp.finfo(jnp.result_type(float)).eps)
        delta = jnp.where(y_norm > 0, eps * y_norm, eps)

        def body(_, carry):
            v, _ = carry
            v_norm = _norm(v)
            scale = jnp.where(v_norm > 0, delta / jnp.where(v_norm > 0, v_norm, 1.0), 0.0)
            shifted = _axpy(scale, v, y0)
            difference = jtu.tree_map(jnp.subtract, terms.vf(t0, shifted, args), f0)
            difference_norm = _norm(difference)
            rho = difference_norm / delta
            # A zero difference (linear-in-nothing field) keeps the old direction.
            keep = difference_norm > 0
            v = jtu.tree_map(lambda new, old: jnp.where(keep, new, old), difference, v)
            return v, rho

        direction, rho = jax.lax.fori_loop(0, iterations, body, (direction, jnp.asarray(0.0)))
        return rho, direction

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        f0, direction, _ = solver_state
        f0 = jax.lax.cond(made_jump, lambda: terms.vf(t0, y0, args), lambda: f0)
        h = t1 - t0
        rho, direction = self._spectral_radius(
            terms, t0, y0, f0, direction, args, self.power_iterations
        )
        rho = self.rho_safety * rho
        needed = 1 + jnp.ceil(jnp.sqrt(1.0 + 1.54 * jnp.abs(h) * rho))
        too_stiff = needed > self.max_stages
        s = jnp.clip(needed, 2, self.max_stages).astype(jnp.int32)
        w0 = 1.0 + self.damping / s.astype(float) ** 2
        _, dts, ddts = _chebyshev(w0, s)
        w1 = dts / ddts
        # b_j = T_j''(w0) / T_j'(w0)^2 for j >= 2, and b_0 = b_1 = b_2.
        b2 = 1.0 / (4.0 * w0**2)
        mu1 = b2 * w1
        y1 = _axpy(mu1 * h, f0, y0)

        def stage(j, carry):
            y_prev, y_prev2, c_prev, c_prev2, b_prev, b_prev2, tj1, tj2, dj1, dj2, ej1, ej2 = carry
            # Chebyshev values of index j from those of j-1 and j-2.
            tj = 2 * w0 * tj1 - tj2
            dj = 2 * tj1 + 2 * w0 * dj1 - dj2
            ej = 4 * dj1 + 2 * w0 * ej1 - ej2
            bj = ej / dj**2
            mu = 2 * w0 * bj / b_prev
            nu = -bj / b_prev2
            mu_tilde = 2 * w1 * bj / b_prev
            gamma_tilde = -(1.0 - b_prev * tj1) * mu_tilde
            f_prev = terms.vf(t0 + c_prev * h, y_prev, args)
            y_new = _combine(
                (1.0 - mu - nu, y0), (mu, y_prev), (nu, y_prev2),
                (mu_tilde * h, f_prev), (gamma_tilde * h, f0),
            )
            c_new = mu * c_prev + nu * c_prev2 + mu_tilde + gamma_tilde
            return y_new, y_prev, c_new, c_prev, bj, b_prev, tj, tj1, dj, dj1, ej, ej1

        one, zero = jnp.ones_like(w0), jnp.zeros_like(w0)
        # Index 1 values: T_1 = w0, T_1' = 1, T_1'' = 0; index 0: 1, 0, 0. b_1 = b_0 = b_2.
        carry = (y1, y0, mu1, zero, b2, b2, w0, one, one, zero, zero, zero)
        y_s = jax.lax.fori_loop(2, s + 1, stage, carry)[0]
        # A step beyond the stability interval (too stiff, or rho underestimated) may overflow:
        # it is rejected with an infinite error and returns the finite y0, so the controller
        # shrinks the step instead of the solve stopping on a non-finite trial state.
        finite = [jnp.all(jnp.isfinite(leaf)) for leaf in jtu.tree_leaves(y_s)]
        unstable = too_stiff | ~jnp.all(jnp.asarray(finite))
        y_s = jtu.tree_map(lambda a, b: jnp.where(unstable, b, a), y_s, y0)
        f_s = terms.vf(t1, y_s, args)
        # Embedded estimate (Sommeijer, Shampine & Verwer 1997, eq. 2.15).
        error = _combine((0.8, y0), (-0.8, y_s), (0.4 * h, f0), (0.4 * h, f_s))
        error = jtu.tree_map(lambda e: jnp.where(unstable, jnp.inf, e), error)
        dense = dict(y0=y0, y1=y_s, k0=jtu.tree_map(lambda f: h * f, f0), k1=jtu.tree_map(lambda f: h * f, f_s))
        # Evaluations: stages 2..s (s - 1), the end point, and the power iteration.
        evaluations = (s + self.power_iterations).astype(jnp.int32)
        return y_s, error, dense, (f_s, direction, evaluations), diffrax.RESULTS.successful
