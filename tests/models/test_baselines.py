"""Tests for the comparison anonymizers and the model registry."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anonymax.models import MODEL_NAMES, get_model
from anonymax.models.baselines import (
  BDQ,
  Blacken,
  Downsample,
  GaussianBlur,
  Identity,
  blacken,
  blur,
  box_mask,
  downsample,
  gaussian_kernel,
  identity,
)


def _random(shape, seed=0):
  return np.random.default_rng(seed).uniform(size=shape).astype(np.float32)


def test_identity_returns_its_input():
  x = _random((2, 4, 4, 3))
  np.testing.assert_array_equal(identity(x), x)
  np.testing.assert_array_equal(Identity()(x), x)  # parameter-free modules work unbound


def test_downsample_nearest_averages_blocks_by_hand():
  img = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1) / 16
  out = np.asarray(downsample(img, factor=2))[0, :, :, 0] * 16
  # Block means of [[0,1],[4,5]] = 2.5, [[2,3],[6,7]] = 4.5, [[8,9],[12,13]] = 10.5, ... = 12.5.
  expected = np.array(
    [[2.5, 2.5, 4.5, 4.5], [2.5, 2.5, 4.5, 4.5], [10.5, 10.5, 12.5, 12.5], [10.5, 10.5, 12.5, 12.5]]
  )
  np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_downsample_factor_sets_the_block_size_for_images_and_clips():
  x = _random((2, 3, 16, 16, 3))
  for factor in (1, 4, 8):
    y = np.asarray(Downsample(factor=factor)(x))
    assert y.shape == x.shape
    blocks = y.reshape(2, 3, 16 // factor, factor, 16 // factor, factor, 3)
    # Constant inside each factor x factor block, and the block means are kept.
    np.testing.assert_allclose(
      blocks, np.broadcast_to(blocks[:, :, :, :1, :, :1], blocks.shape), atol=1e-6
    )
    np.testing.assert_allclose(y.mean(axis=(2, 3)), x.mean(axis=(2, 3)), atol=1e-5)
  np.testing.assert_allclose(downsample(x, factor=1), x, atol=1e-7)
  bilinear = downsample(x[:, 0], factor=4, method="bilinear")
  assert bilinear.shape == x[:, 0].shape
  assert not np.allclose(bilinear, downsample(x[:, 0], factor=4))


def test_downsample_rejects_bad_arguments():
  x = jnp.zeros((1, 10, 10, 3))
  with pytest.raises(ValueError, match="10x10.*4"):
    downsample(x, factor=4)
  with pytest.raises(ValueError, match="factor"):
    downsample(x, factor=0)
  with pytest.raises(ValueError, match="method"):
    downsample(x, factor=2, method="cubic")


def test_gaussian_kernel_by_hand():
  # sigma = 1, radius = 1: weights (e^-0.5, 1, e^-0.5) / (1 + 2 e^-0.5).
  e = math.exp(-0.5)
  np.testing.assert_allclose(gaussian_kernel(1.0, 1), np.array([e, 1, e]) / (1 + 2 * e), rtol=1e-6)


def test_blur_of_an_impulse_is_the_outer_product_of_the_kernel():
  x = np.zeros((1, 9, 9, 3), np.float32)
  x[0, 4, 4] = 1.0
  y = np.asarray(blur(x, sigma=1.0, radius=1))
  e = math.exp(-0.5)
  w = np.array([e, 1, e]) / (1 + 2 * e)
  np.testing.assert_allclose(y[0, 3:6, 3:6, 0], np.outer(w, w), rtol=1e-5)
  assert y[0, 4, 4, 0] == pytest.approx(0.20418, abs=1e-4)  # (1 / (1 + 2 e^-0.5))^2
  np.testing.assert_array_equal(y[0, :3], 0.0)


def test_blur_removes_high_frequencies_and_keeps_constants():
  yy, xx = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
  checker = ((yy + xx) % 2).astype(np.float32)[None, :, :, None].repeat(3, axis=-1)
  blurred = np.asarray(GaussianBlur(sigma=2.0)(checker))

  def high_energy(img):  # energy at the highest spatial frequencies (|f| >= 1/4 cycles/px)
    spec = np.abs(np.fft.fft2(img[0, :, :, 0] - img.mean())) ** 2
    f = np.abs(np.fft.fftfreq(16))
    return spec[(f[:, None] >= 0.25) | (f[None, :] >= 0.25)].sum()

  assert high_energy(blurred) < 1e-2 * high_energy(checker)  # the rest comes from the borders
  # Away from the borders (radius ceil(3 sigma) = 6) the Nyquist pattern is gone: its gain is
  # sum_i w_i (-1)^i ~ exp(-2 pi^2 sigma^2 / 4) ~ 3e-9, leaving the mean 0.5.
  np.testing.assert_allclose(blurred[0, 6:10, 6:10], 0.5, atol=1e-4)
  assert blurred.mean() == pytest.approx(checker.mean(), abs=0.02)
  const = np.full((1, 8, 8, 3), 0.3, np.float32)
  np.testing.assert_allclose(blur(const, sigma=3.0), const, atol=1e-6)  # edge padding


def test_blur_inside_a_box_leaves_the_rest_untouched():
  x = _random((2, 8, 8, 3))
  y = np.asarray(blur(x, sigma=2.0, box=(0.0, 0.0, 0.5, 0.5)))
  np.testing.assert_array_equal(y[:, 4:], x[:, 4:])
  np.testing.assert_array_equal(y[:, :, 4:], x[:, :, 4:])
  assert not np.allclose(y[:, :4, :4], x[:, :4, :4])
  with pytest.raises(ValueError, match="sigma"):
    blur(x, sigma=0.0)


def test_blacken_zeros_everything_or_the_box():
  x = np.ones((2, 2, 4, 4, 3), np.float32)  # clips
  np.testing.assert_array_equal(Blacken()(x), 0.0)
  y = np.asarray(blacken(x, box=(0.0, 0.0, 0.5, 0.5)))
  np.testing.assert_array_equal(y[:, :, :2, :2], 0.0)
  assert y.sum() == x.sum() - 2 * 2 * 4 * 3
  # One box per sample: sample 0 loses its bottom row, sample 1 its right column.
  boxes = np.array([[0.75, 0.0, 1.0, 1.0], [0.0, 0.75, 1.0, 1.0]])
  y = np.asarray(blacken(x[:, 0], box=boxes))
  np.testing.assert_array_equal(y[0, 3], 0.0)
  np.testing.assert_array_equal(y[0, :3], 1.0)
  np.testing.assert_array_equal(y[1, :, 3], 0.0)
  np.testing.assert_array_equal(y[1, :, :3], 1.0)


def test_box_mask_rejects_a_bad_box_shape():
  with pytest.raises(ValueError, match="box"):
    box_mask((2, 4, 4, 3), np.zeros((3, 4)))


@pytest.fixture(scope="module")
def bdq():
  model = BDQ()
  clip = jnp.asarray(_random((2, 3, 8, 8, 3)))
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), clip)
  return model, variables, clip


def test_bdq_parameters_shapes_and_range(bdq):
  model, variables, clip = bdq
  params = variables["params"]
  assert set(params) == {"log_sigma", "bins"}
  np.testing.assert_allclose(params["bins"], np.arange(15) + 0.5)
  apply = jax.jit(model.apply)
  y = apply(variables, clip)
  assert y.shape == clip.shape
  assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
  image = apply(variables, clip[:, 0])
  assert image.shape == clip[:, 0].shape


def test_bdq_static_clip_maps_to_the_middle_level(bdq):
  model, variables, clip = bdq
  # Equal frames: d = 0, u = N / 2 = 7.5, q = sum_i sigmoid(5 (7 - i)) = 7.5 by symmetry.
  static = jnp.repeat(clip[:, :1], 3, axis=1)
  np.testing.assert_allclose(model.apply(variables, static), 0.5, atol=1e-6)


def test_bdq_gradient_reaches_sigma_and_bins(bdq):
  model, variables, clip = bdq

  def loss(params):
    return jnp.mean(model.apply({"params": params}, clip) ** 2)

  grads = jax.jit(jax.grad(loss))(variables["params"])
  assert abs(float(grads["log_sigma"])) > 1e-6
  assert float(jnp.max(jnp.abs(grads["bins"]))) > 1e-6


def test_bdq_rejects_an_even_kernel():
  with pytest.raises(ValueError, match="kernel_size"):
    BDQ(kernel_size=4).init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 3)))


def test_get_model_builds_every_name():
  for name in MODEL_NAMES:
    kwargs = {"num_classes": 3} if name.startswith("resnet") else {}
    if name == "unet":  # the widths have no default
      kwargs = {"features": (4, 8), "groups": 2}
    if name == "constant_mask":  # nor has the mask's size
      kwargs = {"size": 8}
    assert get_model(name, **kwargs).__class__.__name__
  assert get_model("unet", features=(8, 16), groups=4).features == (8, 16)
  assert get_model("blur", sigma=1.5).sigma == 1.5
  assert get_model("resnet_tiny", num_classes=4).num_classes == 4


def test_get_model_errors_name_the_problem():
  with pytest.raises(ValueError, match="unknown model 'vgg'.*unet.*resnet50.*bdq"):
    get_model("vgg")
  with pytest.raises(ValueError, match="num_classes"):
    get_model("resnet50")
  with pytest.raises(ValueError, match="blur"):
    get_model("blur", radius_px=3)
