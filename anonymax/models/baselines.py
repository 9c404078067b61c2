"""Comparison anonymizers: the paper's heuristic rows and the BDQ encoder.

Every anonymizer maps float visuals in [0, 1] to visuals in [0, 1] of the same shape: images
[B, H, W, C] or clips [B, T, H, W, C] (frame by frame, except BDQ's frame difference). Each is
both a plain function and a `flax.linen` module, so the trainer and evaluator can `init`/`apply`
them exactly like the U-Net. The heuristic modules have no parameters and no compact method, so
they may also be called unbound: `GaussianBlur(sigma=2.0)(x)`.

* identity  - the "raw data" rows.
* downsample - area average over factor x factor blocks, then back up (nearest or bilinear)
  (the "Downsample" row of Dave et al., ECCV 2022).
* blur      - Gaussian blur of the whole image or of a box ("Obf-StrongBlur/WeakBlur").
* blacken   - zero a box or, without a box, the whole image ("Obf-Blackening"; the whole-image
  variant is the no-detector lower bound: nothing left to leak, nothing left to use).
* bdq       - Kumawat & Nagahara, "Privacy-preserving action recognition via motion difference
  quantization", ECCV 2022: learnable Gaussian blur, temporal difference, learnable soft
  quantisation.

Boxes are (ymin, xmin, ymax, xmax) in fractions of the height and width, either one box [4]
for the whole batch or one per sample [B, 4]; a pixel is inside when its centre is.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

BoxLike = Any  # tuple of 4 floats, or an array [4] or [B, 4]


def _check_visuals(x: jnp.ndarray, who: str) -> None:
  if x.ndim not in (4, 5):
    raise ValueError(
      f"{who} input must be images [B, H, W, C] or clips [B, T, H, W, C], got shape {x.shape}"
    )


def _frames(x: jnp.ndarray) -> tuple[jnp.ndarray, tuple[int, ...]]:
  """Folds clips [B, T, H, W, C] into frames [B*T, H, W, C]; returns them and the shape."""
  return x.reshape((-1,) + x.shape[-3:]), x.shape


def box_mask(shape: tuple[int, ...], box: BoxLike) -> jnp.ndarray:
  """Returns a float mask broadcastable to `shape` (images or clips), 1 inside the box.

  mask[b, h, w] = [ymin <= (h + 0.5) / H < ymax] * [xmin <= (w + 0.5) / W < xmax].

  Args:
    shape: the visuals' shape, [B, H, W, C] or [B, T, H, W, C].
    box: (ymin, xmin, ymax, xmax) fractions, [4] or [B, 4].

  Returns:
    float32 mask of shape [B or 1, (1,) H, W, 1].
  """
  box = jnp.asarray(box, jnp.float32)
  if box.shape not in ((4,), (shape[0], 4)):
    raise ValueError(f"box must have shape [4] or [B={shape[0]}, 4], got {box.shape}")
  box = box.reshape(-1, 4)
  height, width = shape[-3], shape[-2]
  ys = (jnp.arange(height, dtype=jnp.float32) + 0.5) / height
  xs = (jnp.arange(width, dtype=jnp.float32) + 0.5) / width
  inside_y = (ys[None, :] >= box[:, 0:1]) & (ys[None, :] < box[:, 2:3])  # [b, H]
  inside_x = (xs[None, :] >= box[:, 1:2]) & (xs[None, :] < box[:, 3:4])  # [b, W]
  mask = (inside_y[:, :, None] & inside_x[:, None, :]).astype(jnp.float32)[..., None]
  if len(shape) == 5:
    mask = mask[:, None]
  return mask


def identity(x: jnp.ndarray) -> jnp.ndarray:
  """x' = x (the raw-data rows)."""
  _check_visuals(x, "identity")
  return x


