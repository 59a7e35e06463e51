"""One Tsit5 step on a block of lanes: the state ``(d, S)`` with the lane axis last.

The stages are written out term by term with the tableau's coefficients as Python floats, so
XLA sees one chain of elementwise operations per step and fuses it: no per-stage pytree, no
tableau arrays to gather, no loop over stages. Every operation is elementwise across lanes
(the vector field is evaluated once per stage on the whole block), so a lane's numbers never
depend on which slot it sits in or on its neighbours.

The coefficients are those of Tsitouras' 5(4) pair (Ch. Tsitouras, "Runge-Kutta pairs of order
5(4) satisfying only the first column simplifying assumption", Computers & Mathematics with
Applications 62 (2011) 770-775), table 1, to double precision; the error weights are the
differences between the 5th-order weights and the embedded 4th-order ones. The first stage of
a step is the last stage of the one before (FSAL): six evaluations per step.

Example (one step of ``y' = -y`` on two lanes, against ``exp(-h)``):
    >>> import jax
    >>> jax.config.update("jax_enable_x64", True)
    >>> import jax.numpy as jnp
    >>> from jaxflow.engine import _tsit5_lanes
    >>> f = lambda t, y, args: -y
    >>> y = jnp.ones((1, 2)); t = jnp.zeros(2); h = jnp.array([0.1, 0.2])
    >>> y1, err, f1 = _tsit5_lanes.step(f, t, y, f(t, y, None), h, None)
    >>> bool(jnp.allclose(y1[0], jnp.exp(-h), rtol=1e-8, atol=0)), bool(jnp.all(f1 == -y1))
    (True, True)
"""

from collections.abc import Callable

__all__ = ["A", "B", "C", "E", "ERROR_ORDER", "error", "stages", "step"]

# Nodes c_i (Tsitouras 2011, table 1).
C = (0.0, 0.161, 0.327, 0.9, 0.9800255409045097, 1.0, 1.0)

# Stage coefficients a_ij, row i (the stage), entries j < i.
A = (
    (),
    (0.161,),
    (-0.008480655492356989, 0.335480655492357),
    (2.8971530571054935, -6.359448489975075, 4.3622954328695815),
    (5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525),
    (5.86145544294642, -12.92096931784711, 8.159367898576159, -0.071584973281401,
     -0.028269050394068383),
    (0.09646076681806523, 0.01, 0.4798896504144996, 1.379008574103742, -3.290069515436081,
     2.324710524099774),
)

# 5th-order weights: the last stage row (first same as last), nothing on the last stage.
B = A[6] + (0.0,)

# Error weights b_i - bhat_i (5th minus embedded 4th order).
E = (-0.00178001105222577714, -0.0008164344596567469, 0.007880878010261995,
     -0.1447110071732629, 0.5823571654525552, -0.45808210592918697, 1.0 / 66.0)

ERROR_ORDER = 5
"""The local order of the error estimate, ``min(5, 4) + 1``: the step controller's exponent."""


def _combine(weights, ks):
    """``sum_j w_j k_j`` over the nonzero weights, written out so that XLA fuses it."""
    total = None
    for w, k in zip(weights, ks):
        if w == 0.0:
            continue
        term = w * k
        total = term if total is None else total + term
    return total


def stages(f: Callable, t, y, f0, h, args):
    """The first six stages of a step and its 5th-order increment ``sum_i b_i k_i``.

    Args:
        f: the batched vector field ``f(t, y, args)`` with ``t`` of shape ``(S,)`` and ``y`` of
            shape ``(d, S)``, returning ``(d, S)``.
        t, h: the lanes' times and steps ``(S,)`` (a lane may have ``h = 0``).
        y, f0: the lanes' states and ``f(t, y)`` (the previous step's last stage), ``(d, S)``.
        args: the lanes' arguments, passed through to ``f``.

    Returns:
        ``(ks, increment)``: the stages ``k_1..k_6`` and the increment, so that the step's
        solution is ``y + h * increment``.
    """
    ks = [f0]
    for i in range(1, 6):
        ks.append(f(t + C[i] * h, y + h * _combine(A[i], ks), args))
    return ks, _combine(B, ks)


def error(h, ks, f1):
    """The local error estimate (5th minus embedded 4th order) from the six stages and the
    vector field ``f1`` at the step's solution (the seventh stage)."""
    return h * _combine(E, list(ks) + [f1])


def step(f: Callable, t, y, f0, h, args):
    """One Tsit5 step of every lane: ``(y1, error, f(t + h, y1))`` (see :func:`stages`)."""
    ks, increment = stages(f, t, y, f0, h, args)
    y1 = y + h * increment
    f1 = f(t + h, y1, args)
    return y1, error(h, ks, f1), f1
