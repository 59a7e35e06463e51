"""Gaussian draws of any shape from one compiled program per size class.

``jax.random.normal(key, shape)`` compiles a program per shape (about 0.35 s of XLA on the 2-core
machine): the models' initializations and data draws come in many shapes (every depth, width,
sample count), and a test run compiled 71 of them, 25 s. With JAX's partitionable Threefry (its
default), the draw of element ``i`` depends only on the key and ``i``, so a draw of ``n``
numbers is the first ``n`` of any longer draw. :func:`normal` draws a power-of-two length
(at least :data:`MIN_SIZE`) in one program per length and dtype, and cuts the answer from it on
the host: the same bits as ``jax.random.normal(key, shape, dtype)``, with a handful of
compilations instead of one per shape.

Where that does not hold it calls ``jax.random.normal`` itself: under a transformation (a traced
key: the draw is part of the caller's program anyway) and with partitionable Threefry turned
off.

Example:
    >>> import jax
    >>> from jaxflow.models._gaussian import normal
    >>> key = jax.random.key(0)
    >>> bool((normal(key, (3, 5)) == jax.random.normal(key, (3, 5))).all())
    True
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["MIN_SIZE", "normal"]

MIN_SIZE = 4096
"""The shortest draw: below it, the cost of a draw is its dispatch, whatever its length."""


@functools.partial(jax.jit, static_argnames=("size", "dtype"))
def _draw(key, size: int, dtype):
    return jax.random.normal(key, (size,), dtype)


def normal(key, shape, dtype=None) -> jax.Array:
    """``jax.random.normal(key, shape, dtype)``, bit for bit (module docstring).

    Args:
        key: a PRNG key (typed or raw).
        shape: the shape of the draw.
        dtype: a floating dtype (default JAX's default float: float64 with x64 on).
    """
    shape = tuple(int(s) for s in shape)
    if isinstance(key, jax.core.Tracer) or not jax.config.jax_threefry_partitionable:
        return jax.random.normal(key, shape, dtype)
    dtype = jnp.dtype(dtype if dtype is not None else jnp.result_type(float))
    count = int(np.prod(shape))
    size = max(MIN_SIZE, 1 << max(count - 1, 0).bit_length())
    flat = np.asarray(_draw(key, size, dtype))
    return jnp.asarray(flat[:count].reshape(shape))
