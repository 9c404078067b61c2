"""The learned constant mask: f(x) = (1 − m) x + m c with m independent of x."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anonymax.models import get_model


def test_the_mask_does_not_depend_on_the_input():
  model = get_model("constant_mask", size=8)
  x = jax.random.uniform(jax.random.key(0), (3, 8, 8, 3))
  params = model.init(jax.random.key(1), x)["params"]
  assert params["mask_logits"].shape == (8, 8, 1) and params["fill"].shape == (3,)
  logits = jnp.linspace(-4.0, 4.0, 64).reshape(8, 8, 1)
  params = {"mask_logits": logits, "fill": jnp.array([2.0, 0.0, -2.0])}
  m, c = jax.nn.sigmoid(logits), jax.nn.sigmoid(params["fill"])
  y = model.apply({"params": params}, x)
  np.testing.assert_allclose(y, (1 - m) * x + m * c, atol=1e-6)
  # The same pixels of two different images get the same weight on the fill: where m → 1 every
  # image becomes c, whatever it showed.
  y2 = model.apply({"params": params}, 1.0 - x)
  np.testing.assert_allclose((y - y2)[:, -1, -1], ((1 - m) * (2 * x - 1))[:, -1, -1], atol=1e-6)


def test_init_is_near_the_identity_and_other_sizes_and_clips_work():
  model = get_model("constant_mask", size=8, mask_init_logit=-6.0)
  x = jax.random.uniform(jax.random.key(0), (2, 8, 8, 3))
  params = model.init(jax.random.key(1), x)["params"]
  assert float(jnp.abs(model.apply({"params": params}, x) - x).max()) < 0.01
  big = jax.random.uniform(jax.random.key(2), (1, 16, 12, 3))
  assert model.apply({"params": params}, big).shape == big.shape  # the mask is resized
  clip = jnp.stack([x, x[::-1]], axis=1)
  np.testing.assert_allclose(
    model.apply({"params": params}, clip)[:, 0], model.apply({"params": params}, x)
  )
  with pytest.raises(ValueError, match="ConstantMask input must be"):
    model.apply({"params": params}, x[0])
