"""The large-step threshold search: one lane's bracket and bisection in ``ln sigma0``, compiled.

A lane is one (depth, ratio, eta). Each round runs one gradient-descent solve of the toy pair
(targets ``r`` and 1, balanced factors ``sigma0^(1/N)``) and asks the phase diagram's question
(:func:`jaxflow.oracles.incremental.margin`): is ``T_j(start) >= T_i(finish)``? The search
starts at the flow's threshold, steps outward by a distance that doubles each round until the
answer flips (down to ``ln min_scale``, up to ``ln start``), then bisects the bracket until it
is ``tolerance x max(1, |ln sigma0|)`` wide. The number of rounds is fixed, so every lane of a
sweep runs the same compiled ``lax.fori_loop``; a lane whose search is done is parked on a cheap
point (``sigma0 = start``) for the remaining rounds.

A round's answer is trusted only where the descent decided it: the run found both learning
times (status ``ok``), or it ran out of steps after exactly one of them (the first one found
decides the sign: if the larger mode finished and the smaller has not started, the margin is
positive whatever comes next). Otherwise (neither found in the budget, divergence) the lane
stops with that run's status and its bracket so far; it never gets a threshold it did not
measure.
"""

import jax
import jax.numpy as jnp
from jax import lax

import jaxflow
from jaxflow.engine import status
from jaxflow.oracles import incremental

__all__ = ["decide", "search"]


def _pair_problem(max_depth, depth, ratio, log_scale):
    """The toy pair as a loss over ``(2, max_depth)`` factors; factors past ``depth`` are held
    at 1, so every depth shares one program. Loss ``sum (s - P)^2 / (2 N^2)`` as the toy's."""
    mask = jnp.arange(max_depth, dtype=jnp.result_type(float)) < depth
    targets = jnp.stack([ratio, jnp.ones_like(ratio)])
    w0 = jnp.where(mask, jnp.exp(log_scale / depth), 1.0) * jnp.ones((2, max_depth))

    def product(params, args=None):
        return jnp.prod(jnp.where(mask, params["plus"], 1.0), axis=-1)

    def loss(params, args):
        return 0.5 * jnp.sum((args - product(params)) ** 2) / depth**2

    return jaxflow.Problem(loss=loss, args=targets, modes=product, params0={"plus": w0},
                           targets=targets)


def decide(config, depth, ratio, eta, log_scale):
    """One descent run at ``ln sigma0 = log_scale``: ``(incremental, decided, code, steps)``.

    ``code`` is the run's status; ``decided`` says whether ``incremental`` is an answer (module
    docstring)."""
    required = jnp.array([[False, True], [True, False]])  # i: its finish; j: its start
    request = jaxflow.Request(fractions=(config.start, config.finish), required=required,
                              stationary_tol=None, max_steps=config.max_steps)
    problem = _pair_problem(int(max(config.depths)), depth, ratio, log_scale)
    traj = jaxflow.solve(problem, jaxflow.Descent(learning_rate=eta, loss_bound=config.loss_bound),
                         request)
    finished_i = traj.learning_steps[0, 1] >= 0
    started_j = traj.learning_steps[1, 0] >= 0
    margin = incremental.margin(traj.learning_times[0, 1], traj.learning_times[1, 0])
    inc = jnp.where(finished_i & started_j, margin >= 0, finished_i)
    decided = (traj.status == status.OK) | ((traj.status == status.MAX_STEPS)
                                            & (finished_i != started_j))
    return inc, decided, traj.status, traj.steps


def _next_point(lo, hi, d, floor, top):
    """Bisect a bracket; else step ``d`` beyond the one end known (clipped to the range)."""
    both = jnp.isfinite(lo) & jnp.isfinite(hi)
    outward = jnp.where(jnp.isfinite(hi), jnp.maximum(hi - d, floor), jnp.minimum(lo + d, top))
    return jnp.where(both, 0.5 * (lo + hi), outward), jnp.where(both, d, 2.0 * d)


