"""Tests for the ResNet reviewer: parameter counts, shapes, clips, BatchNorm statistics."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anonymax.models.resnet import IMAGENET_MEAN, IMAGENET_STD, ResNet18, ResNet50, ResNetTiny


def _count(model, size=64):
  shapes = jax.eval_shape(
    lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3)), train=False)
  )
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes["params"])), shapes


# Hand count from the architecture (convolutions have no bias; a norm has scale and bias).
def _conv(k, cin, cout):
  return k * k * cin * cout


def _norm(c):
  return 2 * c


def _stem():
  return _conv(7, 3, 64) + _norm(64)


def _bottleneck(cin, f):
  n = _conv(1, cin, f) + _norm(f) + _conv(3, f, f) + _norm(f) + _conv(1, f, 4 * f) + _norm(4 * f)
  if cin != 4 * f:  # projection shortcut
    n += _conv(1, cin, 4 * f) + _norm(4 * f)
  return n


def _basic(cin, f):
  n = _conv(3, cin, f) + _norm(f) + _conv(3, f, f) + _norm(f)
  if cin != f:
    n += _conv(1, cin, f) + _norm(f)
  return n


def _resnet50_body():
  total, cin = _stem(), 64
  for f, blocks in [(64, 3), (128, 4), (256, 6), (512, 3)]:
    for _ in range(blocks):
      total += _bottleneck(cin, f)
      cin = 4 * f
  return total


def _resnet18_body():
  total, cin = _stem(), 64
  for f, blocks in [(64, 2), (128, 2), (256, 2), (512, 2)]:
    for _ in range(blocks):
      total += _basic(cin, f)
      cin = f
  return total


def test_resnet50_parameter_count_matches_the_architecture():
  for num_classes in (1000, 7):
    count, _ = _count(ResNet50(num_classes=num_classes))
    assert count == _resnet50_body() + 2048 * num_classes + num_classes
  # torchvision's published figure for resnet50 (1000 classes).
  assert _resnet50_body() + 2048 * 1000 + 1000 == 25_557_032


def test_resnet18_parameter_count_matches_the_architecture():
  count, _ = _count(ResNet18(num_classes=7))
  assert count == _resnet18_body() + 512 * 7 + 7
  assert _resnet18_body() + 512 * 1000 + 1000 == 11_689_512  # torchvision's resnet18


def test_group_norm_variant_has_the_same_parameters_and_no_batch_stats():
  count, shapes = _count(ResNet18(num_classes=7, norm="group"))
  assert count == _resnet18_body() + 512 * 7 + 7
  assert "batch_stats" not in shapes


@pytest.fixture(scope="module")
def tiny():
  model = ResNetTiny(num_classes=5)
  x = jax.random.uniform(jax.random.PRNGKey(0), (4, 32, 32, 3))
  variables = jax.jit(lambda k, v: model.init(k, v, train=False))(jax.random.PRNGKey(1), x)
  return model, variables, x


def test_tiny_images_and_clips(tiny):
  model, variables, x = tiny
  predict = jax.jit(lambda v, x: model.apply(v, x, train=False))
  logits = predict(variables, x)
  assert logits.shape == (4, 5) and logits.dtype == jnp.float32
  clip = jnp.stack([x, x[::-1], 1.0 - x], axis=1)  # [4, 3, 32, 32, 3]
  clip_logits = predict(variables, clip)
  assert clip_logits.shape == (4, 5)
  expected = (logits + logits[::-1] + predict(variables, 1.0 - x)) / 3.0
  np.testing.assert_allclose(clip_logits, expected, rtol=1e-5, atol=1e-5)


def test_batch_norm_statistics_update_in_train_mode(tiny):
  model, variables, x = tiny
  logits, updates = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(
    variables, x
  )
  assert logits.shape == (4, 5)
  old, new = variables["batch_stats"]["norm_init"], updates["batch_stats"]["norm_init"]
  np.testing.assert_array_equal(old["mean"], 0.0)
  np.testing.assert_array_equal(old["var"], 1.0)
  # Recompute the stem by hand: normalise, 3x3 SAME conv (small-input stem), batch moments.
  xn = (x - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
  kernel = variables["params"]["conv_init"]["kernel"]
  h = jax.lax.conv_general_dilated(
    xn, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
  )
  mean = jnp.mean(h, axis=(0, 1, 2))
  var = jnp.var(h, axis=(0, 1, 2))
  # Running averages with momentum 0.9: r <- 0.9 r + 0.1 batch_moment.
  np.testing.assert_allclose(new["mean"], 0.1 * mean, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(new["var"], 0.9 + 0.1 * var, rtol=1e-4, atol=1e-6)


def test_eval_mode_is_batch_independent_and_train_mode_is_not(tiny):
  model, variables, x = tiny
  # Non-trivial running statistics, so eval mode differs from batch statistics.
  variables = {
    "params": variables["params"],
    "batch_stats": jax.tree.map(lambda s: s + 0.5, variables["batch_stats"]),
  }
  predict = jax.jit(
    lambda v, x, train: model.apply(v, x, train=train, mutable=["batch_stats"])[0], static_argnums=2
  )
  other = jnp.concatenate([x[:1], jnp.zeros_like(x[1:])], axis=0)
  np.testing.assert_allclose(
    predict(variables, x, False)[0], predict(variables, other, False)[0], rtol=1e-5, atol=1e-6
  )
  assert not np.allclose(predict(variables, x, True)[0], predict(variables, other, True)[0])


def test_imagenet_stem_accepts_64px():
  model = ResNetTiny(num_classes=3, small_input=False)
  x = jnp.zeros((2, 64, 64, 3))
  out, _ = jax.eval_shape(lambda: model.init_with_output(jax.random.PRNGKey(0), x, train=False))
  assert out.shape == (2, 3)


def test_bad_inputs_are_rejected():
  model = ResNetTiny(num_classes=3)
  with pytest.raises(ValueError, match="images"):
    model.init(jax.random.PRNGKey(0), jnp.zeros((2, 32, 32)), train=False)
  with pytest.raises(ValueError, match="norm"):
    ResNetTiny(num_classes=3, norm="layer").init(
      jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), train=False
    )
  with pytest.raises(ValueError, match="num_classes"):
    ResNetTiny(num_classes=0).init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), train=False)
