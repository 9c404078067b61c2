"""Tests for the U-Net anonymizer: shapes, identity at init, batch independence, gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anonymax.models.norm import num_groups
from anonymax.models.unet import UNet

FEATURES = (8, 16, 32)  # narrow CPU U-Net; depth 3 needs H, W divisible by 4


@pytest.fixture(scope="module")
def unet():
  model = UNet(features=FEATURES, groups=8, head="residual")
  x = jax.random.uniform(jax.random.PRNGKey(0), (3, 16, 16, 3))
  params = jax.jit(model.init)(jax.random.PRNGKey(1), x)["params"]
  # One compilation per input shape instead of op-by-op dispatch.
  apply = jax.jit(lambda p, v: model.apply({"params": p}, v))
  return apply, params, x


def _psnr(a, b):
  mse = float(jnp.mean((a - b) ** 2))
  return 10 * np.log10(1.0 / mse)


def test_image_and_clip_shapes(unet):
  apply, params, x = unet
  y = apply(params, x)
  assert y.shape == x.shape and y.dtype == x.dtype
  clip = jnp.stack([x, x[::-1]], axis=1)  # [3, 2, 16, 16, 3]
  y_clip = apply(params, clip)
  assert y_clip.shape == clip.shape
  # Frame-wise: frame t of the clip is anonymized exactly like the image alone.
  np.testing.assert_allclose(y_clip[:, 0], y, atol=1e-6)
  np.testing.assert_allclose(y_clip[:, 1], y[::-1], atol=1e-6)


def test_near_identity_at_init(unet):
  apply, params, x = unet
  y = apply(params, x)
  assert _psnr(y, x) >= 30.0
  assert float(jnp.max(jnp.abs(y - x))) > 0  # not exactly the identity: the output conv is live


def test_output_stays_in_unit_range_for_any_parameters(unet):
  apply, params, x = unet
  rng = np.random.default_rng(2)
  noisy = jax.tree.map(lambda p: p + 3.0 * rng.standard_normal(p.shape, np.float32), params)
  y = apply(noisy, x)
  assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
  assert _psnr(y, x) < 30.0  # large perturbations do change the image


def test_output_does_not_depend_on_the_batch(unet):
  apply, params, x = unet
  y = apply(params, x)
  for i in range(x.shape[0]):
    alone = apply(params, x[i : i + 1])
    np.testing.assert_allclose(alone[0], y[i], atol=1e-6)
  # Replacing the other images of the batch leaves image 0 unchanged.
  other = jnp.concatenate([x[:1], 1.0 - x[1:]], axis=0)
  np.testing.assert_allclose(apply(params, other)[0], y[0], atol=1e-6)


def test_every_parameter_receives_a_gradient_at_init():
  # A depth-2 U-Net has every kind of layer (down, upsample, up, out) and compiles faster.
  model = UNet(features=(4, 8), groups=2, head="residual")
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, 8, 8, 3))
  params = jax.jit(model.init)(jax.random.PRNGKey(1), x)["params"]
  target = jax.random.uniform(jax.random.PRNGKey(3), x.shape)

  def loss(p):
    return jnp.mean((model.apply({"params": p}, x) - target) ** 2)

  grads = jax.jit(jax.grad(loss))(params)
  flat = jax.tree_util.tree_flatten_with_path(grads)[0]
  assert {"down_0", "down_1", "upsample_0", "up_0", "conv_out"} == set(params)
  assert len(flat) == len(jax.tree.leaves(params))
  for path, g in flat:
    # Well above float32 round-off of an exactly-zero gradient (a redundant bias would sit here).
    assert float(jnp.max(jnp.abs(g))) > 1e-8, jax.tree_util.keystr(path)


@pytest.mark.parametrize(
  "groups, channels, expected",
  [(8, 12, 6), (8, 4, 4), (8, 9, 3), (8, 7, 7), (32, 2048, 32), (32, 8, 8), (1, 5, 1)],
)
def test_num_groups_is_the_largest_divisor_not_above_groups(groups, channels, expected):
  assert num_groups(groups, channels) == expected


def test_num_groups_rejects_bad_values():
  with pytest.raises(ValueError, match="groups"):
    num_groups(0, 8)
  with pytest.raises(ValueError, match="channels"):
    num_groups(8, 0)


def test_width_not_divisible_by_groups_still_builds():
  # nn.GroupNorm(num_groups=8) rejects 12 or 6 channels; the clipped group count does not.
  model = UNet(features=(12, 6), groups=8, head="residual")
  x = jnp.full((1, 4, 4, 3), 0.5)
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), x)
  assert variables["params"]["down_0"]["norm_0"]["scale"].shape == (12,)
  assert variables["params"]["down_1"]["norm_0"]["scale"].shape == (6,)
  assert jax.jit(model.apply)(variables, x).shape == x.shape


def test_bad_image_size_is_rejected_with_size_and_depth():
  model = UNet(features=FEATURES, groups=8, head="residual")
  with pytest.raises(ValueError, match=r"18x16.*depth 3"):
    model.init(jax.random.PRNGKey(0), jnp.zeros((1, 18, 16, 3)))


def test_bad_rank_is_rejected():
  with pytest.raises(ValueError, match="images"):
    UNet(features=FEATURES, groups=8, head="residual").init(
      jax.random.PRNGKey(0), jnp.zeros((16, 16, 3))
    )


# --- The masked-fill head ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def masked_unet():
  model = UNet(features=(4, 8), groups=2, head="masked_fill")
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, 8, 8, 3))
  params = jax.jit(model.init)(jax.random.PRNGKey(1), x)["params"]
  apply = jax.jit(lambda p, v: model.apply({"params": p}, v))
  return apply, params, x


def test_masked_fill_is_near_identity_at_init_and_every_parameter_is_live(masked_unet):
  apply, params, x = masked_unet
  assert {"mask_out", "fill"} <= set(params)
  assert _psnr(apply(params, x), x) >= 30.0
  target = jax.random.uniform(jax.random.PRNGKey(3), x.shape)
  grads = jax.grad(lambda p: jnp.mean((apply(p, x) - target) ** 2))(params)
  for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
    assert float(jnp.max(jnp.abs(g))) > 1e-8, jax.tree_util.keystr(path)


def test_masked_fill_equation_against_its_parts(masked_unet):
  """f_A(x) = (1 − m) · clip(x + residual, 0, 1) + m · sigmoid(γ), with m = sigmoid(W_m h + b_m)."""
  apply, params, x = masked_unet
  gamma = jnp.array([0.3, -1.0, 2.0])
  # With the mask bias at +large, m = 1 everywhere: the output is the fill colour, whatever x is.
  full = {**params, "fill": gamma, "mask_out": {**params["mask_out"], "bias": jnp.array([40.0])}}
  want = jnp.broadcast_to(jax.nn.sigmoid(gamma), x.shape)
  np.testing.assert_allclose(apply(full, x), want, atol=1e-6)
  np.testing.assert_allclose(apply(full, 1.0 - x), want, atol=1e-6)
  # With the mask kernel zeroed and b_m = 0, m = 1/2: the mean of the residual output and the fill.
  half = {
    **params,
    "fill": gamma,
    "mask_out": {"kernel": jnp.zeros_like(params["mask_out"]["kernel"]), "bias": jnp.zeros(1)},
  }
  residual_only = UNet(features=(4, 8), groups=2, head="residual")
  kept = {k: v for k, v in params.items() if k not in ("mask_out", "fill")}
  y_res = residual_only.apply({"params": kept}, x)
  np.testing.assert_allclose(apply(half, x), 0.5 * y_res + 0.5 * jax.nn.sigmoid(gamma), atol=1e-6)


def test_unknown_head_is_rejected():
  with pytest.raises(ValueError, match=r"UNet\.head must be"):
    UNet(features=(4,), groups=2, head="inpaint").init(
      jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 3))
    )


def test_mask_head_only_paints_over():
  """head="mask": f_A(x) = (1 − m) · x + m · sigmoid(γ); no residual path at all."""
  model = UNet(features=(4, 8), groups=2, head="mask", mask_init_logit=-3.0)
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, 8, 8, 3))
  params = model.init(jax.random.PRNGKey(1), x)["params"]
  assert "conv_out" not in params and {"mask_out", "fill"} <= set(params)
  assert _psnr(model.apply({"params": params}, x), x) >= 30.0
  gamma = jnp.array([1.0, 0.0, -1.0])
  flat = {
    **params,
    "fill": gamma,
    "mask_out": {"kernel": jnp.zeros_like(params["mask_out"]["kernel"]), "bias": jnp.array([0.4])},
  }
  m = jax.nn.sigmoid(0.4)
  want = (1 - m) * x + m * jax.nn.sigmoid(gamma)
  np.testing.assert_allclose(model.apply({"params": flat}, x), want, atol=1e-6)
