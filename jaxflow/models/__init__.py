"""Model families: pure functions of parameters, one file per family.

Their random draws (initializations, data) go through ``_gaussian.normal``: the bits of
``jax.random.normal``, compiled once per size class instead of once per shape.
"""

from jaxflow.models import toy as toy

__all__ = ["toy"]
