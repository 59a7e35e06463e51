"""Baselines the experiments compare gradient dynamics with (algorithms, not models).

* :mod:`jaxflow.baselines.omp`: Orthogonal Matching Pursuit, the greedy selection order of
  experiment E5.
* :mod:`jaxflow.baselines.max_margin`: the hard-margin SVM through the origin and the KKT
  residual of a predictor's direction, the limits of experiments E3 and E4.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxflow.baselines import omp
    >>> omp.omp(jnp.eye(3), jnp.array([0.0, 2.0, 1.0]), num_atoms=2).order.tolist()
    [1, 2]
"""

from jaxflow.baselines import max_margin as max_margin
from jaxflow.baselines import omp as omp

__all__ = ["max_margin", "omp"]
