"""Test-wide JAX settings: CPU only, compile fast (compile time dominates tiny test models)."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402

jax.config.update("jax_disable_most_optimizations", True)
