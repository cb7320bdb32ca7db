"""lcc_jax: learning-based coded computation in JAX."""
