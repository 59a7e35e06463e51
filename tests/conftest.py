import jax


# Same numerics policy as diffrax's test-suite: float64, and no silent dtype promotion.
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")

import jaxflow  # noqa: E402,F401
