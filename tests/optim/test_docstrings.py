"""The examples in the anonymax.optim docstrings run and print what they claim."""

from __future__ import annotations

import doctest
import importlib

import jax
import jax.numpy as jnp
import optax
import pytest

MODULES = [
  "spsa",
  "critical_history",
  "scalarization",
  "spsa_gc",
  "es",
  "estimators",
  "cma_es",
  "reinforce",
  "gradients",
  "factory",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
  module = importlib.import_module(f"anonymax.optim.{name}")
  result = doctest.testmod(
    module,
    extraglobs={"jax": jax, "jnp": jnp, "optax": optax},
    optionflags=doctest.NORMALIZE_WHITESPACE,
    verbose=False,
  )
  assert result.attempted > 0
  assert result.failed == 0