def _search_update(config, s, x, inc, decided, code, steps, floor, top):
    """One round of the search with the run at ``x`` answered ``inc`` (module docstring)."""
    live = s["live"]
    take = live & decided
    lo = jnp.where(take & inc, x, s["lo"])
    hi = jnp.where(take & ~inc, x, s["hi"])
    closed = (jnp.isfinite(lo) & jnp.isfinite(hi)
              & (hi - lo <= config.tolerance * jnp.maximum(1.0, jnp.abs(lo))))
    none = take & ((~jnp.isfinite(lo) & (hi <= floor)) | (~jnp.isfinite(hi) & (lo >= top)))
    code = jnp.where(live & ~decided, code, jnp.where(none, status.NOT_FOUND, s["code"]))
    x_next, d = _next_point(lo, hi, s["d"], floor, top)
    return {**s, "x": x_next, "d": d, "lo": lo, "hi": hi, "code": code.astype(jnp.int8),
            "live": take & ~closed & ~none, "closed": s["closed"] | (take & closed),
            "rounds": s["rounds"] + live.astype(jnp.int32),
            "steps": s["steps"] + jnp.where(live, steps, 0).astype(jnp.int32)}


def _check_point(config, s, k, floor, top):
    """The ``k``-th start of the check around the search's answer (:func:`search`)."""
    x0 = jnp.where(s["closed"], 0.5 * (s["lo"] + s["hi"]), top)
    width = config.check_width * jnp.maximum(1.0, jnp.abs(x0))
    spread = jnp.linspace(-1.0, 1.0, config.check_points)[jnp.clip(k, 0, config.check_points - 1)]
    return jnp.clip(x0 + width * spread, floor, top)


def _check_update(s, x, inc, decided):
    """Whether the check's run at ``x`` agrees with one sign change at the bracket."""
    wrong = ~decided | ((x <= s["lo"]) & ~inc) | ((x >= s["hi"]) & inc)
    largest = jnp.where(inc & decided, jnp.maximum(s["largest"], x), s["largest"])
    return {**s, "wrong": s["wrong"] | (s["closed"] & wrong), "largest": largest}


def search(config, depth, ratio, eta, log_start):
    """The lane's search from ``ln sigma0 = log_start``, then its check (module docstring):
    ``config.rounds`` search runs, then ``config.check_points`` runs on starts spread over the
    answer ``+- check_width x max(1, |ln sigma0_th|)``, all in one ``lax.fori_loop`` (one
    compiled program; a finished search idles on a cheap point, ``sigma0 = start``).

    Returns ``{log_threshold, log_lo, log_hi, status, rounds, descent_steps, monotone,
    log_largest_incremental}``: the bracket's midpoint (NaN unless it closed to the tolerance),
    its ends (``lo``: incremental, ``hi``: not; +-inf where never found), the status (``ok``;
    ``not_found`` where no ``sigma0`` in ``[min_scale, start]`` is incremental or every one is;
    a descent's code where a run left the answer open; ``max_steps`` where the rounds ran out),
    the search's rounds and descent steps; whether every check start below the bracket was
    incremental and every one above it not (each run decided), and the largest incremental
    ``ln sigma0`` the check saw (a lower bound on the largest incremental start; NaN: none).
    """
    floor, top = jnp.log(config.min_scale), jnp.log(config.start)
    inf = jnp.asarray(jnp.inf)

    def body(i, s):
        searching = i < config.rounds
        x = jnp.where(searching, jnp.where(s["live"], s["x"], top),
                      _check_point(config, s, i - config.rounds, floor, top))
        inc, decided, code, steps = decide(config, depth, ratio, eta, x)
        after_search = _search_update(config, s, x, inc, decided, code, steps, floor, top)
        after_check = _check_update(s, x, inc, decided)
        return jax.tree.map(lambda a, b: jnp.where(searching, a, b), after_search, after_check)

    x0 = jnp.clip(log_start, floor, top)
    state = {"x": x0, "d": jnp.asarray(config.first_step, x0.dtype), "lo": -inf, "hi": inf,
             "code": jnp.int8(status.OK), "live": jnp.asarray(True), "closed": jnp.asarray(False),
             "rounds": jnp.int32(0), "steps": jnp.int32(0), "wrong": jnp.asarray(False),
             "largest": -inf}
    s = lax.fori_loop(0, config.rounds + config.check_points, body, state)
    code = jnp.where(s["live"], jnp.int8(status.MAX_STEPS), s["code"])
    largest = s["largest"]
    return {"log_threshold": jnp.where(s["closed"], 0.5 * (s["lo"] + s["hi"]), jnp.nan),
            "log_lo": s["lo"], "log_hi": s["hi"], "status": code.astype(jnp.int8),
            "rounds": s["rounds"], "descent_steps": s["steps"],
            "monotone": s["closed"] & ~s["wrong"],
            "log_largest_incremental": jnp.where(jnp.isfinite(largest), largest, jnp.nan)}