def downsample(x: jnp.ndarray, factor: int = 4, method: str = "nearest") -> jnp.ndarray:
  """Area-averages factor x factor blocks, then resizes back to H x W.

  d[i, j] = mean(x[f i : f (i+1), f j : f (j+1)]); x' = up(d) with `method` "nearest" (every
  pixel of a block gets its mean) or "bilinear".

  Args:
    x: images or clips in [0, 1]; H and W divisible by `factor`.
    factor: integer downsampling factor (1 is the identity).
    method: "nearest" or "bilinear" upsampling.

  Returns:
    x' with the shape of x.
  """
  _check_visuals(x, "downsample")
  if int(factor) != factor or factor < 1:
    raise ValueError(f"downsample factor must be a positive integer, got {factor}")
  if method not in ("nearest", "bilinear"):
    raise ValueError(f"downsample method must be 'nearest' or 'bilinear', got {method!r}")
  factor = int(factor)
  frames, shape = _frames(x)
  n, height, width, channels = frames.shape
  if height % factor or width % factor:
    raise ValueError(f"downsample: image size {height}x{width} is not divisible by {factor}")
  small = frames.reshape(n, height // factor, factor, width // factor, factor, channels)
  small = small.mean(axis=(2, 4))
  if method == "nearest":
    up = jnp.repeat(jnp.repeat(small, factor, axis=1), factor, axis=2)
  else:
    up = jax.image.resize(small, frames.shape, method="linear")
  return up.astype(x.dtype).reshape(shape)


def gaussian_kernel(sigma: float | jnp.ndarray, radius: int) -> jnp.ndarray:
  """1-D Gaussian weights w_i = exp(-i^2 / (2 sigma^2)) / sum_j exp(-j^2 / (2 sigma^2)).

  Args:
    sigma: standard deviation in pixels (> 0; may be a traced, learnable value).
    radius: half width; the kernel has 2 * radius + 1 taps.

  Returns:
    float32 [2 * radius + 1], summing to 1.
  """
  t = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  w = jnp.exp(-0.5 * (t / sigma) ** 2)
  return w / jnp.sum(w)


def _blur_frames(frames: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
  """Separable blur of [N, H, W, C] with edge padding (a constant image stays constant)."""
  radius = (kernel.shape[0] - 1) // 2
  height, width = frames.shape[1], frames.shape[2]
  padded = jnp.pad(frames, ((0, 0), (radius, radius), (0, 0), (0, 0)), mode="edge")
  frames = sum(kernel[i] * padded[:, i : i + height] for i in range(kernel.shape[0]))
  padded = jnp.pad(frames, ((0, 0), (0, 0), (radius, radius), (0, 0)), mode="edge")
  return sum(kernel[i] * padded[:, :, i : i + width] for i in range(kernel.shape[0]))


def blur(
  x: jnp.ndarray, sigma: float = 4.0, box: BoxLike | None = None, radius: int | None = None
) -> jnp.ndarray:
  """Gaussian blur: x' = G_sigma * x inside the box (everywhere without one), x elsewhere.

  Args:
    x: images or clips in [0, 1].
    sigma: standard deviation in pixels (> 0).
    box: optional (ymin, xmin, ymax, xmax) fractions, [4] or [B, 4].
    radius: kernel half width; default ceil(3 sigma).

  Returns:
    x' with the shape of x.
  """
  _check_visuals(x, "blur")
  if not sigma > 0:
    raise ValueError(f"blur sigma must be > 0, got {sigma}")
  radius = math.ceil(3 * sigma) if radius is None else radius
  frames, shape = _frames(x)
  blurred = _blur_frames(frames.astype(jnp.float32), gaussian_kernel(sigma, radius))
  blurred = blurred.astype(x.dtype).reshape(shape)
  if box is None:
    return blurred
  mask = box_mask(shape, box)
  return (mask * blurred + (1 - mask) * x).astype(x.dtype)


def blacken(x: jnp.ndarray, box: BoxLike | None = None) -> jnp.ndarray:
  """x' = x * (1 - mask(box)); without a box the whole visual is zeroed.

  Args:
    x: images or clips in [0, 1].
    box: optional (ymin, xmin, ymax, xmax) fractions, [4] or [B, 4].

  Returns:
    x' with the shape of x.
  """
  _check_visuals(x, "blacken")
  if box is None:
    return jnp.zeros_like(x)
  return (x * (1 - box_mask(x.shape, box))).astype(x.dtype)


class Identity(nn.Module):
  """The identity anonymizer as a (parameter-free) module."""

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    return identity(x)


class Downsample(nn.Module):
  """`downsample` as a module. Attributes: factor, method ("nearest" or "bilinear")."""

  factor: int = 4
  method: str = "nearest"

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    return downsample(x, self.factor, self.method)


class GaussianBlur(nn.Module):
  """`blur` as a module. Attributes: sigma (pixels), box (optional fractions)."""

  sigma: float = 4.0
  box: tuple[float, float, float, float] | None = None

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    return blur(x, self.sigma, self.box)


class Blacken(nn.Module):
  """`blacken` as a module. Attributes: box (optional fractions; None zeroes everything)."""

  box: tuple[float, float, float, float] | None = None

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    return blacken(x, self.box)


class BDQ(nn.Module):
  """Blur-Difference-Quantization encoder (Kumawat & Nagahara, ECCV 2022).

  B: b = G_sigma * x with a learnable sigma (kernel of `kernel_size` taps).
  D: for clips, d_t = b_t - b_{t-1} (t >= 1), mapped to u = N (d + 1) / 2 in [0, N]; the first
     frame repeats d_1 so the clip keeps its T frames. Images (or T = 1) skip D: u = N b.
  Q: q = sum_{i=1..N} sigmoid(hardness (u - beta_i)) with learnable bin edges beta, initialised
     at 0.5, 1.5, ..., N - 0.5 (a soft staircase); x' = q / N in [0, 1].

  The fixed affine maps (instead of the batch min/max) keep every sample independent of its
  batch.

  Attributes:
    num_bins: N, the number of quantisation levels.
    kernel_size: odd blur kernel width.
    init_sigma: initial blur sigma (pixels).
    hardness: sigmoid sharpness of the soft quantiser.
  """

  num_bins: int = 15
  kernel_size: int = 5
  init_sigma: float = 1.0
  hardness: float = 5.0

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    _check_visuals(x, "bdq")
    if self.kernel_size < 1 or self.kernel_size % 2 == 0:
      raise ValueError(f"BDQ.kernel_size must be a positive odd integer, got {self.kernel_size}")
    if self.num_bins < 1:
      raise ValueError(f"BDQ.num_bins must be >= 1, got {self.num_bins}")
    if not self.init_sigma > 0:
      raise ValueError(f"BDQ.init_sigma must be > 0, got {self.init_sigma}")
    # log-parameterised so that sigma stays positive under any update.
    log_sigma = self.param(
      "log_sigma", nn.initializers.constant(math.log(self.init_sigma)), (), jnp.float32
    )
    n = self.num_bins
    bins = self.param("bins", lambda _, shape: jnp.arange(shape[0], dtype=jnp.float32) + 0.5, (n,))
    frames, shape = _frames(x)
    kernel = gaussian_kernel(jnp.exp(log_sigma), (self.kernel_size - 1) // 2)
    b = _blur_frames(frames.astype(jnp.float32), kernel).reshape(shape)
    if x.ndim == 5 and shape[1] > 1:
      d = b[:, 1:] - b[:, :-1]
      d = jnp.concatenate([d[:, :1], d], axis=1)
      u = n * (d + 1.0) / 2.0
    else:
      u = n * b
    q = jnp.sum(jax.nn.sigmoid(self.hardness * (u[..., None] - bins)), axis=-1)
    return (q / n).astype(x.dtype)
