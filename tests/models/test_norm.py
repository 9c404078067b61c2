"""GroupNorm: the same function and parameters as flax.linen.GroupNorm."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anonymax.models.norm import GroupNorm


@pytest.mark.parametrize(
  "shape, groups",
  [
    ((2, 7, 5, 12), 3),  # images, 4 channels per group
    ((3, 4, 6, 6, 8), 4),  # clips [B, T, H, W, C]: statistics over frames too
    ((2, 9), 3),  # no spatial axes
    ((4, 16, 16, 32), 32),  # one channel per group
  ],
)
def test_group_norm_matches_flax_in_value_and_gradient(shape, groups):
  x = jax.random.normal(jax.random.key(1), shape) * 3 + 1
  weights = jax.random.normal(jax.random.key(5), shape)
  ours, ref = GroupNorm(num_groups=groups), nn.GroupNorm(num_groups=groups)
  variables = ref.init(jax.random.key(0), x)
  assert jax.tree.map(jnp.shape, ours.init(jax.random.key(0), x)) == jax.tree.map(
    jnp.shape, variables
  )
  # Non-trivial γ and β, so that both enter the comparison.
  variables = jax.tree.map(lambda p: p + jax.random.normal(jax.random.key(2), p.shape), variables)
  np.testing.assert_allclose(ours.apply(variables, x), ref.apply(variables, x), atol=1e-5)

  def loss(module):
    return lambda v, x: (module.apply(v, x) * weights).sum()

  got = jax.grad(loss(ours), argnums=(0, 1))(variables, x)
  want = jax.grad(loss(ref), argnums=(0, 1))(variables, x)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(g, w, atol=1e-5 * float(jnp.abs(w).max()))


def test_group_norm_output_dtype_and_initializers():
  x = jnp.linspace(0, 1, 2 * 4 * 4 * 8, dtype=jnp.bfloat16).reshape(2, 4, 4, 8)
  y, variables = GroupNorm(4, dtype=jnp.bfloat16).init_with_output(jax.random.key(0), x)
  assert y.dtype == jnp.bfloat16 and variables["params"]["scale"].dtype == jnp.float32
  y = GroupNorm(4).apply(variables, x)
  assert y.dtype == nn.GroupNorm(4).apply(variables, x).dtype == jnp.float32
  zero = GroupNorm(4, scale_init=nn.initializers.zeros).init(jax.random.key(0), x)
  assert float(jnp.abs(zero["params"]["scale"]).sum()) == 0.0


def test_group_norm_rejects_groups_that_do_not_divide_the_channels():
  with pytest.raises(ValueError, match="num_groups=3 does not divide 8 channels"):
    GroupNorm(3).init(jax.random.key(0), jnp.zeros((1, 2, 2, 8)))
